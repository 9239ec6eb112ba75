//! One partition's task: takes its messages from its input partitions' queues in
//! batches (merged in event-time order when there are several: `inputs`), runs them
//! through the record path, sends or holds the outputs, and answers checkpoint barriers
//! between batches.

use super::inputs::{Inputs, Merged, Next};
use super::*;

/// One partition's task: takes its messages from its inputs' queues in batches, decodes
/// them in order, runs them through its chain, sends the outputs, and answers checkpoint
/// barriers between batches.
pub(super) async fn partition_task(
    shared: Arc<Shared>,
    mut chain: PartitionChain,
    participants: Participants,
    mut inputs: Inputs,
    mut rx: mpsc::Receiver<Barrier>,
) {
    let mut task = PartitionTask {
        gate: shared.gate.subscribe(),
        required_epoch: *shared.gate.borrow(),
        shared: shared.clone(),
        acks: FuturesOrdered::new(),
        step: Step::default(),
        held: VecDeque::new(),
        participants,
    };
    // Cleared by a last barrier (revocation, shutdown): what the task processed after it
    // would belong to no commit.
    let mut taking = true;
    loop {
        let next = inputs.next(Instant::now());
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
                    // Stopped: what was prepared is finalized if its checkpoint committed,
                    // or else by the partition's next owner (`Participant::recover`).
                    if let Err(e) = task.finalize_if_committed() {
                        shared.fail(e);
                    }
                    return;
                };
                let result = task.checkpoint(&mut chain, &inputs, reply).await;
                task.required_epoch = epoch;
                taking &= !last;
                if let Err(e) = result {
                    shared.fail(e);
                    return;
                }
            }
            // The transaction that held outputs wait for may have begun (and so the one
            // holding what participants prepared committed).
            _ = task.gate.changed(), if !task.held.is_empty() || task.participants.has_pending() => {
                if let Err(e) = task.finalize_if_committed() {
                    shared.fail(e);
                    return;
                }
                if let Err(e) = task.flush_if_open().await {
                    shared.fail(e);
                    return;
                }
            }
            () = inputs.wait(match next { Next::Wait(deadline) => deadline, _ => None }),
                if taking && matches!(next, Next::Wait(_)) => inputs.wake(),
            () = std::future::ready(()), if taking && next == Next::Take => {
                let taken = inputs.take(shared.batch, Instant::now());
                shared.uncheckpointed.fetch_add(taken as u64, Ordering::Relaxed);
            }
            () = std::future::ready(()), if taking && next == Next::Process => {
                if let Err(e) = task.records(&mut chain, &mut inputs, Instant::now()).await {
                    shared.fail(e);
                    return;
                }
                // Taking from the queues never waits: give the other tasks their turn.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The outputs of one message: their delivery futures, awaited in message order.
pub(super) type Acks = FuturesOrdered<
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acked, RunError>> + Send>>,
>;

/// A batch of messages whose outputs are all acknowledged.
pub(super) struct Acked {
    pub(super) received: Instant,
    /// Outputs of the batch's records on the stages' streams: one latency observation
    /// each.
    pub(super) produced: usize,
    /// At-least-once checkpoint: the barrier's answer, sent once this and every earlier
    /// output of the task is acknowledged (the ack queue resolves in order).
    pub(super) reply: Option<(CheckpointSender, CheckpointReply)>,
}

/// Where a task answers a checkpoint barrier.
pub(super) type CheckpointSender = std_mpsc::SyncSender<Result<CheckpointReply, RunError>>;

pub(super) struct PartitionTask {
    /// Sends wait for this to reach `required_epoch` (exactly-once).
    pub(super) gate: tokio::sync::watch::Receiver<u64>,
    /// The transaction this task's next outputs belong to.
    pub(super) required_epoch: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) acks: Acks,
    /// The record path's results for the batch being processed.
    pub(super) step: Step,
    /// Outputs of whole batches held back, in order, while the transaction they belong to
    /// has not begun (exactly-once: the previous one is committing); sent once it has.
    pub(super) held: VecDeque<HeldBatch>,
    /// Sinks outside Kafka in the checkpoints' two-phase commit.
    pub(super) participants: Participants,
}

impl PartitionTask {
    /// Whether this task's outputs may be sent now: at-least-once, or the transaction they
    /// belong to has begun.
    pub(super) fn gate_is_open(&self) -> bool {
        self.shared.mode != DeliveryMode::ExactlyOnce || *self.gate.borrow() >= self.required_epoch
    }

