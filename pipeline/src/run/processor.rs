//! [`PartitionProcessor`]: the state of one input partition and the pure logic that feeds it.
//!
//! Both runtimes (Kafka and file) hand each decoded record to the processor of the partition
//! it came from; the processor runs the SPC operators, remembers which (tool, recipe) groups
//! changed, advances the partition's event-time watermark (closing dedup windows of quiet
//! charts), and at a checkpoint hands back changelog records for exactly what changed. No
//! I/O, no clock: the same records give the same alerts and the same state, which is what
//! makes replay after a crash exact.

use std::sync::Arc;

use spcvm_operators::{GroupId, KeyedState, RecordStats, SpcMonitor, SpcState};
use spcvm_schemas::{Alert, TelemetryView};

use super::changelog::{
    ChangelogError, ChangelogKey, GroupSnapshot, GroupSnapshotRef, PartitionMeta, decode_value,
    encode_value, encode_value_into,
};

/// Event time between two sweeps of a partition's charts for expired dedup windows.
pub const SWEEP_EVERY_MS: i64 = 60_000;

/// One changelog record: key and value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// [`ChangelogKey`] bytes.
    pub key: Vec<u8>,
    /// Encoded [`GroupSnapshot`] or [`PartitionMeta`].
    pub value: Vec<u8>,
}

/// The operator state of one input partition.
#[derive(Debug)]
pub struct PartitionProcessor {
    monitor: Arc<SpcMonitor>,
    topic: String,
    store: KeyedState<SpcState>,
    /// (tool, recipe) groups changed since the last checkpoint, in first-change order.
    dirty: Vec<GroupId>,
    /// Whether each group (by [`GroupId::index`]) is in `dirty`.
    is_dirty: Vec<bool>,
    meta: PartitionMeta,
    meta_dirty: bool,
    /// Watermark lag behind the newest event time; `None`: no sweeps (bounded input, ended
    /// by [`PartitionProcessor::end`]).
    lateness_ms: Option<i64>,
    since_checkpoint: u64,
    /// Where [`PartitionProcessor::checkpoint`] encodes each group.
    scratch: Vec<u8>,
}

impl PartitionProcessor {
    /// An empty partition of `topic`. With `lateness_ms`, the dedup windows of quiet charts
    /// close once the newest event time is that far past their end (an unbounded stream);
    /// with `None` they close only when their chart sees its next sample or at
    /// [`PartitionProcessor::end`], exactly as `spcvm backtest` closes them.
    pub fn new(monitor: Arc<SpcMonitor>, topic: &str, lateness_ms: Option<i64>) -> Self {
        PartitionProcessor {
            monitor,
            topic: topic.to_string(),
            store: KeyedState::default(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            meta: PartitionMeta::default(),
            meta_dirty: false,
            lateness_ms,
            since_checkpoint: 0,
            scratch: Vec::new(),
        }
    }

    /// Runs one record through the charts, pushing alerts to `out`.
    pub fn process(&mut self, record: &impl TelemetryView, out: &mut Vec<Alert>) -> RecordStats {
        self.since_checkpoint += 1;
        let stats = self.monitor.process_record(&mut self.store, record, out);
        self.mark(record.tool_id(), record.recipe_id());
        self.advance(record.event_time(), out);
        stats
    }

    /// How many records ahead of the one about to be processed
    /// [`PartitionProcessor::prefetch_ahead`] wants to see (0: none, the charts fit in cache).
    pub fn lookahead(&self) -> usize {
        self.store.prefetch_lookahead()
    }

    /// Before processing a record: starts loading the chart states of the coming records,
    /// whose (tool, recipe) `key(j)` gives for `j` = 1 ..= [`PartitionProcessor::lookahead`]
    /// records ahead (see `KeyedState::prefetch_ahead`). A hint: it changes nothing.
    pub fn prefetch_ahead<'k>(&self, key: impl Fn(usize) -> Option<(&'k str, &'k str)>) {
        // `KeyedState` counts from the record being processed (index 0).
        self.store.prefetch_ahead(0, key);
    }

    /// Moves the watermark to `event_time - lateness` if that is newer, and every
    /// [`SWEEP_EVERY_MS`] of event time closes the dedup windows that ended before it.
    fn advance(&mut self, event_time: i64, out: &mut Vec<Alert>) {
        if self.meta.newest_event_ms.is_some_and(|t| t >= event_time) {
            return;
        }
        self.meta.newest_event_ms = Some(event_time);
        self.meta_dirty = true;
        let Some(lateness_ms) = self.lateness_ms else {
            return;
        };
        let watermark = event_time.saturating_sub(lateness_ms);
        let swept = *self.meta.swept_to_ms.get_or_insert(watermark);
        if watermark >= swept.saturating_add(SWEEP_EVERY_MS) {
            let start = out.len();
            self.monitor.advance_all(&mut self.store, watermark, out);
            self.mark_alerted(start, out);
            self.meta.swept_to_ms = Some(watermark);
        }
    }

    /// The input has ended: closes every chart's open dedup window (in key order, as
    /// `spcvm backtest` does at the end of its input).
    pub fn end(&mut self, out: &mut Vec<Alert>) {
        let start = out.len();
        self.monitor.end_all(&mut self.store, out);
        self.mark_alerted(start, out);
    }

    fn mark_alerted(&mut self, start: usize, out: &[Alert]) {
        for alert in &out[start..] {
            self.mark(&alert.tool_id, &alert.recipe_id);
        }
    }

