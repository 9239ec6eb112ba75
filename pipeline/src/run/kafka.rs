//! The Kafka runtime: `spcvm run` with `source = "kafka"`.
//!
//! ```text
//! librdkafka fetch ──> each assigned partition's own queue ([`PartitionQueue`], split off
//!                      the consumer queue)
//!                          │ take a batch (no copy)
//!                          v
//! poll thread              partition tasks (tokio, one each)
//! (owns the BaseConsumer,    decode ─> PartitionProcessor
//!  polls its queue for       │ alerts, dead letters ─> KafkaSink (once the gate is open)
//!  rebalances, coordinates)  │
//!     │ every checkpoint_interval_ms / max_uncheckpointed:
//!     ├──Checkpoint barrier of epoch E ───> changelog records ─> KafkaSink
//!     │                                     │ then: outputs held until gate >= E
//!     └─ commit thread <──── next offset (after acks in at-least-once) ─┘
//!          exactly_once: send_offsets_to_transaction + commit, begin transaction E, gate = E
//!          at_least_once: the poll thread commits the acknowledged offsets
//! rebalance (inside poll):
//!   revoke ─> finish the commit in flight, checkpoint (abort when the commit fails),
//!             stop the partition tasks (their queues go with them)
//!   assign ─> split each partition's queue, restore it from its changelog partition,
//!             start its task
//! ```
//!
//! A task takes its messages from its partition's queue in batches and answers a barrier
//! between two batches, with the offset after the last message it processed, so a barrier's
//! offset covers exactly the records whose outputs and state changes are in the
//! transaction. The commit runs on its own thread while the tasks go on decoding and
//! charting; a task that has passed barrier E sends nothing until transaction E has begun
//! (the gate), so no output of a later record lands in the transaction being committed:
//! it holds those outputs back, in order, and goes on processing (up to `MAX_HELD`
//! outputs and `MAX_HELD_BYTES`), and sends them once the gate opens, before anything else
//! of that epoch. A
//! commit that fails for any other reason than a retriable one aborts the transaction and
//! stops the process with an error: the restart restores state and offsets from the last
//! commit, which is the only state known to be consistent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use spcvm_schemas::TelemetryRef;
use spcvm_sinks::{AlertEncoding, ClientLog, DeadLetter, KafkaSink, KafkaSinkError, SinkTopics};
use tokio::sync::mpsc;

use super::config::{AlertFormat, DeliveryConfig, DeliveryMode, PipelineConfig};
use super::processor::PartitionProcessor;
use super::queue::{Messages, PartitionQueue, QueuedMessage};
use super::{Job, RunError, record_stats};

/// How long the poll thread waits for an event (a rebalance) before it looks at the
/// checkpoint timer, the count of messages not yet checkpointed and the flags.
const POLL_TIMEOUT: Duration = Duration::from_millis(5);
/// Most outputs a partition task holds back while the transaction they belong to has not
/// begun (exactly-once); beyond this it waits for the transaction instead of processing on.
const MAX_HELD: usize = 16_384;
/// Most bytes of held outputs (dead letters carry their message, up to the producer's
/// limit) before a task waits for the transaction instead of processing on. A batch is
/// held whole, so this can be exceeded by at most one batch's own outputs.
const MAX_HELD_BYTES: usize = 64 << 20;
/// Timeout of transaction calls.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a restore may take before the job gives up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(300);
/// Retries of a retriable commit before giving up.
const COMMIT_RETRIES: u32 = 5;

/// A topic partition.
type Tp = (String, i32);

/// Checkpoint barrier, sent by the poll thread to a partition task: write changelog
/// records for changed state and reply with the next offset to consume (after every
/// earlier output is acknowledged, in at-least-once). The epoch is the transaction that
/// outputs after the barrier belong to: the task holds them back until that transaction
/// has begun (the gate reaches it).
///
/// A last barrier (a revocation or a shutdown) also tells the task to take no more
/// messages: whatever it processed after the barrier would belong to no commit.
struct Barrier {
    reply: CheckpointSender,
    epoch: u64,
    last: bool,
}

/// A partition task's answer to a checkpoint barrier.
struct CheckpointReply {
    /// Next offset to consume, if the task processed anything since its start.
    next_offset: Option<i64>,
    /// Chart states it holds.
    keys: usize,
}

/// Which output topic a delivery went to (for `spcvm_messages_produced_total`).
#[derive(Clone, Copy)]
enum Output {
    Alert,
    DeadLetter,
    State,
}

/// A running partition task.
struct Worker {
    tx: mpsc::Sender<Barrier>,
    task: tokio::task::JoinHandle<()>,
}

/// Everything the partition tasks share.
struct Shared {
    job: Arc<Job>,
    sink: KafkaSink,
    mode: DeliveryMode,
    /// The first fatal error of a task (a refused send, a failed delivery).
    fatal: Mutex<Option<RunError>>,
    /// The epoch of the open transaction (exactly-once): a task that has passed the barrier
    /// of epoch E holds its outputs back until the gate reaches E, so a commit runs while
    /// the tasks go on processing, and no output lands in the wrong transaction.
    gate: tokio::sync::watch::Sender<u64>,
    /// Messages the tasks have taken since the last barrier (`delivery.max_uncheckpointed`).
    uncheckpointed: AtomicU64,
    /// Most messages a task takes from its queue at a time (`delivery.queue_capacity`).
    batch: usize,
}

impl Shared {
    fn fail(&self, error: RunError) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if fatal.is_none() {
            tracing::error!(%error, "partition task failed");
            *fatal = Some(error);
        }
    }

    fn take_fatal(&self) -> Option<RunError> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The partition tasks and the transaction, driven from the poll thread.
struct Coordinator {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    workers: HashMap<Tp, Worker>,
    restore: BaseConsumer<ClientLog>,
    changelog: String,
    /// Barriers sent so far (the epoch of the transaction now filling).
    epoch: u64,
    /// The checkpoint being completed on its own thread, and when it started.
    in_flight: Option<(
        std::thread::JoinHandle<Result<Completed, RunError>>,
        Instant,
    )>,
    last_checkpoint: Instant,
    /// An error raised inside a rebalance callback, reported after `poll` returns.
    error: Option<RunError>,
}

/// The consumer context: routes rebalances to the coordinator, statistics to metrics, and
/// librdkafka's log lines and errors through [`ClientLog`].
struct Ctx {
    coordinator: Arc<Mutex<Coordinator>>,
    job: Arc<Job>,
    log: ClientLog,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.job
                        .metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut c = self.coordinator.lock().unwrap_or_else(|p| p.into_inner());
            tracing::info!(partitions = tpl.count(), "partitions revoked");
            if let Err(e) = c.revoke(consumer) {
                c.error.get_or_insert(e);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut c = self.coordinator.lock().unwrap_or_else(|p| p.into_inner());
            let tps: Vec<Tp> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(partitions = tps.len(), "partitions assigned");
            if let Err(e) = c.assign(consumer.client().native_ptr(), &tps) {
                c.error.get_or_insert(e);
            }
        }
    }
}