    /// Sends every held output, in order (the gate must be open), one acknowledgement
    /// future per batch.
    pub(super) async fn flush(&mut self) -> Result<(), RunError> {
        let shared = self.shared.clone();
        while let Some(batch) = self.held.pop_front() {
            let mut deliveries = Vec::with_capacity(batch.outputs.len());
            for output in batch.outputs {
                deliveries.push(match output {
                    Held::Output {
                        stream,
                        key,
                        payload,
                    } => {
                        let topic = &shared.job.outputs[usize::from(stream.0)].topic;
                        let delivery = shared.sink.send_output(topic, &key, &payload).await?;
                        (Output::Stream(stream), delivery)
                    }
                    Held::DeadLetter {
                        tp,
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
                            topic: &tp.0,
                            partition: tp.1,
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
                batch.produced,
            ));
        }
        Ok(())
    }

    /// Sends the held outputs if their transaction has begun.
    pub(super) async fn flush_if_open(&mut self) -> Result<(), RunError> {
        if !self.held.is_empty() && self.gate_is_open() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits until the transaction this task's outputs belong to has begun.
    pub(super) async fn gate_open(&mut self) -> Result<(), RunError> {
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

    /// Processes a merge round of the inputs' messages, then queues one future for all
    /// their deliveries, or, in exactly-once while the transaction they belong to has not
    /// begun, holds their outputs back (up to [`MAX_HELD`] outputs and [`MAX_HELD_BYTES`])
    /// and goes on.
    pub(super) async fn records(
        &mut self,
        chain: &mut PartitionChain,
        inputs: &mut Inputs,
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
        // One clone a batch (a clone a record was a contended atomic pair on every record).
        let shared = self.shared.clone();
        let job = &shared.job;
        let mut merged: Vec<Merged<'_>> = Vec::with_capacity(shared.batch);
        let mut decoded = Vec::with_capacity(shared.batch);
        let progress = inputs.merge(job, &mut merged, &mut decoded).await;
        self.step.batch(chain, decoded);
        self.step.count(&job.metrics);
        for (i, rejection) in self.step.rejected.drain(..) {
            let (k, message) = merged[i];
            let tp = &inputs.inputs[k].tp;
            Self::dead_letter(&shared, tp, &mut outbox, &message, rejection).await?;
        }
        let produced = self.step.outputs.len();
        for emitted in self.step.outputs.drain(..) {
            self.participants.write(&job.chain, &emitted)?;
            let stream = &job.outputs[usize::from(emitted.stream.0)];
            let key = emitted.output.key();
            let payload = stream
                .encoding
                .encode(emitted.output.as_ref())
                .map_err(|source| KafkaSinkError::Encode {
                    topic: stream.topic.clone(),
                    key: key.to_string(),
                    source,
                })?;
            match &mut outbox {
                Outbox::Sending(deliveries) => {
                    let delivery = shared
                        .sink
                        .send_output(&stream.topic, key.as_bytes(), &payload)
                        .await?;
                    deliveries.push((Output::Stream(emitted.stream), delivery));
                }
                Outbox::Holding(held) => held.push(Held::Output {
                    stream: emitted.stream,
                    key: key.as_bytes().to_vec(),
                    payload,
                }),
            }
        }
        self.step.clear();
        drop(merged);
        inputs.advance(progress);
        match outbox {
            Outbox::Sending(deliveries) => {
                self.acks
                    .push_back(acks_of(shared.clone(), deliveries, received, produced));
            }
            Outbox::Holding(outputs) if !outputs.is_empty() => {
                self.held.push_back(HeldBatch {
                    received,
                    produced,
                    bytes: outputs.iter().map(Held::bytes).sum(),
                    outputs,
                });
                self.flush_if_open().await?;
            }
            Outbox::Holding(_) => {}
        }
        Ok(())
    }

    /// Sends `message` to the dead-letter topic, or holds a copy of it (a free-standing
    /// future: it must not borrow the task, whose ack queue is not `Sync`).
    pub(super) async fn dead_letter(
        shared: &Shared,
        tp: &Tp,
        outbox: &mut Outbox,
        message: &QueuedMessage<'_>,
        rejection: Rejection,
    ) -> Result<(), RunError> {
        let kind = rejection.kind();
        let error = match rejection {
            Rejection::Undecodable { reason, .. } | Rejection::NonFinite { reason } => reason,
        };
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
                tp: tp.clone(),
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

    pub(super) fn acknowledged(&mut self, ack: Result<Acked, RunError>) -> Result<(), RunError> {
        let ack = ack?;
        let latency = ack.received.elapsed().as_secs_f64();
        for _ in 0..ack.produced {
            self.shared.job.metrics.processing_latency.observe(latency);
        }
        if let Some((reply, answer)) = ack.reply {
            // at_least_once: the checkpoint's changelog records, what participants prepared
            // among them, are stored.
            self.participants.finalize()?;
            // The coordinator may have stopped waiting (it failed): nothing to tell.
            let _ = reply.send(Ok(answer));
        }
        Ok(())
    }

    /// exactly_once: finalizes what participants prepared once the transaction holding it
    /// has committed (the gate has reached the epoch of the outputs after it).
    pub(super) fn finalize_if_committed(&mut self) -> Result<(), RunError> {
        if self.shared.mode == DeliveryMode::ExactlyOnce
            && self.participants.has_pending()
            && self.gate_is_open()
        {
            self.participants.finalize()?;
        }
        Ok(())
    }

    /// Answers a checkpoint barrier: sends the changelog records of what changed, and
    /// replies with the next offset to consume. In exactly-once the reply goes at once (the
    /// commit flushes every output of the transaction); in at-least-once it goes when every
    /// earlier output of the task is acknowledged, while the task goes on processing.
    pub(super) async fn checkpoint(
        &mut self,
        chain: &mut PartitionChain,
        inputs: &Inputs,
        reply: CheckpointSender,
    ) -> Result<(), RunError> {
        let result = self.write_changelog(chain, inputs).await;
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
                    produced: 0,
                    reply: Some((reply, answer)),
                }))));
            }
        }
        Ok(())
    }

    /// Sends the changelog records of the state changed since the last checkpoint (in the
    /// transaction this task is filling) and queues their acknowledgements.
    pub(super) async fn write_changelog(
        &mut self,
        chain: &mut PartitionChain,
        inputs: &Inputs,
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
        let prepared = self.participants.prepare()?;
        let offsets = inputs.offsets();
        let next: Vec<(&str, i64)> = offsets.iter().map(|((t, _), o)| (t.as_str(), *o)).collect();
        let partition = inputs.first().1;
        for record in chain.checkpoint(&next, prepared) {
            let delivery = sink
                .send_state(partition, &record.key, &record.value)
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
            offsets,
            keys: chain.keys(),
        })
    }
}

/// Decodes `payload`, waiting and retrying while the failure is transient (the schema
/// registry is unreachable): such a message is not bad and must not be dead-lettered.
pub(super) async fn decode_with_retry<'a>(
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
