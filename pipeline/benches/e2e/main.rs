//! End-to-end benchmark of `spcvm run` against a real Kafka-protocol broker.
//!
//! ```sh
//! scripts/bench-e2e.sh                       # builds, starts tansu if needed, runs this
//! cargo bench -p spcvm --bench e2e -- --records 20000 --latency-secs 3
//! ```
//!
//! Two phases, on unique topics made by `spcvm topics create`:
//!
//! 1. **Throughput.** N telemetry records (JSON, keyed by tool, four measurements per
//!    implanter record and five per RTP record, with drifts so alerts fire) are produced as
//!    fast as possible. Then (a) a bare rdkafka `BaseConsumer` (read_committed, the job's
//!    fetch settings, group-less `assign`) drains the topic: records/s from its first to
//!    its last message; (b) the release `spcvm run` binary starts in its own group and is
//!    timed from the first scrape of `/metrics` that shows a consumed message to the moment
//!    the group's committed offsets reach the high watermarks (asked every 10 ms; the job is
//!    scraped only every 50 ms after its start, so that observing it costs it little):
//!    records/s counted over the records not yet consumed at that first scrape. Process
//!    start, group join and the (empty) restore are therefore outside the measured
//!    interval. The end offsets come from the producer's delivery reports, not
//!    ListOffsets: tansu answers the last batch's base offset + 1 there (the bench prints a
//!    note when the two differ). Both (a) and (b) also print CPU time per record from
//!    `/proc/PID/stat`: the bench process's while it drains, the job's over its measured
//!    interval, and the broker's in both (the process listening on the bootstrap port, when
//!    it runs on this machine). For (b) it also prints the job's checkpoints, alerts and
//!    changelog records (per input record: about one when tools are many, `--tools`), and
//!    its peak resident memory (`VmHWM` in `/proc/PID/status`), the bench's own CPU and the
//!    machine's idle CPU (`/proc/stat`) over the job's interval. Both rates are also given
//!    in the steady state, from a tenth of the records to nine tenths (the bare consumer at
//!    those messages, the job interpolated between scrapes): that leaves out the bare
//!    consumer's first fetches and the job's wait for its last checkpoint, which is up to
//!    `delivery.checkpoint_interval_ms` whatever the record count.
//!    (a) and (b) make one round; `--repeat N` runs N rounds on the same input (the job in
//!    a fresh group with fresh outputs each time) and judges the target on the median
//!    ratio; the last round's job goes on to the latency phase.
//! 2. **Latency.** With the job caught up, records are produced at a paced rate (default
//!    10,000/s for 10 s) while a read_committed consumer reads the alert topic. Reported:
//!    (1) the job's own `spcvm_processing_latency_seconds` histogram (receipt of a record to
//!    the broker's ack of the alerts it caused), p50/p99 from the bucket deltas between a
//!    scrape before and one after the phase, interpolated within buckets: the figure the
//!    target ("p99 under 10 ms at 10,000 records/s") refers to; (2) end to end: the arrival
//!    of an alert at the alert consumer minus the send instant of the record that raised it,
//!    matched on (tool_id, event_time); only first firings (`repeats` = 0) are matched, as a
//!    dedup closing update is raised by a later record. (2) includes the producer's linger,
//!    the job's fetch, and in exactly_once mode the wait for the transaction commit
//!    (`delivery.checkpoint_interval_ms`, 100 ms). For scale, the ack latency of the bench's
//!    own paced producer is printed too: the job's alert acks cannot beat the broker's.
//!
//! Options (flags, or the environment variable in brackets; `--help` lists them, `args.rs`
//! parses them): `--records N` [E2E_RECORDS, 200000], `--tools N` [E2E_TOOLS, 50],
//! `--partitions N` [E2E_PARTITIONS, 4], `--mode exactly_once|at_least_once` [E2E_MODE],
//! `--rate N` [E2E_RATE, 10000], `--latency-secs S` [E2E_LATENCY_SECS, 10],
//! `--fetch-wait-ms MS` [E2E_FETCH_WAIT_MS, librdkafka's 500: the job's and the bench's
//! consumers], `--paced-linger-ms MS` [E2E_PACED_LINGER_MS, 1: the latency phase's
//! producer], `--client-property KEY=VALUE` (repeatable) [E2E_CLIENT_PROPERTIES,
//! comma-separated: a librdkafka property for every client, the job's (`kafka.properties`)
//! and the bench's], `--repeat N` [E2E_REPEAT, 3: throughput rounds on the same input, each
//! a bare drain then the job in a fresh group with fresh output topics; the ratio is judged
//! on their median, as the two rates move from run to run on a shared machine], `--spcvm
//! PATH` [SPCVM_BIN, target/release/spcvm], `--bootstrap HOST:PORT` [KAFKA_BOOTSTRAP],
//! `--keep` (keep the topics, the job's config and log; `SPCVM_BENCH_LOG` sets the job's
//! `RUST_LOG`, e.g. `info,spcvm=debug` to log each commit's phases). A flag replaces its
//! variable; an empty variable counts as unset. Without a broker address,
//! `scripts/broker.sh start tansu` is run and its `KAFKA_BOOTSTRAP=` line read.
//!
//! The records come from the testkit's generator (`spcvm_testkit::TelemetryGen`, seed 7,
//! drift episodes, [`Layout::Spread`]); the harness pieces the end-to-end tests share (the
//! job process, unique names, committed offsets, metric sums) from the testkit too.
//!
//! | module | what it holds |
//! |---|---|
//! | `main.rs` | the run: topics, producing, the rounds, the latency phase |
//! | `args.rs` | the options (clap) |
//! | `kafka.rs` | the counting producer, the consumers, the settings every client shares |
//! | `job.rs` | the job under test, scraped; CPU and memory from `/proc` |
//! | `setup.rs` | the topics, group and config of a run and of its rounds |
//! | `throughput.rs` | a throughput round: bare consumer, then the job |
//! | `latency.rs` | the latency phase |
//! | `metrics.rs` | checkpoints, histogram quantiles, steady-state rates |
//! | `report.rs` | the tables printed at the end |

