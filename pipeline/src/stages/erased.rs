//! A [`Stage`] as the runtime holds it: without its types, so that a job runs whatever
//! stages its configuration names. [`DynStage`] is the stage shared by every partition;
//! [`StageTask`] is its store in one partition, with the calls the chain makes on it.

use std::any::{Any, TypeId};
use std::sync::Arc;

use spcvm_operators::{Input, RecordStats, Stage, StageOutput, StateStore, StreamSpec};
use spcvm_schemas::TelemetryRef;

use super::{Emitted, StreamId};
use crate::run::changelog::{ChangelogError, decode_value, encode_value_into};

/// A stage, shared by the partitions of a job.
pub trait DynStage: Send + Sync {
    /// [`Stage::name`].
    fn name(&self) -> &str;
    /// [`Stage::reads_records`].
    fn reads_records(&self) -> bool;
    /// [`Stage::upstream`].
    fn upstream(&self) -> Option<&str>;
    /// [`Stage::upstream_after_each_record`].
    fn upstream_after_each_record(&self) -> bool;
    /// The type of the upstream values it reads.
    fn upstream_type(&self) -> TypeId;
    /// [`Stage::outputs`].
    fn outputs(&self) -> &[StreamSpec];
    /// A fresh store for one partition; its outputs' streams are numbered from `first`.
    fn task(self: Arc<Self>, first: StreamId) -> Box<dyn StageTask>;
}

/// One stage's store in one partition.
pub trait StageTask: Send {
    /// [`Stage::process`] on one record.
    fn record(&mut self, record: &TelemetryRef<'_>, out: &mut Vec<Emitted>) -> RecordStats;
    /// [`Stage::process_records`].
    fn records(&mut self, records: &[TelemetryRef<'_>], out: &mut Vec<Emitted>) -> RecordStats;
    /// [`Stage::process`] on an upstream value (of the type [`DynStage::upstream_type`]).
    fn upstream(&mut self, value: &dyn Any, out: &mut Vec<Emitted>);
    /// [`Stage::on_watermark`].
    fn watermark(&mut self, watermark_ms: i64, out: &mut Vec<Emitted>);
    /// [`Stage::on_end`].
    fn end(&mut self, out: &mut Vec<Emitted>);
    /// Calls `f` with each key changed since the last checkpoint and its encoded state
    /// (changelog value format), in first-change order.
    fn checkpoint(&mut self, f: &mut dyn FnMut(&[&str], &[u8]));
    /// Restores one key's state from its changelog value.
    ///
    /// # Errors
    ///
    /// [`ChangelogError`] if the value does not decode or the key does not fit the store.
    fn restore(&mut self, key: &[String], value: &[u8]) -> Result<(), ChangelogError>;
    /// Keys held.
    fn keys(&self) -> usize;
    /// The store, for reports and tests (downcast to the stage's [`Stage::Store`]).
    fn store(&self) -> &dyn Any;
}

impl<S: Stage> DynStage for S {
    fn name(&self) -> &str {
        Stage::name(self)
    }

    fn reads_records(&self) -> bool {
        Stage::reads_records(self)
    }

    fn upstream(&self) -> Option<&str> {
        Stage::upstream(self)
    }

    fn upstream_after_each_record(&self) -> bool {
        Stage::upstream_after_each_record(self)
    }

    fn upstream_type(&self) -> TypeId {
        TypeId::of::<S::Upstream>()
    }

    fn outputs(&self) -> &[StreamSpec] {
        Stage::outputs(self)
    }

    fn task(self: Arc<Self>, first: StreamId) -> Box<dyn StageTask> {
        Box::new(Task {
            stage: self,
            store: S::Store::default(),
            first,
            buffer: Vec::new(),
            scratch: Vec::new(),
        })
    }
}

/// [`StageTask`] of a typed stage.
struct Task<S: Stage> {
    stage: Arc<S>,
    store: S::Store,
    first: StreamId,
    /// Where the stage pushes its outputs before they are tagged with their stream.
    buffer: Vec<S::Output>,
    /// Where a checkpoint encodes each key's state.
    scratch: Vec<u8>,
}

impl<S: Stage> Task<S> {
    fn emit(&mut self, out: &mut Vec<Emitted>) {
        let first = self.first.0;
        out.extend(self.buffer.drain(..).map(|output| Emitted {
            stream: StreamId(first + output.stream() as u16),
            output: Box::new(output),
        }));
    }
}

impl<S: Stage> StageTask for Task<S> {
    fn record(&mut self, record: &TelemetryRef<'_>, out: &mut Vec<Emitted>) -> RecordStats {
        let stats = self
            .stage
            .process(&mut self.store, Input::Record(record), &mut self.buffer);
        if !self.buffer.is_empty() {
            self.emit(out);
        }
        stats
    }

    fn records(&mut self, records: &[TelemetryRef<'_>], out: &mut Vec<Emitted>) -> RecordStats {
        let stats = self
            .stage
            .process_records(&mut self.store, records, &mut self.buffer);
        self.emit(out);
        stats
    }

    fn upstream(&mut self, value: &dyn Any, out: &mut Vec<Emitted>) {
        // The chain hands a stage only values of the stream it reads, whose type it checked
        // when it was built.
        if let Some(value) = value.downcast_ref::<S::Upstream>() {
            self.stage
                .process(&mut self.store, Input::Upstream(value), &mut self.buffer);
            self.emit(out);
        }
    }

    fn watermark(&mut self, watermark_ms: i64, out: &mut Vec<Emitted>) {
        self.stage
            .on_watermark(&mut self.store, watermark_ms, &mut self.buffer);
        self.emit(out);
    }

    fn end(&mut self, out: &mut Vec<Emitted>) {
        self.stage.on_end(&mut self.store, &mut self.buffer);
        self.emit(out);
    }

    fn checkpoint(&mut self, f: &mut dyn FnMut(&[&str], &[u8])) {
        let scratch = &mut self.scratch;
        self.store.drain_changed(|key, snapshot| {
            encode_value_into(&snapshot, scratch);
            f(key, scratch);
        });
    }

    fn restore(&mut self, key: &[String], value: &[u8]) -> Result<(), ChangelogError> {
        let snapshot = decode_value(value)?;
        self.store
            .restore(key, snapshot)
            .map_err(ChangelogError::Key)
    }

    fn keys(&self) -> usize {
        self.store.len()
    }

    fn store(&self) -> &dyn Any {
        &self.store
    }
}
