//! Avro schemas and binary codecs for [`Telemetry`] and [`Alert`].
//!
//! * [`telemetry_schema`] / [`alert_schema`]: the schemas in `schemas/avro/*.avsc`,
//!   parsed once.
//! * `encode_*_avro` / `decode_*_avro`: one binary datum, no header or fingerprint (the
//!   form used as a message payload). Decoding checks the whole input is one datum.
//! * `decode_*_avro_with_writer`: decode a datum written with another (older or newer)
//!   schema, resolving it against ours per the Avro schema-resolution rules (fields the
//!   writer lacks take our defaults, fields we lack are skipped).
//! * [`container`]: Avro object-container files.
//!
//! Encoding is hand-written against the schemas (tests check it byte for byte against
//! apache-avro), which makes it deterministic: apache-avro writes maps in `HashMap` order.
//! Decoding goes through apache-avro (`from_avro_datum`, with schema resolution) and maps
//! the resulting `apache_avro::types::Value` field by field, with no serde in between; so
//! `event_time` is a `timestamp-millis` long holding the i64 milliseconds unchanged, NaN
//! measurements stay NaN (payload included), and `repeats` is a long holding the full u32
//! range. Every datum is structurally checked before apache-avro decodes it (see
//! `guard.rs`), so truncated or random bytes give an error, never a panic or an abort.

pub mod container;
mod guard;

pub(crate) use guard::check_datum;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;

use crate::alert::{Alert, AlertStatus, Severity};
use crate::error::{AvroError, SchemaError};
use crate::telemetry::{Telemetry, ToolType};

/// The telemetry schema as JSON text (`schemas/avro/telemetry.avsc`), e.g. to register
/// in a schema registry.
pub const TELEMETRY_SCHEMA_JSON: &str = include_str!("../avro/telemetry.avsc");

/// The alert schema as JSON text (`schemas/avro/alert.avsc`).
pub const ALERT_SCHEMA_JSON: &str = include_str!("../avro/alert.avsc");

/// The parsed triage schema (record `io.spcvm.Triage`), parsed on first use.
pub fn triage_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_str(crate::triage::TRIAGE_SCHEMA_JSON)
            .expect("bundled triage.avsc is a valid schema")
    })
}

/// The parsed OCAP action schema (record `io.spcvm.OcapAction`), parsed on first use.
pub fn action_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_str(crate::triage::ACTION_SCHEMA_JSON)
            .expect("bundled action.avsc is a valid schema")
    })
}

/// The parsed telemetry schema (record `io.spcvm.Telemetry`), parsed on first use.
pub fn telemetry_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_str(TELEMETRY_SCHEMA_JSON).expect("bundled telemetry.avsc is a valid schema")
    })
}

/// The parsed alert schema (record `io.spcvm.Alert`), parsed on first use.
pub fn alert_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_str(ALERT_SCHEMA_JSON).expect("bundled alert.avsc is a valid schema")
    })
}

/// Encodes one telemetry sample as a binary Avro datum of [`telemetry_schema`].
///
/// # Errors
///
/// None in practice: every [`Telemetry`] has an encoding. The `Result` leaves room for
/// future validation.
///
/// The encoding is deterministic: measurements are written in key order (apache-avro
/// would write them in `HashMap` order), so the same sample always gives the same bytes.
pub fn encode_telemetry_avro(telemetry: &Telemetry) -> Result<Vec<u8>, SchemaError> {
    Ok(encode(telemetry))
}

/// Appends the datum of [`encode_telemetry_avro`] to `out` (no allocation of its own: a
/// producer reuses one buffer, with a Confluent header in front, say).
pub fn write_telemetry_avro(telemetry: &Telemetry, out: &mut Vec<u8>) {
    telemetry.encode_into(out);
}

/// Decodes one telemetry sample from a binary Avro datum of [`telemetry_schema`].
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the bytes are not exactly one valid datum.
pub fn decode_telemetry_avro(bytes: &[u8]) -> Result<Telemetry, SchemaError> {
    decode_datum(bytes, None).map_err(SchemaError::AvroDatum)
}

