//! Test support of spcvm's end-to-end tests (`tests/e2e/`) and the e2e bench
//! (`pipeline/benches/e2e/`): a real Kafka-protocol broker (started by `scripts/test.sh`
//! through `scripts/broker.sh`), the real `spcvm` binary, rdkafka clients to produce
//! telemetry and read what the job wrote, and the backtest to compare it with.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`broker`] | the brokers' bootstrap addresses (`KAFKA_BOOTSTRAP`, `KAFKA_BOOTSTRAP_TXN`, or `scripts/broker.sh start`), unique names, free ports, [`wait_for`] |
//! | [`paths`] | the workspace root, the `spcvm` binary under test, the Python with confluent-kafka, the TLS/SASL proxy script `broker_proxy.py` |
//! | [`job`] | [`Job`]: a running `spcvm run` (SIGTERM, `kill -9`, its log, HTTP, `/metrics` and `/readyz`); reading Prometheus samples |
//! | [`setup`] | [`Setup`]: one test's topics, group, configs and jobs (the `spcvm` under test's, or another executable's: [`Setup::with_binary`]), the group's committed offsets, and the `kill -9` and join-and-leave scenarios |
//! | [`kafka`] | the tests' own clients: [`produce`], [`read_all`], committed offsets against the ends |
//! | [`telemetry`](mod@telemetry) | the telemetry generator, [`TelemetryGen`] ([`telemetry()`] for the tests' `Vec`) |
//! | [`compare`] | [`backtest_alerts`] and the checks that streamed alerts equal the backtest's |
//! | [`runner`] | [`run_scenarios`]: libtest's selection and report for a target without its harness, whose `main` also runs as the job |
//! | [`stats`] | [`median`], for the benches' reports |
//!
//! The crate depends on no spcvm crate but `spcvm-schemas`: it drives the binary from
//! outside. Everything is re-exported at the root, so a test starts with
//! `use spcvm_testkit::*;`.

pub mod broker;
pub mod compare;
pub mod job;
pub mod kafka;
pub mod paths;
pub mod runner;
pub mod setup;
pub mod stats;
pub mod telemetry;

pub use broker::{bootstrap, bootstrap_txn, free_port, start_broker, unique, wait_for};
pub use compare::{assert_alerts_at_least_once, assert_same_alerts, backtest_alerts};
pub use job::{Job, metric_sum, metric_value, output_ok, start_run};
pub use kafka::{
    Read, client_config, committed_reached, plain_consumer, produce, produce_with, read_all,
    read_all_with, send_queued,
};
pub use paths::{broker_proxy_py, python, spcvm, workspace_root};
pub use runner::{Scenario, run_scenarios};
pub use setup::{Setup, keep_if_failing, topics_toml};
pub use stats::median;
pub use telemetry::{DRIFT_FROM, GenOptions, Layout, TelemetryGen, jsonl_lines, telemetry};
