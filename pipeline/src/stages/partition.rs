//! [`PartitionChain`]: the stores of every stage for one input partition, and the pure
//! logic that feeds them.
//!
//! Every runtime hands each valid record to the chain of the partition it came from; the
//! chain runs it through the stages in order (a stage that reads an earlier stage's stream
//! gets that stream's outputs), advances the partition's event-time watermark (every
//! [`SWEEP_EVERY_MS`] the stages close what expired), and at a checkpoint hands back
//! changelog records for exactly the keys the stores report changed. No I/O, no clock: the
//! same records give the same outputs and the same state, which is what makes replay after
//! a crash exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use spcvm_operators::RecordStats;
use spcvm_schemas::{TelemetryRef, TelemetryView};

use super::commit::{COMMIT_STAGE, Prepared};
use super::{Chain, Emitted, StageTask};
use crate::run::changelog::{
    ChangelogError, ChangelogKey, PartitionMeta, decode_value, encode_value,
};

/// Event time between two sweeps of a partition's stores for expired state.
pub const SWEEP_EVERY_MS: i64 = 60_000;

/// One changelog record: key and value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// [`ChangelogKey`] bytes.
    pub key: Vec<u8>,
    /// A stage's encoded state of one key, or the encoded [`PartitionMeta`].
    pub value: Vec<u8>,
}

/// What a chain is fed with.
#[derive(Clone, Copy)]
enum Feed<'r, 'a> {
    Records(&'r [TelemetryRef<'a>]),
    Watermark(i64),
    End,
}

/// The stage stores of one input partition.
pub struct PartitionChain {
    chain: Arc<Chain>,
    topic: String,
    tasks: Vec<Box<dyn StageTask>>,
    meta: PartitionMeta,
    meta_dirty: bool,
    /// Watermark lag behind the newest event time; `None`: no sweeps (bounded input, ended
    /// by [`PartitionChain::end`]).
    lateness_ms: Option<i64>,
    since_checkpoint: u64,
    /// Outputs of a stage fed with upstream values, before they join the others.
    scratch: Vec<Emitted>,
    /// Keys restored for stages this job does not run, by stage name.
    dropped: BTreeMap<String, u64>,
    /// What each commit participant prepared last, as restored (by participant name).
    prepared: BTreeMap<String, Prepared>,
}

