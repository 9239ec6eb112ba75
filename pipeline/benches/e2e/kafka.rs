//! The bench's Kafka clients: a producer that counts its acks and keeps the end offsets
//! they give, consumers with the job's fetch settings, and the settings every client shares
//! (`--fetch-wait-ms`, `--client-property`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use spcvm_schemas::encode_telemetry_json;
use spcvm_testkit::{TelemetryGen, send_queued};

/// `--fetch-wait-ms`, for every consumer the bench makes.
pub static FETCH_WAIT_MS: OnceLock<Option<u32>> = OnceLock::new();
/// `--client-property`, for every client the bench makes and the job's.
pub static CLIENT_PROPERTIES: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// One encoded record: key (tool id), event time, JSON payload.
pub struct Encoded {
    /// The tool id.
    pub key: String,
    /// The record's event time.
    pub event_time: i64,
    /// The record as JSON.
    pub payload: Vec<u8>,
}

/// The next `n` records of `data`, encoded.
pub fn encode(data: &mut TelemetryGen, n: usize) -> Vec<Encoded> {
    data.take(n)
        .map(|r| Encoded {
            payload: encode_telemetry_json(&r),
            key: r.tool_id,
            event_time: r.event_time,
        })
        .collect()
}

/// Producer context that counts deliveries and failures and keeps, per partition, the
/// offset after the last acknowledged record: the true end of what it wrote. (tansu's
/// ListOffsets answers the base offset of the last batch + 1 as the high watermark, so
/// `fetch_watermarks` falls short of the end after a multi-record batch.) It also keeps
/// every record's ack latency (send to delivery report), in the order of the reports.
#[derive(Clone)]
pub struct Counting {
    base: Instant,
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_error: Arc<Mutex<Option<String>>>,
    /// Per partition, the offset after the last acknowledged record.
    pub ends: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// Every record's ack latency, in the order of the delivery reports.
    pub ack_latency: Arc<Mutex<Vec<Duration>>>,
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

pub type BenchProducer = ThreadedProducer<Counting>;

pub fn producer(bootstrap: &str, linger_ms: u32) -> Result<BenchProducer> {
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
pub fn with_client_properties(config: &mut ClientConfig) -> &mut ClientConfig {
    for (k, v) in CLIENT_PROPERTIES.get().into_iter().flatten() {
        config.set(k, v);
    }
    config
}

/// Sends one record, waiting while the local queue is full.
pub fn send(p: &BenchProducer, topic: &str, r: &Encoded) -> Result<()> {
    let record = BaseRecord::with_opaque_to(topic, p.context().stamp())
        .key(&r.key)
        .payload(&r.payload);
    send_queued(p, record, Duration::from_millis(1)).map_err(|e| anyhow!("produce to {topic}: {e}"))
}

/// The end offsets `p` wrote, for partitions `0..partitions`, each at least `floor`'s.
pub fn written_ends(p: &BenchProducer, partitions: i32, floor: &[(i32, i64)]) -> Vec<(i32, i64)> {
    let ends = p.context().ends.lock().unwrap_or_else(|p| p.into_inner());
    (0..partitions)
        .map(|q| {
            let before = floor.iter().find(|(f, _)| *f == q).map_or(0, |(_, o)| *o);
            (q, ends.get(&q).copied().unwrap_or(0).max(before))
        })
        .collect()
}

pub fn flush(p: &BenchProducer, expected: u64) -> Result<()> {
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
pub fn consumer(bootstrap: &str, group: &str, eof: bool) -> Result<BaseConsumer> {
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

pub fn high_watermarks(c: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<(i32, i64)>> {
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
pub fn committed_reached(watcher: &BaseConsumer, topic: &str, highs: &[(i32, i64)]) -> bool {
    let partitions: Vec<i32> = highs.iter().map(|(p, _)| *p).collect();
    spcvm_testkit::committed_reached(watcher, topic, &partitions, |p| {
        highs.iter().find(|(q, _)| *q == p).map(|(_, high)| *high)
    })
}
