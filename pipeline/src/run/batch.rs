//! [`Batch`]: messages of one partition, copied out of librdkafka into one buffer.
//!
//! The poll thread copies each consumed message into the batch of its partition: key and
//! payload bytes go to the batch's single byte buffer, headers (rare on telemetry) are
//! detached only when present. A batch therefore costs a couple of allocations however many
//! messages it holds, where detaching each message into an `OwnedMessage` allocated its
//! payload, key and topic name, and the partition task, on another thread, freed them again.

use std::ops::Range;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// Messages of one partition in offset order.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    offset: i64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
    headers: Option<OwnedHeaders>,
}

/// One message of a [`Batch`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct BatchMessage<'a> {
    /// Offset in its partition.
    pub offset: i64,
    /// The message key, if any.
    pub key: Option<&'a [u8]>,
    /// The payload, if any (`None` for a tombstone).
    pub payload: Option<&'a [u8]>,
    /// The headers, if the message had any.
    pub headers: Option<&'a OwnedHeaders>,
}

impl Batch {
    /// Copies `message` in.
    pub fn push<M: Message>(&mut self, message: &M) {
        let mut copy = |bytes: Option<&[u8]>| {
            bytes.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(message.key());
        let payload = copy(message.payload());
        let headers = message.headers().filter(|h| h.count() > 0).map(|h| {
            h.iter().fold(
                OwnedHeaders::new_with_capacity(h.count()),
                |owned, header| {
                    owned.insert(Header {
                        key: header.key,
                        value: header.value,
                    })
                },
            )
        });
        self.entries.push(Entry {
            offset: message.offset(),
            key,
            payload,
            headers,
        });
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offset of the first message.
    pub fn first_offset(&self) -> Option<i64> {
        self.entries.first().map(|e| e.offset)
    }

    /// The messages in the order they were pushed.
    pub fn iter(&self) -> impl Iterator<Item = BatchMessage<'_>> {
        self.entries.iter().map(|e| BatchMessage {
            offset: e.offset,
            key: e.key.clone().map(|r| &self.bytes[r]),
            payload: e.payload.clone().map(|r| &self.bytes[r]),
            headers: e.headers.as_ref(),
        })
    }
}

/// What one poll round read: each partition's messages in [`Batch`]es of at most `capacity`
/// messages (a partition task's queue holds that many, so a larger batch could never be
/// admitted), in the order the batches were opened.
#[derive(Debug)]
pub struct Polled {
    capacity: usize,
    batches: Vec<((String, i32), Batch)>,
}

impl Polled {
    /// Empty, for batches of at most `capacity` messages (`delivery.queue_capacity`, which
    /// the configuration keeps at one or more).
    pub fn new(capacity: usize) -> Self {
        Polled {
            capacity,
            batches: Vec::new(),
        }
    }

    /// Copies `message` into its partition's last batch, or a new one when that is full.
    pub fn push<M: Message>(&mut self, message: &M) {
        let (topic, partition) = (message.topic(), message.partition());
        let open = self
            .batches
            .iter()
            .rposition(|(tp, _)| tp.1 == partition && tp.0 == topic)
            .filter(|&i| self.batches[i].1.len() < self.capacity);
        let i = open.unwrap_or_else(|| {
            self.batches
                .push(((topic.to_string(), partition), Batch::default()));
            self.batches.len() - 1
        });
        self.batches[i].1.push(message);
    }

    /// The batches with their topic and partition, in order.
    pub fn iter(&self) -> impl Iterator<Item = &((String, i32), Batch)> {
        self.batches.iter()
    }

    /// Takes the batches out in order, leaving this empty.
    pub fn drain(&mut self) -> impl Iterator<Item = ((String, i32), Batch)> + '_ {
        self.batches.drain(..)
    }

    /// Drops every batch.
    pub fn clear(&mut self) {
        self.batches.clear();
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn message(
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> OwnedMessage {
        on(3, offset, key, payload, headers)
    }

    fn on(
        partition: i32,
        offset: i64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> OwnedMessage {
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            headers,
        )
    }

    #[test]
    fn polled_batches_keep_partition_order_and_capacity() {
        let mut polled = Polled::new(2);
        // Partition 0 gets five messages, partition 1 two, interleaved.
        for (partition, offset) in [
            (0, 10),
            (1, 50),
            (0, 11),
            (0, 12),
            (1, 51),
            (0, 13),
            (0, 14),
        ] {
            polled.push(&on(partition, offset, None, Some(b"x"), None));
        }
        let got: Vec<(i32, Vec<i64>)> = polled
            .iter()
            .map(|((_, p), b)| (*p, b.iter().map(|m| m.offset).collect()))
            .collect();
        assert_eq!(
            got,
            [
                (0, vec![10, 11]),
                (1, vec![50, 51]),
                (0, vec![12, 13]),
                (0, vec![14]),
            ]
        );
        assert_eq!(polled.drain().count(), 4);
        assert_eq!(polled.iter().count(), 0);
    }

    #[test]
    fn messages_come_back_as_pushed() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some(b"v".as_slice()),
        });
        let input = [
            message(7, Some(b"IMP-1"), Some(b"{\"a\":1}"), None),
            message(8, None, Some(b""), Some(headers)),
            message(9, Some(b""), None, Some(OwnedHeaders::new())),
            message(10, Some(b"k"), Some(&[0xff; 3000]), None),
        ];
        let mut batch = Batch::default();
        for m in &input {
            batch.push(m);
        }
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.first_offset(), Some(7));
        let got: Vec<BatchMessage<'_>> = batch.iter().collect();
        for (m, g) in input.iter().zip(&got) {
            assert_eq!(g.offset, m.offset());
            assert_eq!(g.key, m.key());
            assert_eq!(g.payload, m.payload());
        }
        // Empty header sets are dropped; present ones are kept.
        let h = got[1].headers.expect("headers of message 8");
        assert_eq!(h.count(), 1);
        assert_eq!(h.get(0).key, "h");
        assert_eq!(h.get(0).value, Some(b"v".as_slice()));
        assert!(got[0].headers.is_none() && got[2].headers.is_none());
    }
}
