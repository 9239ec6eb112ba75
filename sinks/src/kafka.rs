//! [`KafkaSink`]: the one producer of a `spcvm run` process, writing the stages' output
//! streams (alerts, and whatever later stages emit), dead letters and state changelog
//! records, optionally inside Kafka transactions.
//!
//! Sends are non-blocking enqueues that hand back a [`DeliveryFuture`]; when librdkafka's
//! queue is full the send waits and retries (backpressure: the partition task slows down,
//! its input queue fills, and the consumer stops fetching). The transaction calls block and
//! are made by the runtime's coordinator thread.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use spcvm_operators::StageOutput;
use spcvm_schemas::SchemaError;

use crate::ClientLog;

/// Largest payload the producer sends (dead letters carry the original message unchanged).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// How a stream's outputs are encoded on its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON, as `spcvm backtest` writes it.
    Json,
    /// Avro in the Confluent wire format: magic byte 0, the schema id (big-endian), datum.
    AvroConfluent(u32),
    /// A bare Avro datum of the stream's schema.
    Avro,
}

impl Encoding {
    /// Encodes `output`.
    ///
    /// # Errors
    ///
    /// The Avro encoder's error (none is known to occur: every alert has an encoding).
    pub fn encode(self, output: &dyn StageOutput) -> Result<Vec<u8>, SchemaError> {
        Ok(match self {
            Encoding::Json => output.to_json(),
            Encoding::Avro => output.to_avro()?,
            Encoding::AvroConfluent(id) => {
                let datum = output.to_avro()?;
                let mut out = Vec::with_capacity(5 + datum.len());
                out.push(0);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&datum);
                out
            }
        })
    }
}

/// Topics the sink writes besides the output streams' (named at each send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkTopics {
    /// Dead letters.
    pub dlq: String,
    /// The compacted state changelog.
    pub changelog: String,
}

/// A message that could not be decoded or validated, as it is sent to the dead-letter topic.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// The original key.
    pub key: Option<&'a [u8]>,
    /// The original payload, unchanged.
    pub payload: Option<&'a [u8]>,
    /// The original headers (kept, ours are added after them).
    pub headers: &'a [(String, Option<Vec<u8>>)],
    /// Where it came from.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Short error kind (`json`, `avro`, `too_large`, ...).
    pub kind: &'a str,
    /// The full reason.
    pub error: &'a str,
}

/// Header names set on dead letters.
pub mod dlq_headers {
    /// The reason the message was rejected.
    pub const ERROR: &str = "spcvm.error";
    /// Short error kind.
    pub const KIND: &str = "spcvm.error.kind";
    /// Source topic.
    pub const TOPIC: &str = "spcvm.source.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "spcvm.source.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "spcvm.source.offset";
    /// Set when the payload was too large even for the dead-letter topic and was left out:
    /// the original size in bytes (decimal).
    pub const TRUNCATED: &str = "spcvm.payload.omitted_bytes";
}

/// Error from the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// The producer could not be created (a bad property, say).
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    /// A message could not be enqueued.
    #[error("cannot send to topic `{topic}`: {source}")]
    Send {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// An output could not be encoded.
    #[error("cannot encode an output for topic `{topic}` (key `{key}`): {source}")]
    Encode {
        /// The topic it was for.
        topic: String,
        /// Its key.
        key: String,
        /// Why.
        #[source]
        source: SchemaError,
    },
    /// Messages were still unacknowledged when the timeout ran out (at shutdown).
    #[error("messages still unacknowledged after {} s: {source}", timeout.as_secs())]
    Flush {
        /// How long the flush waited.
        timeout: Duration,
        /// Why.
        #[source]
        source: KafkaError,
    },
    /// A transaction call failed.
    #[error("transaction {operation} failed: {source}")]
    Transaction {
        /// `init`, `begin`, `send offsets`, `commit` or `abort`.
        operation: &'static str,
        /// Why.
        #[source]
        source: KafkaError,
    },
}

impl KafkaSinkError {
    /// Whether the failed transaction call may simply be retried.
    pub fn is_retriable(&self) -> bool {
        matches!(self, KafkaSinkError::Transaction { source: KafkaError::Transaction(e), .. } if e.is_retriable())
    }

    /// Whether the producer is unusable (fenced by a newer instance, say).
    pub fn is_fatal(&self) -> bool {
        matches!(self, KafkaSinkError::Transaction { source: KafkaError::Transaction(e), .. } if e.is_fatal())
    }

    /// Whether the transaction call ran out of time (no broker answered in time).
    pub fn is_timeout(&self) -> bool {
        matches!(self, KafkaSinkError::Transaction { source: KafkaError::Transaction(e), .. } if e.code() == RDKafkaErrorCode::OperationTimedOut)
    }
}

