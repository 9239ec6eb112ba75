//! The stage contract between pure operators and the runtimes that drive them.
//!
//! A stage is one step of the pipeline: SPC charts today, RCA triage, virtual metrology and
//! drift monitors next. It is handed its per-partition [`StateStore`] and one input (a
//! telemetry record, or an output of the stage before it) and pushes its outputs; it never
//! does I/O, reads a clock or keeps state of its own. The runtime (backtest, the file job,
//! the Kafka job) owns the stores, decides when event time advances
//! ([`Stage::on_watermark`]) or a bounded input ends ([`Stage::on_end`]), writes the keys
//! each store reports changed to the changelog at a checkpoint, and restores them.
//!
//! Only [`Stage::process`] is required; [`Stage::process_records`] is the batch entry point
//! (a loop by default) for stages that are cheaper a batch at a time.

use std::any::Any;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use serde::Serialize;
use serde::de::DeserializeOwned;
use spcvm_schemas::{Alert, SchemaError, TelemetryRef};

use crate::short::ShortStr;

/// One input of a stage: a telemetry record, or a value of the upstream stream it reads.
#[derive(Debug)]
pub enum Input<'a, U> {
    /// A valid decoded record of the partition's input.
    Record(&'a TelemetryRef<'a>),
    /// An output of the stream the stage reads ([`Stage::upstream`]).
    Upstream(&'a U),
}

impl<U> Clone for Input<'_, U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U> Copy for Input<'_, U> {}

/// What happened to one record's measurements (summed over records by the batch calls).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Measurements fed to a chart (finite or not).
    pub routed: u32,
    /// Of those, NaN or infinite values (counted, not plotted).
    pub non_finite: u32,
    /// Charted parameters of this tool type absent from the record.
    pub missing: u32,
    /// Measurements no chart watches.
    pub unmonitored: u32,
}

impl std::ops::AddAssign for RecordStats {
    fn add_assign(&mut self, other: RecordStats) {
        self.routed += other.routed;
        self.non_finite += other.non_finite;
        self.missing += other.missing;
        self.unmonitored += other.unmonitored;
    }
}

/// One output stream a stage declares.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    /// Name, unique in a job (`alerts`, `triage`): the configuration names streams by it.
    pub name: &'static str,
    /// The topic it is written to unless the configuration says otherwise.
    pub default_topic: &'static str,
    /// The Avro schema of its values (a `schemas/avro/*.avsc` file's text).
    pub avro_schema: &'static str,
    /// The type of its values ([`StageOutput::value`]), which a downstream stage reads.
    pub value_type: fn() -> std::any::TypeId,
}

/// A value a stage emits: which of its streams it goes to, its message key, and its
/// encodings.
pub trait StageOutput: Send + 'static {
    /// Index of the stream in the emitting stage's [`Stage::outputs`].
    fn stream(&self) -> usize {
        0
    }
    /// The message key (the tool, so that outputs are partitioned like the input).
    fn key(&self) -> &str;
    /// One line of JSON (no newline).
    fn to_json(&self) -> Vec<u8>;
    /// [`StageOutput::to_json`] appended to `out`, so that a sink can reuse one buffer; an
    /// output may write it there without a buffer of its own.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_json());
    }
    /// A bare Avro datum of the stream's schema.
    ///
    /// # Errors
    ///
    /// The Avro encoder's error.
    fn to_avro(&self) -> Result<Vec<u8>, SchemaError>;
    /// The value itself, for downstream stages and per-type metrics.
    fn value(&self) -> &dyn Any;
}

impl StageOutput for Alert {
    fn key(&self) -> &str {
        &self.tool_id
    }

    fn to_json(&self) -> Vec<u8> {
        spcvm_schemas::encode_alert_json(self)
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        spcvm_schemas::write_alert_json(self, out);
    }

    fn to_avro(&self) -> Result<Vec<u8>, SchemaError> {
        spcvm_schemas::encode_alert_avro(self)
    }

    fn value(&self) -> &dyn Any {
        self
    }
}

