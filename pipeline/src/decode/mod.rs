//! Message payload decoding for the streaming job (`spcvm run`): one Kafka message value in,
//! one validated [`Telemetry`] or a [`DecodeError`] out.
//!
//! # Modules
//!
//! - [`config`]: [`DecodeConfig`], the `[decode]` table of `pipeline.toml`, and
//!   [`PayloadFormat`] (`json`, `avro_confluent`, `avro`).
//! - `mod.rs` (here): [`Decoder`], built once by [`Decoder::new`] (which checks the config,
//!   files and schemas) and shared by all partition tasks; [`Decoder::decode`] per message.
//! - [`confluent`]: the Confluent wire format header (magic byte `0x00`, big-endian `u32`
//!   schema id).
//! - `registry`: writer schemas by id, from the ids file and the Confluent Schema Registry
//!   (`GET {url}/schemas/ids/{id}`), cached; 404 answers cached briefly.
//! - `writer`: loading `.avsc` files and checking that telemetry can be read from data
//!   written with a schema (resolution against `schemas/avro/telemetry.avsc`).
//! - [`error`]: [`DecodeSetupError`] (config) and [`DecodeError`] (per message, with
//!   [`DecodeError::kind`] and [`DecodeError::is_transient`]).
//!
//! The datum codecs themselves are `spcvm_schemas`' ([`spcvm_schemas::decode_telemetry_json`],
//! [`spcvm_schemas::decode_telemetry_avro`],
//! [`spcvm_schemas::decode_telemetry_avro_with_writer`]), which never panic on bad bytes.
//!
//! # Data flow
//!
//! ```text
//! payload (one Kafka message value)
//!   │
//!   ├─ size check ───────────────────────────▶ too_large, empty
//!   ▼
//! framing (avro_confluent only) ─────────────▶ magic_byte
//!   │ schema id (u32, big-endian)
//!   ▼
//! schema lookup: ids file / cache / registry ─▶ unknown_schema_id, registry (transient),
//!   │ writer schema                               avro (schema unusable as telemetry)
//!   ▼
//! datum decode (json, or avro resolved) ─────▶ json, avro
//!   ▼
//! validation ────────────────────────────────▶ invalid
//!   ▼
//! Telemetry                                   DecodeError: kind() label, to_string() reason
//! ```
//!
//! - `json`: [`spcvm_schemas::decode_telemetry_json`] (no framing, no schema).
//! - `avro`: one binary datum, written with `avro_schema_file` (resolved against ours) or
//!   with our own schema.
//! - `avro_confluent`: the header gives the schema id; the writer schema comes from the ids
//!   file or the registry, and the datum after the header is resolved against ours, so
//!   producers may evolve their schema compatibly (add fields with defaults, drop fields
//!   we give defaults, write readings as `int`, `long` or `float`, reorder fields).
//!
//! Validation rejects a blank `tool_id` or `recipe_id`, a record without measurements and
//! a negative `event_time`. NaN and infinite measurement values pass: the operators count
//! and skip them.
//!
//! # Blocking
//!
//! [`Decoder::decode`] is synchronous. Only `avro_confluent` with a registry ever blocks,
//! on the first message of each schema id not in the ids file (one HTTP request, at most
//! 5 s); every later message with that id is served from memory. Call it from a blocking
//! context (e.g. `tokio::task::spawn_blocking` or `block_in_place`) if that matters.

pub mod config;
pub mod confluent;
pub mod error;
mod registry;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use spcvm_schemas::apache_avro::Schema;
use spcvm_schemas::{
    Telemetry, TelemetryRef, TelemetryView, decode_telemetry_avro,
    decode_telemetry_avro_with_writer, decode_telemetry_json_ref,
};

pub use config::{DEFAULT_MAX_MESSAGE_BYTES, DecodeConfig, PayloadFormat};
pub use error::{DecodeError, DecodeSetupError};

use error::clip;
use registry::{RegistryClient, SchemaStore};

/// Turns message payloads into validated telemetry, per a [`DecodeConfig`].
///
/// `Send + Sync`: build it once and share it in an [`Arc`] across partition tasks. The
/// schema cache inside is shared too.
pub struct Decoder {
    max_message_bytes: usize,
    format: Format,
}