/// The producer settings of every spcvm producer (the job's [`KafkaSink`], `spcvm
/// simulate`'s), then `properties` over them: idempotent with `acks=all`, keys partitioned
/// with murmur2 as Java clients do (a tool's records land where a Java producer would put
/// them), `linger.ms` 2 (see [`KafkaSink::new`] for why), lz4, messages up to
/// [`MAX_MESSAGE_BYTES`].
pub fn producer_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set("compression.type", "lz4");
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// The process's producer.
pub struct KafkaSink {
    producer: FutureProducer<ClientLog>,
    /// The producer's context, shared (rdkafka keeps its own out of reach).
    log: ClientLog,
    topics: SinkTopics,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer from librdkafka `properties` over [`producer_config`]'s. With a
    /// `transactional_id` it is transactional (and idempotent); otherwise idempotent with
    /// `acks=all`. `linger.ms` is
    /// 2 unless `properties` say otherwise: each produce request costs the producer's broker
    /// thread a wake-up and a pass over every partition it writes, and at 1 ms that thread
    /// took a fifth of the job's CPU at 900,000 records/s (2 ms: 8 % less CPU a record;
    /// alert acknowledgement p99 at 10,000 records/s 4.9-7.5 ms on noida-db against 3.1-18.4
    /// ms at 1 ms; 5 ms saves 17 % but puts the p99 past 10 ms). Keys are
    /// partitioned with murmur2, as Java clients do, so alerts of a tool land where a Java
    /// producer would put them.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Create`] when librdkafka rejects a property.
    pub fn new(
        properties: &BTreeMap<String, String>,
        topics: SinkTopics,
        transactional_id: Option<&str>,
        transaction_timeout: Duration,
    ) -> Result<KafkaSink, KafkaSinkError> {
        let mut config = producer_config(&BTreeMap::new());
        if let Some(id) = transactional_id {
            config.set("transactional.id", id).set(
                "transaction.timeout.ms",
                transaction_timeout.as_millis().to_string(),
            );
        }
        for (k, v) in properties {
            config.set(k, v);
        }
        let log = ClientLog::default();
        let producer: FutureProducer<ClientLog> = config
            .create_with_context(log.clone())
            .map_err(KafkaSinkError::Create)?;
        Ok(KafkaSink {
            producer,
            log,
            topics,
        })
    }

    /// The topics written.
    pub fn topics(&self) -> &SinkTopics {
        &self.topics
    }

    /// Logs the librdkafka lines of the producer still held back as repeats
    /// ([`ClientLog::flush`]), before the process stops on an error.
    pub fn flush_log(&self) {
        self.log.flush();
    }

    /// The underlying producer (for metadata queries).
    pub fn producer(&self) -> &FutureProducer<ClientLog> {
        &self.producer
    }

