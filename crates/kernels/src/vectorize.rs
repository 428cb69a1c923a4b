//! Plain loops compiled for the vector units the CPU has.
//!
//! The Winograd transforms are plain Rust loops, a tile per lane: written
//! once, LLVM vectorizes them for NEON on aarch64, and on x86-64 for AVX2
//! where the CPU has it (four or eight more lanes per vector than the
//! x86-64 baseline gives them).

/// Whether this CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Defines `$name`, which runs `$plain` (an `#[inline(always)]` function)
/// compiled for AVX2 and FMA where the CPU has them.
macro_rules! vectorized {
    ($name:ident, $avx2:ident, $plain:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2($($arg: $ty),*) {
            $plain($($arg),*)
        }

        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::vectorize::avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { $avx2($($arg),*) };
            }
            $plain($($arg),*)
        }
    };
}

pub(crate) use vectorized;
