//! The timing harness: runs one operation in a loop on one or more threads
//! for a fixed time and summarises per-operation latencies.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::stats::Summary;
use crate::token::{BResult, BenchError};

/// One timed operation. Each call does the whole operation once; state it
/// needs (session, key handles, buffers) lives in the closure.
pub type OpFn<'a> = Box<dyn FnMut() -> BResult<()> + 'a>;

/// Untimed warm-up before the window: this fraction of the row time, at
/// least one operation, at most [`MAX_WARMUP`].
const WARMUP_FRACTION: f64 = 0.1;
/// Upper bound of the warm-up.
const MAX_WARMUP: Duration = Duration::from_millis(200);

/// Runs `threads` workers, each with its own operation from `factory`, for
/// `seconds` of wall time after a short warm-up, and summarises all their
/// samples. Every worker completes at least one timed operation. The first
/// error of any worker is returned instead of a summary.
pub fn measure<'a, F>(threads: usize, seconds: f64, factory: F) -> BResult<Summary>
where
    F: Fn() -> BResult<OpFn<'a>> + Sync,
{
    let window = Duration::from_secs_f64(seconds.max(0.0));
    let warmup = window.mul_f64(WARMUP_FRACTION).min(MAX_WARMUP);
    let results: Vec<BResult<Worker>> = if threads <= 1 {
        vec![run_worker(&factory, window, warmup, None)]
    } else {
        let barrier = Barrier::new(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| s.spawn(|| run_worker(&factory, window, warmup, Some(&barrier))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BenchError::Fail("worker thread panicked".into())))
                })
                .collect()
        })
    };
    let mut samples = Vec::new();
    let (mut start, mut end): (Option<Instant>, Option<Instant>) = (None, None);
    for r in results {
        let w = r?;
        start = Some(start.map_or(w.start, |s| s.min(w.start)));
        end = Some(end.map_or(w.end, |e| e.max(w.end)));
        samples.extend(w.samples);
    }
    let elapsed = match (start, end) {
        (Some(s), Some(e)) => e - s,
        _ => Duration::ZERO,
    };
    Summary::from_samples(&mut samples, elapsed)
        .ok_or_else(|| BenchError::Fail("no samples".into()))
}

/// What one worker measured.
struct Worker {
    start: Instant,
    end: Instant,
    samples: Vec<u64>,
}

fn run_worker<'a, F>(
    factory: &F,
    window: Duration,
    warmup: Duration,
    barrier: Option<&Barrier>,
) -> BResult<Worker>
where
    F: Fn() -> BResult<OpFn<'a>>,
{
    let ready = factory().and_then(|mut op| {
        let t = Instant::now();
        loop {
            op()?;
            if t.elapsed() >= warmup {
                break;
            }
        }
        Ok(op)
    });
    // Every worker reaches the barrier, even a failed one, so none waits forever.
    if let Some(b) = barrier {
        b.wait();
    }
    let mut op = ready?;
    let mut samples = Vec::with_capacity(4096);
    let start = Instant::now();
    let deadline = start + window;
    loop {
        let t = Instant::now();
        op()?;
        let now = Instant::now();
        samples.push(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
        if now >= deadline {
            return Ok(Worker {
                start,
                end: now,
                samples,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_timed_operation_on_every_thread() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let calls = AtomicU64::new(0);
        let s = measure(2, 0.0, || {
            let calls = &calls;
            Ok(Box::new(move || {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }) as OpFn<'_>)
        })
        .unwrap();
        // Zero-length window: one warm-up and one timed call per thread.
        assert_eq!(s.ops, 2);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn errors_propagate() {
        let r = measure(1, 0.0, || {
            Ok(Box::new(|| Err(BenchError::Fail("boom".into()))) as OpFn<'_>)
        });
        assert_eq!(r.unwrap_err(), BenchError::Fail("boom".into()));
        let r = measure(2, 0.0, || Err(BenchError::Skip("lacks CKM_X".into())));
        assert_eq!(r.unwrap_err(), BenchError::Skip("lacks CKM_X".into()));
    }
}
