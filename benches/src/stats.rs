//! Statistics over latency samples: percentiles, throughput and the ratios
//! the report prints. Pure functions on plain numbers, so they are unit-tested
//! on fixed inputs.

use std::time::Duration;

use serde::Serialize;

/// The measured result of one row for one column (module or raw crate).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Operations completed inside the timed window, over all threads.
    pub ops: u64,
    /// Wall-clock length of the timed window in seconds.
    pub seconds: f64,
    /// Throughput: `ops / seconds`, over all threads.
    pub ops_per_sec: f64,
    /// Median latency of one operation, in nanoseconds.
    pub p50_ns: f64,
    /// 99th-percentile latency of one operation, in nanoseconds.
    pub p99_ns: f64,
    /// Mean latency of one operation, in nanoseconds.
    pub mean_ns: f64,
}

impl Summary {
    /// Summarises per-operation latencies (nanoseconds, any order) measured
    /// over a window of `elapsed` wall-clock time. `None` when there are no samples.
    pub fn from_samples(samples: &mut [u64], elapsed: Duration) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        let ops = samples.len() as u64;
        Some(Summary {
            ops,
            seconds: elapsed.as_secs_f64(),
            ops_per_sec: ops_per_sec(ops, elapsed)?,
            p50_ns: percentile(samples, 50.0)?,
            p99_ns: percentile(samples, 99.0)?,
            mean_ns: sum as f64 / ops as f64,
        })
    }
}

/// The `p`-th percentile (0 < p <= 100) of ascending `sorted` samples by the
/// nearest-rank method: the smallest sample such that at least `p` percent of
/// all samples are less than or equal to it. `None` for no samples or a `p`
/// outside (0, 100].
pub fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let n = sorted.len();
    // Rank in 1..=n; the small epsilon keeps exact products (e.g. 50% of 10)
    // from rounding up because of floating-point noise.
    let rank = ((p / 100.0) * n as f64 - 1e-9).ceil().max(1.0) as usize;
    Some(sorted[rank.min(n) - 1] as f64)
}

/// Operations per second; `None` for a zero-length window.
pub fn ops_per_sec(ops: u64, elapsed: Duration) -> Option<f64> {
    let s = elapsed.as_secs_f64();
    (s > 0.0).then(|| ops as f64 / s)
}

/// Throughput ratio `a / b` (e.g. FerroHSM ops/s over SoftHSMv2 ops/s): above
/// 1 means `a` is faster. `None` when either side is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    }
}

/// A latency in nanoseconds in a short human unit (`ns`, `µs`, `ms`, `s`)
/// with three significant digits.
pub fn fmt_latency(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    format!("{} {unit}", sig3(v))
}

/// A throughput with three significant digits and a `k`/`M` suffix.
pub fn fmt_rate(ops_per_sec: f64) -> String {
    if ops_per_sec >= 1e6 {
        format!("{}M", sig3(ops_per_sec / 1e6))
    } else if ops_per_sec >= 1e4 {
        format!("{}k", sig3(ops_per_sec / 1e3))
    } else {
        sig3(ops_per_sec)
    }
}

/// A ratio as `0.123`, `1.23` or `12.3` (three significant digits).
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), sig3)
}

/// `v` with three significant digits, without exponent notation.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=10).map(|i| i * 10).collect();
        assert_eq!(percentile(&s, 50.0), Some(50.0));
        assert_eq!(percentile(&s, 90.0), Some(90.0));
        assert_eq!(percentile(&s, 99.0), Some(100.0));
        assert_eq!(percentile(&s, 100.0), Some(100.0));
        assert_eq!(percentile(&s, 1.0), Some(10.0));
        assert_eq!(percentile(&s, 10.0), Some(10.0));
        assert_eq!(percentile(&s, 11.0), Some(20.0));

        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(50.0));
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99.0), Some(990.0));
        assert_eq!(percentile(&thousand, 50.0), Some(500.0));
    }

    #[test]
    fn percentile_edge_cases() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7.0));
        assert_eq!(percentile(&[7], 99.0), Some(7.0));
        assert_eq!(percentile(&[1, 2], 0.0), None);
        assert_eq!(percentile(&[1, 2], 100.5), None);
        assert_eq!(percentile(&[1, 2], f64::NAN), None);
        assert_eq!(percentile(&[1, 2], 50.0), Some(1.0));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2.0));
    }

    #[test]
    fn throughput() {
        assert_eq!(ops_per_sec(500, Duration::from_millis(250)), Some(2000.0));
        assert_eq!(ops_per_sec(3, Duration::from_secs(2)), Some(1.5));
        assert_eq!(ops_per_sec(0, Duration::from_secs(1)), Some(0.0));
        assert_eq!(ops_per_sec(10, Duration::ZERO), None);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(200.0), Some(100.0)), Some(2.0));
        assert_eq!(ratio(Some(50.0), Some(200.0)), Some(0.25));
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(Some(f64::INFINITY), Some(1.0)), None);
    }

    #[test]
    fn summary_of_fixed_samples() {
        // Deliberately unsorted: from_samples sorts.
        let mut s = vec![40, 10, 30, 20, 100, 90, 80, 70, 60, 50];
        let sum = Summary::from_samples(&mut s, Duration::from_millis(500)).unwrap();
        assert_eq!(sum.ops, 10);
        assert_eq!(sum.seconds, 0.5);
        assert_eq!(sum.ops_per_sec, 20.0);
        assert_eq!(sum.p50_ns, 50.0);
        assert_eq!(sum.p99_ns, 100.0);
        assert_eq!(sum.mean_ns, 55.0);
        assert!(Summary::from_samples(&mut [], Duration::from_secs(1)).is_none());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_latency(850.0), "850 ns");
        assert_eq!(fmt_latency(1_234.0), "1.23 µs");
        assert_eq!(fmt_latency(45_600.0), "45.6 µs");
        assert_eq!(fmt_latency(2_500_000.0), "2.50 ms");
        assert_eq!(fmt_latency(3e9), "3.00 s");
        assert_eq!(fmt_rate(123_456.0), "123k");
        assert_eq!(fmt_rate(2_345_678.0), "2.35M");
        assert_eq!(fmt_rate(9_876.0), "9876");
        assert_eq!(fmt_rate(3.5), "3.50");
        assert_eq!(fmt_ratio(Some(0.04567)), "0.046");
        assert_eq!(fmt_ratio(Some(12.34)), "12.3");
        assert_eq!(fmt_ratio(None), "–");
    }
}
