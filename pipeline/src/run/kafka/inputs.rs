//! A partition task's inputs: partition p of one input topic, or of each topic of a
//! co-partitioned group (`topics.co_partitioned`, Kafka Streams' partition group), taken
//! from their queues in batches and merged in event-time order.
//!
//! The merge: of the inputs' next records, the one with the lowest event time goes first,
//! ties to the input listed first in `topics.input` (a message that does not decode has no
//! event time and goes as soon as it is next). A round merges until one input's taken
//! messages run out, since its next message may be earlier than the others'. An input with
//! nothing taken holds the others back while the broker may hold more of it (its position
//! is short of the high watermark librdkafka last saw, or unknown), for at most
//! `delivery.max_idle_ms` (Kafka Streams' `max.task.idle.ms`); an input read to its end
//! holds nothing back. `spcvm backtest` merges several input files by the same rule, so a
//! backtest of the topics' records gives what the job gives when every record was on the
//! broker in time.

use prometheus::IntCounter;

use super::task::decode_with_retry;
use super::*;
use crate::decode::DecodeError;
use spcvm_schemas::TelemetryView;

/// One input partition of a task.
pub(super) struct Input {
    pub(super) tp: Tp,
    /// Messages taken from the queue; the first `done` of them are processed or passed
    /// over. Declared before the queue: they go back to librdkafka before it is destroyed.
    taken: Messages,
    queue: PartitionQueue,
    done: usize,
    /// False once a take came back empty, until librdkafka signals an arrival.
    readable: bool,
    /// Since when the input has had nothing taken and its queue nothing more.
    empty_since: Option<Instant>,
    /// Next offset to consume once everything before it is safe.
    pub(super) next_offset: Option<i64>,
    /// at_least_once: records before this offset are in the restored state already (it
    /// was written after their offsets' commit failed or before it happened), and skipped.
    pub(super) skip_below: Option<i64>,
    consumed: IntCounter,
}

impl Input {
    /// The input of `tp`, read from `queue`, skipping records below `skip_below`.
    pub(super) fn new(job: &Job, tp: Tp, queue: PartitionQueue, skip_below: Option<i64>) -> Input {
        Input {
            consumed: job.metrics.messages_consumed.with_label_values(&[&tp.0]),
            tp,
            queue,
            taken: Messages::default(),
            done: 0,
            readable: true,
            empty_since: None,
            next_offset: None,
            skip_below,
        }
    }

    fn has_taken(&self) -> bool {
        self.done < self.taken.len()
    }

    /// Whether the input, having nothing taken, need not hold the others back: it is read
    /// to the end librdkafka last saw, or it has waited `max_idle` for more.
    fn passable(&self, now: Instant, max_idle: Duration) -> bool {
        let read_to_end = self.queue.cached_watermarks().is_some_and(|(low, high)| {
            self.next_offset
                .map_or(low >= 0 && high <= low, |next| next >= high)
        });
        read_to_end
            || self
                .empty_since
                .is_some_and(|since| now.duration_since(since) >= max_idle)
    }
}

/// What a task's inputs allow next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Take messages from a queue that may hold some.
    Take,
    /// Merge and process the messages taken.
    Process,
    /// Wait for an arrival, or until the instant an input has idled for long enough.
    Wait(Option<Instant>),
}

/// A task's inputs, in `topics.input` order.
pub(super) struct Inputs {
    pub(super) inputs: Vec<Input>,
    max_idle: Duration,
}

/// One message of a merge round, in merged order: its input and the message.
pub(super) type Merged<'a> = (usize, QueuedMessage<'a>);

/// Where a merge round left each input.
pub(super) struct Progress {
    /// Messages passed (processed, skipped, or consumer errors).
    done: usize,
    /// Offset after the last message passed.
    next_offset: Option<i64>,
    /// Records skipped below `skip_below`.
    skipped: usize,
}

impl Inputs {
    /// A task's `inputs` (in `topics.input` order), waiting at most `max_idle` for one
    /// that has nothing fetched.
    pub(super) fn new(inputs: Vec<Input>, max_idle: Duration) -> Inputs {
        Inputs { inputs, max_idle }
    }

    /// The task's name in logs and errors: its first input partition.
    pub(super) fn first(&self) -> &Tp {
        &self.inputs[0].tp
    }

    /// The next offset of every input that has processed anything.
    pub(super) fn offsets(&self) -> Vec<(Tp, i64)> {
        self.inputs
            .iter()
            .filter_map(|i| Some((i.tp.clone(), i.next_offset?)))
            .collect()
    }

