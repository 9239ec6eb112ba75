//! [`DecodeSetupError`] (a bad `[decode]` config, found by [`super::Decoder::new`]) and
//! [`DecodeError`] (one bad message, found by [`super::Decoder::decode`]).

use std::path::PathBuf;

/// Longest reason text kept from a library error, in bytes: DLQ headers stay small even when
/// apache-avro prints a whole schema.
const MAX_REASON: usize = 600;

/// `text`, cut to at most [`MAX_REASON`] bytes on a character boundary, with `…` appended
/// when something was cut.
pub(crate) fn clip(text: impl Into<String>) -> String {
    let mut text = text.into();
    if text.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A problem with the `[decode]` configuration. Every message names the key
/// (`decode.KEY`) or the file (and schema id) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeSetupError {
    /// A key is missing, has a bad value, or does not fit the chosen `format`.
    #[error("`decode.{key}`: {reason}")]
    Config {
        /// The offending key, e.g. `schema_registry_url`.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file named by a key could not be read.
    #[error("`decode.{key}`: cannot read `{}`: {source}", path.display())]
    Read {
        /// The key that names the file (for `.avsc` files listed in the ids file:
        /// `schema_ids_file`).
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The schema ids file is not a valid id → `.avsc` map.
    #[error("{}: {reason}", path.display())]
    IdsFile {
        /// The ids file.
        path: PathBuf,
        /// What is wrong, with the line (TOML, JSON) or the key.
        reason: String,
    },
    /// An `.avsc` file is not a valid Avro schema, or telemetry cannot be read from data
    /// written with it.
    #[error("{}{}: {reason}", path.display(), id.map_or_else(String::new, |id| format!(" (schema id {id})")))]
    Schema {
        /// The `.avsc` file.
        path: PathBuf,
        /// The schema id it is listed under in the ids file, if any.
        id: Option<u32>,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why one message payload could not be turned into telemetry. The `Display` text says
/// what was wrong and where (byte offset, field, schema id) and is meant for the
/// dead-letter reason header; [`DecodeError::kind`] gives a stable label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is longer than `max_message_bytes`; it was not decoded.
    #[error("payload of {size} bytes exceeds max_message_bytes = {max}")]
    TooLarge {
        /// Payload length in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The payload has no bytes (e.g. a tombstone).
    #[error("empty payload (0 bytes)")]
    Empty,
    /// A JSON payload is not a valid telemetry document.
    #[error("JSON payload: {reason}")]
    Json {
        /// The decoder's message, with line and column.
        reason: String,
    },
    /// An Avro datum could not be decoded with its writer schema, or that schema cannot be
    /// used to read telemetry.
    #[error("Avro payload ({schema}): {reason}")]
    Avro {
        /// Which writer schema was used, e.g. `schema id 7, datum from payload byte 5`.
        schema: String,
        /// What was wrong; byte offsets count from the start of the datum.
        reason: String,
        /// The Confluent schema id, for Confluent-framed payloads.
        schema_id: Option<u32>,
    },
    /// The payload does not start with the Confluent header (magic byte `0x00` + 4-byte
    /// schema id).
    #[error("not Confluent wire format: {reason}")]
    Framing {
        /// What was found instead, at which byte.
        reason: String,
    },
    /// Neither the schema ids file nor the registry knows the payload's schema id.
    #[error("unknown schema id {id}: {reason}")]
    UnknownSchemaId {
        /// The schema id from the payload header.
        id: u32,
        /// Where it was looked up.
        reason: String,
    },
    /// The schema registry could not be asked (connection failure, timeout, 5xx, auth
    /// failure, bad answer): worth retrying later.
    #[error("schema registry, fetching schema id {id}: {reason}")]
    Registry {
        /// The schema id that was being fetched.
        id: u32,
        /// What went wrong.
        reason: String,
    },
    /// The payload decoded but the record is not usable telemetry.
    #[error("invalid telemetry: `{field}` {reason}")]
    Invalid {
        /// The offending field, e.g. `tool_id`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    /// A short stable label for metrics and the `spcvm.error.kind` dead-letter header:
    ///
    /// | kind | meaning |
    /// |---|---|
    /// | `too_large` | longer than `max_message_bytes` |
    /// | `empty` | no bytes |
    /// | `json` | not a valid JSON telemetry document |
    /// | `avro` | bad Avro datum, or a writer schema that cannot be read as telemetry |
    /// | `magic_byte` | not Confluent wire format (wrong first byte, or under 5 bytes) |
    /// | `unknown_schema_id` | schema id in neither the ids file nor the registry |
    /// | `registry` | the schema registry could not be asked (transient) |
    /// | `invalid` | decoded, but blank ids, no measurements or a negative event time |
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Empty => "empty",
            DecodeError::Json { .. } => "json",
            DecodeError::Avro { .. } => "avro",
            DecodeError::Framing { .. } => "magic_byte",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema_id",
            DecodeError::Registry { .. } => "registry",
            DecodeError::Invalid { .. } => "invalid",
        }
    }

    /// Whether retrying the same payload later could succeed: true only for
    /// [`DecodeError::Registry`] (registry unreachable, timed out, 5xx, 401/403/429). The
    /// runtime should then back off and retry rather than dead-letter the message.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::Registry { .. })
    }

    /// The Confluent schema id the error concerns, when known (e.g. for a
    /// `spcvm.schema.id` dead-letter header).
    pub fn schema_id(&self) -> Option<u32> {
        match self {
            DecodeError::UnknownSchemaId { id, .. } | DecodeError::Registry { id, .. } => Some(*id),
            DecodeError::Avro { schema_id, .. } => *schema_id,
            _ => None,
        }
    }
}
