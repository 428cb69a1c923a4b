//! Keeping freed memory in the process between frames.
//!
//! glibc's malloc serves a block above its mmap threshold with a fresh
//! `mmap` and unmaps it when freed, and gives the top of its heap back to the
//! kernel once more than its trim threshold is free there. A detector's
//! feature maps are megabytes each and are freed every frame, so every frame
//! mapped them anew and faulted every page in: PP-OCRv4 det at 640 took
//! about 18,000 page faults a frame. With both thresholds raised, the second
//! frame reuses the first frame's memory, the faults fall to a few per
//! frame, and peak memory stays what the first frame needed. Setting either
//! threshold alone does not help: glibc then stops adapting the other one,
//! and the faults grow (`docs/benchmarks.md`, "Page faults").
//!
//! [`Engine`](crate::Engine) applies this once per process. Set
//! `EDGEWISE_MALLOC=system` to keep glibc's defaults; a `GLIBC_TUNABLES`
//! that sets malloc tunables is respected as well.

use std::sync::OnceLock;

/// Blocks below this come from the heap, not from their own `mmap`: above
/// any feature map a detector on a board allocates.
const MMAP_THRESHOLD: i32 = 1 << 30;

/// Free memory at the top of the heap kept, not given back to the kernel.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// What [`keep_freed_memory`] did to the allocator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// glibc's malloc keeps freed blocks: blocks below `mmap_threshold`
    /// bytes come from the heap, and up to `trim_threshold` free bytes stay
    /// at its top.
    KeepFreed {
        /// Bytes under which a block comes from the heap.
        mmap_threshold: usize,
        /// Free bytes kept at the top of the heap.
        trim_threshold: usize,
    },
    /// The allocator was left as it was, for this reason.
    Untouched(String),
}

/// Raises glibc's mmap and trim thresholds once per process, unless
/// `EDGEWISE_MALLOC=system` or `GLIBC_TUNABLES` says otherwise, and says
/// what it did.
pub fn keep_freed_memory() -> &'static AllocatorTuning {
    static TUNING: OnceLock<AllocatorTuning> = OnceLock::new();
    TUNING.get_or_init(|| {
        let malloc = std::env::var("EDGEWISE_MALLOC").unwrap_or_default();
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if malloc == "system" {
            AllocatorTuning::Untouched("EDGEWISE_MALLOC=system".into())
        } else if tunables.contains("glibc.malloc.") {
            AllocatorTuning::Untouched("GLIBC_TUNABLES sets malloc tunables".into())
        } else {
            raise_thresholds()
        }
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_thresholds() -> AllocatorTuning {
    // Older glibc caps the mmap threshold (32 MiB on 64-bit, 512 KiB on
    // 32-bit before 2.35) and refuses larger values: take the largest it
    // accepts.
    let accepted = |option, candidates: &[i32]| {
        candidates
            .iter()
            // SAFETY: mallopt only reads its two integer arguments.
            .find(|&&value| unsafe { libc::mallopt(option, value) } == 1)
            .map(|&value| value as usize)
    };
    let candidates = [MMAP_THRESHOLD, 32 << 20, 512 << 10];
    let Some(mmap_threshold) = accepted(libc::M_MMAP_THRESHOLD, &candidates) else {
        return AllocatorTuning::Untouched("glibc refused every mmap threshold tried".into());
    };
    let Some(trim_threshold) = accepted(libc::M_TRIM_THRESHOLD, &[TRIM_THRESHOLD]) else {
        return AllocatorTuning::Untouched("glibc refused the trim threshold".into());
    };
    AllocatorTuning::KeepFreed {
        mmap_threshold,
        trim_threshold,
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_thresholds() -> AllocatorTuning {
    AllocatorTuning::Untouched("the allocator is not glibc's".into())
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    use super::*;

    /// Minor page faults of the calling thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn page_faults() -> i64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: filled by the successful call above.
        unsafe { usage.assume_init() }.ru_minflt
    }

    /// Blocks above glibc's largest automatic mmap threshold (32 MiB),
    /// allocated and freed frame after frame, fault their pages in once
    /// rather than every time.
    ///
    /// Fails, rather than passing unchecked, when the tuning was not applied
    /// (`EDGEWISE_MALLOC=system` or malloc tunables in `GLIBC_TUNABLES` in
    /// the test's environment, or a glibc refusing the thresholds).
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_feature_maps_are_reused_without_page_faults() {
        const SIZE: usize = 48 << 20;
        let mmap_threshold = match keep_freed_memory() {
            AllocatorTuning::KeepFreed { mmap_threshold, .. } => *mmap_threshold,
            AllocatorTuning::Untouched(why) => panic!(
                "the allocator was left as it was ({why}), so there is nothing to measure: \
                 run this test without EDGEWISE_MALLOC=system and without glibc.malloc.* \
                 tunables in GLIBC_TUNABLES"
            ),
        };
        assert!(
            mmap_threshold > SIZE,
            "this glibc accepts an mmap threshold of only {mmap_threshold} bytes, so the \
             {SIZE}-byte blocks of this test get their own mmap whatever the tuning"
        );
        let pages = (SIZE / 4096) as i64;
        let frame = |value: u8| {
            let map = vec![value; SIZE];
            std::hint::black_box(&map);
        };
        frame(1);
        let before = page_faults();
        for value in 2..10 {
            frame(value);
        }
        let faults = page_faults() - before;
        assert!(
            faults < pages / 10,
            "8 frames of a {SIZE}-byte block took {faults} page faults; without the tuning they take {}",
            8 * pages
        );
    }

    /// Other allocators are left alone (`raise_thresholds`): listed as
    /// ignored there rather than passing without a check.
    #[test]
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    #[ignore = "needs glibc's malloc on Linux: other allocators are not tuned"]
    fn freed_feature_maps_are_reused_without_page_faults() {
        eprintln!(
            "skipped: the allocator is not glibc's, and keep_freed_memory tunes only glibc's"
        );
    }
}
