//! Helper threads that spin between an operator's parallel regions.
//!
//! A plan's operators split their work into regions of a few parts each,
//! hundreds per frame, a few microseconds to a millisecond apart. rayon's
//! idle workers go to sleep within microseconds, and waking one costs 17
//! µs at the median and 50 at p90 on a virtual machine (measured on
//! YOLOX at 2 threads: 1.9 ms a frame). The helpers here keep spinning for
//! a while after each region ([`SPIN`]), so the next region starts at
//! once, and sleep on a condition variable when the plan goes quiet:
//! onnxruntime's pool spins the same way by default.
//!
//! One region runs at a time; a caller that finds the pool busy (another
//! engine on another thread) is told so and runs its region elsewhere.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper spins for the next region before it sleeps: far
/// longer than the gap between two operators of a plan, far shorter than
/// the gap between two frames of a camera.
const SPIN: Duration = Duration::from_millis(2);

/// A region's parts, run as `part(i)`.
type Part<'a> = &'a (dyn Fn(usize) + Sync);

/// What the caller and its helpers share.
struct Shared {
    /// The current region's epoch (high 32 bits) and its next unclaimed
    /// part (low 32): a helper claims a part of the epoch it read the
    /// region of, or none.
    claim: AtomicU64,
    /// The current region: its epoch, its parts function (borrowed from
    /// the caller, who waits for every part to finish) and its parts.
    region: Mutex<Option<(u32, Part<'static>, usize)>>,
    /// Parts of the current region finished.
    done: AtomicUsize,
    /// Whether a part of the current region panicked.
    panicked: AtomicBool,
    /// Helpers asleep, waiting on `wake`.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// The pool: its shared state, how many helpers run, and the lock a
/// region holds.
struct Pool {
    shared: &'static Shared,
    helpers: Mutex<usize>,
    busy: Mutex<u32>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        shared: Box::leak(Box::new(Shared {
            claim: AtomicU64::new(0),
            region: Mutex::new(None),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })),
        helpers: Mutex::new(0),
        busy: Mutex::new(0),
    })
}

impl Shared {
    /// Claims and runs parts of region `epoch` until none is left.
    fn work(&self, epoch: u32, part: Part, parts: usize) {
        loop {
            let claim = self.claim.load(Acquire);
            let index = (claim & u32::MAX as u64) as usize;
            if (claim >> 32) as u32 != epoch || index >= parts {
                return;
            }
            if self
                .claim
                .compare_exchange_weak(claim, claim + 1, SeqCst, Relaxed)
                .is_ok()
            {
                if catch_unwind(AssertUnwindSafe(|| part(index))).is_err() {
                    self.panicked.store(true, Release);
                }
                self.done.fetch_add(1, Release);
            }
        }
    }

    /// A helper: waits for each new region, spinning then sleeping, and
    /// works on it.
    fn help(&self) {
        let mut seen = (self.claim.load(SeqCst) >> 32) as u32;
        loop {
            let started = Instant::now();
            let mut spins = 0u32;
            while (self.claim.load(SeqCst) >> 32) as u32 == seen {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) && started.elapsed() > SPIN {
                    let mut guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
                    self.sleepers.fetch_add(1, SeqCst);
                    while (self.claim.load(SeqCst) >> 32) as u32 == seen {
                        guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
                    }
                    self.sleepers.fetch_sub(1, SeqCst);
                }
                std::hint::spin_loop();
            }
            seen = (self.claim.load(SeqCst) >> 32) as u32;
            let region = *self.region.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((epoch, part, parts)) = region
                && epoch == seen
            {
                self.work(epoch, part, parts);
            }
        }
    }
}

/// Runs `part(i)` for every `i` in `0..parts` on this thread and the
/// pool's helpers (`threads - 1` of them, started on first use), and
/// returns `true` once all are done; `false`, running nothing, if another
/// region holds the pool. Panics if a part panicked.
pub fn run(parts: usize, threads: usize, part: &(dyn Fn(usize) + Sync)) -> bool {
    let pool = pool();
    let Ok(mut epoch) = pool.busy.try_lock() else {
        return false;
    };
    let shared = pool.shared;
    {
        let mut helpers = pool.helpers.lock().unwrap_or_else(|e| e.into_inner());
        while *helpers + 1 < threads {
            let spawned = std::thread::Builder::new()
                .name(format!("edgewise-part-{}", *helpers + 1))
                .spawn(move || shared.help());
            if spawned.is_err() {
                break;
            }
            *helpers += 1;
        }
    }
    *epoch = epoch.wrapping_add(1);
    // SAFETY: the region's parts function is only called for parts claimed
    // in this epoch, and this call returns only once every one of them is
    // done: nothing calls it after the borrow ends.
    let erased: Part<'static> = unsafe { std::mem::transmute::<Part<'_>, Part<'static>>(part) };
    *shared.region.lock().unwrap_or_else(|e| e.into_inner()) = Some((*epoch, erased, parts));
    shared.done.store(0, SeqCst);
    shared.panicked.store(false, SeqCst);
    shared.claim.store((*epoch as u64) << 32, SeqCst);
    if shared.sleepers.load(SeqCst) > 0 {
        let _guard = shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
        shared.wake.notify_all();
    }
    shared.work(*epoch, part, parts);
    while shared.done.load(Acquire) < parts {
        std::hint::spin_loop();
    }
    *shared.region.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let panicked = shared.panicked.load(Acquire);
    // The pool is free again before the panic goes up.
    drop(epoch);
    if panicked {
        panic!("a part of a parallel region panicked");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_in_region_after_region() {
        for round in 0..2000usize {
            let parts = 1 + round % 5;
            let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            let ran = run(parts, 2, &|i| {
                counts[i].fetch_add(1, Relaxed);
            });
            if ran {
                assert!(counts.iter().all(|c| c.load(Relaxed) == 1), "round {round}");
            }
            if round % 500 == 0 {
                // Let the helper fall asleep, and wake it.
                std::thread::sleep(SPIN * 2);
            }
        }
    }

    #[test]
    fn a_panicking_part_panics_the_caller_and_the_pool_goes_on() {
        let caught = catch_unwind(|| {
            run(4, 2, &|i| {
                if i == 2 {
                    panic!("part 2");
                }
            })
        });
        // Another test may hold the pool: then nothing ran.
        if let Err(payload) = caught {
            let message = payload.downcast_ref::<&str>().copied().unwrap_or("");
            assert!(message.contains("panicked"), "{message}");
        }
        let sum = AtomicUsize::new(0);
        if run(3, 2, &|i| {
            sum.fetch_add(i + 1, Relaxed);
        }) {
            assert_eq!(sum.load(Relaxed), 6);
        }
    }
}
