//! The `spcvm` binary's library: everything `spcvm backtest` does, exposed so integration
//! tests (and later runtimes) can drive it.
//!
//! # Layout
//!
//! - [`config`]: loads `CHARTS.toml` into a [`spcvm_operators::MonitorConfig`] and a validated
//!   [`spcvm_operators::SpcMonitor`]; errors name the file, line and key.
//! - [`input`]: [`input::RecordSource`], telemetry records (lent, or as an iterator) from a
//!   JSON-lines ([`input::jsonl`]), CSV ([`input::csv`]) or Avro container ([`input::avro`])
//!   file, with bad records reported by line or record number.
//! - [`backtest`]: the replay loop ([`backtest::run`]) and the whole command
//!   ([`backtest::execute`]).
//! - [`stages`]: the job's stages in order ([`stages::Chain`]), one partition's stage stores
//!   ([`stages::PartitionChain`]) and the record path every runtime takes
//!   ([`stages::step`]).
//! - [`report`]: the `--report` JSON document.
//! - `main.rs`: the command line (clap), progress bar and summary.
//!
//! # Data flow
//!
//! ```text
//! CHARTS.toml ──config::load──> SpcMonitor
//! FILE ──RecordSource::next_ref──> TelemetryRef ──Step──> PartitionChain (SPC stage) ──> alerts ──LineWriter──> alerts.jsonl
//!        └─ bad record ──Observer──> stderr                  │ KeyedState<SpcState> (per tool/recipe/parameter)
//! end of input ──PartitionChain::end──> closing alerts ──LineWriter──> alerts.jsonl
//! KeyedState + Totals ──report::build──> report.json
//! ```

pub mod backtest;
pub mod config;
pub mod decode;
pub mod http;
pub mod input;
pub mod metrics;
pub mod report;
pub mod run;
pub mod stages;