/// Decodes one telemetry sample from a binary Avro datum written with `writer_schema`,
/// resolving it against [`telemetry_schema`].
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the bytes are not exactly one valid datum of
/// `writer_schema`, or the writer schema cannot be resolved against ours (e.g. it lacks
/// `tool_id`, or has a `tool_type` symbol we do not know).
pub fn decode_telemetry_avro_with_writer(
    bytes: &[u8],
    writer_schema: &Schema,
) -> Result<Telemetry, SchemaError> {
    decode_datum(bytes, Some(writer_schema)).map_err(SchemaError::AvroDatum)
}

/// Encodes one alert as a binary Avro datum of [`alert_schema`].
///
/// # Errors
///
/// None in practice: every [`Alert`] has an encoding. The `Result` leaves room for future
/// validation.
pub fn encode_alert_avro(alert: &Alert) -> Result<Vec<u8>, SchemaError> {
    Ok(encode(alert))
}

/// Decodes one alert from a binary Avro datum of [`alert_schema`].
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the bytes are not exactly one valid datum.
pub fn decode_alert_avro(bytes: &[u8]) -> Result<Alert, SchemaError> {
    decode_datum(bytes, None).map_err(SchemaError::AvroDatum)
}

/// Decodes one alert from a binary Avro datum written with `writer_schema`, resolving it
/// against [`alert_schema`].
///
/// # Errors
///
/// [`SchemaError::AvroDatum`] if the bytes are not exactly one valid datum of
/// `writer_schema`, or the writer schema cannot be resolved against ours.
pub fn decode_alert_avro_with_writer(
    bytes: &[u8],
    writer_schema: &Schema,
) -> Result<Alert, SchemaError> {
    decode_datum(bytes, Some(writer_schema)).map_err(SchemaError::AvroDatum)
}

/// A Rust type with an Avro record schema: hand-written binary encoding, and a
/// field-by-field conversion from a decoded `Value`.
pub(crate) trait AvroRecord: Sized {
    /// Record name, for error messages.
    const NAME: &'static str;
    /// Our (reader) schema as JSON text, written into container headers.
    const SCHEMA_JSON: &'static str;
    /// Our (reader) schema.
    fn schema() -> &'static Schema;
    /// Appends the record's binary encoding (a datum of [`Self::schema`]) to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);
    /// Converts a value decoded with (or resolved to) [`Self::schema`].
    fn from_value(value: Value) -> Result<Self, AvroError>;
}

/// Binary encoding of one record.
fn encode<T: AvroRecord>(record: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    record.encode_into(&mut out);
    out
}

fn decode_datum<T: AvroRecord>(bytes: &[u8], writer: Option<&Schema>) -> Result<T, AvroError> {
    let (writer_schema, reader_schema) = match writer {
        Some(writer) => (writer, Some(T::schema())),
        None => (T::schema(), None),
    };
    let resolved = ResolvedSchema::try_from(writer_schema).map_err(AvroError::WriterSchema)?;
    let end = guard::check_datum(writer_schema, resolved.get_names(), bytes)?;
    if end != bytes.len() {
        return Err(AvroError::TrailingBytes {
            end,
            extra: bytes.len() - end,
        });
    }
    decode_checked(writer_schema, reader_schema, bytes)
}

/// Decodes a datum that [`guard::check_datum`] has accepted, resolving it against
/// `reader_schema` when given.
pub(crate) fn decode_checked<T: AvroRecord>(
    writer_schema: &Schema,
    reader_schema: Option<&Schema>,
    mut datum: &[u8],
) -> Result<T, AvroError> {
    let value = apache_avro::from_avro_datum(writer_schema, &mut datum, reader_schema)
        .map_err(AvroError::Library)?;
    T::from_value(value)
}

impl AvroRecord for Telemetry {
    const NAME: &'static str = "Telemetry";
    const SCHEMA_JSON: &'static str = TELEMETRY_SCHEMA_JSON;

