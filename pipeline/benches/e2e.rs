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
//! Options (flags, or the environment variable in brackets): `--records N` [E2E_RECORDS,
//! 200000], `--tools N` [E2E_TOOLS, 50], `--partitions N` [E2E_PARTITIONS, 4], `--mode
//! exactly_once|at_least_once` [E2E_MODE], `--rate N` [E2E_RATE, 10000], `--latency-secs S`
//! [E2E_LATENCY_SECS, 10], `--fetch-wait-ms MS` [E2E_FETCH_WAIT_MS, librdkafka's 500: the
//! job's and the bench's consumers], `--paced-linger-ms MS` [E2E_PACED_LINGER_MS, 1: the
//! latency phase's producer], `--client-property KEY=VALUE` (repeatable)
//! [E2E_CLIENT_PROPERTIES, comma-separated: a librdkafka property for every client, the
//! job's (`kafka.properties`) and the bench's], `--repeat N` [E2E_REPEAT, 3: throughput
//! rounds on the same input, each a bare drain then the job in a fresh group with fresh
//! output topics; the ratio is judged on their median, as the two rates move from run to
//! run on a shared machine], `--spcvm PATH` [SPCVM_BIN, target/release/spcvm],
//! `--keep` (keep the topics, the job's config and log; `SPCVM_BENCH_LOG` sets the job's
//! `RUST_LOG`, e.g. `info,spcvm=debug` to log each commit's phases). The broker is `KAFKA_BOOTSTRAP`, else
//! `scripts/broker.sh start tansu` is run and its `KAFKA_BOOTSTRAP=` line read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use spcvm_schemas::{Alert, Telemetry, ToolType, decode_alert_json, encode_telemetry_json};

/// The job's checkpoint interval (the default of `delivery.checkpoint_interval_ms`).
const CHECKPOINT_INTERVAL_MS: u64 = 100;
/// Default `linger.ms` of the paced producer of the latency phase (a gateway sending as it
/// reads), `--paced-linger-ms`.
const PACED_LINGER_MS: u32 = 1;
/// Round from which tools drift (after every chart's Phase I of 200 points / 25 subgroups).
const DRIFT_FROM: usize = 230;
/// Drift episodes: a drifting tool is out of control for `EPISODE_ON` of every
/// `EPISODE_LEN` rounds (then maintenance brings it back), so alerts fire all along.
const EPISODE_LEN: usize = 300;
const EPISODE_ON: usize = 120;
/// Event time of the first round (2026-03-02 08:30 UTC).
const START_MS: i64 = 1_772_440_200_000;
/// `--fetch-wait-ms`, for every consumer the bench makes.
static FETCH_WAIT_MS: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
/// `--client-property`, for every client the bench makes and the job's.
static CLIENT_PROPERTIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
/// Name of the job's latency histogram.
const LATENCY_METRIC: &str = "spcvm_processing_latency_seconds";

fn main() {
    if let Err(e) = run() {
        eprintln!("bench e2e: error: {e:#}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------------ options

#[derive(Debug, Clone)]
struct Opts {
    records: usize,
    tools: usize,
    partitions: i32,
    mode: String,
    rate: u64,
    latency_secs: f64,
    bootstrap: Option<String>,
    spcvm: PathBuf,
    keep: bool,
    /// `fetch.wait.max.ms` for the job's and the bench's consumers (librdkafka's 500 when
    /// absent).
    fetch_wait_ms: Option<u32>,
    /// librdkafka properties for every client, the job's and the bench's.
    client_properties: Vec<(String, String)>,
    /// `linger.ms` of the latency phase's paced producer.
    paced_linger_ms: u32,
    /// Throughput rounds (bare consumer, then the job in a fresh group) on the same input.
    repeat: usize,
}

const USAGE: &str = "usage: cargo bench -p spcvm --bench e2e -- [--records N] [--tools N] \
[--partitions N] [--mode exactly_once|at_least_once] [--rate RECORDS_PER_S] \
[--latency-secs S] [--fetch-wait-ms MS] [--paced-linger-ms MS] [--client-property KEY=VALUE]... \
[--repeat N] [--spcvm PATH] [--keep]
env: E2E_RECORDS E2E_TOOLS E2E_PARTITIONS E2E_MODE E2E_RATE E2E_LATENCY_SECS \
E2E_FETCH_WAIT_MS E2E_PACED_LINGER_MS E2E_REPEAT E2E_CLIENT_PROPERTIES (KEY=VALUE,...) SPCVM_BIN \
KAFKA_BOOTSTRAP (default: start tansu with scripts/broker.sh)";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pipeline/ has a parent")
        .to_path_buf()
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    let clean: String = value.chars().filter(|c| *c != '_' && *c != ',').collect();
    clean
        .parse()
        .map_err(|_| anyhow!("{name}: `{value}` is not a valid number\n{USAGE}"))
}

impl Opts {
    fn parse() -> Result<Opts> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let mut o = Opts {
            records: 200_000,
            tools: 50,
            partitions: 4,
            mode: "exactly_once".into(),
            rate: 10_000,
            latency_secs: 10.0,
            bootstrap: env("KAFKA_BOOTSTRAP"),
            spcvm: env("SPCVM_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("release/spcvm")),
            keep: false,
            fetch_wait_ms: None,
            client_properties: Vec::new(),
            paced_linger_ms: PACED_LINGER_MS,
            repeat: 3,
        };
        let set = |o: &mut Opts, key: &str, value: &str| -> Result<()> {
            match key {
                "records" => o.records = parse_num(key, value)?,
                "tools" => o.tools = parse_num(key, value)?,
                "partitions" => o.partitions = parse_num(key, value)?,
                "mode" => o.mode = value.to_string(),
                "rate" => o.rate = parse_num(key, value)?,
                "latency-secs" => o.latency_secs = parse_num(key, value)?,
                "spcvm" => o.spcvm = PathBuf::from(value),
                "bootstrap" => o.bootstrap = Some(value.to_string()),
                "fetch-wait-ms" => o.fetch_wait_ms = Some(parse_num(key, value)?),
                "paced-linger-ms" => o.paced_linger_ms = parse_num(key, value)?,
                "repeat" => o.repeat = parse_num(key, value)?,
                "client-property" => {
                    for pair in value.split(',').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or_else(|| {
                            anyhow!("--client-property: `{pair}` is not KEY=VALUE\n{USAGE}")
                        })?;
                        o.client_properties.push((k.trim().into(), v.trim().into()));
                    }
                }
                _ => bail!("unknown option --{key}\n{USAGE}"),
            }
            Ok(())
        };
        for (var, key) in [
            ("E2E_RECORDS", "records"),
            ("E2E_TOOLS", "tools"),
            ("E2E_PARTITIONS", "partitions"),
            ("E2E_MODE", "mode"),
            ("E2E_RATE", "rate"),
            ("E2E_LATENCY_SECS", "latency-secs"),
            ("E2E_FETCH_WAIT_MS", "fetch-wait-ms"),
            ("E2E_CLIENT_PROPERTIES", "client-property"),
            ("E2E_PACED_LINGER_MS", "paced-linger-ms"),
            ("E2E_REPEAT", "repeat"),
        ] {
            if let Some(v) = env(var) {
                set(&mut o, key, &v).with_context(|| format!("environment variable {var}"))?;
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // `cargo bench` passes `--bench` to a harness-less target.
                "--bench" => {}
                "--keep" => o.keep = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                a if a.starts_with("--") => {
                    let a = &a[2..];
                    let (key, value) = match a.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (
                            a.to_string(),
                            args.next()
                                .ok_or_else(|| anyhow!("--{a} needs a value\n{USAGE}"))?,
                        ),
                    };
                    set(&mut o, &key, &value)?;
                }
                // A bare word would be a test-name filter from `cargo bench NAME`: ignore it.
                _ => {}
            }
        }
        ensure!(
            o.mode == "exactly_once" || o.mode == "at_least_once",
            "--mode must be exactly_once or at_least_once, not `{}`",
            o.mode
        );
        ensure!(o.records >= 1000, "--records must be at least 1000");
        ensure!(o.tools >= 2, "--tools must be at least 2");
        ensure!(o.partitions >= 1, "--partitions must be at least 1");
        ensure!(o.rate >= 1, "--rate must be at least 1");
        ensure!(o.repeat >= 1, "--repeat must be at least 1");
        ensure!(o.latency_secs > 0.0, "--latency-secs must be positive");
        Ok(o)
    }
}

