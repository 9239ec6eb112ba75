//! The `spcvm` binary's library: its command line, `spcvm backtest`, the stages and the
//! streaming runtimes, exposed so integration tests (and other binaries) can drive them.
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
//! - [`playbooks`]: triage playbooks loaded from files (or the built-in ones) with errors
//!   that name the file, line and key.
//! - [`report`]: the `--report` JSON document.
//! - [`demo`]: `spcvm demo`, simulate + run + score + chart in one folder.
//! - [`chart`]: `spcvm chart`, one control chart re-computed by the operators and drawn as
//!   PNG and SVG.
//! - [`simulate`]: the fab simulator (scenarios, faults, ground truth) behind `spcvm
//!   simulate`, and the scoring behind `spcvm score`.
//! - [`cli`]: the command line (clap): `spcvm backtest` (progress bar and summary), `spcvm
//!   run`, `spcvm topics create`, `spcvm simulate`, `spcvm score`, and [`cli::main_with`],
//!   which runs it with the stages and commit participants of a build's own
//!   ([`cli::Extensions`]).
//! - [`run`]: `spcvm run`'s runtimes (Kafka and files), its config, changelog and topics.
//! - [`decode`]: message payloads (JSON, Confluent-wire Avro, bare Avro) into records.
//! - [`metrics`], [`http`]: the job's Prometheus metrics and its HTTP endpoint.
//! - `main.rs`: the `spcvm` binary, `cli::main_with` with no extensions.
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
pub mod chart;
pub mod cli;
pub mod config;
pub mod decode;
pub mod demo;
pub mod http;
pub mod input;
pub mod metrics;
pub mod playbooks;
pub mod report;
pub mod run;
pub mod simulate;
pub mod stages;
pub mod stdio;
