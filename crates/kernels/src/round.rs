//! Float to integer conversions the quantizing loops share, written so the
//! loops around them vectorize.

/// `x` clamped to `lo..=hi` (NaN to `lo`) and converted to i32. With the
/// clamp first, the conversion needs no saturation, and the loops around it
/// vectorize (a saturating `as` is one scalar conversion per lane). The
/// comparisons are one `vmaxps`/`vminps` each, where `f32::max` and `min`
/// add a NaN test and a blend per vector.
#[inline(always)]
pub fn to_int(x: f32, lo: f32, hi: f32) -> i32 {
    // A NaN fails `x > lo`: it becomes `lo`.
    let x = if x > lo { x } else { lo };
    let x = if x < hi { x } else { hi };
    // SAFETY: the comparisons replaced a NaN by `lo`, and the callers' `lo..=hi`
    // is an int8 or int32 range, inside i32.
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
    // As in `to_int`: a NaN goes to the low end, which clamps to the int8
    // range's low end after.
    let x = if x > -4_194_304.0 { x } else { -4_194_304.0 };
    let x = if x < 4_194_304.0 { x } else { 4_194_304.0 };
    (x + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_ties_to_even_and_clamps_nan_to_the_low_end() {
        for (x, r) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (-0.5, -0.0),
            (-2.5, -2.0),
            (3.7, 4.0),
        ] {
            assert_eq!(round_half_even(x), r, "{x}");
        }
        assert_eq!(to_int(f32::NAN, -128.0, 127.0), -128);
        assert_eq!(to_int(round_half_even(f32::NAN), -128.0, 127.0), -128);
        assert_eq!(to_int(1e30, -128.0, 127.0), 127);
        assert_eq!(to_int(round_half_even(-1e30), 0.0, 255.0), 0);
        assert_eq!(to_int(round_half_even(41.5), -128.0, 127.0), 42);
    }
}
