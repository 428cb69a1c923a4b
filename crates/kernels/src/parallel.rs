//! Splitting an operator's work over the threads the plan runs on.
//!
//! The engine runs tract's plan on a thread of its pool (tract-linalg's
//! executor), so an operator finds the pool in
//! [`current_tract_executor`]. An operator splits its work into parts only
//! when each part carries enough work to pay for the hand-off: a few
//! microseconds per part on a native core, more on a virtual machine.
//! Inside a part, tract's own kernels run single-threaded: the part is
//! already one thread's share. The parts go to helper threads that spin
//! between regions ([`spin`]), where tract's pool would have to wake a
//! sleeping worker for each.

mod spin;

use std::marker::PhantomData;

use edgewise_graph::simd::clear_upper_vector_state;
use edgewise_graph::tract_onnx::prelude::TractResult;
use rayon::prelude::*;
use tract_linalg::multithread::{Executor, current_tract_executor, multithread_tract_scope};

/// Work (multiply-accumulates, or element visits weighted alike) below which
/// a part is not worth a thread: about 0.1 ms of one core's work.
pub const MIN_WORK_PER_PART: usize = 1 << 20;

/// The threads the running operator may use: the pool the plan runs on, or
/// one.
pub fn threads() -> usize {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}

/// How many parts `work` (in [`MIN_WORK_PER_PART`]'s unit) splits into,
/// given that it divides into `pieces` at most: one per thread, none with
/// less than [`MIN_WORK_PER_PART`], at least one.
pub fn parts(work: usize, pieces: usize) -> usize {
    threads().min(pieces).min(work / MIN_WORK_PER_PART).max(1)
}

/// Runs `part(i)` for every `i` in `0..parts`, on the plan's pool when there
/// are several, each with tract's kernels single-threaded inside. Stops at
/// the first error.
pub fn for_each_part(
    parts: usize,
    part: impl Fn(usize) -> TractResult<()> + Sync + Send,
) -> TractResult<()> {
    let single = |i| {
        // A worker may come from a kernel that left the upper vector state
        // dirty, and a part may end in one; SSE code on either side would
        // pay for it (see `edgewise_graph::simd`).
        clear_upper_vector_state();
        let done = multithread_tract_scope(Executor::SingleThread, || part(i));
        clear_upper_vector_state();
        done
    };
    match current_tract_executor() {
        Executor::MultiThread(pool) if parts > 1 && pool.current_num_threads() > 1 => {
            // On the spinning helpers; every part runs, the first error
            // is returned.
            let error = std::sync::Mutex::new(None);
            let run = |i| {
                if let Err(e) = single(i) {
                    error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                }
            };
            if spin::run(parts, pool.current_num_threads(), &run) {
                let error = error.into_inner().unwrap_or_else(|e| e.into_inner());
                return error.map_or(Ok(()), Err);
            }
            // Another engine's region holds the helpers: tract's pool.
            pool.install(|| (0..parts).into_par_iter().try_for_each(single))
        }
        _ => (0..parts).try_for_each(single),
    }
}

/// Work units an element-wise pass costs per element, against
/// [`MIN_WORK_PER_PART`]'s multiply-accumulates: a quantize, dequantize or
/// table look-up of one element costs about what four MACs of a matrix
/// kernel do.
pub const ELEMENT_WORK: usize = 4;

/// Runs `f(first, chunk)` over `out` cut into contiguous chunks, one per
/// part, `first` being the chunk's offset in `out`: an element-wise pass
/// split over the plan's threads when `out` is large enough.
pub fn for_each_chunk<T: Send>(
    out: &mut [T],
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) -> TractResult<()> {
    let total = out.len();
    // Chunks start on cache lines of the widest elements.
    let parts = parts(total * ELEMENT_WORK, total.div_ceil(64).max(1));
    let len = total.div_ceil(parts).next_multiple_of(64);
    let writer = DisjointWriter::new(out);
    for_each_part(parts, |p| {
        let (start, end) = ((p * len).min(total), ((p + 1) * len).min(total));
        // SAFETY: each part writes its own `start..end`.
        f(start, unsafe { writer.range(start, end - start) });
        Ok(())
    })
}

/// A slice that several threads write at once, each its own ranges: the
/// dense convolution's parts own pixel ranges, which are not contiguous in
/// the channel-major output.
pub struct DisjointWriter<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the writer hands out `&mut [T]` to threads; `T: Send` makes that
// sound as long as the ranges are disjoint, which `range`'s contract asks.
unsafe impl<T: Send> Sync for DisjointWriter<'_, T> {}

impl<'a, T> DisjointWriter<'a, T> {
    /// Borrows `slice` for the writers.
    pub fn new(slice: &'a mut [T]) -> DisjointWriter<'a, T> {
        DisjointWriter {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// Elements `start..start + len` of the slice. Panics if out of bounds.
    ///
    /// # Safety
    /// No two ranges in use at the same time, on any threads, may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start <= self.len && len <= self.len - start,
            "range {start}..{} of a slice of {}",
            start + len,
            self.len
        );
        // SAFETY: in bounds (checked above) of the slice borrowed for 'a,
        // and not aliased by another range in use (the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// A pointer to element `start`, for a writer whose share is not one
    /// range (a tile's rows, each in its own output plane). Panics if
    /// `start + reach` is past the end.
    ///
    /// # Safety
    /// What is written through it may not overlap a range or another
    /// pointer's writes in use at the same time.
    pub unsafe fn ptr(&self, start: usize, reach: usize) -> *mut T {
        assert!(
            start <= self.len && reach <= self.len - start,
            "{reach} from {start} in a slice of {}",
            self.len
        );
        // SAFETY: in bounds (checked above).
        unsafe { self.ptr.add(start) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_need_work_and_threads() {
        let pool = Executor::multithread(2);
        multithread_tract_scope(pool, || {
            assert_eq!(threads(), 2);
            assert_eq!(parts(100 * MIN_WORK_PER_PART, 8), 2);
            assert_eq!(parts(100 * MIN_WORK_PER_PART, 1), 1);
            assert_eq!(parts(MIN_WORK_PER_PART / 2, 8), 1);
        });
        assert_eq!(threads(), 1);
        assert_eq!(parts(100 * MIN_WORK_PER_PART, 8), 1);
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        for len in [0, 1, 63, 65, 1 << 20] {
            let mut out = vec![0u32; len];
            multithread_tract_scope(Executor::multithread(2), || {
                for_each_chunk(&mut out, |first, chunk| {
                    for (i, o) in chunk.iter_mut().enumerate() {
                        *o += (first + i) as u32 + 1;
                    }
                })
            })
            .unwrap();
            assert!(out.iter().enumerate().all(|(i, &o)| o == i as u32 + 1));
        }
    }

    #[test]
    fn parts_write_disjoint_ranges_of_one_slice() {
        let mut out = vec![0usize; 4 * 6];
        let writer = DisjointWriter::new(&mut out);
        let pool = Executor::multithread(2);
        multithread_tract_scope(pool, || {
            for_each_part(3, |p| {
                // Part p writes columns 2p and 2p + 1 of each of 4 rows of 6.
                for row in 0..4 {
                    // SAFETY: each part writes its own two columns.
                    let cells = unsafe { writer.range(row * 6 + 2 * p, 2) };
                    cells.fill(10 * row + p);
                }
                Ok(())
            })
        })
        .unwrap();
        for row in 0..4 {
            let expected: Vec<usize> = (0..6).map(|col| 10 * row + col / 2).collect();
            assert_eq!(out[row * 6..(row + 1) * 6], expected[..]);
        }
    }
}
