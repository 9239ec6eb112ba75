//! Pure keyed operators for spcvm: statistical process control on tool telemetry.
//!
//! No I/O, no clock, no async: every function takes its inputs and returns or pushes outputs,
//! so the same code runs in `spcvm backtest`, in the streaming runtime and in tests.
//!
//! # Layout
//!
//! - [`stage`]: the [`Stage`] contract every runtime drives (`process`, plus a batch entry
//!   point and `on_watermark` / `on_end` hooks, defaulted), the [`StateStore`] a stage keeps
//!   per-key state in (it records which keys changed), [`StageOutput`] (a stage's outputs
//!   with their key and encodings), and [`ToolStore`], a store of one state per tool.
//! - [`state`]: [`KeyedState`], the map from (tool, recipe, parameter) to chart state,
//!   laid out so that a record's lookup touches few cache lines; a [`StateStore`] with one
//!   changelog record per (tool, recipe).
//! - [`spc`]: chart configuration ([`ChartSpec`]), the published constants, and
//!   [`ChartState`] with the X-bar/R, X-bar/S, I-MR, EWMA and CUSUM update steps.
//! - [`rules`]: the eight run rules, evaluated incrementally from counters and bit registers.
//! - [`signal`]: what fired ([`Rule`], [`Plot`], [`Signal`]) and the severity mapping.
//! - [`dedup`]: folding repeats of one rule on one chart inside an event-time window.
//! - [`defaults`]: the seed's ion-implant and RTP monitors.
//! - [`short`]: [`short::ShortStr`], an id kept inline, for lookups at every record.
//! - [`triage`]: the `triage` stage: alerts into incidents, ranked causes and OCAP steps,
//!   following playbooks.
//! - [`monitor`]: [`SpcMonitor`], the `spc` stage: routes a record's measurements to
//!   their charts and turns signals into deduplicated [`spcvm_schemas::Alert`]s. It reads a
//!   record through [`spcvm_schemas::TelemetryView`], so an owned `Telemetry` and a
//!   `TelemetryRef` borrowed from a message payload go through the same code.
//!
//! # Data flow
//!
//! ```text
//! TelemetryView ──SpcMonitor::process_record──> per measurement: route (tool type, parameter)
//!     └─> KeyedState[(tool, recipe, parameter)] ──(SpcMonitor::process_sample)──> ChartState::update
//!           ├─ spec / critical checks on the raw value
//!           ├─ Phase I accumulation, then frozen limits
//!           ├─ chart statistic ──RuleState::push──> Signal*
//!           └─ Dedup::admit_all (a sample's signals) ──> Alert (new)
//!                                     | folded (closing Alert later, same id)
//! ```
//!
//! [`SpcMonitor::process_records`] does the same for a slice of records, loading the chart
//! states of the records a few places ahead while it works on the current one.

pub mod dedup;
pub mod defaults;
pub mod monitor;
pub mod rules;
pub mod short;
pub mod signal;
pub mod spc;
pub mod stage;
pub mod state;
pub mod triage;

pub use monitor::{ChartId, ConfigError, DedupConfig, MonitorConfig, Sample, SpcMonitor, SpcState};
pub use rules::{RuleSet, RuleState};
pub use signal::{Plot, Rule, Signal};
pub use spc::{ChartSpec, ChartState, ChartType, Limits, Point};
pub use stage::{Input, RecordStats, Stage, StageOutput, StateStore, StreamSpec, ToolStore};
pub use state::{
    ChartKey, ChartKeyRef, GroupId, GroupSnapshot, GroupSnapshotRef, KeyedState, Prefetch,
};