fn client_config(properties: impl IntoIterator<Item = (String, String)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Per-partition prefetch limits: at least about one fetch's worth, at most librdkafka's
/// defaults (`queued.min.messages`, `queued.max.messages.kbytes`), which a single queue
/// for all partitions would have as its total.
const PREFETCH_MESSAGES_RANGE: (u64, u64) = (1_000, 100_000);
/// See [`PREFETCH_MESSAGES_RANGE`].
const PREFETCH_KBYTES_RANGE: (u64, u64) = (1_024, 65_536);
/// How long librdkafka waits before it fetches again for a partition whose queue was at
/// its limit (librdkafka's default, 1 s, can starve a task that drains its queue quickly).
const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// librdkafka's prefetch limits for a job reading `partitions` input partitions in all.
///
/// Each partition's queue is split off the consumer queue (`run::queue`), and librdkafka
/// checks `queued.min.messages` and `queued.max.messages.kbytes` against the queue a
/// partition's messages land in, so with split queues the limits hold per partition and
/// what an instance prefetches grows with its partitions (855 MiB at 12 partitions behind
/// a backlog, librdkafka's defaults). The instance's budget divided by the input's
/// partition count bounds the total even when one instance holds them all; the per-
/// partition values stay within librdkafka's defaults, so few partitions prefetch no more
/// than before. (Lower message limits cost throughput in the e2e bench: 33,333 a partition
/// at 12 partitions ran a quarter slower than 100,000.)
fn prefetch_properties(delivery: &DeliveryConfig, partitions: usize) -> Vec<(String, String)> {
    let n = (partitions as u64).max(1);
    let messages = (delivery.prefetch_messages / n)
        .clamp(PREFETCH_MESSAGES_RANGE.0, PREFETCH_MESSAGES_RANGE.1);
    let kbytes = (delivery.prefetch_mb.saturating_mul(1024) / n)
        .clamp(PREFETCH_KBYTES_RANGE.0, PREFETCH_KBYTES_RANGE.1);
    vec![
        ("queued.min.messages".into(), messages.to_string()),
        ("queued.max.messages.kbytes".into(), kbytes.to_string()),
        (
            "fetch.queue.backoff.ms".into(),
            FETCH_QUEUE_BACKOFF_MS.to_string(),
        ),
    ]
}

/// The value of the last setting of `key` in `props`: the one librdkafka keeps.
fn last_setting<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The consumer's librdkafka properties, for `partitions` input partitions in all.
fn consumer_properties(config: &PipelineConfig, partitions: usize) -> Vec<(String, String)> {
    let k = &config.kafka;
    let mut p: Vec<(String, String)> = vec![
        ("group.id".into(), k.group_id.clone()),
        ("enable.auto.commit".into(), "false".into()),
        ("enable.auto.offset.store".into(), "false".into()),
        ("auto.offset.reset".into(), "earliest".into()),
        ("isolation.level".into(), "read_committed".into()),
        (
            "session.timeout.ms".into(),
            k.session_timeout_ms.to_string(),
        ),
        ("receive.message.max.bytes".into(), "100000000".into()),
        ("statistics.interval.ms".into(), "5000".into()),
        ("partition.assignment.strategy".into(), "range".into()),
    ];
    p.extend(prefetch_properties(&config.delivery, partitions));
    if k.static_membership {
        p.push((
            "group.instance.id".into(),
            format!("spcvm-{}", k.instance()),
        ));
    }
    p.extend(k.common_properties());
    p.extend(k.consumer_properties.clone());
    p
}

/// Runs the Kafka job on the calling thread until `stop` is set or a fatal error occurs.
/// Partition tasks run on `rt`.
///
/// # Errors
///
/// [`RunError`] for client creation, subscription, restore, commit or delivery failures.
pub fn run(job: Arc<Job>, stop: &AtomicBool, rt: tokio::runtime::Handle) -> Result<(), RunError> {
    let config = &job.config;
    let mode = config.delivery.mode;
    let changelog = config.topics.changelog_topic(&config.kafka.group_id);
    let alerts = match (config.topics.alert_format, config.topics.alert_schema_id) {
        (AlertFormat::Json, _) => AlertEncoding::Json,
        (AlertFormat::Avro, Some(id)) => AlertEncoding::AvroConfluent(id),
        (AlertFormat::Avro, None) => AlertEncoding::Avro,
    };
    let mut producer_props = config.kafka.common_properties();
    producer_props.extend(config.kafka.producer_properties.clone());
    let transactional_id = config.kafka.transactional_id();
    let sink = KafkaSink::new(
        &producer_props,
        SinkTopics {
            alerts: config.topics.alerts.clone(),
            dlq: config.topics.dlq.clone(),
            changelog: changelog.clone(),
        },
        alerts,
        (mode == DeliveryMode::ExactlyOnce).then_some(transactional_id.as_str()),
        Duration::from_millis(u64::from(config.delivery.transaction_timeout_ms)),
    )?;
    if mode == DeliveryMode::ExactlyOnce {
        tracing::info!(transactional_id, "initialising transactions");
        sink.init_transactions(TXN_TIMEOUT).map_err(|e| {
            sink.flush_log();
            if e.is_timeout() {
                RunError::Kafka(init_timed_out(
                    &config.kafka.bootstrap_servers,
                    &transactional_id,
                ))
            } else {
                e.into()
            }
        })?;
        sink.begin_transaction()?;
    }
    let mut restore_props = config.kafka.common_properties();
    restore_props.extend([
        // librdkafka refuses `assign` without a group id; this consumer only assigns,
        // never subscribes or commits, so it never joins that group.
        (
            "group.id".into(),
            format!("{}.restore", config.kafka.group_id),
        ),
        ("isolation.level".into(), "read_committed".into()),
        ("auto.offset.reset".into(), "earliest".into()),
        ("enable.auto.commit".into(), "false".into()),
        ("receive.message.max.bytes".into(), "100000000".into()),
    ]);
    let restore: BaseConsumer<ClientLog> = client_config(restore_props)
        .create_with_context(ClientLog::default())
        .map_err(|e| RunError::Kafka(format!("cannot create the restore consumer: {e}")))?;
    let topics: Vec<&str> = config.topics.input.iter().map(String::as_str).collect();
    let partitions = input_partitions(&restore, &topics, &changelog)?;
    let shared = Arc::new(Shared {
        job: job.clone(),
        sink,
        mode,
        fatal: Mutex::new(None),
        gate: tokio::sync::watch::Sender::new(0),
        uncheckpointed: AtomicU64::new(0),
        batch: config.delivery.queue_capacity,
    });
    let coordinator = Arc::new(Mutex::new(Coordinator {
        shared: shared.clone(),
        rt,
        workers: HashMap::new(),
        restore,
        changelog,
        epoch: 0,
        in_flight: None,
        last_checkpoint: Instant::now(),
        error: None,
    }));
    let consumer_props = consumer_properties(config, partitions);
    // The values librdkafka takes (the user's override ours).
    let effective = |key: &str| last_setting(&consumer_props, key).unwrap_or_default();
    tracing::info!(
        input_partitions = partitions,
        queued_min_messages = effective("queued.min.messages"),
        queued_max_messages_kbytes = effective("queued.max.messages.kbytes"),
        "prefetch limits per partition"
    );
    let consumer: BaseConsumer<Ctx> = client_config(consumer_props)
        .create_with_context(Ctx {
            coordinator: coordinator.clone(),
            job: job.clone(),
            log: ClientLog::default(),
        })
        .map_err(|e| RunError::Kafka(format!("cannot create the consumer: {e}")))?;
    // The partition tasks read queues split off this consumer: they stop before it is
    // dropped, however this function is left (declared after it, so dropped before it).
    let _tasks = StopTasksOnDrop(&coordinator);
    consumer
        .subscribe(&topics)
        .map_err(|e| RunError::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?;
    tracing::info!(?topics, group = %config.kafka.group_id, ?mode, "consuming");
    let interval = Duration::from_millis(config.delivery.checkpoint_interval_ms);
    let max_uncheckpointed = config.delivery.max_uncheckpointed;
    let result = (|| -> Result<(), RunError> {
        while !stop.load(Ordering::Relaxed) {
            // Poll without holding the coordinator: a rebalance callback inside `poll` takes
            // it. Messages arrive on their partitions' own queues, read by the tasks; this
            // queue carries rebalances, statistics and errors.
            match consumer.poll(POLL_TIMEOUT) {
                Some(Ok(message)) => {
                    return Err(RunError::Kafka(format!(
                        "message from {}[{}] at offset {} arrived on the consumer queue instead \
                         of its partition's queue (fetched before the queue was split off at \
                         assignment); stopping so that a restart resumes from the last commit",
                        message.topic(),
                        message.partition(),
                        message.offset()
                    )));
                }
                // librdkafka gave up on the consumer (e.g. fenced by another member with
                // the same `group.instance.id`): it will not consume again.
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(RunError::Kafka(format!(
                        "the consumer failed for good: {e}"
                    )));
                }
                // librdkafka retries the rest itself (a broker down, a connection lost);
                // limited like its own lines: a broker outage gives several a second.
                Some(Err(e)) => consumer.context().log.error(e, "consumer error"),
                None => {}
            }
            let mut c = coordinator.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = c.error.take().or_else(|| shared.take_fatal()) {
                return Err(e);
            }
            if c.in_flight.as_ref().is_some_and(|(h, _)| h.is_finished()) {
                c.finish_in_flight(&consumer)?;
            }
            let pending = shared.uncheckpointed.load(Ordering::Relaxed);
            if c.in_flight.is_none()
                && (pending >= max_uncheckpointed
                    || (pending > 0 && c.last_checkpoint.elapsed() >= interval))
            {
                c.start_checkpoint(&consumer)?;
            }
        }
        Ok(())
    })();
    let mut c = coordinator.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(()) => {
            tracing::info!("stopping: final checkpoint");
            c.finish_in_flight(&consumer)?;
            c.checkpoint(&consumer)?;
            c.stop_workers();
            if mode == DeliveryMode::AtLeastOnce {
                shared.sink.flush(TXN_TIMEOUT)?;
            }
            drop(c);
            consumer.unsubscribe();
            job.health.set_ready(false);
            Ok(())
        }
        Err(e) => {
            if let Some((handle, _)) = c.in_flight.take() {
                let _ = handle.join();
            }
            if mode == DeliveryMode::ExactlyOnce {
                let _ = shared.sink.abort_transaction(TXN_TIMEOUT);
            }
            c.stop_workers();
            shared.sink.flush_log();
            consumer.context().log.flush();
            let fatal = [
                (
                    "producer",
                    rdkafka::producer::Producer::client(shared.sink.producer()).fatal_error(),
                ),
                ("consumer", consumer.client().fatal_error()),
            ];
            Err(
                match fatal_cause(&fatal, &transactional_id, &config.kafka) {
                    Some(cause) => RunError::Kafka(format!("{cause} (then: {e})")),
                    None => e,
                },
            )
        }
    }
}