impl std::fmt::Debug for PartitionChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionChain")
            .field("topic", &self.topic)
            .field("meta", &self.meta)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl PartitionChain {
    /// An empty partition of `topic`. With `lateness_ms`, stages close time-based state
    /// once the newest event time is that far past it (an unbounded stream); with `None`
    /// only as records arrive and at [`PartitionChain::end`], exactly as `spcvm backtest`
    /// does.
    pub fn new(chain: Arc<Chain>, topic: &str, lateness_ms: Option<i64>) -> Self {
        PartitionChain {
            tasks: chain.tasks(),
            chain,
            topic: topic.to_string(),
            meta: PartitionMeta::default(),
            meta_dirty: false,
            lateness_ms,
            since_checkpoint: 0,
            scratch: Vec::new(),
            dropped: BTreeMap::new(),
            prepared: BTreeMap::new(),
        }
    }

    /// Runs one record through the stages, pushing their outputs to `out`.
    pub fn process(&mut self, record: &TelemetryRef<'_>, out: &mut Vec<Emitted>) -> RecordStats {
        self.process_batch(std::slice::from_ref(record), out)
    }

    /// Runs records through the stages as [`PartitionChain::process`] on each in turn
    /// would, a batch at a time where a stage is faster so (the SPC stage loads the chart
    /// states of coming records while it works on the current one).
    pub fn process_batch(
        &mut self,
        records: &[TelemetryRef<'_>],
        out: &mut Vec<Emitted>,
    ) -> RecordStats {
        self.since_checkpoint += records.len() as u64;
        let mut stats = RecordStats::default();
        let mut start = 0;
        for (i, record) in records.iter().enumerate() {
            if let Some(watermark) = self.advance(record.event_time()) {
                stats += self.segment(&records[start..=i], out);
                self.feed(Feed::Watermark(watermark), out);
                start = i + 1;
            }
        }
        stats += self.segment(&records[start..], out);
        stats
    }

    /// Records between two sweeps: the whole slice at once, or one record at a time when
    /// a stage reads both the records and an upstream stream.
    fn segment(&mut self, records: &[TelemetryRef<'_>], out: &mut Vec<Emitted>) -> RecordStats {
        if records.is_empty() {
            return RecordStats::default();
        }
        if !self.chain.one_at_a_time {
            return self.feed(Feed::Records(records), out);
        }
        let mut stats = RecordStats::default();
        for record in records.chunks(1) {
            stats += self.feed(Feed::Records(record), out);
        }
        stats
    }

    /// Feeds every stage in order. A stage reading an upstream stream gets that stream's
    /// outputs of this feed: after its own records, before its own watermark or end.
    fn feed(&mut self, feed: Feed<'_, '_>, out: &mut Vec<Emitted>) -> RecordStats {
        let mut stats = RecordStats::default();
        let start = out.len();
        for (k, task) in self.tasks.iter_mut().enumerate() {
            let before = out.len();
            match feed {
                Feed::Records(records) if self.chain.stages[k].reads_records() => {
                    stats += match records {
                        [record] => task.record(record, out),
                        records => task.records(records, out),
                    };
                }
                Feed::Records(_) | Feed::Watermark(_) | Feed::End => {}
            }
            if let Some(stream) = self.chain.upstream[k] {
                for emitted in &out[start..before] {
                    if emitted.stream == stream {
                        task.upstream(emitted.output.value(), &mut self.scratch);
                    }
                }
                out.append(&mut self.scratch);
            }
            match feed {
                Feed::Watermark(watermark) => task.watermark(watermark, out),
                Feed::End => task.end(out),
                Feed::Records(_) => {}
            }
        }
        stats
    }

    /// Moves the watermark to `event_time - lateness` if that is newer; the watermark to
    /// sweep to when [`SWEEP_EVERY_MS`] of event time passed since the last sweep.
    fn advance(&mut self, event_time: i64) -> Option<i64> {
        if self.meta.newest_event_ms.is_some_and(|t| t >= event_time) {
            return None;
        }
        self.meta.newest_event_ms = Some(event_time);
        self.meta_dirty = true;
        let watermark = event_time.saturating_sub(self.lateness_ms?);
        let swept = *self.meta.swept_to_ms.get_or_insert(watermark);
        if watermark >= swept.saturating_add(SWEEP_EVERY_MS) {
            self.meta.swept_to_ms = Some(watermark);
            return Some(watermark);
        }
        None
    }

    /// The input has ended: every stage flushes what it holds (the SPC stage closes every
    /// chart's open dedup window, in key order, as `spcvm backtest` does at the end).
    pub fn end(&mut self, out: &mut Vec<Emitted>) {
        self.feed(Feed::End, out);
    }

    /// Records processed since the last [`PartitionChain::checkpoint`].
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// Keys held by all stages.
    pub fn keys(&self) -> usize {
        self.tasks.iter().map(|t| t.keys()).sum()
    }

    /// The store of the stage named `stage`, if the chain has it and its store is an `S`.
    pub fn store<S: 'static>(&self, stage: &str) -> Option<&S> {
        let k = self.chain.position(stage)?;
        self.tasks[k].store().downcast_ref()
    }

    /// The offset in input `topic` the restored state reaches (see
    /// [`PartitionMeta::next_offset`]; another topic of a co-partitioned group:
    /// [`PartitionMeta::offsets`]).
    pub fn resume_offset(&self, topic: &str) -> Option<i64> {
        if topic == self.topic {
            self.meta.next_offset
        } else {
            self.meta.offsets.get(topic).copied()
        }
    }

    /// Keys restored for stages this job does not run (dropped), by stage name.
    pub fn dropped(&self) -> &BTreeMap<String, u64> {
        &self.dropped
    }

    /// What each commit participant prepared last, as restored (by participant name).
    pub fn prepared(&self) -> &BTreeMap<String, Prepared> {
        &self.prepared
    }

    /// Changelog records for everything changed since the last checkpoint (each stage's
    /// changed keys in first-change order, stage by stage, then `prepared`, the records of
    /// the commit participants, then the partition record), and forgets the changes. The
    /// partition record carries `next_offsets`, the input offset after the last record
    /// processed of each input topic (one, or each of a co-partitioned group); it comes
    /// last, so once it is stored the records before it are too.
    pub fn checkpoint(
        &mut self,
        next_offsets: &[(&str, i64)],
        prepared: Vec<StateRecord>,
    ) -> Vec<StateRecord> {
        for &(topic, next) in next_offsets {
            let known = if topic == self.topic {
                self.meta.next_offset.replace(next)
            } else {
                self.meta.offsets.insert(topic.to_string(), next)
            };
            self.meta_dirty |= known != Some(next);
        }
        let mut records = Vec::new();
        for (task, stage) in self.tasks.iter_mut().zip(&self.chain.stages) {
            let name = stage.name();
            task.checkpoint(&mut |key, value| {
                records.push(StateRecord {
                    key: ChangelogKey::encode_stage(name, &self.topic, key),
                    value: value.to_vec(),
                });
            });
        }
        records.extend(prepared);
        if self.meta_dirty {
            records.push(StateRecord {
                key: ChangelogKey::Partition {
                    topic: self.topic.clone(),
                }
                .encode(),
                value: encode_value(&self.meta),
            });
            self.meta_dirty = false;
        }
        self.since_checkpoint = 0;
        records
    }

    /// Applies one changelog record (restore). Records of other input topics (which share
    /// the changelog partition) are ignored and reported as `Ok(false)`; the state of a
    /// stage this job does not run is dropped and counted ([`PartitionChain::dropped`]).
    ///
    /// # Errors
    ///
    /// [`ChangelogError`] if the key or value cannot be read.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<bool, ChangelogError> {
        match ChangelogKey::decode(key, &self.topic)? {
            None => Ok(false),
            Some(ChangelogKey::Partition { .. }) => {
                self.meta = decode_value(value)?;
                Ok(true)
            }
            Some(ChangelogKey::Stage { stage, mut key, .. }) if stage == COMMIT_STAGE => {
                let name = key.pop().unwrap_or_default();
                self.prepared.insert(name, decode_value(value)?);
                Ok(true)
            }
            Some(ChangelogKey::Stage { stage, key, .. }) => {
                match self.chain.position(&stage) {
                    Some(k) => self.tasks[k].restore(&key, value)?,
                    None => *self.dropped.entry(stage).or_default() += 1,
                }
                Ok(true)
            }
        }
    }
}
