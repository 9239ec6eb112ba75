//! Root-cause triage of SPC incidents as the pipeline emits it: [`Triage`] (one version of
//! an incident's ranked causes and actions) and [`OcapAction`] (an out-of-control action
//! plan step a manufacturing execution system can act on: a lot hold or a tool inhibit).
//!
//! The Avro forms are `schemas/avro/triage.avsc` and `schemas/avro/action.avsc`; the JSON
//! forms are the serde derives here. Lists, not maps, so that both encodings are
//! deterministic.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::error::{AvroError, SchemaError};
use crate::telemetry::ToolType;

/// The Avro schema of [`Triage`] as JSON text (`schemas/avro/triage.avsc`).
pub const TRIAGE_SCHEMA_JSON: &str = include_str!("../avro/triage.avsc");

/// The Avro schema of [`OcapAction`] as JSON text (`schemas/avro/action.avsc`).
pub const ACTION_SCHEMA_JSON: &str = include_str!("../avro/action.avsc");

/// Whether an incident is still collecting alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Alerts of the tool within the window join it; its triage may be published again.
    Open,
    /// The window passed without a new alert: this is its last version.
    Closed,
}

impl IncidentStatus {
    /// The name in JSON and Avro.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Closed => "closed",
        }
    }
}

/// One likely cause of an incident, with how sure triage is and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedCause {
    /// The playbook's id of the cause, e.g. `vacuum_leak`.
    pub cause_id: String,
    /// Its name for people.
    pub name: String,
    /// Share of belief in [0, 1]; the causes of one triage sum to 1.
    pub confidence: f64,
    /// The observations that support (or count against) it, one sentence each.
    pub evidence: Vec<String>,
}

/// What an OCAP action asks the factory to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A check or repair by a person; stays in the triage.
    Inspect,
    /// Hold the lot being processed (published on the actions topic).
    LotHold,
    /// Inhibit the tool from further processing (published on the actions topic).
    ToolInhibit,
}

impl ActionKind {
    /// Every kind (also the Avro symbol order).
    pub const ALL: [ActionKind; 3] = [
        ActionKind::Inspect,
        ActionKind::LotHold,
        ActionKind::ToolInhibit,
    ];

    /// The wire name: `inspect`, `lot_hold` or `tool_inhibit`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Inspect => "inspect",
            ActionKind::LotHold => "lot_hold",
            ActionKind::ToolInhibit => "tool_inhibit",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One corrective action, in the order to take them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankedAction {
    /// The playbook's id of the action.
    pub action_id: String,
    /// What to do.
    pub description: String,
    /// 1 is the most urgent.
    pub priority: u32,
    /// Who does it (a role: `equipment_engineer`, `process_engineer`, `technician`).
    pub owner: String,
    /// A check, a lot hold or a tool inhibit.
    pub kind: ActionKind,
    /// The cause it addresses, if it addresses one.
    pub cause_id: Option<String>,
}

/// One version of the triage of an incident: the alerts of one tool within a window of
/// event time, the failure mode they point at, and the ranked causes and actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    /// Stable id of the incident (the same in every version).
    pub incident_id: String,
    /// 1 when the incident opens, one more each time new evidence changes it.
    pub version: u32,
    /// Open, or closed (the last version).
    pub status: IncidentStatus,
    /// The tool.
    pub tool_id: String,
    /// Its kind.
    pub tool_type: ToolType,
    /// The recipe of the latest alert.
    pub recipe_id: String,
    /// The lot of the latest alert, if known.
    #[serde(default)]
    pub lot_id: Option<String>,
    /// The wafer of the latest alert, if known.
    #[serde(default)]
    pub wafer_id: Option<String>,
    /// The playbook the evidence points at, e.g. `beam_current_instability`.
    pub failure_mode: String,
    /// Its name for people.
    pub failure_mode_name: String,
    /// The highest severity among the incident's alerts.
    pub severity: Severity,
    /// Likely causes, most likely first.
    pub causes: Vec<RankedCause>,
    /// Corrective actions, first to take first.
    pub actions: Vec<RankedAction>,
    /// The alerts the incident covers, in arrival order.
    pub alert_ids: Vec<String>,
    /// Event time of the incident's first alert (ms since the Unix epoch).
    pub opened_at: i64,
    /// Event time this version describes: its latest alert, or the close.
    pub event_time: i64,
}