/// What to report when a Kafka client failed for good (librdkafka's fatal error of the
/// `(client, error)` pairs), instead of what failed after it: once fenced, a producer purges
/// its queued deliveries and the tasks report "Purged in queue", which says nothing of why.
fn fatal_cause(
    fatal: &[(&str, Option<(RDKafkaErrorCode, String)>)],
    transactional_id: &str,
    kafka: &super::config::KafkaConfig,
) -> Option<String> {
    let (client, (code, reason)) = fatal
        .iter()
        .find_map(|(client, error)| Some((client, error.clone()?)))?;
    let instance = kafka.instance();
    Some(match code {
        RDKafkaErrorCode::Fenced
        | RDKafkaErrorCode::ProducerFenced
        | RDKafkaErrorCode::InvalidProducerEpoch => format!(
            "another process took over the transactional id `{transactional_id}`: an instance \
             of this job with the same group and instance id `{instance}` started, and the \
             newer one wins (give each instance its own `kafka.instance_id`; it defaults to \
             the host name); librdkafka: {reason}"
        ),
        RDKafkaErrorCode::FencedInstanceId => format!(
            "another member of group `{}` joined with this instance's `group.instance.id` \
             (`spcvm-{instance}`, from `kafka.instance_id` with `static_membership`), and the \
             newer one wins (give each instance its own `kafka.instance_id`); librdkafka: \
             {reason}",
            kafka.group_id
        ),
        code => format!("the Kafka {client} failed for good ({code:?}): {reason}"),
    })
}

impl Coordinator {
    /// Sends the checkpoint barrier to every task (answered between two of its batches) and
    /// returns where their answers will arrive. After a `last` barrier the tasks take no
    /// more messages.
    fn barrier(
        &mut self,
        last: bool,
    ) -> Vec<(Tp, std_mpsc::Receiver<Result<CheckpointReply, RunError>>)> {
        self.epoch += 1;
        let mut replies = Vec::with_capacity(self.workers.len());
        for (tp, worker) in &self.workers {
            let (reply, rx) = std_mpsc::sync_channel(1);
            let barrier = Barrier {
                reply,
                epoch: self.epoch,
                last,
            };
            if worker.tx.blocking_send(barrier).is_ok() {
                replies.push((tp.clone(), rx));
            }
        }
        self.shared.uncheckpointed.store(0, Ordering::Relaxed);
        self.last_checkpoint = Instant::now();
        replies
    }

    /// Starts a checkpoint whose commit runs on its own thread while the tasks go on.
    fn start_checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RunError> {
        let group = self.group_metadata(consumer)?;
        let replies = self.barrier(false);
        let (shared, epoch) = (self.shared.clone(), self.epoch);
        let handle = std::thread::Builder::new()
            .name("spcvm-commit".into())
            .spawn(move || complete(&shared, replies, epoch, group.as_ref()))
            .map_err(|e| RunError::Kafka(format!("cannot start the commit thread: {e}")))?;
        self.in_flight = Some((handle, Instant::now()));
        Ok(())
    }

    /// Waits for the checkpoint in flight, if any, and finishes it (at-least-once: commits
    /// the offsets it collected).
    fn finish_in_flight<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RunError> {
        let Some((handle, started)) = self.in_flight.take() else {
            return Ok(());
        };
        let completed = handle
            .join()
            .map_err(|_| RunError::Kafka("the commit thread panicked".into()))??;
        self.finished(consumer, completed, started, CommitMode::Async)
    }

    /// A whole checkpoint on this thread: barrier, then commit (revocation, shutdown); the
    /// tasks take no more messages after it.
    fn checkpoint<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RunError> {
        self.finish_in_flight(consumer)?;
        let started = Instant::now();
        let group = self.group_metadata(consumer)?;
        let replies = self.barrier(true);
        let completed = complete(&self.shared, replies, self.epoch, group.as_ref())?;
        self.finished(consumer, completed, started, CommitMode::Sync)
    }

