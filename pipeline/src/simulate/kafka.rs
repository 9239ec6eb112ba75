//! `spcvm simulate --kafka-bootstrap HOST:PORT --topic NAME`: the records to a Kafka topic,
//! encoded as the job reads them (`[decode] format`: `json`, `avro_confluent` or `avro`),
//! keyed by tool id so a tool's records stay in one partition, in order.
//!
//! The producer starts from the job's settings ([`spcvm_sinks::producer_config`]:
//! idempotent, `acks=all`, murmur2 partitioning as Java clients do, lz4, `linger.ms` 2),
//! then `--producer-property`s over them. Before the first record the topic's metadata is
//! asked for, so an unreachable broker or a missing topic fails at once and says which;
//! delivery failures are counted by the delivery callback and stop the run at the next
//! check, naming the broker and topic. [`TopicSink::finish`] waits until every record is
//! acknowledged.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use spcvm_schemas::{Telemetry, TelemetryJsonWriter, write_telemetry_avro};
use spcvm_sinks::ClientLog;

use super::SimulateError;
use super::output::RecordSink;
use crate::decode::PayloadFormat;
use crate::decode::confluent::MAGIC_BYTE;

/// Where and how records are produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// The topic (it must exist, or the broker must create topics on demand).
    pub topic: String,
    /// The payload encoding, as the job's `[decode] format` names it.
    pub format: PayloadFormat,
    /// `avro_confluent`: the schema id written in each header (the job finds the schema
    /// by it, in its ids file or registry).
    pub schema_id: u32,
    /// librdkafka properties over the defaults (security settings, say).
    pub properties: BTreeMap<String, String>,
}

/// How long the broker has to answer the first metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a record may wait for its acknowledgement (librdkafka's default is 5 min,
/// long for a command someone is watching).
const MESSAGE_TIMEOUT_MS: &str = "60000";

/// How long [`TopicSink::finish`] waits for the last acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);

/// Records between two polls of the delivery callbacks (and checks for failures).
const POLL_EVERY: u64 = 1024;

/// The producer's context: librdkafka's log through [`ClientLog`], and the deliveries.
struct Deliveries {
    log: ClientLog,
    acked: AtomicU64,
    failed: AtomicU64,
    /// The first failure's reason.
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Records produced to a topic (see the [module docs](self)).
pub struct TopicSink {
    producer: BaseProducer<Deliveries>,
    target: KafkaTarget,
    /// The topic's partitions (from the metadata).
    partitions: usize,
    /// The payload being encoded (reused).
    payload: Vec<u8>,
    /// Per tool, its JSON ids and names encoded once.
    writers: Vec<TelemetryJsonWriter>,
    sent: u64,
}

impl std::fmt::Debug for TopicSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicSink")
            .field("target", &self.target)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl TopicSink {
    /// Creates the producer and checks that the broker answers and has the topic.
    ///
    /// # Errors
    ///
    /// [`SimulateError::Kafka`] naming the broker and topic: a bad property, no answer
    /// within 15 s, or no such topic.
    pub fn connect(target: &KafkaTarget) -> Result<TopicSink, SimulateError> {
        let fail = |message: String| SimulateError::Kafka {
            bootstrap: target.bootstrap.clone(),
            topic: target.topic.clone(),
            message,
        };
        let mut config = spcvm_sinks::producer_config(&BTreeMap::new());
        config
            .set("bootstrap.servers", &target.bootstrap)
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS);
        for (k, v) in &target.properties {
            config.set(k, v);
        }
        let context = Deliveries {
            log: ClientLog::default(),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        };
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(context)
            .map_err(|e| fail(format!("cannot create the producer: {e}")))?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(&target.topic), METADATA_TIMEOUT)
            .map_err(|e| {
                producer.context().log.flush();
                fail(format!(
                    "no answer from the broker within {} s: {e}",
                    METADATA_TIMEOUT.as_secs()
                ))
            })?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == target.topic)
            .ok_or_else(|| fail("the broker's metadata does not list the topic".into()))?;
        if let Some(code) = topic.error() {
            let code = RDKafkaErrorCode::from(code);
            return Err(fail(if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                "no such topic (create it first, e.g. with `spcvm topics create`)".into()
            } else {
                format!("the topic's metadata says: {code}")
            }));
        }
        if topic.partitions().is_empty() {
            return Err(fail("the topic has no partitions".into()));
        }
        Ok(TopicSink {
            partitions: topic.partitions().len(),
            producer,
            target: target.clone(),
            payload: Vec::with_capacity(512),
            writers: Vec::new(),
            sent: 0,
        })
    }

    /// The topic's partition count.
    pub fn partitions(&self) -> usize {
        self.partitions
    }

    fn error(&self, message: String) -> SimulateError {
        self.producer.context().log.flush();
        SimulateError::Kafka {
            bootstrap: self.target.bootstrap.clone(),
            topic: self.target.topic.clone(),
            message,
        }
    }

    /// A delivery failure so far, as an error.
    fn check(&self) -> Result<(), SimulateError> {
        let context = self.producer.context();
        let failed = context.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        Err(self.error(format!(
            "{failed} record(s) not delivered after {} sent; the first: {first}",
            self.sent
        )))
    }
}

impl RecordSink for TopicSink {
    fn write(&mut self, tool: usize, record: &Telemetry) -> Result<(), SimulateError> {
        self.payload.clear();
        match self.target.format {
            PayloadFormat::Json => {
                if self.writers.len() <= tool {
                    self.writers.resize_with(tool + 1, TelemetryJsonWriter::new);
                }
                self.writers[tool].write(record, &mut self.payload);
            }
            PayloadFormat::Avro => write_telemetry_avro(record, &mut self.payload),
            PayloadFormat::AvroConfluent => {
                self.payload.push(MAGIC_BYTE);
                self.payload
                    .extend_from_slice(&self.target.schema_id.to_be_bytes());
                write_telemetry_avro(record, &mut self.payload);
            }
        }
        let mut message = BaseRecord::to(&self.target.topic)
            .key(record.tool_id.as_bytes())
            .payload(self.payload.as_slice());
        loop {
            match self.producer.send(message) {
                Ok(()) => break,
                // librdkafka's queue is full: serve the acknowledgements until it drains.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    self.producer.poll(Duration::from_millis(5));
                    self.check()?;
                }
                Err((e, _)) => return Err(self.error(format!("cannot send: {e}"))),
            }
        }
        self.sent += 1;
        if self.sent.is_multiple_of(POLL_EVERY) {
            self.producer.poll(Duration::ZERO);
            self.check()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SimulateError> {
        let flushed = self.producer.flush(FLUSH_TIMEOUT);
        self.check()?;
        if let Err(e) = flushed {
            return Err(self.error(format!(
                "{} record(s) still unacknowledged after {} s: {e}",
                self.producer.in_flight_count(),
                FLUSH_TIMEOUT.as_secs()
            )));
        }
        let acked = self.producer.context().acked.load(Ordering::Relaxed);
        if acked != self.sent {
            return Err(self.error(format!("{acked} of {} record(s) acknowledged", self.sent)));
        }
        Ok(())
    }
}
