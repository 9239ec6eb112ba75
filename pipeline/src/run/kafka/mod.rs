//! The Kafka runtime: `spcvm run` with `source = "kafka"`.
//!
//! # Layout
//!
//! - this module: [`run`] (the poll thread's loop), what the tasks share, the consumer
//!   context (rebalances, statistics, librdkafka's log), fatal errors by their cause.
//! - `props`: the consumer's librdkafka properties and the prefetch budget.
//! - `coordinator`: the partition tasks and the transaction, driven from the poll thread:
//!   checkpoint barriers, commits, revocation and assignment.
//! - `restore`: reading the changelog into new partitions' stores, topic partition counts.
//! - `inputs`: a task's input partitions (one, or partition p of each co-partitioned
//!   input) taken in batches and merged in event-time order.
//! - `task`: one partition's task: batches of messages through the record path
//!   ([`crate::stages::step`]), outputs sent or held, barriers answered.
//! - `outbox`: outputs held back while their transaction has not begun, and the
//!   acknowledgement futures.
//!
//! # Data flow
//!
//! ```text
//! librdkafka fetch ──> each assigned partition's own queue ([`PartitionQueue`], split off
//!                      the consumer queue)
//!                          │ take a batch (no copy); co-partitioned inputs: partition p
//!                          │ of each, merged by event time
//!                          v
//! poll thread              partition tasks (tokio, one each)
//! (owns the BaseConsumer,    decode ─> PartitionChain
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

mod coordinator;
mod inputs;
mod outbox;
mod props;
mod restore;
mod task;

use coordinator::{Completed, StopTasksOnDrop};
use inputs::{Input, Inputs};
use outbox::{Held, HeldBatch, Outbox, acks_of};
use props::{client_config, consumer_properties, last_setting};
use restore::input_partitions;
use task::{Acked, CheckpointSender, partition_task};

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
use spcvm_sinks::{ClientLog, DeadLetter, KafkaSink, KafkaSinkError, SinkTopics};
use tokio::sync::mpsc;

use super::config::{DeliveryConfig, DeliveryMode, PipelineConfig};
use super::queue::{Messages, PartitionQueue, QueuedMessage};
use super::{Job, RunError};
use crate::stages::commit::Participants;
use crate::stages::step::{Rejection, Step};
use crate::stages::{PartitionChain, StreamId};

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
    /// Next offset to consume of each of the task's input partitions that has processed
    /// anything since the task started.
    offsets: Vec<(Tp, i64)>,
    /// Chart states it holds.
    keys: usize,
}

/// Which output topic a delivery went to (for `spcvm_messages_produced_total`).
#[derive(Clone, Copy)]
enum Output {
    Stream(StreamId),
    DeadLetter,
    State,
}

/// A running partition task.
struct Worker {
    /// Its input partitions (one, or partition p of each co-partitioned input).
    tps: Vec<Tp>,
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
    let mut producer_props = config.kafka.common_properties();
    producer_props.extend(config.kafka.producer_properties.clone());
    let transactional_id = config.kafka.transactional_id();
    let sink = KafkaSink::new(
        &producer_props,
        SinkTopics {
            dlq: config.topics.dlq.clone(),
            changelog: changelog.clone(),
        },
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
    // The changelog is the job's own topic: made here when missing, as Kafka Streams makes
    // its internal topics (inputs and outputs are the platform's, or `topics create`'s).
    for spec in rt.block_on(super::topics::create_internal(&job))? {
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "created the missing changelog topic");
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
    let partitions = input_partitions(&restore, &topics, &changelog, config.topics.co_partitioned)?;
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

    #[test]
    fn co_partitioned_inputs_make_one_task_per_partition_number() {
        let mut topics = super::super::config::TopicsConfig {
            input: vec!["telemetry".into(), "context".into()],
            ..Default::default()
        };
        let tp = |t: &str, p| (t.to_string(), p);
        let assigned = [
            tp("context", 1),
            tp("telemetry", 0),
            tp("telemetry", 1),
            tp("context", 0),
        ];
        // Separate streams: a task per input partition.
        assert_eq!(
            coordinator::task_groups(&topics, &assigned).unwrap().len(),
            4
        );
        // Co-partitioned: partition p of each input, in `topics.input` order.
        topics.co_partitioned = true;
        assert_eq!(
            coordinator::task_groups(&topics, &assigned).unwrap(),
            [
                vec![tp("telemetry", 0), tp("context", 0)],
                vec![tp("telemetry", 1), tp("context", 1)]
            ]
        );
        let err = coordinator::task_groups(&topics, &assigned[..3])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("partition 0 was assigned of [\"telemetry\"] but not of every input"),
            "{err}"
        );
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