    fn group_metadata<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
    ) -> Result<Option<rdkafka::consumer::ConsumerGroupMetadata>, RunError> {
        match self.shared.mode {
            DeliveryMode::ExactlyOnce => consumer
                .group_metadata()
                .map(Some)
                .ok_or_else(|| RunError::Kafka("the consumer has no group metadata".into())),
            DeliveryMode::AtLeastOnce => Ok(None),
        }
    }

    fn finished<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        completed: Completed,
        started: Instant,
        mode: CommitMode,
    ) -> Result<(), RunError> {
        if self.shared.mode == DeliveryMode::AtLeastOnce && completed.offsets.count() > 0 {
            consumer
                .commit(&completed.offsets, mode)
                .map_err(RunError::OffsetCommit)?;
        }
        let metrics = &self.shared.job.metrics;
        metrics
            .checkpoint_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.keys.set(completed.keys as i64);
        Ok(())
    }

    /// Revocation (eager protocol: every partition goes): checkpoint what was processed,
    /// or abort it if the commit fails (the next owner reprocesses from the last commit),
    /// then stop every task.
    fn revoke<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        if self.workers.is_empty() {
            return Ok(());
        }
        self.shared.job.health.set_ready(false);
        let outcome = self.checkpoint(consumer);
        self.stop_workers();
        match outcome {
            Ok(()) => Ok(()),
            Err(RunError::Sink(e))
                if !e.is_fatal() && self.shared.mode == DeliveryMode::ExactlyOnce =>
            {
                // A commit refused during the rebalance (some brokers fence the old
                // generation first): the work since the last commit is aborted and will be
                // redone by the partitions' next owner, from the restored state.
                tracing::warn!(error = %e, "commit during revoke failed; transaction aborted");
                self.shared.sink.begin_transaction()?;
                self.shared.gate.send_replace(self.epoch);
                Ok(())
            }
            // The same in at_least_once (a member whose session timed out while the broker
            // was away finds its generation gone): the outputs are delivered, and the next
            // owner redoes the work since the last commit, repeating its alerts.
            Err(RunError::OffsetCommit(e))
                if self.shared.mode == DeliveryMode::AtLeastOnce
                    && consumer.client().fatal_error().is_none() =>
            {
                tracing::warn!(error = %e, "offset commit during revoke failed; the work since the last commit will be redone");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stops every task and waits for it: at its next turn of the loop, when it sees its
    /// barrier channel closed (`abort`: at its next await, wherever that is).
    fn stop_workers_with(&mut self, abort: bool) {
        for ((topic, partition), worker) in self.workers.drain() {
            drop(worker.tx);
            if abort {
                worker.task.abort();
            }
            let _ = self.rt.block_on(worker.task);
            self.shared.job.metrics.forget_partition(&topic, partition);
        }
        self.shared.job.metrics.partitions_assigned.set(0);
        self.shared.job.metrics.keys.set(0);
    }

    fn stop_workers(&mut self) {
        self.stop_workers_with(false);
    }

    /// Assignment of `tps` on the consumer `rk`: split each partition's queue off the
    /// consumer queue (first, before the fetcher delivers anything), restore every
    /// partition from the changelog, then start its task.
    fn assign(
        &mut self,
        rk: *mut rdkafka::bindings::rd_kafka_t,
        tps: &[Tp],
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let job = self.shared.job.clone();
        let mut queues = Vec::with_capacity(tps.len());
        for (topic, partition) in tps {
            // SAFETY: `rk` is the live consumer whose rebalance is being served; the queues
            // go with the tasks, which `run` stops before it drops the consumer.
            let queue =
                unsafe { PartitionQueue::split(rk, topic, *partition) }.ok_or_else(|| {
                    RunError::Kafka(format!(
                        "cannot split the queue of {topic}[{partition}] off the consumer queue"
                    ))
                })?;
            queues.push(queue);
        }
        let mut restored: Vec<(Tp, PartitionProcessor)> = tps
            .iter()
            .map(|tp| {
                (
                    tp.clone(),
                    PartitionProcessor::new(
                        job.monitor.clone(),
                        &tp.0,
                        Some(job.config.delivery.watermark_lateness_ms),
                    ),
                )
            })
            .collect();
        self.restore_partitions(&mut restored)?;
        job.metrics
            .restore_duration
            .observe(started.elapsed().as_secs_f64());
        let mut keys = 0;
        for ((tp, processor), queue) in restored.into_iter().zip(queues) {
            keys += processor.keys();
            let skip_below = match self.shared.mode {
                DeliveryMode::AtLeastOnce => self.resume_offset(&tp, &processor)?,
                DeliveryMode::ExactlyOnce => None,
            };
            // The poll thread sends one barrier at a time and waits for its answers.
            let (tx, rx) = mpsc::channel(1);
            let task = self.rt.spawn(partition_task(
                self.shared.clone(),
                tp.clone(),
                processor,
                queue,
                rx,
                skip_below,
            ));
            self.workers.insert(tp, Worker { tx, task });
        }
        job.metrics.keys.set(keys as i64);
        job.metrics
            .partitions_assigned
            .set(self.workers.len() as i64);
        job.health.set_ready(true);
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// at_least_once: the offset the restored state of `tp` reaches, below which records
    /// are skipped (the state holds them, their outputs were delivered), unless the input
    /// partition ends before it: a topic deleted and made again under the same name starts
    /// its offsets afresh, and its records must not be skipped.
    fn resume_offset(
        &self,
        tp: &Tp,
        processor: &PartitionProcessor,
    ) -> Result<Option<i64>, RunError> {
        let Some(resume) = processor.resume_offset() else {
            return Ok(None);
        };
        let (_, high) = self
            .restore
            .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(30))
            .map_err(|e| {
                RunError::Kafka(format!("cannot read the end of {}[{}]: {e}", tp.0, tp.1))
            })?;
        if resume > high {
            tracing::warn!(
                topic = %tp.0,
                partition = tp.1,
                resume,
                high,
                "the restored state reaches past the end of the partition (was the topic made \
                 again?): no record is skipped"
            );
            return Ok(None);
        }
        Ok(Some(resume))
    }

    /// Reads the changelog partitions of `partitions` from the beginning to their end
    /// (read_committed: only committed state) into the processors.
    fn restore_partitions(
        &mut self,
        partitions: &mut [(Tp, PartitionProcessor)],
    ) -> Result<(), RunError> {
        let mut by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
        for (i, ((_, p), _)) in partitions.iter().enumerate() {
            by_partition.entry(*p).or_default().push(i);
        }
        // Read every changelog partition up to the high watermark seen now, not merely to
        // the first end-of-partition: right after a transaction commits, its markers may
        // still be on their way, and a read_committed reader stops short of them until they
        // land. Waiting for the position to pass the high watermark waits for exactly
        // that (and for any other open transaction to end).
        let mut tpl = TopicPartitionList::new();
        let mut targets: HashMap<i32, i64> = HashMap::new();
        for &p in by_partition.keys() {
            let (low, high) = self
                .restore
                .fetch_watermarks(&self.changelog, p, Duration::from_secs(30))
                .map_err(|e| {
                    RunError::Kafka(format!(
                        "cannot read changelog `{}` partition {p}: {e} (create it with `spcvm topics create`)",
                        self.changelog
                    ))
                })?;
            if high > low {
                tpl.add_partition_offset(&self.changelog, p, Offset::Beginning)
                    .map_err(|e| RunError::Kafka(e.to_string()))?;
                targets.insert(p, high);
            }
        }
        if targets.is_empty() {
            return Ok(());
        }
        self.restore
            .assign(&tpl)
            .map_err(|e| RunError::Kafka(format!("cannot assign the changelog: {e}")))?;
        let mut records = 0u64;
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let mut since_check = 0u32;
        // Done only after a poll came back empty, too: some brokers (tansu) under-report the
        // high watermark, and what follows it must still be read.
        let mut idle;
        // The last error librdkafka reported while reading, for the timeout's message.
        let mut last_error = None;
        loop {
            match self.restore.poll(Duration::from_millis(50)) {
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    return Err(RunError::Kafka(format!(
                        "reading changelog `{}`: {e}",
                        self.changelog
                    )));
                }
                // Errors librdkafka recovers from (a broker restarting, a connection lost,
                // or ones it queued while this consumer sat idle between restores): logged,
                // and the read goes on until the deadline.
                Some(Err(e)) => {
                    last_error = Some(e.to_string());
                    self.restore.context().error(e, "changelog consumer error");
                    idle = true;
                }
                Some(Ok(m)) => {
                    records += 1;
                    since_check += 1;
                    idle = false;
                    if let (Some(key), Some(value)) = (m.key(), m.payload()) {
                        for &i in by_partition.get(&m.partition()).into_iter().flatten() {
                            partitions[i].1.restore(key, value).map_err(|e| {
                                RunError::Kafka(format!(
                                    "changelog `{}` partition {} offset {}: {e}",
                                    self.changelog,
                                    m.partition(),
                                    m.offset()
                                ))
                            })?;
                        }
                    }
                    if since_check < 1024 {
                        continue;
                    }
                }
                None => idle = true,
            }
            since_check = 0;
            if idle && self.restore_done(&targets)? {
                break;
            }
            if Instant::now() > deadline {
                let why = match &last_error {
                    Some(e) => format!("the last error reading it: {e}"),
                    None => "an open transaction of another producer holds it back until \
                             transaction.timeout.ms"
                        .to_string(),
                };
                return Err(RunError::Kafka(format!(
                    "restoring from changelog `{}` took longer than {} s ({why})",
                    self.changelog,
                    RESTORE_TIMEOUT.as_secs()
                )));
            }
        }
        self.restore
            .unassign()
            .map_err(|e| RunError::Kafka(e.to_string()))?;
        tracing::info!(records, changelog = %self.changelog, "state restored");
        Ok(())
    }
}