/// The format-specific part of a [`Decoder`].
enum Format {
    Json,
    /// Plain binary datums; `None` = our own schema.
    Avro(Option<PlainWriter>),
    AvroConfluent(Box<SchemaStore>),
}

/// The writer schema of plain Avro payloads.
struct PlainWriter {
    schema: Arc<Schema>,
    /// Where it came from, for messages: `writer schema FILE`.
    label: String,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let format = match &self.format {
            Format::Json => PayloadFormat::Json,
            Format::Avro(_) => PayloadFormat::Avro,
            Format::AvroConfluent(_) => PayloadFormat::AvroConfluent,
        };
        f.debug_struct("Decoder")
            .field("format", &format)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Builds a decoder after checking the config: the keys must fit the format
    /// (`avro_confluent` needs `schema_registry_url` or `schema_ids_file`; keys of another
    /// format are rejected rather than ignored; username and password come together),
    /// every file must be readable, and every schema must parse and be readable as
    /// telemetry (resolution against our `telemetry.avsc`). The registry is not contacted.
    ///
    /// # Errors
    ///
    /// [`DecodeSetupError`] naming the key, or the file and schema id.
    pub fn new(config: &DecodeConfig) -> Result<Decoder, DecodeSetupError> {
        let bad = |key: &'static str, reason: String| DecodeSetupError::Config { key, reason };
        if config.max_message_bytes == 0 {
            return Err(bad("max_message_bytes", "must be at least 1".into()));
        }
        let format = config.format;
        let not_for = |key: &'static str, used_by: &str| {
            bad(
                key,
                format!(
                    "is only used with format = {used_by}, but format = \"{format}\"; \
                     remove the key or change the format"
                ),
            )
        };
        let registry_keys = [
            ("schema_registry_url", config.schema_registry_url.is_some()),
            (
                "schema_registry_username",
                config.schema_registry_username.is_some(),
            ),
            (
                "schema_registry_password",
                config.schema_registry_password.is_some(),
            ),
            ("schema_ids_file", config.schema_ids_file.is_some()),
        ];
        if format != PayloadFormat::AvroConfluent
            && let Some((key, _)) = registry_keys.iter().find(|(_, set)| *set)
        {
            return Err(not_for(key, "\"avro_confluent\""));
        }
        if format != PayloadFormat::Avro && config.avro_schema_file.is_some() {
            return Err(not_for("avro_schema_file", "\"avro\""));
        }

        let format = match format {
            PayloadFormat::Json => Format::Json,
            PayloadFormat::Avro => Format::Avro(match &config.avro_schema_file {
                None => None,
                Some(path) => Some(PlainWriter {
                    schema: Arc::new(writer::load_avsc(path, "avro_schema_file", None)?),
                    label: format!("writer schema {}", path.display()),
                }),
            }),
            PayloadFormat::AvroConfluent => {
                let credentials = match (
                    &config.schema_registry_username,
                    &config.schema_registry_password,
                ) {
                    (Some(user), Some(password)) => Some((user.as_str(), password.as_str())),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(bad(
                            "schema_registry_password",
                            "is missing: `decode.schema_registry_username` is set, and basic \
                             auth needs both"
                                .into(),
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(bad(
                            "schema_registry_username",
                            "is missing: `decode.schema_registry_password` is set, and basic \
                             auth needs both"
                                .into(),
                        ));
                    }
                };
                if credentials.is_some() && config.schema_registry_url.is_none() {
                    return Err(bad(
                        "schema_registry_url",
                        "is missing: registry credentials are set but no registry URL".into(),
                    ));
                }
                let registry = match &config.schema_registry_url {
                    Some(url) => Some(
                        RegistryClient::new(url, credentials)
                            .map_err(|(key, reason)| bad(key, reason))?,
                    ),
                    None => None,
                };
                if registry.is_none() && config.schema_ids_file.is_none() {
                    return Err(bad(
                        "schema_registry_url",
                        "format = \"avro_confluent\" needs `decode.schema_registry_url` or \
                         `decode.schema_ids_file` to find writer schemas by id"
                            .into(),
                    ));
                }
                Format::AvroConfluent(Box::new(SchemaStore::new(
                    config.schema_ids_file.as_deref(),
                    registry,
                )?))
            }
        };
        Ok(Decoder {
            max_message_bytes: config.max_message_bytes,
            format,
        })
    }

