//! Output sinks for spcvm: where alerts, dead letters and state go once the operators have
//! produced them. No operator logic here; the runtime (`pipeline`) decides what to write
//! when.
//!
//! # Layout
//!
//! - [`jsonl`]: [`AlertWriter`], one alert per line as JSON (the `--alerts` file of
//!   `spcvm backtest`), and its error type [`SinkError`].
//! - [`file`](mod@file): [`AppendFile`], a JSON-lines file with commit points that is cut
//!   back to the last checkpoint on restart (exactly-once output of the file runtime).
//! - [`kafka`]: [`KafkaSink`], the process's one producer: alerts (JSON or Avro), dead
//!   letters with `spcvm.*` headers, changelog records, and the transaction calls.
//! - [`client_log`]: [`ClientLog`], the librdkafka client context of every Kafka client of
//!   the process: librdkafka's log lines and errors, each distinct one at most once a
//!   minute (a broker outage would otherwise log the same line several times a second).
//!
//! # Data flow
//!
//! ```text
//! Alert ──AlertWriter::write──> encode_alert_json ──> BufWriter<W> ──finish──> flushed W
//! line  ──AppendFile::write_line──> file ──commit──> fsynced length (into the checkpoint)
//! Alert / DeadLetter / state ──KafkaSink::send_*──> librdkafka queue ──> DeliveryFuture
//!                            └─ inside a transaction: commit_transaction(offsets, group)
//! ```

pub mod client_log;
pub mod file;
pub mod jsonl;
pub mod kafka;

pub use client_log::ClientLog;
pub use file::{AppendError, AppendFile};
pub use jsonl::{AlertWriter, SinkError};
pub use kafka::{AlertEncoding, DeadLetter, KafkaSink, KafkaSinkError, SinkTopics};