/// Aborts the partition tasks left running when [`run`] is left early (an error on the way
/// out, a panic), before the consumer their queues were split from is destroyed.
struct StopTasksOnDrop<'a>(&'a Mutex<Coordinator>);

impl Drop for StopTasksOnDrop<'_> {
    fn drop(&mut self) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.stop_workers_with(true);
    }
}

/// The partition count of `topic`; an error naming it when it does not exist.
fn topic_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<usize, RunError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|e| RunError::Kafka(format!("metadata of `{topic}`: {e}")))?;
    let partitions = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(RunError::Kafka(format!(
            "topic `{topic}` does not exist (create the topics with `spcvm topics create`)"
        )));
    }
    Ok(partitions)
}

/// The partition count of all `inputs` together, once the changelog is checked: state of
/// input partition p lives in changelog partition p, so the changelog needs at least as
/// many partitions as every input topic (`spcvm topics create` makes them equal).
fn input_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    inputs: &[&str],
    changelog: &str,
) -> Result<usize, RunError> {
    let have = topic_partitions(consumer, changelog)?;
    let mut total = 0;
    for input in inputs {
        let need = topic_partitions(consumer, input)?;
        total += need;
        if have < need {
            return Err(RunError::Kafka(format!(
                "changelog `{changelog}` has {have} partitions but input `{input}` has {need}: \
                 the state of input partition p is kept in changelog partition p, so the \
                 changelog needs {need} (`spcvm topics create` grows it)"
            )));
        }
    }
    Ok(total)
}

impl Coordinator {
    /// Whether the restore consumer's position has reached `targets` on every partition.
    fn restore_done(&self, targets: &HashMap<i32, i64>) -> Result<bool, RunError> {
        let positions = self
            .restore
            .position()
            .map_err(|e| RunError::Kafka(format!("changelog position: {e}")))?;
        Ok(targets.iter().all(|(&p, &high)| {
            matches!(
                positions.find_partition(&self.changelog, p).map(|e| e.offset()),
                Some(Offset::Offset(o)) if o >= high
            )
        }))
    }
}

/// What a completed checkpoint collected.
struct Completed {
    /// Next offsets of the partitions that processed anything.
    offsets: TopicPartitionList,
    /// Chart states held by all tasks.
    keys: usize,
}

/// Collects the tasks' answers to the barrier of `epoch`; in exactly-once, commits the
/// transaction with their offsets, begins the next one and opens the gate to it. A commit
/// that cannot be retried aborts the transaction (unless the producer is fenced) and
/// returns the error.
fn complete(
    shared: &Shared,
    replies: Vec<(Tp, std_mpsc::Receiver<Result<CheckpointReply, RunError>>)>,
    epoch: u64,
    group: Option<&rdkafka::consumer::ConsumerGroupMetadata>,
) -> Result<Completed, RunError> {
    let started = Instant::now();
    let mut offsets = TopicPartitionList::new();
    let mut keys = 0;
    for ((topic, partition), rx) in replies {
        let reply = rx.recv().map_err(|_| {
            shared.take_fatal().unwrap_or_else(|| {
                RunError::Kafka(format!(
                    "task of {topic}[{partition}] ended during a checkpoint"
                ))
            })
        })??;
        keys += reply.keys;
        if let Some(next) = reply.next_offset {
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next))
                .map_err(|e| RunError::Kafka(e.to_string()))?;
        }
    }
    if let Some(e) = shared.take_fatal() {
        return Err(e);
    }
    let answered = started.elapsed();
    if let Some(group) = group {
        let metrics = &shared.job.metrics;
        let mut attempt = 0;
        loop {
            match shared.sink.commit_transaction(&offsets, group, TXN_TIMEOUT) {
                Ok(()) => break,
                Err(e) if e.is_retriable() && attempt < COMMIT_RETRIES => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "retrying commit");
                }
                Err(e) => {
                    metrics.transactions.with_label_values(&["aborted"]).inc();
                    if !e.is_fatal() {
                        let _ = shared.sink.abort_transaction(TXN_TIMEOUT);
                    }
                    return Err(e.into());
                }
            }
        }
        metrics.transactions.with_label_values(&["committed"]).inc();
        let committed = started.elapsed();
        shared.sink.begin_transaction()?;
        shared.gate.send_replace(epoch);
        tracing::debug!(
            epoch,
            answered_ms = answered.as_secs_f64() * 1e3,
            committed_ms = committed.as_secs_f64() * 1e3,
            begun_ms = started.elapsed().as_secs_f64() * 1e3,
            "transaction committed"
        );
    } else {
        tracing::debug!(
            epoch,
            answered_ms = answered.as_secs_f64() * 1e3,
            "checkpoint answered"
        );
    }
    Ok(Completed { offsets, keys })
}