    /// What to do next.
    pub(super) fn next(&self, now: Instant) -> Next {
        if self.inputs.iter().any(|i| !i.has_taken() && i.readable) {
            return Next::Take;
        }
        if !self.inputs.iter().any(Input::has_taken) {
            return Next::Wait(None);
        }
        let mut holding = self
            .inputs
            .iter()
            .filter(|i| !i.has_taken() && !i.passable(now, self.max_idle))
            .peekable();
        if holding.peek().is_none() {
            return Next::Process;
        }
        Next::Wait(
            holding
                .filter_map(|i| i.empty_since)
                .min()
                .map(|since| since + self.max_idle),
        )
    }

    /// Takes up to `batch` messages into every input that has none left and whose queue
    /// may hold some; returns how many were taken.
    pub(super) fn take(&mut self, batch: usize, now: Instant) -> usize {
        let mut total = 0;
        for input in self
            .inputs
            .iter_mut()
            .filter(|i| !i.has_taken() && i.readable)
        {
            input.taken.clear();
            input.done = 0;
            let taken = input.queue.take(batch, &mut input.taken);
            if taken == 0 {
                input.readable = false;
                input.empty_since.get_or_insert(now);
            } else {
                input.empty_since = None;
                input.consumed.inc_by(taken as u64);
                total += taken;
            }
        }
        total
    }

    /// Resolves when a queue that was found empty may have messages again, or at
    /// `deadline`.
    pub(super) async fn wait(&self, deadline: Option<Instant>) {
        let arrivals: Vec<_> = self
            .inputs
            .iter()
            .filter(|i| !i.readable)
            .map(|i| Box::pin(i.queue.readable()))
            .collect();
        if arrivals.is_empty() {
            // Not reached (`next` waits only on inputs found empty); look again shortly.
            tokio::time::sleep(crate::run::queue::RECHECK).await;
            return;
        }
        let arrival = futures_util::future::select_all(arrivals);
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = arrival => {}
                    () = tokio::time::sleep_until(deadline.into()) => {}
                }
            }
            None => {
                arrival.await;
            }
        }
    }

    /// After [`Inputs::wait`]: every queue is looked at again.
    pub(super) fn wake(&mut self) {
        for input in &mut self.inputs {
            input.readable = true;
        }
    }

    /// Merges the taken messages in event-time order until one input's run out, decoding
    /// each as it comes to the head of its input: the messages into `merged`, their
    /// decoded records into `decoded` (indexing `merged`). Returns where each input was
    /// left, for [`Inputs::advance`].
    pub(super) async fn merge<'a>(
        &'a self,
        job: &Job,
        merged: &mut Vec<Merged<'a>>,
        decoded: &mut Vec<(usize, Result<TelemetryRef<'a>, Rejection>)>,
    ) -> Vec<Progress> {
        let mut progress: Vec<Progress> = self
            .inputs
            .iter()
            .map(|i| Progress {
                done: i.done,
                next_offset: i.next_offset,
                skipped: 0,
            })
            .collect();
        let mut heads = Vec::with_capacity(self.inputs.len());
        for (k, input) in self.inputs.iter().enumerate() {
            heads.push(next_head(job, input, &mut progress[k]).await);
        }
        let single = self.inputs.len() == 1;
        while let Some(k) = (0..heads.len())
            .filter(|&k| heads[k].is_some())
            .min_by_key(|&k| heads[k].as_ref().map(|h| (h.event_time, k)))
        {
            let head = heads[k].take().expect("picked a head");
            progress[k].done = head.index + 1;
            progress[k].next_offset = Some(head.message.offset() + 1);
            decoded.push((merged.len(), head.record));
            merged.push((k, head.message));
            heads[k] = next_head(job, &self.inputs[k], &mut progress[k]).await;
            if heads[k].is_none() && !single {
                break;
            }
        }
        // The heads left are not processed: they come first in the next round.
        for (k, head) in heads.into_iter().enumerate() {
            if let Some(head) = head {
                progress[k].done = head.index;
            }
        }
        progress
    }

    /// Applies a merge round's progress.
    pub(super) fn advance(&mut self, progress: Vec<Progress>) {
        for (input, p) in self.inputs.iter_mut().zip(progress) {
            input.done = p.done;
            input.next_offset = input.next_offset.max(p.next_offset);
            let Some(below) = input.skip_below else {
                continue;
            };
            if p.skipped > 0 {
                tracing::info!(
                    topic = %input.tp.0,
                    partition = input.tp.1,
                    skipped = p.skipped,
                    below,
                    "skipped records the restored state holds already"
                );
            }
            if input.next_offset.is_some_and(|next| next >= below) {
                input.skip_below = None;
            }
        }
    }
}

/// An input's next message to merge, decoded.
struct Head<'a> {
    index: usize,
    message: QueuedMessage<'a>,
    /// Event time; a message that does not decode has none and goes first.
    event_time: i64,
    record: Result<TelemetryRef<'a>, Rejection>,
}