/// An out-of-control action plan step for the factory's systems: at most one per incident
/// and kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcapAction {
    /// `<incident_id>:<kind>`: unique, and the same on replay.
    pub action_id: String,
    /// The incident that called for it.
    pub incident_id: String,
    /// Lot hold or tool inhibit.
    pub kind: ActionKind,
    /// The tool.
    pub tool_id: String,
    /// Its kind.
    pub tool_type: ToolType,
    /// The recipe of the incident's latest alert.
    pub recipe_id: String,
    /// The lot to hold (a lot hold), or the lot being processed.
    #[serde(default)]
    pub lot_id: Option<String>,
    /// The wafer of the incident's latest alert, if known.
    #[serde(default)]
    pub wafer_id: Option<String>,
    /// The incident's severity when the action was called for.
    pub severity: Severity,
    /// The failure mode and the most likely cause, for the person who reads it.
    pub reason: String,
    /// What the playbook says to do.
    pub description: String,
    /// Who carries it out.
    pub owner: String,
    /// Event time of the alert that called for it.
    pub event_time: i64,
}

/// Encodes a triage as one JSON line (no newline).
pub fn encode_triage_json(triage: &Triage) -> Vec<u8> {
    let mut out = Vec::new();
    crate::json::write_triage_json(triage, &mut out);
    out
}

/// Encodes an action as one JSON line (no newline).
pub fn encode_action_json(action: &OcapAction) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    crate::json::write_action_json(action, &mut out);
    out
}

/// Decodes a triage from JSON.
///
/// # Errors
///
/// [`SchemaError::TriageJson`] naming what is wrong.
pub fn decode_triage_json(bytes: &[u8]) -> Result<Triage, SchemaError> {
    serde_json::from_slice(bytes).map_err(SchemaError::TriageJson)
}

/// Decodes an action from JSON.
///
/// # Errors
///
/// [`SchemaError::ActionJson`] naming what is wrong.
pub fn decode_action_json(bytes: &[u8]) -> Result<OcapAction, SchemaError> {
    serde_json::from_slice(bytes).map_err(SchemaError::ActionJson)
}

/// Encodes a triage as a binary Avro datum of `triage.avsc`.
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the value does not fit the schema (it always does).
pub fn encode_triage_avro(triage: &Triage) -> Result<Vec<u8>, SchemaError> {
    encode_with(triage, crate::avro::triage_schema())
}

/// Encodes an action as a binary Avro datum of `action.avsc`.
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the value does not fit the schema (it always does).
pub fn encode_action_avro(action: &OcapAction) -> Result<Vec<u8>, SchemaError> {
    encode_with(action, crate::avro::action_schema())
}

/// Decodes a triage from a binary Avro datum of `triage.avsc`.
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] for bytes that are not such a datum.
pub fn decode_triage_avro(bytes: &[u8]) -> Result<Triage, SchemaError> {
    decode_with(bytes, crate::avro::triage_schema())
}

/// Decodes an action from a binary Avro datum of `action.avsc`.
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] for bytes that are not such a datum.
pub fn decode_action_avro(bytes: &[u8]) -> Result<OcapAction, SchemaError> {
    decode_with(bytes, crate::avro::action_schema())
}

/// Through apache-avro's serde: triage is a few records per incident, not per sample, and
/// the schemas hold no maps, so the encoding is deterministic.
fn encode_with<T: Serialize>(
    value: &T,
    schema: &apache_avro::Schema,
) -> Result<Vec<u8>, SchemaError> {
    let value = apache_avro::to_value(value)
        .and_then(|v| v.resolve(schema))
        .map_err(|e| SchemaError::AvroDatum(AvroError::Library(e)))?;
    apache_avro::to_avro_datum(schema, value)
        .map_err(|e| SchemaError::AvroDatum(AvroError::Library(e)))
}

/// Checked first, as every datum spcvm decodes (see `avro/guard.rs`).
fn decode_with<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    schema: &apache_avro::Schema,
) -> Result<T, SchemaError> {
    let datum = |e| SchemaError::AvroDatum(e);
    let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)
        .map_err(|e| datum(AvroError::WriterSchema(e)))?;
    let end = crate::avro::check_datum(schema, resolved.get_names(), bytes).map_err(datum)?;
    if end != bytes.len() {
        return Err(datum(AvroError::TrailingBytes {
            end,
            extra: bytes.len() - end,
        }));
    }
    let mut reader = bytes;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None)
        .map_err(|e| datum(AvroError::Library(e)))?;
    apache_avro::from_value(&value).map_err(|e| datum(AvroError::Library(e)))
}

#[cfg(test)]
mod tests;