/// One partition's task: takes its messages from the partition's queue in batches,
/// decodes them in order, runs them through its processor, sends the outputs, and answers
/// checkpoint barriers between batches.
async fn partition_task(
    shared: Arc<Shared>,
    tp: Tp,
    mut processor: PartitionProcessor,
    queue: PartitionQueue,
    mut rx: mpsc::Receiver<Barrier>,
    skip_below: Option<i64>,
) {
    let consumed = shared
        .job
        .metrics
        .messages_consumed
        .with_label_values(&[&tp.0]);
    let mut task = PartitionTask {
        gate: shared.gate.subscribe(),
        required_epoch: *shared.gate.borrow(),
        shared: shared.clone(),
        tp,
        next_offset: None,
        skip_below,
        acks: FuturesOrdered::new(),
        alerts: Vec::new(),
        held: VecDeque::new(),
    };
    let mut messages = Messages::default();
    // Whether the queue may hold messages: false once a take came back empty, until
    // librdkafka signals an arrival.
    let mut readable = true;
    // Cleared by a last barrier (revocation, shutdown): what the task processed after it
    // would belong to no commit.
    let mut taking = true;
    loop {
        tokio::select! {
            biased;
            Some(ack) = task.acks.next(), if !task.acks.is_empty() => {
                if let Err(e) = task.acknowledged(ack) {
                    shared.fail(e);
                    return;
                }
            }
            barrier = rx.recv() => {
                let Some(Barrier { reply, epoch, last }) = barrier else {
                    return;
                };
                let result = task.checkpoint(&mut processor, reply).await;
                task.required_epoch = epoch;
                taking &= !last;
                if let Err(e) = result {
                    shared.fail(e);
                    return;
                }
            }
            // The transaction that held outputs wait for may have begun.
            _ = task.gate.changed(), if !task.held.is_empty() => {
                if let Err(e) = task.flush_if_open().await {
                    shared.fail(e);
                    return;
                }
            }
            () = queue.readable(), if taking && !readable => readable = true,
            () = std::future::ready(()), if taking && readable => {
                let taken = queue.take(shared.batch, &mut messages);
                if taken == 0 {
                    readable = false;
                } else {
                    consumed.inc_by(taken as u64);
                    shared.uncheckpointed.fetch_add(taken as u64, Ordering::Relaxed);
                    let result = task.records(&mut processor, &messages, Instant::now()).await;
                    messages.clear();
                    if let Err(e) = result {
                        shared.fail(e);
                        return;
                    }
                    // Taking from the queue never waits: give the other tasks their turn.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// The outputs of one message: their delivery futures, awaited in message order.
type Acks = FuturesOrdered<
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acked, RunError>> + Send>>,
>;

/// A batch of messages whose outputs are all acknowledged.
struct Acked {
    received: Instant,
    /// Messages of the batch that raised alerts.
    alerting: usize,
    /// At-least-once checkpoint: the barrier's answer, sent once this and every earlier
    /// output of the task is acknowledged (the ack queue resolves in order).
    reply: Option<(CheckpointSender, CheckpointReply)>,
}

/// Where a task answers a checkpoint barrier.
type CheckpointSender = std_mpsc::SyncSender<Result<CheckpointReply, RunError>>;

struct PartitionTask {
    /// Sends wait for this to reach `required_epoch` (exactly-once).
    gate: tokio::sync::watch::Receiver<u64>,
    /// The transaction this task's next outputs belong to.
    required_epoch: u64,
    shared: Arc<Shared>,
    tp: Tp,
    /// Next offset to consume once everything before it is safe.
    next_offset: Option<i64>,
    /// at_least_once: records before this offset are in the restored state already (it
    /// was written after their offsets' commit failed or before it happened), and skipped.
    skip_below: Option<i64>,
    acks: Acks,
    alerts: Vec<spcvm_schemas::Alert>,
    /// Outputs of whole batches held back, in order, while the transaction they belong to
    /// has not begun (exactly-once: the previous one is committing); sent once it has.
    held: VecDeque<HeldBatch>,
}

/// Where the outputs of a batch go. Whether they can be sent is decided when the batch
/// starts: the gate only opens further while a batch is processed (it is required to reach
/// a later epoch only at a barrier, between batches).
enum Outbox {
    /// Sent as they come: at-least-once, or the transaction they belong to has begun.
    Sending(Vec<(Output, rdkafka::producer::DeliveryFuture)>),
    /// Held back in order (copied, as the messages go back to librdkafka after the batch).
    Holding(Vec<Held>),
}

/// An output held back (see [`PartitionTask::held`]).
enum Held {
    Alert(spcvm_schemas::Alert),
    DeadLetter {
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        offset: i64,
        kind: &'static str,
        error: String,
    },
}

impl Held {
    /// Approximate memory held, in bytes.
    fn bytes(&self) -> usize {
        const ALERT: usize = std::mem::size_of::<spcvm_schemas::Alert>() + 256;
        match self {
            Held::Alert(_) => ALERT,
            Held::DeadLetter {
                key,
                payload,
                headers,
                error,
                ..
            } => {
                let header_bytes: usize = headers
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum();
                std::mem::size_of::<Held>()
                    + key.as_ref().map_or(0, Vec::len)
                    + payload.as_ref().map_or(0, Vec::len)
                    + header_bytes
                    + error.len()
            }
        }
    }
}

/// The held outputs of one batch, with what their acknowledgement reports.
struct HeldBatch {
    received: Instant,
    alerting: usize,
    outputs: Vec<Held>,
    /// Approximate size of `outputs` in bytes.
    bytes: usize,
}

impl PartitionTask {
    /// Whether this task's outputs may be sent now: at-least-once, or the transaction they
    /// belong to has begun.
    fn gate_is_open(&self) -> bool {
        self.shared.mode != DeliveryMode::ExactlyOnce || *self.gate.borrow() >= self.required_epoch
    }

    /// Sends every held output, in order (the gate must be open), one acknowledgement
    /// future per batch.
    async fn flush(&mut self) -> Result<(), RunError> {
        let shared = self.shared.clone();
        while let Some(batch) = self.held.pop_front() {
            let mut deliveries = Vec::with_capacity(batch.outputs.len());
            for output in batch.outputs {
                deliveries.push(match output {
                    Held::Alert(alert) => (Output::Alert, shared.sink.send_alert(&alert).await?),
                    Held::DeadLetter {
                        key,
                        payload,
                        headers,
                        offset,
                        kind,
                        error,
                    } => {
                        let letter = DeadLetter {
                            key: key.as_deref(),
                            payload: payload.as_deref(),
                            headers: &headers,
                            topic: &self.tp.0,
                            partition: self.tp.1,
                            offset,
                            kind,
                            error: &error,
                        };
                        (
                            Output::DeadLetter,
                            shared.sink.send_dead_letter(&letter).await?,
                        )
                    }
                });
            }
            self.acks.push_back(acks_of(
                shared.clone(),
                deliveries,
                batch.received,
                batch.alerting,
            ));
        }
        Ok(())
    }

    /// Sends the held outputs if their transaction has begun.
    async fn flush_if_open(&mut self) -> Result<(), RunError> {
        if !self.held.is_empty() && self.gate_is_open() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits until the transaction this task's outputs belong to has begun.
    async fn gate_open(&mut self) -> Result<(), RunError> {
        if self.shared.mode == DeliveryMode::ExactlyOnce
            && *self.gate.borrow() < self.required_epoch
        {
            let required = self.required_epoch;
            self.gate
                .wait_for(|open| *open >= required)
                .await
                .map_err(|_| RunError::Kafka("the transaction gate closed".into()))?;
        }
        Ok(())
    }

    /// Processes a batch of messages, then queues one future for all their deliveries, or,
    /// in exactly-once while the transaction they belong to has not begun, holds their
    /// outputs back (up to [`MAX_HELD`] outputs and [`MAX_HELD_BYTES`]) and goes on.
    async fn records(
        &mut self,
        processor: &mut PartitionProcessor,
        batch: &Messages,
        received: Instant,
    ) -> Result<(), RunError> {
        self.flush_if_open().await?;
        let (outputs, bytes) = self.held.iter().fold((0, 0), |(outputs, bytes), batch| {
            (outputs + batch.outputs.len(), bytes + batch.bytes)
        });
        if outputs >= MAX_HELD || bytes >= MAX_HELD_BYTES {
            self.gate_open().await?;
            self.flush().await?;
        }
        let mut outbox = if self.held.is_empty() && self.gate_is_open() {
            Outbox::Sending(Vec::new())
        } else {
            Outbox::Holding(Vec::new())
        };
        let mut alerting = 0;
        // One clone a batch (a clone a record was a contended atomic pair on every record).
        let shared = self.shared.clone();
        let job = &shared.job;
        // at_least_once after a restore: the leading records the state holds already (a
        // partition's messages come in offset order) are passed over.
        let skipped = self.skip_below.map_or(0, |below| {
            batch.iter().take_while(|m| m.offset() < below).count()
        });
        let mut messages = batch.iter().skip(skipped);
        // One message's step, for both loops below: a plain valid record is charted without
        // building a future; one that raised alerts or needs a dead letter takes an async path.
        macro_rules! step {
            ($message:ident, $decoded:ident) => {
                let alerts = match self.chart_valid(&shared, processor, &$message, $decoded) {
                    Charted::Valid(0) => 0,
                    Charted::Valid(_) => self.send_alerts(&shared, &mut outbox).await?,
                    Charted::Other(decoded) => {
                        self.record(&shared, processor, &$message, decoded, &mut outbox)
                            .await?
                    }
                };
                alerting += usize::from(alerts > 0);
                self.next_offset = Some($message.offset() + 1);
            };
        }
        if processor.lookahead() == 0 {
            // The partition's charts fit in cache: one message at a time.
            while let Some((message, decoded)) = next_decoded(&self.tp, job, &mut messages) {
                let decoded = match decoded {
                    Some(decoded) => decoded,
                    None => decode_with_retry(job, message.payload().unwrap_or_default()).await,
                };
                step!(message, decoded);
            }
        } else {
            // Messages are decoded a few ahead of the one processed when the partition's
            // charts outgrow the cache, so that their chart states can be loaded in advance.
            let mut window = VecDeque::new();
            loop {
                while window.len() <= processor.lookahead()
                    && let Some((message, decoded)) = next_decoded(&self.tp, job, &mut messages)
                {
                    let decoded = match decoded {
                        Some(decoded) => decoded,
                        None => decode_with_retry(job, message.payload().unwrap_or_default()).await,
                    };
                    window.push_back((message, decoded));
                }
                let Some((message, decoded)) = window.pop_front() else {
                    break;
                };
                processor.prefetch_ahead(|j| match window.get(j.wrapping_sub(1)) {
                    Some((_, Ok(r))) => Some((r.tool_id.as_ref(), r.recipe_id.as_ref())),
                    _ => None,
                });
                step!(message, decoded);
            }
        }
        if let Some(below) = self.skip_below {
            if skipped > 0 {
                tracing::info!(
                    topic = %self.tp.0,
                    partition = self.tp.1,
                    skipped,
                    below,
                    "skipped records the restored state holds already"
                );
            }
            if batch.last().is_some_and(|m| m.offset() + 1 >= below) {
                self.skip_below = None;
                self.next_offset = self.next_offset.max(Some(below));
            }
        }
        match outbox {
            Outbox::Sending(deliveries) => {
                self.acks
                    .push_back(acks_of(shared.clone(), deliveries, received, alerting));
            }
            Outbox::Holding(outputs) if !outputs.is_empty() => {
                self.held.push_back(HeldBatch {
                    received,
                    alerting,
                    bytes: outputs.iter().map(Held::bytes).sum(),
                    outputs,
                });
                self.flush_if_open().await?;
            }
            Outbox::Holding(_) => {}
        }
        Ok(())
    }

    /// Processes one decoded message, adding its outputs' deliveries; returns its alert
    /// count. (Valid records without a non-finite value take [`Self::chart_valid`] and
    /// [`Self::send_alerts`] straight.)
    async fn record(
        &mut self,
        shared: &Shared,
        processor: &mut PartitionProcessor,
        message: &QueuedMessage<'_>,
        decoded: Result<TelemetryRef<'_>, crate::decode::DecodeError>,
        outbox: &mut Outbox,
    ) -> Result<usize, RunError> {
        let job = &shared.job;
        match decoded {
            Ok(record) => {
                if let Some(reason) = super::non_finite(&record) {
                    job.metrics.dead_letter("non_finite");
                    Self::dead_letter(shared, &self.tp, outbox, message, "non_finite", reason)
                        .await?;
                }
                self.chart(shared, processor, message, &record);
                self.send_alerts(shared, outbox).await
            }
            Err(e) => {
                job.metrics.decode_failure(e.kind());
                job.metrics.dead_letter(e.kind());
                Self::dead_letter(shared, &self.tp, outbox, message, e.kind(), e.to_string())
                    .await?;
                Ok(0)
            }
        }
    }

    /// The usual case, without building [`Self::record`]'s future: charts a valid record
    /// without a non-finite value and returns how many alerts wait in `self.alerts`; hands
    /// anything else back for [`Self::record`].
    #[inline]
    fn chart_valid<'m>(
        &mut self,
        shared: &Shared,
        processor: &mut PartitionProcessor,
        message: &QueuedMessage<'_>,
        decoded: Result<TelemetryRef<'m>, crate::decode::DecodeError>,
    ) -> Charted<'m> {
        match decoded {
            Ok(record) if super::non_finite(&record).is_none() => {
                self.chart(shared, processor, message, &record);
                Charted::Valid(self.alerts.len())
            }
            other => Charted::Other(other),
        }
    }

    /// Feeds a valid record to the charts; their alerts wait in `self.alerts`.
    #[inline]
    fn chart(
        &mut self,
        shared: &Shared,
        processor: &mut PartitionProcessor,
        message: &QueuedMessage<'_>,
        record: &TelemetryRef<'_>,
    ) {
        let job = &shared.job;
        if let Some(key) = message.key()
            && key != record.tool_id.as_bytes()
        {
            job.metrics.key_mismatches.inc();
        }
        let stats = processor.process(record, &mut self.alerts);
        record_stats(&job.metrics, &stats);
    }

    /// Sends (or holds) the alerts waiting in `self.alerts`; returns how many there were.
    async fn send_alerts(
        &mut self,
        shared: &Shared,
        outbox: &mut Outbox,
    ) -> Result<usize, RunError> {
        let (job, sink) = (&shared.job, &shared.sink);
        let count = self.alerts.len();
        for alert in self.alerts.drain(..) {
            job.metrics.record_alert(&alert);
            match outbox {
                Outbox::Sending(deliveries) => {
                    deliveries.push((Output::Alert, sink.send_alert(&alert).await?));
                }
                Outbox::Holding(held) => held.push(Held::Alert(alert)),
            }
        }
        Ok(count)
    }

    /// Sends `message` to the dead-letter topic, or holds a copy of it (a free-standing
    /// future: it must not borrow the task, whose ack queue is not `Sync`).
    async fn dead_letter(
        shared: &Shared,
        tp: &Tp,
        outbox: &mut Outbox,
        message: &QueuedMessage<'_>,
        kind: &'static str,
        error: String,
    ) -> Result<(), RunError> {
        let headers = message.headers();
        let offset = message.offset();
        tracing::debug!(topic = %tp.0, partition = tp.1, offset, kind, %error, "dead letter");
        match outbox {
            Outbox::Sending(deliveries) => {
                let letter = DeadLetter {
                    key: message.key(),
                    payload: message.payload(),
                    headers: &headers,
                    topic: &tp.0,
                    partition: tp.1,
                    offset,
                    kind,
                    error: &error,
                };
                let delivery = shared.sink.send_dead_letter(&letter).await?;
                deliveries.push((Output::DeadLetter, delivery));
            }
            Outbox::Holding(held) => held.push(Held::DeadLetter {
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers,
                offset,
                kind,
                error,
            }),
        }
        Ok(())
    }

    fn acknowledged(&mut self, ack: Result<Acked, RunError>) -> Result<(), RunError> {
        let ack = ack?;
        let latency = ack.received.elapsed().as_secs_f64();
        for _ in 0..ack.alerting {
            self.shared.job.metrics.processing_latency.observe(latency);
        }
        if let Some((reply, answer)) = ack.reply {
            // The coordinator may have stopped waiting (it failed): nothing to tell.
            let _ = reply.send(Ok(answer));
        }
        Ok(())
    }

    /// Answers a checkpoint barrier: sends the changelog records of what changed, and
    /// replies with the next offset to consume. In exactly-once the reply goes at once (the
    /// commit flushes every output of the transaction); in at-least-once it goes when every
    /// earlier output of the task is acknowledged, while the task goes on processing.
    async fn checkpoint(
        &mut self,
        processor: &mut PartitionProcessor,
        reply: CheckpointSender,
    ) -> Result<(), RunError> {
        let result = self.write_changelog(processor).await;
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                let _ = reply.send(Err(RunError::Kafka(e.to_string())));
                return Err(e);
            }
        };
        match self.shared.mode {
            DeliveryMode::ExactlyOnce => {
                let _ = reply.send(Ok(answer));
            }
            DeliveryMode::AtLeastOnce => {
                // Offsets may only move past messages whose outputs are all acknowledged:
                // the answer rides at the end of the ack queue.
                self.acks.push_back(Box::pin(std::future::ready(Ok(Acked {
                    received: Instant::now(),
                    alerting: 0,
                    reply: Some((reply, answer)),
                }))));
            }
        }
        Ok(())
    }

    /// Sends the changelog records of the state changed since the last checkpoint (in the
    /// transaction this task is filling) and queues their acknowledgements.
    async fn write_changelog(
        &mut self,
        processor: &mut PartitionProcessor,
    ) -> Result<CheckpointReply, RunError> {
        // The changelog records belong to the transaction this task is filling, after the
        // outputs it holds for that transaction.
        self.gate_open().await?;
        self.flush().await?;
        if self.shared.mode == DeliveryMode::AtLeastOnce {
            // The partition record says the state reaches `next_offset`, and a restore
            // skips the records before it: their outputs must be stored first.
            while let Some(ack) = self.acks.next().await {
                self.acknowledged(ack)?;
            }
        }
        let sink = &self.shared.sink;
        let mut deliveries = Vec::new();
        for record in processor.checkpoint(self.next_offset) {
            let delivery = sink
                .send_state(self.tp.1, &record.key, &record.value)
                .await?;
            deliveries.push((Output::State, delivery));
        }
        self.shared
            .job
            .metrics
            .changelog_records
            .inc_by(deliveries.len() as u64);
        self.acks
            .push_back(acks_of(self.shared.clone(), deliveries, Instant::now(), 0));
        Ok(CheckpointReply {
            next_offset: self.next_offset,
            keys: processor.keys(),
        })
    }
}

/// What [`PartitionTask::chart_valid`] did with a decoded message.
enum Charted<'m> {
    /// Charted; this many alerts wait to be sent.
    Valid(usize),
    /// Not a plain valid record (a decode failure, a non-finite value): for the general path.
    Other(Result<TelemetryRef<'m>, crate::decode::DecodeError>),
}

/// A decoded message, or `None` for a transient failure (left to [`decode_with_retry`]).
type Decoded<'m> = Option<Result<TelemetryRef<'m>, crate::decode::DecodeError>>;

/// The next message of `messages` that carries a record, decoded. librdkafka's reports of a
/// fetch problem in a message's place are logged and skipped. A transient failure comes
/// back as `None` for the caller to retry: the usual outcome is returned straight, not
/// through the retrying function's larger future.
#[inline]
fn next_decoded<'m>(
    tp: &Tp,
    job: &Job,
    messages: &mut impl Iterator<Item = QueuedMessage<'m>>,
) -> Option<(QueuedMessage<'m>, Decoded<'m>)> {
    for message in messages.by_ref() {
        if let Some(error) = message.error() {
            tracing::warn!(topic = %tp.0, partition = tp.1, %error, "consumer error");
            continue;
        }
        let decoded = match job
            .decoder
            .decode_ref(message.payload().unwrap_or_default())
        {
            Err(e) if e.is_transient() => None,
            decoded => Some(decoded),
        };
        return Some((message, decoded));
    }
    None
}

/// Decodes `payload`, waiting and retrying while the failure is transient (the schema
/// registry is unreachable): such a message is not bad and must not be dead-lettered.
async fn decode_with_retry<'a>(
    job: &Job,
    payload: &'a [u8],
) -> Result<TelemetryRef<'a>, crate::decode::DecodeError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match job.decoder.decode_ref(payload) {
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "transient decode failure");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