// ------------------------------------------------------------------------------ data

/// Deterministic telemetry like the end-to-end tests' generator: `tools` tools, half ion
/// implanters (four measurements) and half RTP chambers (five), each reporting once a minute
/// of event time. From [`DRIFT_FROM`] on, every third implanter's beam current drifts up and
/// every third RTP chamber's ramp tracking and lamp power step up, in episodes.
struct Gen {
    tools: usize,
    state: u64,
}

impl Gen {
    fn new(tools: usize, seed: u64) -> Gen {
        Gen { tools, state: seed }
    }

    fn uniform(&mut self) -> f64 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn noise(&mut self) -> f64 {
        // Box-Muller
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Record number `i` (call in order: the noise is one sequence).
    fn record(&mut self, i: usize) -> Telemetry {
        let round = i / self.tools;
        let slot = i % self.tools;
        let t = slot / 2;
        // Which third of its kind the tool is in: 0 and 1 drift (implanter / RTP).
        let third = t % 3;
        let implanter = slot & 1 == 0;
        let event_time =
            START_MS + round as i64 * 60_000 + slot as i64 * 60_000 / self.tools as i64;
        // Position in this tool's drift episode, if it is in one.
        let episode = (round >= DRIFT_FROM)
            .then(|| (round - DRIFT_FROM + t * 37) % EPISODE_LEN)
            .filter(|phase| *phase < EPISODE_ON);
        let lot_id = Some(format!("LOT-{:05}", round / 25));
        let wafer_id = Some(format!("W{:02}", round % 25));
        let mut m = BTreeMap::new();
        if implanter {
            let drift = match episode {
                Some(phase) if third == 0 => 0.002 * phase as f64,
                _ => 0.0,
            };
            m.insert(
                "beam_current_mA".to_string(),
                1.0 + drift + 0.01 * self.noise(),
            );
            m.insert("dose_uniformity_pct".to_string(), 95.5 + 0.3 * self.noise());
            m.insert(
                "source_pressure_mtorr".to_string(),
                2.3e-5 + 1e-7 * self.noise(),
            );
            m.insert(
                "analyzer_field_gauss".to_string(),
                1520.0 + 2.0 * self.noise(),
            );
            Telemetry {
                tool_id: format!("ION-{t:02}"),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11_30KEV".into(),
                lot_id,
                wafer_id,
                event_time,
                measurements: m,
            }
        } else {
            let step = match episode {
                Some(_) if third == 1 => 2.5,
                _ => 0.0,
            };
            m.insert("ramp_tracking_error_C".to_string(), step + self.noise());
            m.insert("overshoot_pct".to_string(), 2.0 + 0.3 * self.noise());
            m.insert("lamp_power_pct".to_string(), 60.0 + step + self.noise());
            m.insert("emissivity".to_string(), 0.7 + 0.01 * self.noise());
            m.insert("gas_flow_deviation_sccm".to_string(), self.noise());
            Telemetry {
                tool_id: format!("RTP-{t:02}"),
                tool_type: ToolType::Rtp,
                recipe_id: "SPIKE_1050".into(),
                lot_id,
                wafer_id,
                event_time,
                measurements: m,
            }
        }
    }
}

/// One encoded record: key (tool id), event time, JSON payload.
struct Encoded {
    key: String,
    event_time: i64,
    payload: Vec<u8>,
}

fn encode(data: &mut Gen, range: std::ops::Range<usize>) -> Vec<Encoded> {
    range
        .map(|i| {
            let r = data.record(i);
            Encoded {
                payload: encode_telemetry_json(&r),
                key: r.tool_id,
                event_time: r.event_time,
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------ kafka

/// Producer context that counts deliveries and failures and keeps, per partition, the
/// offset after the last acknowledged record: the true end of what it wrote. (tansu's
/// ListOffsets answers the base offset of the last batch + 1 as the high watermark, so
/// `fetch_watermarks` falls short of the end after a multi-record batch.) It also keeps
/// every record's ack latency (send to delivery report), in the order of the reports.
#[derive(Clone)]
struct Counting {
    base: Instant,
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    ends: Arc<Mutex<BTreeMap<i32, i64>>>,
    ack_latency: Arc<Mutex<Vec<Duration>>>,
}

impl Counting {
    fn new() -> Counting {
        Counting {
            base: Instant::now(),
            delivered: Arc::default(),
            failed: Arc::default(),
            first_error: Arc::default(),
            ends: Arc::default(),
            ack_latency: Arc::default(),
        }
    }

    /// The opaque of a record sent now: nanoseconds since `base`.
    fn stamp(&self) -> usize {
        self.base.elapsed().as_nanos() as usize
    }
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    /// When the record was sent, in nanoseconds since `base`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: usize) {
        let latency = self
            .base
            .elapsed()
            .saturating_sub(Duration::from_nanos(sent as u64));
        self.ack_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(latency);
        match result {
            Ok(m) => {
                let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
                let end = ends.entry(m.partition()).or_insert(0);
                *end = (*end).max(m.offset() + 1);
                self.delivered.fetch_add(1, Ordering::Relaxed)
            }
            Err((e, _)) => {
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

type BenchProducer = ThreadedProducer<Counting>;

fn producer(bootstrap: &str, linger_ms: u32) -> Result<BenchProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    // The bench's own linger wins over a `--client-property linger.ms` meant for the job.
    with_client_properties(&mut config)
        .set("linger.ms", linger_ms.to_string())
        .create_with_context(Counting::new())
        .context("cannot create the producer")
}

/// `config` with the `--client-property` settings added.
fn with_client_properties(config: &mut ClientConfig) -> &mut ClientConfig {
    for (k, v) in CLIENT_PROPERTIES.get().into_iter().flatten() {
        config.set(k, v);
    }
    config
}

/// Sends one record, waiting while the local queue is full.
fn send(p: &BenchProducer, topic: &str, r: &Encoded) -> Result<()> {
    let mut record = BaseRecord::with_opaque_to(topic, p.context().stamp())
        .key(&r.key)
        .payload(&r.payload);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce to {topic}: {e}"),
        }
    }
}

/// The end offsets `p` wrote, for partitions `0..partitions`, each at least `floor`'s.
fn written_ends(p: &BenchProducer, partitions: i32, floor: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let ends = p.context().ends.lock().unwrap_or_else(|p| p.into_inner());
    (0..partitions)
        .map(|q| {
            let before = floor.iter().find(|(f, _)| *f == q).map_or(0, |(_, o)| *o);
            (q, ends.get(&q).copied().unwrap_or(0).max(before))
        })
        .collect()
}

fn flush(p: &BenchProducer, expected: u64) -> Result<()> {
    p.flush(Duration::from_secs(120))
        .context("producer flush")?;
    let ctx = p.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    ensure!(
        failed == 0,
        "{failed} deliveries failed, first: {}",
        ctx.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    );
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    ensure!(
        delivered == expected,
        "{delivered} of {expected} records acknowledged"
    );
    Ok(())
}

/// A consumer with the fetch settings of the job's consumer (`run::kafka`): read_committed,
/// a 100 MB receive limit, librdkafka's defaults otherwise. `group` is only needed because
/// librdkafka refuses `assign` without one; `assign` never joins it.
fn consumer(bootstrap: &str, group: &str, eof: bool) -> Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    if let Some(ms) = FETCH_WAIT_MS.get().copied().flatten() {
        config.set("fetch.wait.max.ms", ms.to_string());
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("receive.message.max.bytes", "100000000")
        .set("enable.partition.eof", if eof { "true" } else { "false" });
    with_client_properties(&mut config)
        .create()
        .context("cannot create a consumer")
}

fn high_watermarks(c: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<(i32, i64)>> {
    (0..partitions)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("watermarks of {topic}[{p}]"))?;
            Ok((p, high))
        })
        .collect()
}

/// Whether `group`'s committed offsets (read through `watcher`, a consumer with that group
/// id that never joins it) have reached `highs`.
fn committed_reached(watcher: &BaseConsumer, topic: &str, highs: &[(i32, i64)]) -> bool {
    let mut tpl = TopicPartitionList::new();
    for (p, _) in highs {
        tpl.add_partition(topic, *p);
    }
    let Ok(committed) = watcher.committed_offsets(tpl, Duration::from_secs(5)) else {
        return false;
    };
    highs.iter().all(
        |(p, high)| match committed.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o >= *high,
            _ => *high == 0,
        },
    )
}

// ------------------------------------------------------------------------------ the job

/// CPU time (user and system, all threads, exited ones included) process `pid` has used,
/// from `/proc/PID/stat` in Linux's clock ticks of 1/100 s; `None` where that cannot be
/// read.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces) start with
    // the third; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

/// Idle CPU seconds of the whole machine (idle and I/O wait, all cores) from `/proc/stat`
/// in clock ticks of 1/100 s; `None` where that cannot be read. Over an interval it says
/// whether the job, the broker and the bench together kept every core busy.
fn machine_idle_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some((fields.get(3)? + fields.get(4)?) / 100.0)
}

/// The CPU clocks read at the start and the end of the job's measured interval, in
/// seconds (`None` where one cannot be read).
#[derive(Clone, Copy)]
struct CpuClocks {
    /// The job's CPU time.
    job: Option<f64>,
    /// The broker's CPU time (when it runs here).
    broker: Option<f64>,
    /// This bench process's CPU time.
    bench: Option<f64>,
    /// The machine's idle time, all cores.
    idle: Option<f64>,
}

impl CpuClocks {
    fn read(job: &Job, broker: Option<u32>) -> CpuClocks {
        CpuClocks {
            job: job.cpu_secs(),
            broker: broker.and_then(cpu_secs),
            bench: cpu_secs(std::process::id()),
            idle: machine_idle_secs(),
        }
    }

