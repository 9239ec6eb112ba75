//! Figures from the job's `/metrics` (checkpoints, the latency histogram) and from
//! samples the bench takes (quantiles, steady-state rates).

use std::time::{Duration, Instant};

use spcvm_testkit::metric_sum;

/// Checkpoints between two scrapes: how many, and the seconds they took in all.
pub fn checkpoints(before: &str, after: &str) -> (f64, f64) {
    let get = |text: &str, name: &str| metric_sum(text, name, "");
    (
        get(after, "spcvm_checkpoint_duration_seconds_count")
            - get(before, "spcvm_checkpoint_duration_seconds_count"),
        get(after, "spcvm_checkpoint_duration_seconds_sum")
            - get(before, "spcvm_checkpoint_duration_seconds_sum"),
    )
}

/// Cumulative bucket counts `(upper bound, count)` of histogram `name`, in order.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once('"')?;
            let value = rest.rsplit_once(' ')?.1.parse().ok()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// `after - before`, bucket by bucket.
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let b = before
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, n)| *n);
            (le, n - b)
        })
        .collect()
}

/// Quantile `q` of cumulative buckets, interpolating linearly within the bucket that holds
/// it (as Prometheus' `histogram_quantile`); `None` without observations. A quantile in the
/// `+Inf` bucket is the largest finite bound, with `true` (it lies beyond that bound).
pub fn histogram_quantile(q: f64, cumulative: &[(f64, f64)]) -> Option<(f64, bool)> {
    let total = cumulative.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &(le, n) in cumulative {
        if n >= rank {
            if le.is_infinite() {
                return Some((lower, true));
            }
            let inside = n - below;
            let frac = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some((lower + (le - lower) * frac, false));
        }
        lower = le;
        below = n;
    }
    Some((lower, true))
}

/// Exact quantile of sorted samples (nearest rank).
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The share of the records, from the start and to the end, left out of the steady-state
/// rates: the bare consumer's first fetches and the job's last checkpoint (up to
/// `delivery.checkpoint_interval_ms` after its last message) are not part of what either
/// sustains.
pub const STEADY: f64 = 0.1;

/// The instant a count sampled at `samples` (instants and counts, in order) reached
/// `target`, interpolated linearly between the two samples around it.
fn crossing(samples: &[(Instant, f64)], target: f64) -> Option<Instant> {
    let j = samples.iter().position(|&(_, c)| c >= target)?;
    let (t1, c1) = samples[j];
    if j == 0 || c1 <= samples[j - 1].1 {
        return Some(t1);
    }
    let (t0, c0) = samples[j - 1];
    Some(t0 + (t1 - t0).mul_f64((target - c0) / (c1 - c0)))
}

/// Records/s of a count sampled at `samples` between `STEADY` and `1 - STEADY` of `n`.
pub fn steady_rate(samples: &[(Instant, f64)], n: f64) -> Option<f64> {
    let (lo, hi) = (n * STEADY, n * (1.0 - STEADY));
    if samples.first()?.1 > lo {
        return None;
    }
    let (a, b) = (crossing(samples, lo)?, crossing(samples, hi)?);
    let secs = (b - a).as_secs_f64();
    (secs > 0.0).then(|| (hi - lo) / secs)
}
