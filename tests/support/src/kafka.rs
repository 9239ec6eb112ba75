//! The tests' own Kafka clients: producing messages, reading a topic back whole, and the
//! group's committed offsets against the ends of a topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::broker::unique;

/// A message read back.
#[derive(Debug, Clone)]
pub struct Read {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload (empty when absent).
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp, milliseconds since the epoch, if it has one.
    pub timestamp: Option<i64>,
}

/// A client configuration with `bootstrap.servers` and `properties`.
pub fn client_config(bootstrap: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// A read_committed consumer of `config` that never commits, for `assign`ing partitions
/// and asking for offsets; in `group` (whose committed offsets it can then read, without
/// joining it) or a unique one.
pub fn plain_consumer(mut config: ClientConfig, group: Option<&str>) -> BaseConsumer {
    config
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("receive.message.max.bytes", "100000000");
    // librdkafka refuses `assign` without a group id; a reader that never commits or
    // subscribes does not join the group.
    config.set(
        "group.id",
        group.map_or_else(|| unique("reader"), str::to_string),
    );
    config.create().unwrap()
}

/// Every committed message of `topic` (all partitions, from the beginning to the end).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Read> {
    read_all_with(&client_config(bootstrap, &[]), topic)
}

/// [`read_all`] with a client configured by `client`.
pub fn read_all_with(client: &ClientConfig, topic: &str) -> Vec<Read> {
    let consumer = plain_consumer(client.clone(), None);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut pending = 0;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            pending += 1;
        }
    }
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending > 0 {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out
}

/// Produces `(key, payload)` messages to `topic` (murmur2 partitioning, like the Java
/// client) with `headers` on each, and waits for every ack.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    messages: &[(Vec<u8>, Vec<u8>)],
    headers: &[(&str, &str)],
) {
    produce_with(&client_config(bootstrap, &[]), topic, messages, headers);
}

/// [`produce`] with a client configured by `client`.
pub fn produce_with(
    client: &ClientConfig,
    topic: &str,
    messages: &[(Vec<u8>, Vec<u8>)],
    headers: &[(&str, &str)],
) {
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .clone()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.max.bytes", "33554432")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (key, payload) in messages {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let record = BaseRecord::to(topic).key(key).payload(payload).headers(h);
        send_queued(&producer, record, Duration::from_millis(5))
            .unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Sends `record` through `producer`; while librdkafka's local queue is full, waits
/// `backoff` and tries again. Any other error is returned.
pub fn send_queued<K, P, C>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    backoff: Duration,
) -> KafkaResult<()>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
    C: ProducerContext,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(backoff);
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Whether the committed offsets of `consumer`'s group on `partitions` of `topic` have all
/// reached the end that `end` gives for the partition (asked after the committed offsets
/// were read, partition by partition, until one falls short; `None`: not known, not
/// reached). A partition without a committed offset has reached an end of 0 only.
pub fn committed_reached(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    mut end: impl FnMut(i32) -> Option<i64>,
) -> bool {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
        return false;
    };
    partitions.iter().all(|&p| {
        let offset = committed.find_partition(topic, p).map(|e| e.offset());
        match (offset, end(p)) {
            (_, None) => false,
            (Some(Offset::Offset(o)), Some(high)) => o >= high,
            (_, Some(high)) => high == 0,
        }
    })
}
