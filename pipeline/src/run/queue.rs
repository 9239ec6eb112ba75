//! [`PartitionQueue`]: one assigned partition's own librdkafka queue, read in batches by the
//! partition's task.
//!
//! A consumer delivers every partition's messages through its one consumer queue. Taken
//! from there, one `poll` a message, each message costs a lock, an event and three clock
//! reads on the polling thread, and then has to be copied (or detached) and handed to the
//! partition's task on another thread. Instead, right after an assignment the Kafka runtime
//! splits each partition's fetch queue off the consumer queue: the partition's task takes up
//! to a batch of messages with one `rd_kafka_consume_batch_queue` call, decodes them where
//! librdkafka put them, and releases them ([`Messages`]). The consumer queue still carries
//! rebalances, statistics and errors, and the poll thread still polls it.
//!
//! When its queue is empty a task waits on [`PartitionQueue::readable`], which librdkafka's
//! queue event callback wakes when a message arrives in the empty queue.
//!
//! ```text
//! broker thread ──fetch──> partition fetch queue ──(empty -> non-empty: wake)──> task
//!                          (split: not forwarded)   take(max) ─> Messages ─> decode, charts
//! ```

use std::ffi::{CStr, CString, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use tokio::sync::Notify;

/// Longest a task waits on an empty queue before it looks again.
pub const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A partition's fetch queue, split off the consumer queue.
///
/// Invariant: the librdkafka handle the queue was split from is destroyed only after this
/// queue (the Kafka runtime stops every partition task, and so drops every queue, before
/// it drops its consumer).
pub struct PartitionQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The consumer the queue was split from (it outlives the queue), the topic and the
    /// partition: for the watermarks librdkafka caches from its fetches.
    rk: NonNull<rdsys::rd_kafka_t>,
    topic: CString,
    partition: i32,
    /// Woken by librdkafka when a message lands in the empty queue; one reference is lent
    /// to the callback (released in `drop`, after the callback is disabled).
    wake: Arc<Notify>,
}

// SAFETY: librdkafka queues are thread-safe (every operation takes the queue's lock), and
// the handle is owned by exactly one `PartitionQueue`; the consumer handle is only read
// for its cached watermarks (under the partition's lock); `Notify` is `Sync`.
unsafe impl Send for PartitionQueue {}
// SAFETY: as for `Send`: `take` and `readable` may run from several threads at once.
unsafe impl Sync for PartitionQueue {}

/// librdkafka's queue event callback: a message arrived in the empty queue.
unsafe extern "C" fn queue_nonempty(_rk: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the pointer `split` made with `Arc::into_raw`, whose reference
    // `drop` releases only after it has disabled this callback (librdkafka calls the
    // callback under the queue's lock, and disabling takes that lock).
    let wake = unsafe { &*(opaque as *const Notify) };
    wake.notify_one();
}

