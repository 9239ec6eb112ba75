//! [`Coordinator`]: the partition tasks and the transaction, driven from the poll thread
//! (checkpoint barriers, commits, revocation, assignment).

use super::*;

impl Coordinator {
    /// Sends the checkpoint barrier to every task (answered between two of its batches) and
    /// returns where their answers will arrive. After a `last` barrier the tasks take no
    /// more messages.
    pub(super) fn barrier(
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
    pub(super) fn start_checkpoint<C: ConsumerContext>(
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
    pub(super) fn finish_in_flight<C: ConsumerContext>(
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
    pub(super) fn checkpoint<C: ConsumerContext>(
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

    pub(super) fn group_metadata<C: ConsumerContext>(
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

    pub(super) fn finished<C: ConsumerContext>(
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
    pub(super) fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), RunError> {
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
    pub(super) fn stop_workers_with(&mut self, abort: bool) {
        for (_, worker) in self.workers.drain() {
            drop(worker.tx);
            if abort {
                worker.task.abort();
            }
            let _ = self.rt.block_on(worker.task);
            for (topic, partition) in &worker.tps {
                self.shared.job.metrics.forget_partition(topic, *partition);
            }
        }
        self.shared.job.metrics.partitions_assigned.set(0);
        self.shared.job.metrics.keys.set(0);
    }

    pub(super) fn stop_workers(&mut self) {
        self.stop_workers_with(false);
    }

    /// Assignment of `tps` on the consumer `rk`: split each partition's queue off the
    /// consumer queue (first, before the fetcher delivers anything), group the partitions
    /// into tasks (one each, or partition p of every co-partitioned input together), restore
    /// every task's stores from the changelog, then start it.
    pub(super) fn assign(
        &mut self,
        rk: *mut rdkafka::bindings::rd_kafka_t,
        tps: &[Tp],
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let job = self.shared.job.clone();
        let mut queues = HashMap::with_capacity(tps.len());
        for (topic, partition) in tps {
            // SAFETY: `rk` is the live consumer whose rebalance is being served; the queues
            // go with the tasks, which `run` stops before it drops the consumer.
            let queue =
                unsafe { PartitionQueue::split(rk, topic, *partition) }.ok_or_else(|| {
                    RunError::Kafka(format!(
                        "cannot split the queue of {topic}[{partition}] off the consumer queue"
                    ))
                })?;
            queues.insert((topic.clone(), *partition), queue);
        }
        let groups = task_groups(&job.config.topics, tps)?;
        let mut restored: Vec<(Tp, PartitionChain)> = groups
            .iter()
            .map(|group| {
                let first = group[0].clone();
                let chain = PartitionChain::new(
                    job.chain.clone(),
                    &first.0,
                    Some(job.config.delivery.watermark_lateness_ms),
                );
                (first, chain)
            })
            .collect();
        self.restore_partitions(&mut restored)?;
        job.metrics
            .restore_duration
            .observe(started.elapsed().as_secs_f64());
        let mut keys = 0;
        let max_idle = Duration::from_millis(job.config.delivery.max_idle_ms);
        for ((first, chain), group) in restored.into_iter().zip(groups) {
            keys += chain.keys();
            let mut participants =
                Participants::open(&job.participants, &job.chain, &first.0, first.1)?;
            participants.recover(chain.prepared())?;
            for (stage, dropped) in chain.dropped() {
                tracing::warn!(
                    topic = %first.0,
                    partition = first.1,
                    stage,
                    keys = dropped,
                    "the changelog holds state of a stage this job does not run: dropped"
                );
            }
            let mut inputs = Vec::with_capacity(group.len());
            for tp in &group {
                let skip_below = match self.shared.mode {
                    DeliveryMode::AtLeastOnce => self.resume_offset(tp, &chain)?,
                    DeliveryMode::ExactlyOnce => None,
                };
                let queue = queues
                    .remove(tp)
                    .expect("a queue for every assigned partition");
                inputs.push(Input::new(&job, tp.clone(), queue, skip_below));
            }
            // The poll thread sends one barrier at a time and waits for its answers.
            let (tx, rx) = mpsc::channel(1);
            let task = self.rt.spawn(partition_task(
                self.shared.clone(),
                chain,
                participants,
                Inputs::new(inputs, max_idle),
                rx,
            ));
            self.workers.insert(
                first,
                Worker {
                    tps: group,
                    tx,
                    task,
                },
            );
        }
        job.metrics.keys.set(keys as i64);
        job.metrics.partitions_assigned.set(tps.len() as i64);
        job.health.set_ready(true);
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// at_least_once: the offset the restored state of `tp` reaches, below which records
    /// are skipped (the state holds them, their outputs were delivered), unless the input
    /// partition ends before it: a topic deleted and made again under the same name starts
    /// its offsets afresh, and its records must not be skipped.
    pub(super) fn resume_offset(
        &self,
        tp: &Tp,
        chain: &PartitionChain,
    ) -> Result<Option<i64>, RunError> {
        let Some(resume) = chain.resume_offset(&tp.0) else {
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
}

/// Aborts the partition tasks left running when [`run`] is left early (an error on the way
/// out, a panic), before the consumer their queues were split from is destroyed.
pub(super) struct StopTasksOnDrop<'a>(pub(super) &'a Mutex<Coordinator>);

impl Drop for StopTasksOnDrop<'_> {
    fn drop(&mut self) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        c.stop_workers_with(true);
    }
}

/// What a completed checkpoint collected.
pub(super) struct Completed {
    /// Next offsets of the partitions that processed anything.
    pub(super) offsets: TopicPartitionList,
    /// Chart states held by all tasks.
    pub(super) keys: usize,
}

/// Collects the tasks' answers to the barrier of `epoch`; in exactly-once, commits the
/// transaction with their offsets, begins the next one and opens the gate to it. A commit
/// that cannot be retried aborts the transaction (unless the producer is fenced) and
/// returns the error.
pub(super) fn complete(
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
        for ((topic, partition), next) in reply.offsets {
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

/// The assigned partitions `tps` grouped into tasks, each group in `topics.input` order:
/// one partition each, or with `co_partitioned` partition p of every input together.
///
/// # Errors
///
/// With `co_partitioned`, a partition assigned without the same partition of every other
/// input (an assignor that does not co-partition).
pub(super) fn task_groups(
    topics: &super::super::config::TopicsConfig,
    tps: &[Tp],
) -> Result<Vec<Vec<Tp>>, RunError> {
    let rank = |topic: &str| topics.input.iter().position(|t| t == topic);
    if !topics.co_partitioned {
        return Ok(tps.iter().map(|tp| vec![tp.clone()]).collect());
    }
    let mut by_partition: std::collections::BTreeMap<i32, Vec<Tp>> = Default::default();
    for tp in tps {
        by_partition.entry(tp.1).or_default().push(tp.clone());
    }
    by_partition
        .into_values()
        .map(|mut group| {
            group.sort_by_key(|(topic, _)| rank(topic));
            let have: Vec<&str> = group.iter().map(|(t, _)| t.as_str()).collect();
            if have != topics.input {
                return Err(RunError::Kafka(format!(
                    "co-partitioned inputs: partition {} was assigned of {have:?} but not of \
                     every input {:?}; the group's assignor must give each member the same \
                     partitions of every input (spcvm sets partition.assignment.strategy = \
                     range: does every member of the group run with the same inputs?)",
                    group[0].1, topics.input
                )));
            }
            Ok(group)
        })
        .collect()
}
