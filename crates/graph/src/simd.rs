//! The x86 SIMD state that tract's kernels leave behind.
//!
//! tract-linalg's x86-64 assembly kernels (AVX2/FMA, AVX-512) return without
//! `vzeroupper`. Until something clears the upper halves of the vector
//! registers, every legacy-SSE instruction that follows on that thread (all
//! floating-point Rust code built for baseline x86-64: preprocessing, box
//! decoding, weight generation, tract's own non-assembly ops) carries a false
//! dependency on them. Measured here: the zoo's weight generation ran 10x
//! slower after one tract inference than before it.
//! [`clear_upper_vector_state`] is called after every plan node the runtime
//! evaluates and after every matrix kernel the INT8 convolution calls.
//! ARM has no such state; there it does nothing.

/// Zeroes the upper halves of the vector registers (`vzeroupper`) on x86-64
/// CPUs with AVX, so that the SSE code that follows runs at full speed.
/// Costs one instruction; does nothing elsewhere.
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX was detected just above, which is all that
        // `_mm256_zeroupper` needs.
        unsafe { zero_upper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}