/// Where a stage keeps its per-key state in one partition. It records which keys changed
/// since the last checkpoint itself, so the runtime writes exactly those.
pub trait StateStore: Default + Send + 'static {
    /// One key's state as the changelog holds it (read back at a restore).
    type Snapshot: DeserializeOwned;
    /// The same, borrowed from the store (written at a checkpoint without a copy); it must
    /// serialize exactly as [`StateStore::Snapshot`] does.
    type SnapshotRef<'a>: Serialize
    where
        Self: 'a;

    /// Calls `f` with each key changed since the last call (its parts, e.g. tool and
    /// recipe) and its state, in first-change order, and forgets the changes.
    fn drain_changed(&mut self, f: impl FnMut(&[&str], Self::SnapshotRef<'_>));

    /// Puts back the state of one key (restore): the store does not count it as changed.
    ///
    /// # Errors
    ///
    /// A description of what is wrong with the key.
    fn restore(&mut self, key: &[String], snapshot: Self::Snapshot) -> Result<(), String>;

    /// Keys held.
    fn len(&self) -> usize;

    /// Whether no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pure, keyed, stateful stage of the pipeline.
pub trait Stage: Send + Sync + 'static {
    /// Per-key state of one partition.
    type Store: StateStore;
    /// The values of the upstream stream it reads (`()` when it reads none).
    type Upstream: 'static;
    /// What it emits.
    type Output: StageOutput;

    /// Its name: unique in a job, the first part of its changelog keys. Not the name of an
    /// input topic.
    fn name(&self) -> &str;

    /// Whether it reads the input records.
    fn reads_records(&self) -> bool {
        true
    }

    /// The name of the stream (of an earlier stage) whose outputs it reads, if any.
    fn upstream(&self) -> Option<&str> {
        None
    }

    /// Reading both the records and an upstream stream: whether it must get each record's
    /// upstream outputs before the next record (the default; the runtime then runs records
    /// through the stages one at a time). A stage whose handling of an upstream value
    /// depends only on records with an event time up to that value's may answer false: it
    /// then gets a batch's records before the upstream outputs they caused, and the SPC
    /// stage keeps its batch path.
    fn upstream_after_each_record(&self) -> bool {
        true
    }

    /// The streams it emits on, indexed by [`StageOutput::stream`].
    fn outputs(&self) -> &[StreamSpec];

    /// Processes one input, updating `store` and pushing outputs to `out`; reports what
    /// happened to a record's measurements (nothing for an upstream value).
    fn process(
        &self,
        store: &mut Self::Store,
        input: Input<'_, Self::Upstream>,
        out: &mut Vec<Self::Output>,
    ) -> RecordStats;

    /// [`Stage::process`] on each record in turn; a stage may do it faster a batch at a
    /// time, with the same outputs and state.
    fn process_records(
        &self,
        store: &mut Self::Store,
        records: &[TelemetryRef<'_>],
        out: &mut Vec<Self::Output>,
    ) -> RecordStats {
        let mut total = RecordStats::default();
        for record in records {
            total += self.process(store, Input::Record(record), out);
        }
        total
    }

    /// Event time has advanced to `watermark_ms` (ms since the Unix epoch): close whatever
    /// time-based state has expired. Default: nothing to do.
    fn on_watermark(
        &self,
        _store: &mut Self::Store,
        _watermark_ms: i64,
        _out: &mut Vec<Self::Output>,
    ) {
    }

    /// A bounded input has ended: flush everything pending. Default: nothing to do.
    fn on_end(&self, _store: &mut Self::Store, _out: &mut Vec<Self::Output>) {}
}

/// A [`StateStore`] of one state per tool (the input key): for stages whose state is per
/// tool, such as triage. A stage that reads records looks its tool up on every record, so
/// the table keeps the ids inline ([`ShortStr`]) and compares them without a pointer to
/// follow or a `memcmp` call.
#[derive(Debug, Clone)]
pub struct ToolStore<S> {
    states: HashTable<Slot<S>>,
    hasher: foldhash::fast::FixedState,
    /// Tools changed since the last checkpoint, in first-change order.
    changed: Vec<Box<str>>,
}

/// One tool's state, and whether it changed since the last checkpoint.
#[derive(Debug, Clone)]
struct Slot<S> {
    tool: ShortStr,
    state: S,
    changed: bool,
}

impl<S> Default for ToolStore<S> {
    fn default() -> Self {
        ToolStore {
            states: HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            changed: Vec::new(),
        }
    }
}

impl<S: Default> ToolStore<S> {
    /// The state of `tool`, created if absent; counted as changed.
    pub fn entry(&mut self, tool: &str) -> &mut S {
        let hash = self.hasher.hash_one(tool);
        let hasher = &self.hasher;
        let slot = match self.states.entry(
            hash,
            |s| s.tool.is(tool),
            |s| hasher.hash_one(s.tool.as_str()),
        ) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e
                .insert(Slot {
                    tool: ShortStr::new(tool),
                    state: S::default(),
                    changed: false,
                })
                .into_mut(),
        };
        if !slot.changed {
            slot.changed = true;
            self.changed.push(tool.into());
        }
        &mut slot.state
    }
}

impl<S> ToolStore<S> {
    /// The state of `tool`, if any.
    #[inline(always)]
    pub fn get(&self, tool: &str) -> Option<&S> {
        self.states
            .find(self.hasher.hash_one(tool), |s| s.tool.is(tool))
            .map(|s| &s.state)
    }

    /// Every tool and its state, sorted by tool (deterministic order for sweeps).
    pub fn sorted(&self) -> Vec<(&str, &S)> {
        let mut v: Vec<_> = self
            .states
            .iter()
            .map(|s| (s.tool.as_str(), &s.state))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// The tools whose state `keep` accepts, sorted by tool, mutably; counted as changed.
    pub fn sorted_mut_where(&mut self, mut keep: impl FnMut(&S) -> bool) -> Vec<(&str, &mut S)> {
        let mut v = Vec::new();
        for slot in &mut self.states {
            if keep(&slot.state) {
                if !slot.changed {
                    slot.changed = true;
                    self.changed.push(slot.tool.as_str().into());
                }
                v.push((slot.tool.as_str(), &mut slot.state));
            }
        }
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

impl<S: Serialize + DeserializeOwned + Send + 'static> StateStore for ToolStore<S> {
    type Snapshot = S;
    type SnapshotRef<'a> = &'a S;

    fn drain_changed(&mut self, mut f: impl FnMut(&[&str], &S)) {
        for tool in std::mem::take(&mut self.changed) {
            let hash = self.hasher.hash_one(&*tool);
            if let Some(slot) = self.states.find_mut(hash, |s| s.tool.is(&tool)) {
                slot.changed = false;
                f(&[&tool], &slot.state);
            }
        }
    }

    fn restore(&mut self, key: &[String], snapshot: S) -> Result<(), String> {
        match key {
            [tool] => {
                let hash = self.hasher.hash_one(tool.as_str());
                let hasher = &self.hasher;
                let slot = Slot {
                    tool: ShortStr::new(tool),
                    state: snapshot,
                    changed: false,
                };
                match self.states.entry(
                    hash,
                    |s| s.tool.is(tool),
                    |s| hasher.hash_one(s.tool.as_str()),
                ) {
                    Entry::Occupied(mut e) => *e.get_mut() = slot,
                    Entry::Vacant(e) => {
                        e.insert(slot);
                    }
                }
                Ok(())
            }
            _ => Err(format!(
                "expected one key part (the tool), found {}",
                key.len()
            )),
        }
    }

    fn len(&self) -> usize {
        self.states.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_store_reports_each_changed_tool_once_in_first_change_order() {
        let mut store = ToolStore::<u32>::default();
        *store.entry("B") += 1;
        *store.entry("A") += 1;
        *store.entry("B") += 1;
        let mut seen = Vec::new();
        store.drain_changed(|key, s| seen.push((key.join("/"), *s)));
        assert_eq!(seen, [("B".to_string(), 2), ("A".to_string(), 1)]);
        store.drain_changed(|_, _| panic!("nothing changed since"));
        // A restored state is not a change; the sweep marks what it visits.
        store.restore(&["C".into()], 7).unwrap();
        assert!(store.restore(&[], 7).is_err());
        assert_eq!(store.get("C"), Some(&7));
        let visited: Vec<_> = store
            .sorted_mut_where(|s| *s > 1)
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(visited, ["B", "C"]);
        let mut seen = Vec::new();
        store.drain_changed(|key, _| seen.push(key[0].to_string()));
        seen.sort();
        assert_eq!(seen, ["B", "C"]);
        assert_eq!(store.len(), 3);
    }
}