impl PartitionQueue {
    /// Splits the fetch queue of partition `partition` of `topic` off the consumer queue of
    /// `rk`, so that the partition's messages from now on arrive only here. `None` when
    /// librdkafka does not know the partition (or the topic name holds a NUL byte).
    ///
    /// # Safety
    ///
    /// `rk` must be a live consumer handle that outlives the returned queue.
    pub unsafe fn split(rk: *mut rdsys::rd_kafka_t, topic: &str, partition: i32) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: `rk` is live (the caller's promise) and `topic` is NUL-terminated.
        let raw = unsafe { rdsys::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition) };
        let queue = NonNull::new(raw)?;
        let rk = NonNull::new(rk)?;
        let wake = Arc::new(Notify::new());
        // SAFETY: `queue` is the handle just returned. Forwarding to nothing takes the
        // partition's messages off the consumer queue (and, as the application's choice,
        // it sticks when the fetcher starts); the callback gets its own reference to `wake`.
        unsafe {
            rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut());
            rdsys::rd_kafka_queue_cb_event_enable(
                queue.as_ptr(),
                Some(queue_nonempty),
                Arc::into_raw(wake.clone()) as *mut c_void,
            );
        }
        Some(PartitionQueue {
            queue,
            rk,
            topic,
            partition,
            wake,
        })
    }

    /// Moves up to `max` messages that are waiting in the queue into `into`, without
    /// waiting; returns how many.
    pub fn take(&self, max: usize, into: &mut Messages) -> usize {
        into.messages.reserve(max);
        let spare = into.messages.spare_capacity_mut();
        // SAFETY: the queue is live; librdkafka writes at most `max` message pointers into
        // the vector's spare capacity, which holds at least `max`.
        let taken = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                0,
                spare.as_mut_ptr().cast(),
                max,
            )
        };
        let taken = usize::try_from(taken).unwrap_or(0).min(max);
        // SAFETY: librdkafka initialised the first `taken` pointers, each a message this
        // `Messages` now owns (and destroys).
        unsafe { into.messages.set_len(into.messages.len() + taken) };
        taken
    }

    /// The partition's low and high watermarks as of librdkafka's last fetch response for
    /// it (no request: cached), if it has had one; the low one is negative while unknown.
    pub fn cached_watermarks(&self) -> Option<(i64, i64)> {
        let (mut low, mut high) = (-1, -1);
        // SAFETY: `rk` is live (the invariant of `split`), `topic` is NUL-terminated, and
        // librdkafka only writes the two offsets.
        let err = unsafe {
            rdsys::rd_kafka_get_watermark_offsets(
                self.rk.as_ptr(),
                self.topic.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some((low, high))
    }

    /// Resolves once a message has arrived since the queue was last found empty (at once
    /// when one arrived after the last [`take`](Self::take) that came back short), or after
    /// [`RECHECK`] at the latest: librdkafka signals only a queue that goes from empty to
    /// non-empty, and the timeout guards against a take that came back empty from a queue
    /// that was not.
    pub async fn readable(&self) {
        let _ = tokio::time::timeout(RECHECK, self.wake.notified()).await;
    }
}

impl Drop for PartitionQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is live; once the callback is disabled librdkafka holds no copy
        // of the lent pointer, so its reference can be taken back.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            drop(Arc::from_raw(Arc::as_ptr(&self.wake)));
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// Messages taken from a [`PartitionQueue`], in offset order, owned until
/// [`clear`](Self::clear) or drop hands them back to librdkafka.
#[derive(Default)]
pub struct Messages {
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

// SAFETY: a consumed librdkafka message may be read and destroyed on any thread; the
// pointers are owned by this value alone.
unsafe impl Send for Messages {}
// SAFETY: through `&Messages` the messages are only read, and librdkafka no longer writes
// to a message it has handed out.
unsafe impl Sync for Messages {}

impl Messages {
    /// Messages held.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The messages, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = QueuedMessage<'_>> {
        // By index, so that the iterator borrows `self` (which is `Sync`) rather than the
        // vector of raw pointers (which is not).
        (0..self.messages.len()).map(move |i| self.at(i))
    }

    /// The last message (the highest offset), borrowed.
    pub fn last(&self) -> Option<QueuedMessage<'_>> {
        self.messages.len().checked_sub(1).map(|i| self.at(i))
    }

    /// Message `i` (below [`len`](Self::len)), borrowed.
    pub fn at(&self, i: usize) -> QueuedMessage<'_> {
        QueuedMessage {
            message: self.messages[i],
            _owner: std::marker::PhantomData,
        }
    }

    /// Hands every message back to librdkafka.
    pub fn clear(&mut self) {
        for message in self.messages.drain(..) {
            // SAFETY: owned, live, and destroyed exactly once.
            unsafe { rdsys::rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for Messages {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One message of [`Messages`], borrowed.
#[derive(Clone, Copy)]
pub struct QueuedMessage<'a> {
    /// A live message owned by the `Messages` this borrows.
    message: *const rdsys::rd_kafka_message_t,
    _owner: std::marker::PhantomData<&'a Messages>,
}

// SAFETY: a shared borrow of a `Messages`, which is `Sync`.
unsafe impl Send for QueuedMessage<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for QueuedMessage<'_> {}

/// Bytes at `ptr`, `len` long, or `None` for a null pointer.
///
/// # Safety
///
/// A non-null `ptr` must point to `len` bytes that live as long as `'a`.
unsafe fn bytes<'a>(ptr: *const c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: the caller's promise.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

impl<'a> QueuedMessage<'a> {
    fn message(&self) -> &'a rdsys::rd_kafka_message_t {
        // SAFETY: the message lives, unchanged, as long as the `Messages` borrowed for 'a.
        unsafe { &*self.message }
    }

    /// Offset in its partition.
    pub fn offset(&self) -> i64 {
        self.message().offset
    }

    /// The key, if any.
    pub fn key(&self) -> Option<&'a [u8]> {
        let m = self.message();
        // SAFETY: librdkafka's key of a live message: `key_len` bytes that live with it.
        unsafe { bytes(m.key, m.key_len) }
    }

    /// The payload, if any (`None` for a tombstone).
    pub fn payload(&self) -> Option<&'a [u8]> {
        let m = self.message();
        // SAFETY: as for the key.
        unsafe { bytes(m.payload, m.len) }
    }

    /// The consumer error this entry reports instead of a message (a failed fetch, say).
    pub fn error(&self) -> Option<String> {
        let m = self.message();
        if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        // SAFETY: `rd_kafka_message_errstr` returns a NUL-terminated string that lives with
        // the message (or with librdkafka's static error table).
        let text = unsafe { CStr::from_ptr(rdsys::rd_kafka_message_errstr(m)) };
        Some(format!("{:?}: {}", m.err, text.to_string_lossy()))
    }

    /// The headers, copied out (only dead letters need them, so they are parsed only here).
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: a live message; the headers it hands out live with it.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.message, &mut headers) };
        if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for index in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
            // SAFETY: `headers` is live; librdkafka sets the three outputs or reports the
            // end of the list.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(headers, index, &mut name, &mut value, &mut size)
            };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: a NUL-terminated name and `size` value bytes, both living with the
            // message.
            let name = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: as above.
            let value = unsafe { bytes(value, size) }.map(<[u8]>::to_vec);
            out.push((name, value));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};

    use super::*;

    const TOPIC: &str = "queue-test";

    fn produce(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>, n: usize) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for i in 0..n {
            let payload = format!("message {i}");
            let key = format!("k{i}");
            let mut record = BaseRecord::to(TOPIC)
                .partition(1)
                .payload(&payload)
                .key(&key);
            if i == 2 {
                record = record.headers(
                    OwnedHeaders::new()
                        .insert(Header {
                            key: "a",
                            value: Some("1"),
                        })
                        .insert::<str>(Header {
                            key: "b",
                            value: None,
                        }),
                );
            }
            producer.send(record).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// Against librdkafka's own mock cluster: the split queue gets the partition's messages
    /// in order, in batches of at most the asked size, with keys, payloads and headers; it
    /// wakes its reader when a message arrives, and the consumer queue stays empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_split_queue_delivers_its_partition_in_batches_and_wakes_its_reader() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 2, 1).unwrap();
        produce(&cluster, 5);
        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", cluster.bootstrap_servers())
                .set("group.id", "queue-test")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        );
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 1, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        // SAFETY: the consumer outlives the queue (dropped at the end of the test, after it).
        let queue = unsafe { PartitionQueue::split(consumer.client().native_ptr(), TOPIC, 1) }
            .expect("partition known");
        let mut messages = Messages::default();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            assert!(consumer.poll(Duration::ZERO).is_none(), "consumer queue");
            tokio::time::timeout(Duration::from_secs(10), queue.readable())
                .await
                .expect("woken");
            while queue.take(2, &mut messages) > 0 {
                assert!(messages.len() <= 2);
                for m in messages.iter() {
                    assert_eq!(m.error(), None);
                    seen.push((
                        m.offset(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                        m.headers(),
                    ));
                }
                messages.clear();
            }
        }
        for (i, (offset, key, payload, headers)) in seen.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            assert_eq!(key.as_deref(), Some(format!("k{i}").as_bytes()));
            assert_eq!(payload.as_deref(), Some(format!("message {i}").as_bytes()));
            if i == 2 {
                assert_eq!(
                    headers,
                    &vec![
                        ("a".to_string(), Some(b"1".to_vec())),
                        ("b".to_string(), None)
                    ]
                );
            } else {
                assert!(headers.is_empty());
            }
        }
        // A message produced while the reader waits wakes it.
        // (A wake-up left over from the batches above may come first: that one finds the
        // queue empty, as a task's spurious wake-up would.)
        let wait = tokio::spawn(async move {
            let mut messages = Messages::default();
            loop {
                tokio::time::timeout(Duration::from_secs(10), queue.readable())
                    .await
                    .expect("woken by the new message");
                let n = queue.take(10, &mut messages);
                if n > 0 {
                    let offsets: Vec<i64> = messages.iter().map(|m| m.offset()).collect();
                    return (n, offsets);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        produce(&cluster, 1);
        let (n, offsets) = wait.await.unwrap();
        assert_eq!((n, offsets), (1, vec![5]));
        assert!(consumer.poll(Duration::from_millis(100)).is_none());
    }
}