    fn schema() -> &'static Schema {
        telemetry_schema()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_string(out, &self.tool_id);
        put_long(out, enum_index(&ToolType::ALL, self.tool_type));
        put_string(out, &self.recipe_id);
        put_optional_string(out, self.lot_id.as_deref());
        put_optional_string(out, self.wafer_id.as_deref());
        put_long(out, self.event_time);
        // One block in key order, then the empty block that ends the map.
        if !self.measurements.is_empty() {
            put_long(out, self.measurements.len() as i64);
            for (name, &value) in &self.measurements {
                put_string(out, name);
                put_double(out, value);
            }
        }
        put_long(out, 0);
    }

    fn from_value(value: Value) -> Result<Self, AvroError> {
        let mut fields = Fields::new(Self::NAME, value)?;
        Ok(Telemetry {
            tool_id: fields.string("tool_id")?,
            tool_type: fields.symbol("tool_type")?,
            recipe_id: fields.string("recipe_id")?,
            lot_id: fields.optional_string("lot_id")?,
            wafer_id: fields.optional_string("wafer_id")?,
            event_time: fields.timestamp_millis("event_time")?,
            measurements: fields.double_map("measurements")?,
        })
    }
}

impl AvroRecord for Alert {
    const NAME: &'static str = "Alert";
    const SCHEMA_JSON: &'static str = ALERT_SCHEMA_JSON;

    fn schema() -> &'static Schema {
        alert_schema()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_string(out, &self.alert_id);
        put_string(out, &self.tool_id);
        put_long(out, enum_index(&ToolType::ALL, self.tool_type));
        put_string(out, &self.recipe_id);
        put_optional_string(out, self.lot_id.as_deref());
        put_optional_string(out, self.wafer_id.as_deref());
        put_string(out, &self.parameter);
        put_string(out, &self.chart);
        put_string(out, &self.rule);
        put_long(out, enum_index(&Severity::ALL, self.severity));
        put_double(out, self.statistic);
        put_double(out, self.center_line);
        put_optional_double(out, self.ucl);
        put_optional_double(out, self.lcl);
        put_long(out, self.event_time);
        put_string(out, &self.message);
        put_long(out, i64::from(self.repeats));
        put_optional_double(out, self.distance_sigma);
        // `status` is a ["null", AlertStatus] union (null: written before it existed); we
        // always know it.
        put_long(out, 1);
        put_long(out, enum_index(&AlertStatus::ALL, self.status));
        put_optional_long(out, self.window_start);
        put_optional_double(out, self.cusum_upper_sigma);
        put_optional_double(out, self.cusum_lower_sigma);
    }

    fn from_value(value: Value) -> Result<Self, AvroError> {
        let mut fields = Fields::new(Self::NAME, value)?;
        let repeats = fields.u32("repeats")?;
        let status = fields.optional_symbol("status")?;
        Ok(Alert {
            alert_id: fields.string("alert_id")?,
            tool_id: fields.string("tool_id")?,
            tool_type: fields.symbol("tool_type")?,
            recipe_id: fields.string("recipe_id")?,
            lot_id: fields.optional_string("lot_id")?,
            wafer_id: fields.optional_string("wafer_id")?,
            parameter: fields.string("parameter")?,
            chart: fields.string("chart")?,
            rule: fields.string("rule")?,
            severity: fields.symbol("severity")?,
            statistic: fields.double("statistic")?,
            center_line: fields.double("center_line")?,
            ucl: fields.optional_double("ucl")?,
            lcl: fields.optional_double("lcl")?,
            event_time: fields.timestamp_millis("event_time")?,
            message: fields.string("message")?,
            repeats,
            distance_sigma: fields.optional_double("distance_sigma")?,
            status: status.unwrap_or_else(|| AlertStatus::from_repeats(repeats)),
            window_start: fields.optional_timestamp_millis("window_start")?,
            cusum_upper_sigma: fields.optional_double("cusum_upper_sigma")?,
            cusum_lower_sigma: fields.optional_double("cusum_lower_sigma")?,
        })
    }
}

/// Appends a zig-zag variable-length long (also used for ints, enum indexes, union
/// branches, lengths and block counts).
pub(crate) fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut raw = ((n << 1) ^ (n >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Appends length-prefixed bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends a double as 8 little-endian bytes (NaN payloads are kept).
fn put_double(out: &mut Vec<u8>, x: f64) {
    out.extend_from_slice(&x.to_le_bytes());
}

/// Appends a `["null", "string"]` union.
fn put_optional_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => put_long(out, 0),
        Some(s) => {
            put_long(out, 1);
            put_string(out, s);
        }
    }
}

