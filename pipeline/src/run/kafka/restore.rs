//! Restore: the changelog partitions of newly assigned input partitions read into their
//! stores, and the partition counts the job checks at start.

use super::*;

impl Coordinator {
    /// Reads the changelog partitions of `partitions` from the beginning to their end
    /// (read_committed: only committed state) into the partitions' stage chains.
    pub(super) fn restore_partitions(
        &mut self,
        partitions: &mut [(Tp, PartitionChain)],
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

/// The partition count of `topic`; an error naming it when it does not exist.
pub(super) fn topic_partitions<C: ConsumerContext>(
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
/// Co-partitioned inputs must have the same count.
pub(super) fn input_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    inputs: &[&str],
    changelog: &str,
    co_partitioned: bool,
) -> Result<usize, RunError> {
    let have = topic_partitions(consumer, changelog)?;
    let mut total = 0;
    let mut first: Option<(&str, usize)> = None;
    for input in inputs {
        let need = topic_partitions(consumer, input)?;
        total += need;
        match first {
            Some((name, count)) if co_partitioned && count != need => {
                return Err(RunError::Kafka(format!(
                    "co-partitioned inputs need the same partition count, but `{name}` has \
                     {count} and `{input}` has {need}: a task reads partition p of every \
                     input, so a tool's records must land on the same partition number in \
                     each (add partitions to the smaller, or set topics.co_partitioned = \
                     false to read them as separate streams)"
                )));
            }
            Some(_) => {}
            None => first = Some((input, need)),
        }
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
    pub(super) fn restore_done(&self, targets: &HashMap<i32, i64>) -> Result<bool, RunError> {
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