    /// The seconds a clock advanced from `start` to `end`.
    fn since(start: Option<f64>, end: Option<f64>) -> Option<f64> {
        start.zip(end).map(|(a, b)| b - a)
    }
}

/// The process listening on the port of the first bootstrap server on this machine (the
/// broker, to count its CPU time): the socket's inode from `/proc/net/tcp{,6}`, then the
/// process holding it. `None` when it is elsewhere or cannot be seen.
fn listener_pid(bootstrap: &str) -> Option<u32> {
    let port: u16 = bootstrap
        .split(',')
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                // State 0A is LISTEN; the inode is the tenth field.
                (local_port == port && *f.get(3)? == "0A")
                    .then(|| f.get(9).map(|i| i.to_string()))?
            })
        })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str())
                })
                .then_some(pid)
        })
}

/// A running `spcvm run`, killed on drop.
struct Job {
    child: Child,
    log: PathBuf,
    agent: ureq::Agent,
    addr: Option<String>,
}

impl Job {
    fn start(spcvm: &Path, config: &Path, log: PathBuf) -> Result<Job> {
        let child = Command::new(spcvm)
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("SPCVM_BENCH_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", spcvm.display()))?;
        Ok(Job {
            child,
            log,
            agent: ureq::Agent::new_with_defaults(),
            addr: None,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Fails (with the log's tail) if the process has exited.
    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "spcvm run exited ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits for the `addr=` of the HTTP server in the log.
    fn wait_addr(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(pos) = log.find("addr=") {
                let rest = &log[pos + 5..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '\u{1b}')
                    .unwrap_or(rest.len());
                self.addr = Some(rest[..end].to_string());
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no HTTP address in the job's log within {timeout:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU seconds the job's process has used (see [`cpu_secs`]). With `--spcvm` a wrapper
    /// that forks, such as `perf record`, this is the wrapper's own time.
    fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(self.child.id())
    }

    /// The job's peak resident memory so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    fn scrape(&self) -> Result<String> {
        let addr = self.addr.as_deref().context("HTTP address not known yet")?;
        let mut response = self
            .agent
            .get(&format!("http://{addr}/metrics"))
            .call()
            .context("GET /metrics")?;
        Ok(response.body_mut().read_to_string()?)
    }

    /// SIGTERM, then up to `timeout` for a clean exit.
    fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------ metrics

/// Sum of the samples of `name` whose label text contains `label` (e.g. `topic="x"`).
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Checkpoints between two scrapes: how many, and the seconds they took in all.
fn checkpoints(before: &str, after: &str) -> (f64, f64) {
    let get = |text: &str, name: &str| metric_sum(text, name, "");
    (
        get(after, "spcvm_checkpoint_duration_seconds_count")
            - get(before, "spcvm_checkpoint_duration_seconds_count"),
        get(after, "spcvm_checkpoint_duration_seconds_sum")
            - get(before, "spcvm_checkpoint_duration_seconds_sum"),
    )
}

/// Cumulative bucket counts `(upper bound, count)` of histogram `name`, in order.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
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
fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
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
fn histogram_quantile(q: f64, cumulative: &[(f64, f64)]) -> Option<(f64, bool)> {
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
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

// ------------------------------------------------------------------------------ helpers

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}

/// `1234567.8` -> `1,234,568`.
fn thousands(x: f64) -> String {
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

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn ms_opt(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".into(), ms)
}

/// The bootstrap servers: `KAFKA_BOOTSTRAP`, or a tansu started by `scripts/broker.sh`.
fn bootstrap(opts: &Opts) -> Result<String> {
    if let Some(b) = &opts.bootstrap {
        return Ok(b.clone());
    }
    let script = workspace_root().join("scripts/broker.sh");
    eprintln!("KAFKA_BOOTSTRAP not set: running `bash scripts/broker.sh start tansu`");
    let out = Command::new("bash")
        .arg(&script)
        .args(["start", "tansu"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        out.status.success(),
        "scripts/broker.sh start tansu failed ({})",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP=").map(str::to_string))
        .context("scripts/broker.sh printed no KAFKA_BOOTSTRAP= line")
}

// ------------------------------------------------------------------------------ setup

#[derive(Clone)]
struct Setup {
    bootstrap: String,
    input: String,
    alerts: String,
    dlq: String,
    group: String,
    partitions: i32,
    mode: String,
    dir: PathBuf,
}

impl Setup {
    fn config(&self) -> String {
        let fetch_wait = FETCH_WAIT_MS
            .get()
            .copied()
            .flatten()
            .map_or_else(String::new, |ms| {
                format!("\"fetch.wait.max.ms\" = \"{ms}\"\n")
            });
        let properties: String = CLIENT_PROPERTIES
            .get()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k:?} = {v:?}\n"))
            .collect();
        format!(
            r#"source = "kafka"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
instance_id = "bench"
session_timeout_ms = 6000
[kafka.properties]
{properties}[kafka.consumer_properties]
"heartbeat.interval.ms" = "500"
{fetch_wait}[topics]
input = ["{input}"]
alerts = "{alerts}"
dlq = "{dlq}"
partitions = {partitions}
replication_factor = 1
[delivery]
mode = "{mode}"
checkpoint_interval_ms = {CHECKPOINT_INTERVAL_MS}
[http]
listen = "127.0.0.1:0"
"#,
            bootstrap = self.bootstrap,
            group = self.group,
            input = self.input,
            alerts = self.alerts,
            dlq = self.dlq,
            partitions = self.partitions,
            mode = self.mode,
        )
    }

    /// The setup of an extra throughput round: the same input, its own group and outputs.
    fn for_round(&self, round: usize) -> Setup {
        Setup {
            alerts: format!("{}-r{round}", self.alerts),
            dlq: format!("{}-r{round}", self.dlq),
            group: format!("{}-r{round}", self.group),
            ..self.clone()
        }
    }

    fn topics(&self) -> Vec<String> {
        vec![
            self.input.clone(),
            self.alerts.clone(),
            self.dlq.clone(),
            format!("spcvm.state.{}", self.group),
        ]
    }

    /// Deletes the topics, the input only `with_input` (best effort: the in-memory tansu
    /// would otherwise keep them).
    fn delete_topics(&self, with_input: bool) {
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create();
        let Ok(admin) = admin else { return };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let topics = self.topics();
        let names: Vec<&str> = topics
            .iter()
            .filter(|t| with_input || **t != self.input)
            .map(String::as_str)
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        if let Err(e) = rt.block_on(admin.delete_topics(&names, &opts)) {
            eprintln!("note: could not delete the bench topics: {e}");
        }
    }
}

// ------------------------------------------------------------------------------ phases

/// What [`drain_bare`] measured.
struct BareDrain {
    records: u64,
    bytes: u64,
    /// Seconds from the first message to the last.
    secs: f64,
    /// CPU seconds this process used from the first message to the end of every
    /// partition (which some brokers report well after the last message).
    cpu_secs: Option<f64>,
    /// CPU seconds the broker used meanwhile.
    broker_cpu_secs: Option<f64>,
    /// Seconds from the first message to the end of every partition.
    cpu_window_secs: f64,
    /// Records/s between the message that made a tenth of the records and the one that
    /// made nine tenths (see [`STEADY`]).
    steady_rate: Option<f64>,
}

/// The share of the records, from the start and to the end, left out of the steady-state
/// rates: the bare consumer's first fetches and the job's last checkpoint (up to
/// `delivery.checkpoint_interval_ms` after its last message) are not part of what either
/// sustains.
const STEADY: f64 = 0.1;

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
fn steady_rate(samples: &[(Instant, f64)], n: f64) -> Option<f64> {
    let (lo, hi) = (n * STEADY, n * (1.0 - STEADY));
    if samples.first()?.1 > lo {
        return None;
    }
    let (a, b) = (crossing(samples, lo)?, crossing(samples, hi)?);
    let secs = (b - a).as_secs_f64();
    (secs > 0.0).then(|| (hi - lo) / secs)
}

/// (a) of the throughput phase: a bare consumer drains the input.
fn drain_bare(setup: &Setup, highs: &[(i32, i64)]) -> Result<BareDrain> {
    let c = consumer(&setup.bootstrap, &unique("bench-bare"), true)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = 0;
    for &(p, high) in highs {
        if high > 0 {
            tpl.add_partition_offset(&setup.input, p, Offset::Beginning)?;
            pending += 1;
        }
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut last) = (None, Instant::now());
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut cpu_first = (None, None);
    let total: i64 = highs.iter().map(|&(_, high)| high).sum();
    let marks = [
        (total as f64 * STEADY).ceil() as u64,
        (total as f64 * (1.0 - STEADY)).ceil() as u64,
    ];
    let mut steady = Vec::with_capacity(2);
    let broker = listener_pid(&setup.bootstrap);
    while pending > 0 {
        ensure!(Instant::now() < deadline, "the bare consumer timed out");
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => bail!("bare consumer: {e}"),
            Some(Ok(m)) => {
                let now = Instant::now();
                if first.is_none() {
                    first = Some(now);
                    cpu_first = (cpu_secs(std::process::id()), broker.and_then(cpu_secs));
                }
                last = now;
                count += 1;
                if marks.contains(&count) {
                    steady.push((now, count as f64));
                }
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            }
        }
    }
    let first = first.context("the bare consumer read nothing")?;
    let cpu_window_secs = first.elapsed().as_secs_f64();
    let since = |start: Option<f64>, pid: Option<u32>| {
        start.zip(pid.and_then(cpu_secs)).map(|(a, b)| b - a)
    };
    Ok(BareDrain {
        records: count,
        bytes,
        secs: (last - first).as_secs_f64(),
        cpu_secs: since(cpu_first.0, Some(std::process::id())),
        broker_cpu_secs: since(cpu_first.1, broker),
        cpu_window_secs,
        steady_rate: match steady[..] {
            [(t1, c1), (t2, c2)] if t2 > t1 => Some((c2 - c1) / (t2 - t1).as_secs_f64()),
            _ => None,
        },
    })
}

/// (b) of the throughput phase: the job from its first consumed message to all committed.
/// Returns the job (still running, caught up) and the timings.
fn job_throughput(
    setup: &Setup,
    opts: &Opts,
    highs: &[(i32, i64)],
    watcher: &BaseConsumer,
) -> Result<(Job, JobTimings, String)> {
    let config = setup.dir.join("job.toml");
    std::fs::write(&config, setup.config())?;
    let started = Instant::now();
    let mut job = Job::start(&opts.spcvm, &config, setup.dir.join("job.log"))?;
    job.wait_addr(Duration::from_secs(30))?;
    let broker = listener_pid(&setup.bootstrap);
    let consumed_label = format!("topic=\"{}\"", setup.input);
    let consumed = |text: &str| metric_sum(text, "spcvm_messages_consumed_total", &consumed_label);
    let n = opts.records as f64;
    // Start: the first scrape that shows a consumed message.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (t0, c0, cpu0) = loop {
        job.check_running()?;
        let c = consumed(&job.scrape()?);
        if c > 0.0 {
            break (Instant::now(), c, CpuClocks::read(&job, broker));
        }
        ensure!(
            Instant::now() < deadline,
            "the job consumed nothing within 120 s; log:\n{}",
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let join_secs = (t0 - started).as_secs_f64();
    // End: every record consumed (metric), then committed (group offsets).
    let budget = Duration::from_secs(120 + opts.records as u64 / 1000);
    let deadline = Instant::now() + budget;
    let mut all_consumed = None;
    // The committed offsets are asked of the broker every 10 ms; the job's `/metrics` only
    // every 50 ms: a scrape renders every series on the job's own cores (rendering and
    // serving one every 10 ms took about a tenth of the job's CPU in a profile).
    // They are asked from the scrape that shows nine tenths consumed on (asking only after
    // "all consumed" was scraped could see a commit up to a scrape interval late).
    let mut last_scrape = t0;
    let mut near_end = false;
    // (instant, records consumed) of every scrape, for the steady-state rate.
    let mut samples = vec![(t0, c0)];
    let (t_end, cpu1) = loop {
        job.check_running()?;
        if all_consumed.is_none() && last_scrape.elapsed() >= SCRAPE_EVERY {
            last_scrape = Instant::now();
            let c = consumed(&job.scrape()?);
            samples.push((Instant::now(), c));
            near_end |= c >= 0.9 * n;
            if c >= n {
                all_consumed = Some(Instant::now());
            }
        }
        if near_end && committed_reached(watcher, &setup.input, highs) {
            let now = Instant::now();
            // Committed to the end means consumed to the end, whatever the last scrape said.
            all_consumed.get_or_insert(now);
            break (now, CpuClocks::read(&job, broker));
        }
        ensure!(
            Instant::now() < deadline,
            "the job did not commit all {} records within {budget:?}; log:\n{}",
            opts.records,
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let remaining = n - c0;
    let metrics = job.scrape()?;
    let timings = JobTimings {
        first_seen: c0,
        rate_consumed: all_consumed.map(|t| remaining / (t - t0).as_secs_f64()),
        rate_committed: remaining / (t_end - t0).as_secs_f64(),
        steady_rate: steady_rate(&samples, n),
        join_secs,
        cpu_secs: CpuClocks::since(cpu0.job, cpu1.job),
        broker_cpu_secs: CpuClocks::since(cpu0.broker, cpu1.broker),
        bench_cpu_secs: CpuClocks::since(cpu0.bench, cpu1.bench),
        idle_secs: CpuClocks::since(cpu0.idle, cpu1.idle),
        peak_rss_mib: job.peak_rss_mib(),
    };
    Ok((job, timings, metrics))
}

/// What [`job_throughput`] measured.
struct JobTimings {
    /// Records consumed at the first scrape that showed any (the start).
    first_seen: f64,
    /// Records/s from the start until all were consumed (scraped).
    rate_consumed: Option<f64>,
    /// Records/s from the start until the group's offsets reached the end.
    rate_committed: f64,
    /// Records/s consumed between a tenth and nine tenths of the records (see
    /// [`STEADY`]), interpolated between scrapes; `None` when the first scrape already
    /// showed more than a tenth.
    steady_rate: Option<f64>,
    /// Seconds from the process start to the start of the measurement.
    join_secs: f64,
    /// CPU seconds the job used in the measured interval.
    cpu_secs: Option<f64>,
    /// CPU seconds the broker used in the measured interval.
    broker_cpu_secs: Option<f64>,
    /// CPU seconds the bench process used in the measured interval (scrapes, offset
    /// queries).
    bench_cpu_secs: Option<f64>,
    /// Idle CPU seconds of the whole machine in the measured interval.
    idle_secs: Option<f64>,
    /// The job's peak resident memory from its start to the end of the measurement, MiB.
    peak_rss_mib: Option<f64>,
}

/// Least time between two scrapes of the job's `/metrics` in the throughput phase.
const SCRAPE_EVERY: Duration = Duration::from_millis(50);

struct Latency {
    sent: usize,
    send_secs: f64,
    drain_after_send: Duration,
    hist: Vec<(f64, f64)>,
    alerts: f64,
    e2e: Vec<Duration>,
    first_firings: usize,
    closing_updates: usize,
    unmatched: usize,
    /// Ack latencies of the paced producer (sorted).
    acks: Vec<Duration>,
    /// Scrapes of the job's metrics before and after the phase.
    before: String,
    after: String,
}

/// The alert reader: its thread (alerts with their arrival) and the channel on which it is
/// told how many alerts to wait for.
type Reader = (
    std::thread::JoinHandle<Result<ReaderOutcome>>,
    mpsc::Sender<usize>,
);

struct ReaderOutcome {
    alerts: Vec<(Alert, Instant)>,
    /// Whether it stopped on its deadline rather than on the expected count.
    timed_out: bool,
}

/// Reads the alert topic (read_committed) from the beginning to its end (end-of-partition
/// events, not the listed high watermarks, see [`Counting`]) and returns once there; then,
/// on its thread, stamps the arrival of every further alert until it has read the count
/// sent on the channel (or 30 s after it was sent).
fn alert_reader(bootstrap: &str, topic: &str, partitions: i32) -> Result<Reader> {
    let c = consumer(bootstrap, &unique("bench-alerts"), true)?;
    let listed = high_watermarks(&c, topic, partitions)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    // A partition that never held anything lists 0 and may send no end-of-partition event.
    let mut pending: Vec<i32> = listed
        .iter()
        .filter(|(_, high)| *high > 0)
        .map(|(p, _)| *p)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "reading {topic} to its end took over 60 s"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::PartitionEOF(p))) => pending.retain(|q| *q != p),
            Some(Err(e)) => bail!("alert reader: {e}"),
            _ => {}
        }
    }
    let (tx, rx) = mpsc::channel::<usize>();
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || -> Result<ReaderOutcome> {
        let mut alerts = Vec::new();
        let mut expected: Option<(usize, Instant)> = None;
        loop {
            match c.poll(Duration::from_millis(20)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => bail!("alert reader: {e}"),
                Some(Ok(m)) => {
                    let now = Instant::now();
                    let alert = decode_alert_json(m.payload().unwrap_or_default())
                        .map_err(|e| anyhow!("alert {}[{}]: {e}", topic, m.partition()))?;
                    alerts.push((alert, now));
                }
            }
            if expected.is_none()
                && let Ok(n) = rx.try_recv()
            {
                expected = Some((n, Instant::now() + Duration::from_secs(30)));
            }
            if let Some((n, deadline)) = expected {
                if alerts.len() >= n {
                    return Ok(ReaderOutcome {
                        alerts,
                        timed_out: false,
                    });
                }
                if Instant::now() > deadline {
                    return Ok(ReaderOutcome {
                        alerts,
                        timed_out: true,
                    });
                }
            }
        }
    });
    Ok((handle, tx))
}

fn latency_phase(
    setup: &Setup,
    opts: &Opts,
    job: &mut Job,
    data: &mut Gen,
    watcher: &BaseConsumer,
    input_ends: &[(i32, i64)],
) -> Result<Latency> {
    let count = ((opts.rate as f64) * opts.latency_secs).round() as usize;
    let records = encode(data, opts.records..opts.records + count);
    let (reader, expected_tx) = alert_reader(&setup.bootstrap, &setup.alerts, setup.partitions)?;
    let p = producer(&setup.bootstrap, opts.paced_linger_ms)?;
    // Connect the producer and get its idempotent producer id before the clock starts (the
    // first records would wait for both): one record to the bench's own dead-letter topic,
    // which nothing reads.
    p.client()
        .fetch_metadata(Some(&setup.input), Duration::from_secs(10))?;
    let warm_up = Encoded {
        key: "bench-warm-up".into(),
        event_time: 0,
        payload: b"warm-up".to_vec(),
    };
    send(&p, &setup.dlq, &warm_up)?;
    flush(&p, 1)?;
    p.context()
        .ack_latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    p.context()
        .ends
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let before = job.scrape()?;
    let mut sent_at: HashMap<(String, i64), Instant> = HashMap::with_capacity(count);
    let interval = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let t0 = Instant::now();
    for (i, r) in records.iter().enumerate() {
        let due = t0 + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = Instant::now();
        send(&p, &setup.input, r)?;
        sent_at.insert((r.key.clone(), r.event_time), at);
    }
    let last_send = Instant::now();
    let send_secs = (last_send - t0).as_secs_f64();
    flush(&p, count as u64 + 1)?;
    let highs = written_ends(&p, setup.partitions, input_ends);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !committed_reached(watcher, &setup.input, &highs) {
        job.check_running()?;
        ensure!(
            Instant::now() < deadline,
            "the job did not catch up within 120 s after the paced phase; log:\n{}",
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain_after_send = last_send.elapsed();
    // Every alert of the phase is acknowledged (and, exactly-once, committed) by now.
    let alert_label = format!("topic=\"{}\"", setup.alerts);
    let produced = |text: &str| metric_sum(text, "spcvm_messages_produced_total", &alert_label);
    let after = job.scrape()?;
    let expected = (produced(&after) - produced(&before)).round() as usize;
    expected_tx
        .send(expected)
        .map_err(|_| anyhow!("the alert reader stopped early"))?;
    let outcome = reader
        .join()
        .map_err(|_| anyhow!("the alert reader panicked"))??;
    if outcome.timed_out {
        println!(
            "note: the alert reader saw {} of the {expected} alerts the job produced in the \
             phase within 30 s (aborted transactions?)",
            outcome.alerts.len()
        );
    }
    let alerts_read = outcome.alerts;
    let hist = bucket_delta(
        &buckets(&before, LATENCY_METRIC),
        &buckets(&after, LATENCY_METRIC),
    );
    let alerts = metric_sum(&after, "spcvm_alerts_total", "")
        - metric_sum(&before, "spcvm_alerts_total", "");
    let (mut e2e, mut closing_updates, mut unmatched) = (Vec::new(), 0, 0);
    for (alert, arrived) in &alerts_read {
        if alert.repeats > 0 {
            closing_updates += 1;
            continue;
        }
        match sent_at.get(&(alert.tool_id.clone(), alert.event_time)) {
            Some(sent) => e2e.push(arrived.saturating_duration_since(*sent)),
            None => unmatched += 1,
        }
    }
    e2e.sort();
    let mut acks = p
        .context()
        .ack_latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    acks.sort();
    Ok(Latency {
        acks,
        before,
        after,
        sent: count,
        send_secs,
        drain_after_send,
        hist,
        alerts,
        first_firings: e2e.len(),
        e2e,
        closing_updates,
        unmatched,
    })
}

// ------------------------------------------------------------------------------ main

fn run() -> Result<()> {
    let opts = Opts::parse()?;
    let _ = FETCH_WAIT_MS.set(opts.fetch_wait_ms);
    let _ = CLIENT_PROPERTIES.set(opts.client_properties.clone());
    ensure!(
        opts.spcvm.is_file(),
        "the spcvm binary {} is missing: build it first with `cargo build --release -p spcvm` \
         (scripts/bench-e2e.sh does), or point --spcvm / SPCVM_BIN at it",
        opts.spcvm.display()
    );
    let bootstrap = bootstrap(&opts)?;
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

/// Creates `setup`'s topics through the job's own command (existing ones are kept).
fn create_topics(opts: &Opts, setup: &Setup) -> Result<()> {
    let topics_config = setup.dir.join("topics.toml");
    std::fs::write(&topics_config, setup.config())?;
    let out = Command::new(&opts.spcvm)
        .args(["topics", "create", "--config"])
        .arg(&topics_config)
        .output()?;
    ensure!(
        out.status.success(),
        "spcvm topics create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// One throughput round's headline figures.
struct Round {
    bare_rate: f64,
    committed_rate: f64,
    job_cpu_per_record: Option<f64>,
    /// The bare consumer's and the job's steady-state rates (see [`STEADY`]).
    steady: Option<(f64, f64)>,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.committed_rate / self.bare_rate
    }

    /// The job's steady-state rate over the bare consumer's.
    fn steady_ratio(&self) -> Option<f64> {
        self.steady.map(|(bare, job)| job / bare)
    }
}

/// What [`throughput_round`] leaves: its figures, what they come from, the job (still
/// running) and the watcher of its group.
struct RoundRun {
    figures: Round,
    bare: BareDrain,
    job: Job,
    timings: JobTimings,
    /// The job's metrics scraped at the end of the round.
    metrics: String,
    watcher: BaseConsumer,
}

/// A throughput round: the bare consumer drains the input, then the job consumes it in
/// `setup`'s group.
fn throughput_round(opts: &Opts, setup: &Setup, highs: &[(i32, i64)]) -> Result<RoundRun> {
    eprintln!("(a) bare consumer draining the input ...");
    let bare = drain_bare(setup, highs)?;
    ensure!(
        bare.records == opts.records as u64,
        "the bare consumer read {} records, not {}",
        bare.records,
        opts.records
    );
    eprintln!("(b) spcvm run ...");
    let watcher = consumer(&setup.bootstrap, &setup.group, false)?;
    let (job, timings, metrics) = job_throughput(setup, opts, highs, &watcher)?;
    let job_records = opts.records as f64 - timings.first_seen;
    let figures = Round {
        bare_rate: (bare.records - 1) as f64 / bare.secs,
        committed_rate: timings.rate_committed,
        job_cpu_per_record: timings.cpu_secs.map(|cpu| cpu / job_records),
        steady: bare.steady_rate.zip(timings.steady_rate),
    };
    Ok(RoundRun {
        figures,
        bare,
        job,
        timings,
        metrics,
        watcher,
    })
}

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
    create_topics(opts, setup)?;

    // Throughput phase: produce N records as fast as possible.
    let mut data = Gen::new(opts.tools, 7);
    let records = encode(&mut data, 0..opts.records);
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
        create_topics(opts, &extra)?;
        let run = throughput_round(opts, &extra, &highs);
        let stopped = run.map(|mut run| {
            run.job
                .terminate(Duration::from_secs(30))
                .map(|_| run.figures)
        });
        // The round's own topics go whatever happened (the input stays for the next).
        if !opts.keep {
            extra.delete_topics(false);
        }
        rounds.push(stopped??);
    }
    let RoundRun {
        figures,
        bare,
        mut job,
        timings,
        metrics: tp_metrics,
        watcher,
    } = throughput_round(opts, setup, &highs)?;
    let bare_rate = figures.bare_rate;
    let ratio = figures.ratio();
    let steady = (figures.steady, figures.steady_ratio());
    rounds.push(figures);

    eprintln!(
        "latency phase: {} records/s for {} s ...",
        thousands(opts.rate as f64),
        opts.latency_secs
    );
    let lat = latency_phase(setup, opts, &mut job, &mut data, &watcher, &highs)?;
    let clean = job.terminate(Duration::from_secs(30))?;
    let log = std::fs::read_to_string(&job.log).unwrap_or_default();
    let warnings = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();

    // Report.
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
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
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
    let (n_ckpt, ckpt_secs) = checkpoints("", &tp_metrics);
    // Every checkpoint writes one changelog record per (tool, recipe) changed since the last:
    // about one per input record when tools are many and each reports rarely.
    let state_records = metric_sum(&tp_metrics, "spcvm_changelog_records_total", "");
    println!(
        "job during the throughput phase: {} checkpoints taking {:.2} s in all ({:.0} % of the \
         {:.2} s measured; mean {:.1} ms), {} transactions committed, {} alerts, {} changelog \
         records ({:.3} per input record)",
        n_ckpt,
        ckpt_secs,
        100.0 * ckpt_secs / measured,
        measured,
        1e3 * ckpt_secs / n_ckpt.max(1.0),
        metric_sum(&tp_metrics, "spcvm_transactions_total", "committed"),
        thousands(metric_sum(&tp_metrics, "spcvm_alerts_total", "")),
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
    Ok(())
}
