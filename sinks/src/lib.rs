//! Output sinks for spcvm: where alerts, dead letters and state go once the operators have
//! produced them. No operator logic here; the runtime (`pipeline`) decides what to write
//! when.
//!
//! # Layout
//!
//! - [`jsonl`]: [`LineWriter`], one output of a stage's stream per line as JSON (the
//!   `--alerts` file of `spcvm backtest`), and its error type [`SinkError`].
//! - [`file`](mod@file): [`AppendFile`], a JSON-lines file with commit points that is cut
//!   back to the last checkpoint on restart (exactly-once output of the file runtime).
//! - [`kafka`]: [`KafkaSink`], the process's one producer: the stages' output streams
//!   (each [`Encoding`]: JSON or Avro), dead letters with `spcvm.*` headers, changelog
//!   records, and the transaction calls; [`producer_config`], the settings every spcvm
//!   producer starts from (the job's, `spcvm simulate`'s).
//! - [`client_log`]: [`ClientLog`], the librdkafka client context of every Kafka client of
//!   the process: librdkafka's log lines and errors, each distinct one at most once a
//!   minute (a broker outage would otherwise log the same line several times a second).
//!
//! # Data flow
//!
//! ```text
//! output ──LineWriter::write──> StageOutput::to_json ──> BufWriter<W> ──finish──> flushed W
//! line  ──AppendFile::write_line──> file ──commit──> fsynced length (into the checkpoint)
//! output (Encoding::encode) / DeadLetter / state ──KafkaSink::send_*──> librdkafka queue
//!                            └─ inside a transaction: commit_transaction(offsets, group)
//! ```

pub mod client_log;
pub mod file;
pub mod jsonl;
pub mod kafka;

pub use client_log::ClientLog;
pub use file::{AppendError, AppendFile};
pub use jsonl::{LineWriter, SinkError};
pub use kafka::{DeadLetter, Encoding, KafkaSink, KafkaSinkError, SinkTopics, producer_config};