/// The next message of `input` after `progress.done` to merge, passing over consumer
/// errors and (at_least_once) records the restored state holds already.
async fn next_head<'a>(job: &Job, input: &'a Input, progress: &mut Progress) -> Option<Head<'a>> {
    let mut index = progress.done;
    while index < input.taken.len() {
        let message = input.taken.at(index);
        if let Some(error) = message.error() {
            tracing::warn!(topic = %input.tp.0, partition = input.tp.1, %error, "consumer error");
        } else if input
            .skip_below
            .is_some_and(|below| message.offset() < below)
        {
            progress.skipped += 1;
            progress.next_offset = Some(message.offset() + 1);
        } else {
            let payload = message.payload().unwrap_or_default();
            let result = match job.decoder.decode_ref(payload) {
                Err(e) if e.is_transient() => decode_with_retry(job, payload).await,
                result => result,
            };
            if let (Some(key), Ok(record)) = (message.key(), &result)
                && key != record.tool_id.as_bytes()
            {
                job.metrics.key_mismatches.inc();
            }
            let event_time = result.as_ref().map_or(i64::MIN, |r| r.event_time());
            return Some(Head {
                index,
                message,
                event_time,
                record: result.map_err(|e: DecodeError| Rejection::from(e)),
            });
        }
        index += 1;
        progress.done = index;
    }
    None
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;
    use crate::run::config::PipelineConfig;

    /// Telemetry of tool `tool` at `event_time`, as JSON.
    fn record(tool: &str, event_time: i64) -> String {
        format!(
            r#"{{"tool_id":"{tool}","tool_type":"ion_implant","recipe_id":"R","event_time":{event_time},"measurements":{{"beam_current_mA":1.0}}}}"#
        )
    }

    /// Runs the inputs the way a task does, taking two messages at a time, until `n`
    /// records went through; each record's (event time, tool) in merged order.
    async fn drain(job: &Job, inputs: &mut Inputs, n: usize) -> Vec<(i64, String)> {
        let mut order = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(20);
        while order.len() < n {
            assert!(Instant::now() < give_up, "merged only {order:?}");
            match inputs.next(Instant::now()) {
                Next::Take => {
                    inputs.take(2, Instant::now());
                }
                Next::Process => {
                    let (mut merged, mut decoded) = (Vec::new(), Vec::new());
                    let progress = inputs.merge(job, &mut merged, &mut decoded).await;
                    for (_, record) in &decoded {
                        let record = record.as_ref().expect("decodes");
                        order.push((record.event_time, record.tool_id.to_string()));
                    }
                    drop(decoded);
                    drop(merged);
                    inputs.advance(progress);
                }
                Next::Wait(deadline) => {
                    inputs.wait(deadline).await;
                    inputs.wake();
                }
            }
        }
        order
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn co_partitioned_inputs_merge_by_event_time_and_an_empty_one_holds_nothing_back() {
        let cluster = MockCluster::new(1).unwrap();
        let topics = [
            ("a", vec![1, 3, 4, 8]),
            ("b", vec![2, 3, 5, 6, 7]),
            ("c", vec![]),
        ];
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for (topic, times) in &topics {
            cluster.create_topic(topic, 1, 1).unwrap();
            for t in times {
                let payload = record(&topic.to_uppercase(), *t);
                producer
                    .send(
                        BaseRecord::<(), _>::to(topic)
                            .partition(0)
                            .payload(&payload),
                    )
                    .unwrap();
            }
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "inputs-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for (topic, _) in &topics {
            tpl.add_partition_offset(topic, 0, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let job = Job::new(PipelineConfig::default()).unwrap();
        let inputs = topics
            .iter()
            .map(|(topic, _)| {
                // SAFETY: the consumer outlives the queues (dropped at the end of the test,
                // after `inputs`, declared later).
                let queue =
                    unsafe { PartitionQueue::split(consumer.client().native_ptr(), topic, 0) }
                        .expect("partition known");
                Input::new(&job, (topic.to_string(), 0), queue, None)
            })
            .collect();
        // An idle wait longer than the test may take: the empty `c` (read to its end as
        // soon as librdkafka has fetched it once) must not hold the others back.
        let mut inputs = Inputs::new(inputs, Duration::from_secs(600));
        let order = drain(&job, &mut inputs, 9).await;
        let expected: Vec<(i64, String)> = [
            (1, "A"),
            (2, "B"),
            (3, "A"),
            (3, "B"),
            (4, "A"),
            (5, "B"),
            (6, "B"),
            (7, "B"),
            (8, "A"),
        ]
        .into_iter()
        .map(|(t, tool)| (t, tool.to_string()))
        .collect();
        assert_eq!(order, expected);
        let offsets = inputs.offsets();
        assert_eq!(
            offsets,
            [(("a".to_string(), 0), 4), (("b".to_string(), 0), 5)]
        );
    }
}