/// Appends a `["null", "double"]` union.
fn put_optional_double(out: &mut Vec<u8>, x: Option<f64>) {
    match x {
        None => put_long(out, 0),
        Some(x) => {
            put_long(out, 1);
            put_double(out, x);
        }
    }
}

/// Appends a `["null", "long"]` union (also with a logical type on the long).
fn put_optional_long(out: &mut Vec<u8>, x: Option<i64>) {
    match x {
        None => put_long(out, 0),
        Some(x) => {
            put_long(out, 1);
            put_long(out, x);
        }
    }
}

/// Position of `value` in `all`, which lists the variants in Avro symbol order.
fn enum_index<E: PartialEq>(all: &[E], value: E) -> i64 {
    all.iter().position(|e| *e == value).unwrap_or_default() as i64
}

/// The fields of a decoded record, taken out one by one with type checks whose errors
/// name the record and field.
struct Fields {
    record: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn new(record: &'static str, value: Value) -> Result<Self, AvroError> {
        match value {
            Value::Record(fields) => Ok(Fields { record, fields }),
            other => Err(AvroError::Field {
                record,
                field: "(record)",
                reason: format!("expected a record, found {other:?}"),
            }),
        }
    }

    fn error(&self, field: &'static str, reason: String) -> AvroError {
        AvroError::Field {
            record: self.record,
            field,
            reason,
        }
    }

    fn unexpected(&self, field: &'static str, expected: &str, found: &Value) -> AvroError {
        self.error(field, format!("expected {expected}, found {found:?}"))
    }

    fn take(&mut self, field: &'static str) -> Result<Value, AvroError> {
        match self.fields.iter_mut().find(|(name, _)| name == field) {
            Some((_, value)) => Ok(std::mem::replace(value, Value::Null)),
            None => Err(self.error(field, "missing from the decoded record".into())),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<String, AvroError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(self.unexpected(field, "a string", &other)),
        }
    }

    fn optional_string(&mut self, field: &'static str) -> Result<Option<String>, AvroError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.unexpected(field, "null or a string", &other)),
        }
    }

    fn double(&mut self, field: &'static str) -> Result<f64, AvroError> {
        match self.take(field)? {
            Value::Double(x) => Ok(x),
            other => Err(self.unexpected(field, "a double", &other)),
        }
    }

    fn optional_double(&mut self, field: &'static str) -> Result<Option<f64>, AvroError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::Double(x) => Ok(Some(x)),
            other => Err(self.unexpected(field, "null or a double", &other)),
        }
    }

    fn timestamp_millis(&mut self, field: &'static str) -> Result<i64, AvroError> {
        match self.take(field)? {
            Value::TimestampMillis(ms) | Value::Long(ms) => Ok(ms),
            other => Err(self.unexpected(field, "a timestamp-millis long", &other)),
        }
    }

    fn optional_timestamp_millis(&mut self, field: &'static str) -> Result<Option<i64>, AvroError> {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::TimestampMillis(ms) | Value::Long(ms) => Ok(Some(ms)),
            other => Err(self.unexpected(field, "null or a timestamp-millis long", &other)),
        }
    }

    fn optional_symbol<E>(&mut self, field: &'static str) -> Result<Option<E>, AvroError>
    where
        E: std::str::FromStr,
        E::Err: std::fmt::Display,
    {
        match unwrap_union(self.take(field)?) {
            Value::Null => Ok(None),
            Value::Enum(_, symbol) => symbol
                .parse()
                .map(Some)
                .map_err(|e: E::Err| self.error(field, e.to_string())),
            other => Err(self.unexpected(field, "null or an enum symbol", &other)),
        }
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, AvroError> {
        let n = match self.take(field)? {
            Value::Long(n) => n,
            Value::Int(n) => i64::from(n),
            other => return Err(self.unexpected(field, "a long", &other)),
        };
        u32::try_from(n).map_err(|_| self.error(field, format!("{n} does not fit in a u32")))
    }

    fn symbol<E>(&mut self, field: &'static str) -> Result<E, AvroError>
    where
        E: std::str::FromStr,
        E::Err: std::fmt::Display,
    {
        match self.take(field)? {
            Value::Enum(_, symbol) => symbol
                .parse()
                .map_err(|e: E::Err| self.error(field, e.to_string())),
            other => Err(self.unexpected(field, "an enum symbol", &other)),
        }
    }

    fn double_map(&mut self, field: &'static str) -> Result<BTreeMap<String, f64>, AvroError> {
        match self.take(field)? {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(name, value)| match value {
                    Value::Double(x) => Ok((name, x)),
                    other => Err(self.error(
                        field,
                        format!("value for `{name}`: expected a double, found {other:?}"),
                    )),
                })
                .collect(),
            other => Err(self.unexpected(field, "a map", &other)),
        }
    }
}

/// The branch value of a union, or the value itself if it is not a union.
fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

/// Parses an Avro schema from untrusted text (a container header, a registry answer).
///
/// apache-avro 0.20 panics on a name that breaks the Avro name grammar (for example a
/// record named ` elemetry`), so every `name`, `namespace` and alias is checked first.
///
/// # Errors
///
/// [`AvroError::InvalidSchema`] naming the bad name, or [`AvroError::WriterSchema`] when
/// apache-avro rejects the schema.
pub fn parse_schema(text: &str) -> Result<Schema, AvroError> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AvroError::InvalidSchema(format!("not JSON: {e}")))?;
    check_names(&json, 0)?;
    Schema::parse_str(text).map_err(AvroError::WriterSchema)
}

