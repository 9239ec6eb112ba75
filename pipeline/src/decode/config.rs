//! The `[decode]` table of `pipeline.toml`: how message payloads are encoded and where the
//! Avro writer schemas come from.
//!
//! ```toml
//! [decode]
//! format = "avro_confluent"                        # json | avro_confluent | avro
//! schema_registry_url = "https://psrc-abc.eu-west-1.aws.confluent.cloud"
//! schema_registry_username = "API_KEY"             # basic auth, optional
//! schema_registry_password = "API_SECRET"
//! # schema_ids_file = "schemas.json"               # or: id -> .avsc map, no registry needed
//! # avro_schema_file = "telemetry-v2.avsc"         # format = "avro": the writer schema
//! max_message_bytes = 1048576
//! ```
//!
//! [`DecodeConfig`] is only the shape; [`super::Decoder::new`] checks that the keys fit
//! together and that every file and schema is usable.

use std::path::PathBuf;

/// The `[decode]` table of `pipeline.toml`. Unknown keys are rejected; every key is
/// optional (see [`DecodeConfig::default`]).
///
/// `Debug` prints `schema_registry_password` as `"***"` so the config can be logged.
#[derive(Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// How payloads are encoded (default `json`).
    pub format: PayloadFormat,
    /// `avro_confluent`: base URL of a Confluent Schema Registry (`http://` or `https://`),
    /// queried as `GET {url}/schemas/ids/{id}` for schema ids not in `schema_ids_file`.
    pub schema_registry_url: Option<String>,
    /// `avro_confluent`: basic-auth user for the registry (a Confluent Cloud API key).
    /// Needs `schema_registry_password` too.
    pub schema_registry_username: Option<String>,
    /// `avro_confluent`: basic-auth password for the registry (a Confluent Cloud API
    /// secret). Needs `schema_registry_username` too.
    pub schema_registry_password: Option<String>,
    /// `avro_confluent` without (or before asking) a registry: a JSON file
    /// (`{"1": "telemetry-v1.avsc"}`) or, when its name ends in `.toml`, a TOML file
    /// (`1 = "telemetry-v1.avsc"`) mapping schema ids to `.avsc` files, relative to the ids
    /// file's directory. Loaded and checked once, at start-up.
    pub schema_ids_file: Option<PathBuf>,
    /// `avro` (plain binary datums, no framing): the producers' writer schema (`.avsc`),
    /// resolved against ours; absent = producers write our own `telemetry.avsc`.
    pub avro_schema_file: Option<PathBuf>,
    /// Payloads longer than this many bytes are rejected without being decoded
    /// (default 1 MiB = 1 048 576; must be at least 1).
    pub max_message_bytes: usize,
}

/// The default message size limit: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_576;

impl Default for DecodeConfig {
    /// JSON payloads, no registry or schema files, a 1 MiB size limit.
    fn default() -> Self {
        DecodeConfig {
            format: PayloadFormat::default(),
            schema_registry_url: None,
            schema_registry_username: None,
            schema_registry_password: None,
            schema_ids_file: None,
            avro_schema_file: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl std::fmt::Debug for DecodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeConfig")
            .field("format", &self.format)
            .field("schema_registry_url", &self.schema_registry_url)
            .field("schema_registry_username", &self.schema_registry_username)
            .field(
                "schema_registry_password",
                &self.schema_registry_password.as_ref().map(|_| "***"),
            )
            .field("schema_ids_file", &self.schema_ids_file)
            .field("avro_schema_file", &self.avro_schema_file)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

/// How message payloads are encoded (`format` in `[decode]`, spelled in snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    /// `json`: one JSON telemetry document per message (bare `NaN` / `Infinity` accepted).
    #[default]
    Json,
    /// `avro_confluent`: Confluent Schema Registry wire format: magic byte `0x00`, a 4-byte
    /// big-endian schema id, then one binary Avro datum of that schema.
    AvroConfluent,
    /// `avro`: one binary Avro datum per message, no framing, all of one writer schema.
    Avro,
}

impl PayloadFormat {
    /// The spelling used in `pipeline.toml`, e.g. `"avro_confluent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Json => "json",
            PayloadFormat::AvroConfluent => "avro_confluent",
            PayloadFormat::Avro => "avro",
        }
    }
}

impl std::fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
