//! The crate's error type, [`SchemaError`], and the Avro detail type [`AvroError`].
//!
//! Every message says what went wrong and where: a line and column for JSON, a byte
//! offset for Avro data, a field name for values that do not fit the Rust types, and a
//! record index for container files.

use thiserror::Error;

/// Error from encoding or decoding telemetry or alerts.
///
/// The message carries the full detail (the wrapped error is displayed, not chained
/// through [`std::error::Error::source`]), e.g.
/// ``telemetry JSON: missing field `tool_id` at line 1 column 40`` or
/// `avro container record 17: malformed data at byte 3: ...`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A JSON document could not be decoded as [`crate::Telemetry`].
    #[error("telemetry JSON: {0}")]
    TelemetryJson(serde_json::Error),
    /// A JSON document could not be decoded as [`crate::Alert`].
    #[error("alert JSON: {0}")]
    AlertJson(serde_json::Error),
    /// A JSON document could not be decoded as [`crate::Triage`].
    #[error("triage JSON: {0}")]
    TriageJson(serde_json::Error),
    /// A JSON document could not be decoded as [`crate::OcapAction`].
    #[error("action JSON: {0}")]
    ActionJson(serde_json::Error),
    /// A single Avro datum could not be encoded or decoded.
    #[error("avro datum: {0}")]
    AvroDatum(AvroError),
    /// An Avro object-container file could not be written, or its header or block framing
    /// could not be read.
    #[error("avro container: {0}")]
    AvroContainer(AvroError),
    /// One record of an Avro object-container file could not be decoded.
    #[error("avro container record {index}: {error}")]
    AvroContainerRecord {
        /// Zero-based index of the record in the file.
        index: u64,
        /// What was wrong with it.
        error: AvroError,
    },
}

/// What went wrong with Avro data or an Avro schema.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AvroError {
    /// The bytes do not form a valid datum of the writer schema, or a container file's
    /// framing is broken. `offset` counts bytes from the start of the datum (for a
    /// container's header and blocks: from the start of the file).
    #[error("malformed data at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset where the problem was found.
        offset: u64,
        /// What was wrong there.
        reason: String,
    },
    /// A datum ended before the end of the input.
    #[error("datum ended at byte {end} but the input has {extra} more byte(s)")]
    TrailingBytes {
        /// Length of the datum in bytes.
        end: usize,
        /// Bytes left over after it.
        extra: usize,
    },
    /// A decoded value does not fit the Rust type, e.g. a negative `repeats`.
    #[error("{record}.{field}: {reason}")]
    Field {
        /// Record name (`Telemetry` or `Alert`).
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// What was wrong with the value.
        reason: String,
    },
    /// A schema text is not a valid Avro schema (found before handing it to apache-avro,
    /// which panics on some of these).
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    /// A writer schema could not be parsed or used.
    #[error("writer schema: {0}")]
    WriterSchema(apache_avro::Error),
    /// The apache-avro library reported an error (encoding, decoding or schema resolution).
    #[error("{0}")]
    Library(apache_avro::Error),
    /// Reading or writing the underlying stream failed.
    #[error("I/O error: {0}")]
    Io(std::io::Error),
}