/// A future resolving once every delivery of one message (or one checkpoint) is
/// acknowledged, counting them per output topic.
fn acks_of(
    shared: Arc<Shared>,
    deliveries: Vec<(Output, rdkafka::producer::DeliveryFuture)>,
    received: Instant,
    alerting: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acked, RunError>> + Send>> {
    Box::pin(async move {
        for (output, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    let topics = shared.sink.topics();
                    let topic = match output {
                        Output::Alert => &topics.alerts,
                        Output::DeadLetter => &topics.dlq,
                        Output::State => &topics.changelog,
                    };
                    shared.job.metrics.produced(topic, 1);
                }
                Ok(Err((e, m))) => {
                    return Err(RunError::Kafka(format!(
                        "delivery to `{}` failed: {e}",
                        m.topic()
                    )));
                }
                Err(_) => return Err(RunError::Kafka("producer closed".into())),
            }
        }
        Ok(Acked {
            received,
            alerting,
            reply: None,
        })
    })
}

/// The error of a transaction initialisation that timed out. librdkafka's own text
/// ("Timed out waiting for operation to finish, retry call to resume") names neither the
/// brokers nor where to look; the reason is in its log lines before it.
fn init_timed_out(bootstrap: &str, transactional_id: &str) -> String {
    format!(
        "transactions of `{transactional_id}` not initialised within {} s: no broker at \
         {bootstrap} answered. The brokers could not be reached or refused the connection \
         (librdkafka's log lines above say why: a TLS certificate, SASL credentials, the \
         address), or they do not support transactions (`delivery.mode = \"at_least_once\"` \
         needs none)",
        TXN_TIMEOUT.as_secs()
    )
}