mod args;
mod job;
mod kafka;
mod latency;
mod metrics;
mod report;
mod setup;
mod throughput;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use spcvm_testkit::{GenOptions, Layout, TelemetryGen, start_broker, unique};

use crate::args::Opts;
use crate::kafka::{
    CLIENT_PROPERTIES, FETCH_WAIT_MS, consumer, encode, flush, high_watermarks, producer, send,
    written_ends,
};
use crate::latency::latency_phase;
use crate::report::{Outcome, thousands};
use crate::setup::{Setup, create_topics};
use crate::throughput::{RoundRun, throughput_round};

/// The job's checkpoint interval (the default of `delivery.checkpoint_interval_ms`).
const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// Name of the job's latency histogram.
const LATENCY_METRIC: &str = "spcvm_processing_latency_seconds";

fn main() {
    if let Err(e) = run() {
        eprintln!("bench e2e: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let opts = Opts::from_env_and_args()?;
    let _ = FETCH_WAIT_MS.set(opts.fetch_wait_ms);
    let _ = CLIENT_PROPERTIES.set(opts.client_properties.clone());
    ensure!(
        opts.spcvm.is_file(),
        "the spcvm binary {} is missing: build it first with `cargo build --release -p spcvm` \
         (scripts/bench-e2e.sh does), or point --spcvm / SPCVM_BIN at it",
        opts.spcvm.display()
    );
    let bootstrap = match &opts.bootstrap {
        Some(bootstrap) => bootstrap.clone(),
        None => {
            eprintln!("KAFKA_BOOTSTRAP not set: running `bash scripts/broker.sh start tansu`");
            start_broker("tansu")?
        }
    };
    let id = unique("bench-e2e");
    let dir = tempfile::Builder::new()
        .prefix("spcvm-bench-e2e")
        .tempdir()?;
    let setup = Setup {
        bootstrap: bootstrap.clone(),
        input: format!("{id}.telemetry"),
        alerts: format!("{id}.alerts"),
        dlq: format!("{id}.dlq"),
        group: id.clone(),
        partitions: opts.partitions,
        mode: opts.mode.clone(),
        dir: dir.path().to_path_buf(),
    };
    let result = bench(&opts, &setup);
    if opts.keep || result.is_err() {
        let kept = dir.keep();
        eprintln!("job config and log kept in {}", kept.display());
    }
    if !opts.keep {
        setup.delete_topics(true);
    }
    result
}

/// The run on `setup`'s topics: produce, the throughput rounds, the latency phase, the
/// report.
fn bench(opts: &Opts, setup: &Setup) -> Result<()> {
    let ion = opts.tools.div_ceil(2);
    println!(
        "spcvm e2e bench: {} records, {} tools ({ion} ion implant with 4 measurements, {} RTP \
         with 5), {} partitions, {}, broker {}, binary {}",
        thousands(opts.records as f64),
        opts.tools,
        opts.tools - ion,
        opts.partitions,
        opts.mode,
        setup.bootstrap,
        opts.spcvm.display()
    );
    create_topics(&opts.spcvm, setup)?;

    // Throughput phase: produce N records as fast as possible.
    let mut data = TelemetryGen::new(
        GenOptions::new(opts.tools, 7)
            .episodes(true)
            .layout(Layout::Spread),
    );
    let records = encode(&mut data, opts.records);
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let p = producer(&setup.bootstrap, 5)?;
    let t = Instant::now();
    for r in &records {
        send(&p, &setup.input, r)?;
    }
    flush(&p, opts.records as u64)?;
    let produce_secs = t.elapsed().as_secs_f64();
    let highs = written_ends(&p, setup.partitions, &[]);
    drop(p);
    drop(records);
    println!(
        "produced {} records ({:.1} MiB of JSON, {:.0} bytes each) in {:.2} s: {} records/s",
        thousands(opts.records as f64),
        bytes as f64 / 1048576.0,
        bytes as f64 / opts.records as f64,
        produce_secs,
        thousands(opts.records as f64 / produce_secs)
    );
    let total: i64 = highs.iter().map(|(_, h)| h).sum();
    ensure!(
        total == opts.records as i64,
        "the producer's end offsets add up to {total}, not {} records",
        opts.records
    );
    let probe = consumer(&setup.bootstrap, &unique("bench-probe"), false)?;
    let listed = high_watermarks(&probe, &setup.input, setup.partitions)?;
    if listed != highs {
        println!(
            "note: the broker's high watermarks {listed:?} differ from the end offsets the \
             producer's acks give {highs:?}; the bench uses the latter"
        );
    }

    // Extra rounds first, each in its own group with its own outputs (its job stopped
    // after it); the last round's job goes on to the latency phase.
    let mut rounds = Vec::new();
    for round in 1..opts.repeat {
        eprintln!("throughput round {round} of {} ...", opts.repeat);
        let extra = setup.for_round(round);
        create_topics(&opts.spcvm, &extra)?;
        let run = throughput_round(opts, &extra, &highs);
        let stopped = run.map(|mut run| {
            run.job.terminate(Duration::from_secs(30));
            run.figures
        });
        // The round's own topics go whatever happened (the input stays for the next).
        if !opts.keep {
            extra.delete_topics(false);
        }
        rounds.push(stopped?);
    }
    let RoundRun {
        figures,
        bare,
        mut job,
        timings,
        metrics: tp_metrics,
        watcher,
    } = throughput_round(opts, setup, &highs)?;
    rounds.push(figures);

    eprintln!(
        "latency phase: {} records/s for {} s ...",
        thousands(opts.rate as f64),
        opts.latency_secs
    );
    let lat = latency_phase(setup, opts, &mut job, &mut data, &watcher, &highs)?;
    let clean = job.terminate(Duration::from_secs(30));
    let warnings = job
        .log_text()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    report::print(
        opts,
        &Outcome {
            rounds,
            bare,
            timings,
            metrics: tp_metrics,
            latency: lat,
            clean,
            warnings,
        },
    );
    Ok(())
}
