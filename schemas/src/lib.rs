//! Schemas, Rust types and codecs for spcvm telemetry and alerts.
//!
//! # Data flow
//!
//! ```text
//! tool gateway ── JSON or Avro bytes ──▶ decode_telemetry_json / decode_telemetry_avro
//!                                              │
//!                                              ▼
//!                                          Telemetry ──▶ operators (charts, run rules,
//!                                                          severity, dedup)
//!                                                               │
//!                                                               ▼
//!            sinks ◀── JSON or Avro bytes ◀── encode_alert_json / encode_alert_avro ◀── Alert
//! ```
//!
//! Telemetry and alerts can also be archived as Avro object-container files
//! ([`write_telemetry_container`], [`read_telemetry_container`] and the alert
//! equivalents).
//!
//! # Modules
//!
//! * [`telemetry`]: [`Telemetry`] (one sample: tool, recipe, lot/wafer, event time and a
//!   map of measured parameters), [`ToolType`], the borrowed [`TelemetryRef`] and the
//!   [`TelemetryView`] trait through which the operators read either.
//! * [`alert`]: [`Alert`] (one violated chart rule or spec limit) and [`Severity`].
//! * [`triage`]: [`Triage`] (an incident's ranked causes and actions, by version) and
//!   [`OcapAction`] (a lot hold or tool inhibit), with their JSON and Avro codecs.
//! * [`json`]: JSON codecs; telemetry decodes through a scanner that borrows its strings
//!   ([`decode_telemetry_json_ref`]) and falls back to serde_json for anything unusual. Measurements accept `null` and `"NaN"` / `"Infinity"` /
//!   `"-Infinity"` as non-finite values and write non-finite values back as those strings.
//! * [`avro`]: the Avro schemas (`schemas/avro/*.avsc`, embedded at build time), single
//!   binary datum codecs, decoding with an evolved writer schema, and
//!   [`avro::container`] for object-container files.
//! * [`error`]: [`SchemaError`], whose messages say what was wrong and where, and the Avro
//!   detail [`AvroError`].
//!
//! Everything needed by other crates is re-exported here at the crate root.
//!
//! # Robustness
//!
//! Decoding never panics on malformed input: truncated or random bytes, absurd lengths and
//! deeply nested data give a [`SchemaError`]. Binary Avro input is structurally checked
//! before apache-avro sees it, because apache-avro 0.20 can be made to abort the process
//! by a tiny datum that announces a huge map.

#![warn(missing_docs)]

pub mod alert;
pub mod avro;
pub mod error;
pub mod json;
pub mod telemetry;
pub mod triage;

pub use alert::{Alert, AlertStatus, Severity};
pub use avro::container::{
    TelemetryContainerWriter, read_alert_container, read_telemetry_container,
    write_alert_container, write_telemetry_container,
};
pub use avro::{
    ALERT_SCHEMA_JSON, TELEMETRY_SCHEMA_JSON, alert_schema, decode_alert_avro,
    decode_alert_avro_with_writer, decode_telemetry_avro, decode_telemetry_avro_with_writer,
    encode_alert_avro, encode_telemetry_avro, parse_schema, telemetry_schema, write_telemetry_avro,
};
pub use error::{AvroError, SchemaError};
pub use json::{
    TelemetryJsonWriter, decode_alert_json, decode_telemetry_json, decode_telemetry_json_ref,
    encode_alert_json, encode_telemetry_json, write_action_json, write_alert_json,
    write_ranked_action_json, write_telemetry_json, write_triage_json_with_actions,
};
pub use telemetry::{ParseEnumError, Telemetry, TelemetryRef, TelemetryView, ToolType};
pub use triage::{
    ACTION_SCHEMA_JSON, ActionKind, IncidentStatus, OcapAction, RankedAction, RankedCause,
    TRIAGE_SCHEMA_JSON, Triage, decode_action_avro, decode_action_json, decode_triage_avro,
    decode_triage_json, encode_action_avro, encode_action_json, encode_triage_avro,
    encode_triage_json,
};

/// Re-export of the apache-avro crate, so callers can name [`apache_avro::Schema`] (e.g.
/// to parse a writer schema) without depending on the same version themselves.
pub use apache_avro;