impl From<KafkaSinkError> for RunError {
    fn from(e: KafkaSinkError) -> Self {
        RunError::Sink(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::last_setting as last;

    #[test]
    fn prefetch_budget_is_shared_by_the_input_partitions() {
        let delivery = DeliveryConfig::default();
        let per = |partitions| {
            let props = prefetch_properties(&delivery, partitions);
            (
                last(&props, "queued.min.messages")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                last(&props, "queued.max.messages.kbytes")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            )
        };
        // Up to 12 partitions, librdkafka's own per-queue defaults...
        assert_eq!(per(1), (100_000, 65_536));
        assert_eq!(per(12), (100_000, 65_536));
        // ...beyond, the budget shared: all partitions together stay within it...
        assert_eq!(per(48), (25_000, 16_384));
        for n in [13, 24, 48, 100, 500] {
            let (messages, kbytes) = per(n);
            assert!(messages * n as u64 <= 1_200_000, "{n}");
            assert!(kbytes * n as u64 <= 768 * 1024, "{n}");
        }
        // ...down to the floors (about one fetch a partition).
        assert_eq!(per(10_000), (1_000, 1_024));
        assert_eq!(per(0), per(1));
        let small = DeliveryConfig {
            prefetch_messages: 40_000,
            prefetch_mb: 64,
            ..DeliveryConfig::default()
        };
        let props = prefetch_properties(&small, 4);
        assert_eq!(last(&props, "queued.min.messages"), Some("10000"));
        assert_eq!(last(&props, "queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(last(&props, "fetch.queue.backoff.ms"), Some("10"));
    }

    #[test]
    fn consumer_properties_of_the_user_win_over_the_prefetch_budget() {
        let mut config = PipelineConfig::default();
        assert_eq!(
            last(&consumer_properties(&config, 4), "queued.min.messages"),
            Some("100000")
        );
        config
            .kafka
            .consumer_properties
            .insert("queued.min.messages".into(), "5000".into());
        config
            .kafka
            .properties
            .insert("fetch.queue.backoff.ms".into(), "50".into());
        let props = consumer_properties(&config, 4);
        assert_eq!(last(&props, "queued.min.messages"), Some("5000"));
        assert_eq!(last(&props, "fetch.queue.backoff.ms"), Some("50"));
        // And librdkafka accepts every property spcvm sets.
        client_config(props)
            .create::<BaseConsumer>()
            .expect("librdkafka takes the consumer's properties");
    }

    #[test]
    fn a_fatal_error_is_reported_by_its_cause() {
        let mut kafka = super::super::config::KafkaConfig {
            instance_id: Some("pod-3".into()),
            group_id: "fab-a".into(),
            ..Default::default()
        };
        let none = [("producer", None), ("consumer", None)];
        assert_eq!(fatal_cause(&none, "spcvm-fab-a-pod-3", &kafka), None);
        let fenced = [
            (
                "producer",
                Some((
                    RDKafkaErrorCode::Fenced,
                    "fenced by a newer instance".into(),
                )),
            ),
            ("consumer", None),
        ];
        let cause = fatal_cause(&fenced, "spcvm-fab-a-pod-3", &kafka).unwrap();
        assert!(
            cause.contains("transactional id `spcvm-fab-a-pod-3`")
                && cause.contains("instance id `pod-3`")
                && cause.ends_with("librdkafka: fenced by a newer instance"),
            "{cause}"
        );
        kafka.static_membership = true;
        let member = [
            ("producer", None),
            (
                "consumer",
                Some((RDKafkaErrorCode::FencedInstanceId, "fenced".into())),
            ),
        ];
        let cause = fatal_cause(&member, "spcvm-fab-a-pod-3", &kafka).unwrap();
        assert!(
            cause.contains("group `fab-a`") && cause.contains("`spcvm-pod-3`"),
            "{cause}"
        );
        let other = [(
            "producer",
            Some((RDKafkaErrorCode::OutOfOrderSequenceNumber, "gap".into())),
        )];
        assert_eq!(
            fatal_cause(&other, "t", &kafka).unwrap(),
            "the Kafka producer failed for good (OutOfOrderSequenceNumber): gap"
        );
    }
}
