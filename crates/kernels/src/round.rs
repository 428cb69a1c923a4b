//! Float to integer conversions the quantizing loops share, written so the
//! loops around them vectorize.

/// `x` clamped to `lo..=hi` (NaN to `lo`) and converted to i32. With the
/// clamp first, the conversion needs no saturation, and the loops around it
/// vectorize (a saturating `as` is one scalar conversion per lane).
#[inline(always)]
pub fn to_int(x: f32, lo: f32, hi: f32) -> i32 {
    let x = x.max(lo).min(hi);
    // SAFETY: `max` replaced a NaN by `lo`, and `lo..=hi` is inside i32.
    unsafe { x.to_int_unchecked::<i32>() }
}

/// `x` rounded to the nearest integer, ties to even, for the range that
/// matters before an int8 clamp. `f32::round_ties_even` is a libm call on
/// x86-64's baseline (SSE2 has no rounding instruction), which keeps the loop
/// scalar; adding and taking away 1.5 * 2^23 rounds in the FPU's default
/// mode (nearest, ties to even) and vectorizes. Values beyond +-2^22 saturate
/// first: they clamp to the int8 range anyway.
#[inline(always)]
pub fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-4_194_304.0, 4_194_304.0);
    (x + MAGIC) - MAGIC
}