/// Whether `s` is a valid Avro (full) name: dot-separated `[A-Za-z_][A-Za-z0-9_]*` parts.
fn is_avro_name(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.split('.').all(|part| {
        let mut chars = part.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod parse_schema_tests {
    use super::*;

    #[test]
    fn bad_names_are_errors_not_panics() {
        let bad = r#"{"type":"record","name":" elemetry","fields":[]}"#;
        let err = parse_schema(bad).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid schema: name " elemetry" is not a valid Avro name"#
        );
        let bad_field = r#"{"type":"record","name":"T","fields":[{"name":"a-b","type":"int"}]}"#;
        assert!(
            parse_schema(bad_field)
                .unwrap_err()
                .to_string()
                .contains("\"a-b\"")
        );
        let bad_ns = r#"{"type":"record","name":"T","namespace":"io..x","fields":[]}"#;
        assert!(parse_schema(bad_ns).is_err());
        let with_default = r#"{"type":"record","name":"T","fields":[{"name":"m","type":{"type":"map","values":"string"},"default":{"name":"not an avro name"}}]}"#;
        assert!(parse_schema(with_default).is_ok());
        assert!(parse_schema(TELEMETRY_SCHEMA_JSON).is_ok());
    }
}

fn check_names(v: &serde_json::Value, depth: usize) -> Result<(), AvroError> {
    use serde_json::Value as J;
    if depth > 64 {
        return Err(AvroError::InvalidSchema(
            "nested more than 64 levels deep".into(),
        ));
    }
    match v {
        J::Object(map) => {
            let bad = |what: &str, name: &str| {
                AvroError::InvalidSchema(format!("{what} {name:?} is not a valid Avro name"))
            };
            for (key, allow_empty) in [("name", false), ("namespace", true)] {
                if let Some(J::String(name)) = map.get(key)
                    && !is_avro_name(name, allow_empty)
                {
                    return Err(bad(key, name));
                }
            }
            if let Some(J::Array(aliases)) = map.get("aliases") {
                for alias in aliases {
                    match alias {
                        J::String(a) if is_avro_name(a, false) => {}
                        other => return Err(bad("alias", &other.to_string())),
                    }
                }
            }
            // Default values are data, not schema: a default may hold any "name".
            map.iter()
                .filter(|(k, _)| k.as_str() != "default")
                .try_for_each(|(_, c)| check_names(c, depth + 1))
        }
        J::Array(items) => items.iter().try_for_each(|c| check_names(c, depth + 1)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