    /// Decodes and validates one message payload.
    ///
    /// # Errors
    ///
    /// [`DecodeError`]; see [`DecodeError::kind`] for the cases. Only
    /// [`DecodeError::is_transient`] errors may succeed on a retry.
    pub fn decode(&self, payload: &[u8]) -> Result<Telemetry, DecodeError> {
        self.decode_ref(payload).map(TelemetryRef::into_owned)
    }

    /// [`Decoder::decode`] into a sample that borrows its strings from `payload` where the
    /// format allows (JSON without escapes); Avro samples are owned.
    ///
    /// # Errors
    ///
    /// As [`Decoder::decode`].
    pub fn decode_ref<'a>(&self, payload: &'a [u8]) -> Result<TelemetryRef<'a>, DecodeError> {
        if payload.len() > self.max_message_bytes {
            return Err(DecodeError::TooLarge {
                size: payload.len(),
                max: self.max_message_bytes,
            });
        }
        if payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        let telemetry = match &self.format {
            Format::Json => decode_telemetry_json_ref(payload).map_err(|e| DecodeError::Json {
                reason: clip(strip_prefix(e.to_string(), "telemetry JSON: ")),
            })?,
            Format::Avro(None) => decode_telemetry_avro(payload)
                .map_err(|e| avro_error("built-in telemetry schema".into(), None, e))?
                .into(),
            Format::Avro(Some(writer)) => {
                decode_telemetry_avro_with_writer(payload, &writer.schema)
                    .map_err(|e| avro_error(writer.label.clone(), None, e))?
                    .into()
            }
            Format::AvroConfluent(store) => {
                let (id, datum) = confluent::split_frame(payload)?;
                let schema = store.lookup(id)?;
                decode_telemetry_avro_with_writer(datum, &schema)
                    .map_err(|e| {
                        avro_error(
                            format!(
                                "schema id {id}, datum from payload byte {}",
                                confluent::HEADER_LEN
                            ),
                            Some(id),
                            e,
                        )
                    })?
                    .into()
            }
        };
        validate(&telemetry)?;
        Ok(telemetry)
    }

    /// The configured payload format.
    pub fn format(&self) -> PayloadFormat {
        match self.format {
            Format::Json => PayloadFormat::Json,
            Format::Avro(_) => PayloadFormat::Avro,
            Format::AvroConfluent(_) => PayloadFormat::AvroConfluent,
        }
    }
}

fn avro_error(
    schema: String,
    schema_id: Option<u32>,
    error: spcvm_schemas::SchemaError,
) -> DecodeError {
    DecodeError::Avro {
        schema,
        reason: clip(strip_prefix(error.to_string(), "avro datum: ")),
        schema_id,
    }
}

fn strip_prefix(text: String, prefix: &str) -> String {
    match text.strip_prefix(prefix) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Rejects records the operators cannot key or place in time.
fn validate(t: &impl TelemetryView) -> Result<(), DecodeError> {
    let invalid = |field: &'static str, reason: String| {
        Err(DecodeError::Invalid {
            field,
            reason: clip(reason),
        })
    };
    if t.tool_id().trim().is_empty() {
        return invalid("tool_id", format!("is blank ({:?})", t.tool_id()));
    }
    if t.recipe_id().trim().is_empty() {
        return invalid(
            "recipe_id",
            format!("is blank ({:?}) for tool {}", t.recipe_id(), t.tool_id()),
        );
    }
    if t.measurement_count() == 0 {
        return invalid(
            "measurements",
            format!(
                "is empty for tool {} at event_time {}",
                t.tool_id(),
                t.event_time()
            ),
        );
    }
    if t.event_time() < 0 {
        return invalid(
            "event_time",
            format!(
                "is negative ({} ms before the epoch) for tool {}",
                t.event_time().unsigned_abs(),
                t.tool_id()
            ),
        );
    }
    Ok(())
}
