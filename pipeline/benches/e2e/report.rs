//! The tables and lines printed at the end of a run (Markdown tables, pasted into
//! docs/BENCHMARKS.md).

use std::time::Duration;

use crate::args::Opts;
use crate::latency::Latency;
use crate::metrics::{STEADY, checkpoints, histogram_quantile, quantile};
use crate::throughput::{BareDrain, JobTimings, Round};
use crate::{CHECKPOINT_INTERVAL_MS, LATENCY_METRIC};
use spcvm_testkit::{median, metric_sum};

/// What a run measured.
pub struct Outcome {
    /// Every throughput round's figures, the last round's last.
    pub rounds: Vec<Round>,
    /// The last round's bare drain.
    pub bare: BareDrain,
    /// The last round's job timings.
    pub timings: JobTimings,
    /// The job's metrics scraped at the end of the last round.
    pub metrics: String,
    /// The latency phase.
    pub latency: Latency,
    /// Whether the job stopped cleanly on SIGTERM.
    pub clean: bool,
    /// WARN and ERROR lines in the job's log.
    pub warnings: usize,
}

/// Prints the report of a run with `opts`.
pub fn print(opts: &Opts, outcome: &Outcome) {
    let (rounds, bare, timings) = (&outcome.rounds, &outcome.bare, &outcome.timings);
    let (tp_metrics, lat) = (&outcome.metrics, &outcome.latency);
    let (clean, warnings) = (outcome.clean, outcome.warnings);
    let last = rounds.last().expect("at least one round");
    let bare_rate = last.bare_rate;
    let ratio = last.ratio();
    let steady = (last.steady, last.steady_ratio());
    println!();
    println!(
        "| throughput, {} records | records/s | measured over |",
        thousands(opts.records as f64)
    );
    println!("|---|---|---|");
    println!(
        "| bare rdkafka BaseConsumer (read_committed, assign) | {} | first to last message: {:.3} s, {:.0} MiB/s |",
        thousands(bare_rate),
        bare.secs,
        bare.bytes as f64 / 1048576.0 / bare.secs
    );
    println!(
        "| `spcvm run` ({}), all consumed | {} | first scrape with a consumed message ({} consumed then; {:.2} s after start) to all consumed |",
        opts.mode,
        timings
            .rate_consumed
            .map_or_else(|| "n/a".into(), thousands),
        thousands(timings.first_seen),
        timings.join_secs
    );
    println!(
        "| **`spcvm run` ({}), all committed** | **{}** | same start to the group's committed offsets at the end offsets |",
        opts.mode,
        thousands(timings.rate_committed)
    );
    if let Some((bare_steady, job_steady)) = steady.0 {
        println!(
            "| bare consumer, steady state | {} | from the message that made {:.0} % of the \
             records to the one that made {:.0} % |",
            thousands(bare_steady),
            STEADY * 100.0,
            (1.0 - STEADY) * 100.0
        );
        println!(
            "| `spcvm run` ({}), steady state | {} | the same share of the records consumed, \
             interpolated between scrapes |",
            opts.mode,
            thousands(job_steady)
        );
    }
    let verdict = |ratio: f64| if ratio >= 0.7 { "met" } else { "NOT met" };
    let pct = |r: Option<f64>| r.map_or_else(|| "n/a".into(), |r| format!("{:.0} %", r * 100.0));
    if rounds.len() == 1 {
        println!(
            "| **ratio job / bare** | **{:.0} %** | target >= 70 %: {} |",
            ratio * 100.0,
            verdict(ratio)
        );
        println!("| ratio job / bare, steady state | {} | |", pct(steady.1));
    } else {
        println!(
            "| ratio job / bare | {:.0} % | this round (the last); all rounds below |",
            ratio * 100.0
        );
        println!();
        println!(
            "| round | bare consumer | job, all committed | ratio | job CPU / record | steady \
             state: bare / job | ratio, steady state |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (i, r) in rounds.iter().enumerate() {
            println!(
                "| {} | {} | {} | {:.0} % | {} | {} | {} |",
                i + 1,
                thousands(r.bare_rate),
                thousands(r.committed_rate),
                r.ratio() * 100.0,
                r.job_cpu_per_record
                    .map_or_else(|| "n/a".into(), |c| format!("{:.2} µs", c * 1e6)),
                r.steady.map_or_else(
                    || "n/a".into(),
                    |(b, j)| format!("{} / {}", thousands(b), thousands(j))
                ),
                pct(r.steady_ratio())
            );
        }
        // A set of ratios as its median and "(range LEAST-GREATEST %)".
        let spread = |v: Vec<f64>| {
            let least = v.iter().copied().fold(f64::INFINITY, f64::min);
            let greatest = v.iter().copied().fold(0.0, f64::max);
            let range = format!("(range {:.0}-{:.0} %)", least * 100.0, greatest * 100.0);
            (median(v), range)
        };
        let (median_ratio, range) = spread(rounds.iter().map(Round::ratio).collect());
        println!(
            "| **median of {} rounds** | {} | {} | **{:.0} %** {range} | target >= 70 %: {} |",
            rounds.len(),
            thousands(median(rounds.iter().map(|r| r.bare_rate).collect())),
            thousands(median(rounds.iter().map(|r| r.committed_rate).collect())),
            median_ratio * 100.0,
            verdict(median_ratio)
        );
        let steady: Option<Vec<f64>> = rounds.iter().map(Round::steady_ratio).collect();
        if let Some(steady) = steady {
            let (median_ratio, range) = spread(steady);
            println!(
                "| median ratio, steady state | | | {:.0} % {range} | |",
                median_ratio * 100.0
            );
        }
        println!();
    }
    let job_records = opts.records as f64 - timings.first_seen;
    let measured = job_records / timings.rate_committed;
    let (n_ckpt, ckpt_secs) = checkpoints("", tp_metrics);
    // Every checkpoint writes one changelog record per (tool, recipe) changed since the last:
    // about one per input record when tools are many and each reports rarely.
    let state_records = metric_sum(tp_metrics, "spcvm_changelog_records_total", "");
    println!(
        "job during the throughput phase: {} checkpoints taking {:.2} s in all ({:.0} % of the \
         {:.2} s measured; mean {:.1} ms), {} transactions committed, {} alerts, {} changelog \
         records ({:.3} per input record)",
        n_ckpt,
        ckpt_secs,
        100.0 * ckpt_secs / measured,
        measured,
        1e3 * ckpt_secs / n_ckpt.max(1.0),
        metric_sum(tp_metrics, "spcvm_transactions_total", "committed"),
        thousands(metric_sum(tp_metrics, "spcvm_alerts_total", "")),
        thousands(state_records),
        state_records / opts.records as f64,
    );
    if let Some(mib) = timings.peak_rss_mib {
        println!(
            "job peak resident memory (VmHWM) from its start to the end of the throughput \
             phase: {mib:.0} MiB"
        );
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let job_cpu = format!(
        "job CPU over the measured {measured:.2} s (all its threads; the broker and the bench \
         share the machine's {cores} cores)"
    );
    let bare_records = bare.records as f64;
    for (what, cpu, records, secs) in [
        (job_cpu.as_str(), timings.cpu_secs, job_records, measured),
        (
            "bare consumer CPU (the bench process) while draining",
            bare.cpu_secs,
            bare_records,
            bare.cpu_window_secs,
        ),
        (
            "broker CPU while the bare consumer drained",
            bare.broker_cpu_secs,
            bare_records,
            bare.cpu_window_secs,
        ),
        (
            "broker CPU over the job's measured interval",
            timings.broker_cpu_secs,
            job_records,
            measured,
        ),
        (
            "bench CPU over the job's measured interval (scrapes, offset queries)",
            timings.bench_cpu_secs,
            job_records,
            measured,
        ),
    ] {
        if let Some(cpu) = cpu {
            println!(
                "{what}: {cpu:.2} s ({:.2} cores), {:.1} µs per record",
                cpu / secs,
                1e6 * cpu / records
            );
        }
    }
    if let Some(idle) = timings.idle_secs {
        println!(
            "machine idle over the job's measured interval (all cores): {idle:.2} s ({:.2} of \
             its {cores} cores)",
            idle / measured
        );
    }
    println!();
    let achieved = lat.sent as f64 / lat.send_secs;
    println!(
        "latency phase: {} records paced at {} records/s over {:.2} s (achieved {} records/s); \
         job caught up (offsets committed) {} after the last send; {} alerts emitted, {} first \
         firings and {} dedup closing updates read, {} not matched to a sent record",
        thousands(lat.sent as f64),
        thousands(opts.rate as f64),
        lat.send_secs,
        thousands(achieved),
        ms(lat.drain_after_send),
        thousands(lat.alerts),
        thousands(lat.first_firings as f64),
        thousands(lat.closing_updates as f64),
        lat.unmatched
    );
    println!();
    let observed = lat.hist.last().map_or(0.0, |b| b.1);
    let hq = |q: f64| {
        histogram_quantile(q, &lat.hist)
            .map(|(s, beyond)| format!("{}{:.2} ms", if beyond { "> " } else { "" }, s * 1e3))
    };
    let p99_hist = histogram_quantile(0.99, &lat.hist)
        .map(|(s, beyond)| if beyond { f64::INFINITY } else { s });
    println!(
        "| alert latency at {} records/s | p50 | p99 | max | samples |",
        thousands(opts.rate as f64)
    );
    println!("|---|---|---|---|---|");
    println!(
        "| **(1) job: receipt -> alert ack** (`{LATENCY_METRIC}`, bucket-interpolated; the target's figure) | **{}** | **{}** | n/a | {} messages with alerts |",
        hq(0.5).unwrap_or_else(|| "n/a".into()),
        hq(0.99).unwrap_or_else(|| "n/a".into()),
        thousands(observed)
    );
    println!(
        "| (2) end to end: producer send -> read_committed alert consumer | {} | {} | {} | {} first firings |",
        ms_opt(quantile(&lat.e2e, 0.5)),
        ms_opt(quantile(&lat.e2e, 0.99)),
        ms_opt(lat.e2e.last().copied()),
        thousands(lat.e2e.len() as f64)
    );
    println!(
        "| (for scale) broker ack of the bench's paced producer (linger.ms={}, acks=all) | {} | {} | {} | {} records |",
        opts.paced_linger_ms,
        ms_opt(quantile(&lat.acks, 0.5)),
        ms_opt(quantile(&lat.acks, 0.99)),
        ms_opt(lat.acks.last().copied()),
        thousands(lat.acks.len() as f64)
    );
    println!();
    let mut below = 0.0;
    let spread: Vec<String> = lat
        .hist
        .iter()
        .filter_map(|&(le, n)| {
            let inside = n - below;
            below = n;
            (inside > 0.0).then(|| {
                if le.is_infinite() {
                    format!("+Inf: {inside:.0}")
                } else {
                    format!("<= {} ms: {inside:.0}", le * 1e3)
                }
            })
        })
        .collect();
    println!("(1) by bucket: {}", spread.join(", "));
    let (n_ckpt, ckpt_secs) = checkpoints(&lat.before, &lat.after);
    println!(
        "job during the latency phase: {} checkpoints, mean {:.1} ms",
        n_ckpt,
        1e3 * ckpt_secs / n_ckpt.max(1.0)
    );
    println!(
        "target: p99 of (1) under 10 ms at 10,000 records/s: {}",
        match p99_hist {
            None => "no alerts observed".to_string(),
            Some(s) if opts.rate != 10_000 => format!(
                "not judged (rate {} records/s); p99 {:.2} ms",
                thousands(opts.rate as f64),
                s * 1e3
            ),
            Some(s) if s < 0.010 => "met".into(),
            Some(_) => "NOT met".into(),
        }
    );
    println!(
        "(2) adds the producer's linger.ms={}, the job's fetch from the broker{}",
        opts.paced_linger_ms,
        if opts.mode == "exactly_once" {
            format!(
                " and the transaction commit (checkpoint_interval_ms = {CHECKPOINT_INTERVAL_MS}) \
                 before a read_committed reader may see the alert"
            )
        } else {
            String::new()
        }
    );
    if !clean || warnings > 0 {
        println!(
            "note: the job {}; {warnings} WARN/ERROR lines in its log",
            if clean {
                "stopped cleanly on SIGTERM"
            } else {
                "did NOT stop cleanly on SIGTERM"
            }
        );
    }
}

/// `1234567.8` -> `1,234,568`.
pub fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn ms_opt(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".into(), ms)
}
