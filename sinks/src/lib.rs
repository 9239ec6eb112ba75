//! Output sinks for spcvm: where alerts go once the operators have raised them.
//!
//! # Layout
//!
//! - [`jsonl`]: [`AlertWriter`], one alert per line as JSON (the `--alerts` file of
//!   `spcvm backtest`), and its error type [`SinkError`].
//!
//! # Data flow
//!
//! ```text
//! Alert ──AlertWriter::write──> encode_alert_json ──> BufWriter<W> ──finish──> flushed W
//! ```

pub mod jsonl;

pub use jsonl::{AlertWriter, SinkError};