    /// Notes that the (tool, recipe) group changed, unless already noted since the last
    /// checkpoint.
    fn mark(&mut self, tool_id: &str, recipe_id: &str) {
        let Some(id) = self.store.group_id(tool_id, recipe_id) else {
            return;
        };
        if self.is_dirty.len() <= id.index() {
            self.is_dirty.resize(self.store.group_count(), false);
        }
        if !self.is_dirty[id.index()] {
            self.is_dirty[id.index()] = true;
            self.dirty.push(id);
        }
    }

    /// Records processed since the last [`PartitionProcessor::checkpoint`].
    pub fn since_checkpoint(&self) -> u64 {
        self.since_checkpoint
    }

    /// Chart states held.
    pub fn keys(&self) -> usize {
        self.store.len()
    }

    /// The charts, for reports and tests.
    pub fn store(&self) -> &KeyedState<SpcState> {
        &self.store
    }

    /// The input offset the restored state reaches (see [`PartitionMeta::next_offset`]).
    pub fn resume_offset(&self) -> Option<i64> {
        self.meta.next_offset
    }

    /// Changelog records for everything changed since the last checkpoint (changed groups
    /// in first-change order, then the partition record), and forgets the changes. With
    /// `next_offset` (the input offset after the last record processed) the partition
    /// record carries it; it comes last, so once it is stored the groups before it are too.
    pub fn checkpoint(&mut self, next_offset: Option<i64>) -> Vec<StateRecord> {
        if next_offset.is_some() && next_offset != self.meta.next_offset {
            self.meta.next_offset = next_offset;
            self.meta_dirty = true;
        }
        let mut records = Vec::with_capacity(self.dirty.len() + 1);
        for id in self.dirty.drain(..) {
            self.is_dirty[id.index()] = false;
            let Some(((tool_id, recipe_id), entries)) = self.store.group_at(id) else {
                continue;
            };
            let snapshot = GroupSnapshotRef {
                charts: entries.collect(),
            };
            encode_value_into(&snapshot, &mut self.scratch);
            records.push(StateRecord {
                key: ChangelogKey::encode_group(&self.topic, tool_id, recipe_id),
                // An exact-size copy of the encoding; the buffer stays for the next group.
                value: self.scratch.clone(),
            });
        }
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
    /// the changelog partition) are ignored and reported as `Ok(false)`.
    ///
    /// # Errors
    ///
    /// [`ChangelogError`] if the key or value cannot be read.
    pub fn restore(&mut self, key: &[u8], value: &[u8]) -> Result<bool, ChangelogError> {
        let key = ChangelogKey::decode(key)?;
        if key.topic() != self.topic {
            return Ok(false);
        }
        match key {
            ChangelogKey::Group {
                tool_id, recipe_id, ..
            } => {
                let snapshot: GroupSnapshot = decode_value(value)?;
                for (parameter, state) in snapshot.charts {
                    let key = spcvm_operators::ChartKeyRef {
                        tool_id: &tool_id,
                        recipe_id: &recipe_id,
                        parameter: &parameter,
                    };
                    self.store.insert(key, state);
                }
            }
            ChangelogKey::Partition { .. } => {
                self.meta = decode_value(value)?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spcvm_operators::MonitorConfig;
    use spcvm_schemas::{Telemetry, ToolType};

    fn record(tool_id: &str, recipe_id: &str, minute: i64) -> Telemetry {
        Telemetry {
            tool_id: tool_id.into(),
            tool_type: ToolType::IonImplant,
            recipe_id: recipe_id.into(),
            lot_id: None,
            wafer_id: None,
            event_time: 1_772_440_200_000 + minute * 60_000,
            measurements: [("beam_current_mA".to_string(), 1.0 + 0.001 * minute as f64)].into(),
        }
    }

    /// The (tool, recipe) of each group record of a checkpoint, in order.
    fn groups(records: &[StateRecord]) -> Vec<(String, String)> {
        records
            .iter()
            .filter_map(|r| match ChangelogKey::decode(&r.key).unwrap() {
                ChangelogKey::Group {
                    tool_id, recipe_id, ..
                } => Some((tool_id, recipe_id)),
                ChangelogKey::Partition { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_writes_each_changed_group_once_in_first_change_order() {
        let monitor = Arc::new(SpcMonitor::new(&MonitorConfig::default()).unwrap());
        let mut p = PartitionProcessor::new(monitor.clone(), "t", Some(60_000));
        let mut out = Vec::new();
        for (i, (tool, recipe)) in [
            ("B", "R1"),
            ("A", "R1"),
            ("B", "R1"),
            ("A", "R2"),
            ("B", "R1"),
        ]
        .into_iter()
        .enumerate()
        {
            p.process(&record(tool, recipe, i as i64), &mut out);
        }
        let first = p.checkpoint(Some(5));
        let pair = |t: &str, r: &str| (t.to_string(), r.to_string());
        assert_eq!(
            groups(&first),
            [pair("B", "R1"), pair("A", "R1"), pair("A", "R2")]
        );
        // The partition record comes last.
        assert!(matches!(
            ChangelogKey::decode(&first.last().unwrap().key).unwrap(),
            ChangelogKey::Partition { .. }
        ));
        // Each value holds the group's charts as the store has them, and restores them.
        let mut restored = PartitionProcessor::new(monitor, "t", Some(60_000));
        for r in &first {
            assert!(restored.restore(&r.key, &r.value).unwrap());
        }
        assert_eq!(restored.store().sorted(), p.store().sorted());
        assert_eq!(restored.resume_offset(), Some(5));

        // Only what changed since: nothing, then one group.
        assert!(groups(&p.checkpoint(None)).is_empty());
        p.process(&record("A", "R2", 9), &mut out);
        assert_eq!(groups(&p.checkpoint(None)), [pair("A", "R2")]);
    }
}