    async fn send<'a>(
        &self,
        mut record: FutureRecord<'a, [u8], [u8]>,
    ) -> Result<DeliveryFuture, KafkaSinkError> {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((source, back)) => {
                    return Err(KafkaSinkError::Send {
                        topic: back.topic.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Sends an encoded output of a stream to `topic`, keyed by `key` (the tool).
    ///
    /// The record's Kafka timestamp is the time of sending (librdkafka's default), not the
    /// output's event time, which the payload carries: the topic's time-based retention would
    /// otherwise delete the alerts of a replay of older telemetry at the next segment roll
    /// (it did, in the rebalance test, whose telemetry is months old), and brokers refuse
    /// timestamps too far ahead (`message.timestamp.after.max.ms`, one hour by default since
    /// Kafka 3.6), so a tool clock running ahead would stop the job.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Send`] when librdkafka refuses the message.
    pub async fn send_output(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> Result<DeliveryFuture, KafkaSinkError> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        self.send(record).await
    }

    /// Sends a dead letter: the original key, payload and headers, plus `spcvm.*` headers
    /// saying why and where from. If the payload is larger than the producer may send, it
    /// is left out and [`dlq_headers::TRUNCATED`] carries its size, so the record still
    /// arrives.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Send`] when librdkafka refuses the message.
    pub async fn send_dead_letter(
        &self,
        letter: &DeadLetter<'_>,
    ) -> Result<DeliveryFuture, KafkaSinkError> {
        let size = letter.payload.map_or(0, <[u8]>::len);
        let omit = size + 64 * 1024 > MAX_MESSAGE_BYTES;
        let mut headers = OwnedHeaders::new_with_capacity(letter.headers.len() + 6);
        for (key, value) in letter.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let size_text = size.to_string();
        let mut ours = vec![
            (dlq_headers::ERROR, letter.error.as_bytes()),
            (dlq_headers::KIND, letter.kind.as_bytes()),
            (dlq_headers::TOPIC, letter.topic.as_bytes()),
            (dlq_headers::PARTITION, partition.as_bytes()),
            (dlq_headers::OFFSET, offset.as_bytes()),
        ];
        if omit {
            ours.push((dlq_headers::TRUNCATED, size_text.as_bytes()));
        }
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::to(&self.topics.dlq).headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        if let Some(payload) = letter.payload.filter(|_| !omit) {
            record = record.payload(payload);
        }
        self.send(record).await
    }

    /// Sends one changelog record to `partition` of the changelog topic.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Send`] when librdkafka refuses the message.
    pub async fn send_state(
        &self,
        partition: i32,
        key: &[u8],
        value: &[u8],
    ) -> Result<DeliveryFuture, KafkaSinkError> {
        let record = FutureRecord::to(&self.topics.changelog)
            .partition(partition)
            .key(key)
            .payload(value);
        self.send(record).await
    }

    fn txn(operation: &'static str, result: Result<(), KafkaError>) -> Result<(), KafkaSinkError> {
        result.map_err(|source| KafkaSinkError::Transaction { operation, source })
    }

    /// Registers the transactional id, fencing older producers with the same id and
    /// aborting their open transaction. Blocking.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Transaction`].
    pub fn init_transactions(&self, timeout: Duration) -> Result<(), KafkaSinkError> {
        Self::txn("init", self.producer.init_transactions(timeout))
    }

    /// Starts a transaction.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Transaction`].
    pub fn begin_transaction(&self) -> Result<(), KafkaSinkError> {
        Self::txn("begin", self.producer.begin_transaction())
    }

    /// Adds the consumer `offsets` of `group` to the transaction, then commits it (flushing
    /// every message sent in it). Blocking.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Transaction`]; see [`KafkaSinkError::is_retriable`].
    pub fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), KafkaSinkError> {
        if offsets.count() > 0 {
            Self::txn(
                "send offsets",
                self.producer
                    .send_offsets_to_transaction(offsets, group, timeout),
            )?;
        }
        // rdkafka's `commit_transaction` first flushes, and its flush sleeps in steps of up
        // to 100 ms while a delivery report is outstanding: the FutureProducer's own thread
        // serves the reports, so each step runs to its end. Waiting here for the in-flight
        // count to reach zero in short steps makes that flush return at once (measured on
        // tansu: commits went from about 105 ms to a few ms).
        self.wait_for_acks(timeout);
        Self::txn("commit", self.producer.commit_transaction(timeout))
    }

    /// Waits, in steps of [`ACK_POLL`], until no sent message awaits its acknowledgement or
    /// `timeout` has passed. Returns whether the queue drained.
    fn wait_for_acks(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(ACK_POLL);
        }
        true
    }

    /// Aborts the open transaction: read_committed consumers never see its messages.
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Transaction`].
    pub fn abort_transaction(&self, timeout: Duration) -> Result<(), KafkaSinkError> {
        Self::txn("abort", self.producer.abort_transaction(timeout))
    }

    /// Waits until every sent message is acknowledged (at-least-once shutdown).
    ///
    /// # Errors
    ///
    /// [`KafkaSinkError::Flush`] if the queue does not drain in time.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaSinkError> {
        if self.wait_for_acks(timeout) {
            return Ok(());
        }
        self.producer
            .flush(timeout)
            .map_err(|source| KafkaSinkError::Flush { timeout, source })
    }
}

/// Step of the wait for outstanding acknowledgements before a commit or flush.
const ACK_POLL: Duration = Duration::from_micros(250);

/// Copies a message's headers into owned pairs (for [`DeadLetter::headers`]).
pub fn owned_headers<H: Headers>(headers: Option<&H>) -> Vec<(String, Option<Vec<u8>>)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use spcvm_schemas::Alert;

    #[test]
    fn confluent_alert_framing() {
        let alert = Alert {
            alert_id: "a".into(),
            tool_id: "T".into(),
            tool_type: spcvm_schemas::ToolType::Rtp,
            recipe_id: "R".into(),
            lot_id: None,
            wafer_id: None,
            parameter: "p".into(),
            chart: "ewma".into(),
            rule: "rule1".into(),
            severity: spcvm_schemas::Severity::Major,
            statistic: 1.0,
            center_line: 0.0,
            ucl: Some(0.5),
            lcl: None,
            event_time: 7,
            message: "m".into(),
            repeats: 0,
            distance_sigma: None,
            status: spcvm_schemas::AlertStatus::Open,
            window_start: None,
            cusum_upper_sigma: None,
            cusum_lower_sigma: None,
        };
        let framed = Encoding::AvroConfluent(0x01020304).encode(&alert).unwrap();
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        let decoded = spcvm_schemas::decode_alert_avro(&framed[5..]).unwrap();
        assert_eq!(decoded, alert);
        let json = Encoding::Json.encode(&alert).unwrap();
        assert_eq!(spcvm_schemas::decode_alert_json(&json).unwrap(), alert);
    }
}
