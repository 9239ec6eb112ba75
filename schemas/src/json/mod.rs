//! JSON codecs for [`Telemetry`] and [`Alert`].
//!
//! The JSON field names are the Avro field names. Decoding is lenient where gateways
//! differ and strict elsewhere:
//!
//! * `lot_id` / `wafer_id` may be absent or `null`; unknown fields are ignored.
//! * A measurement value may be a number, `null` (read as NaN) or one of the strings
//!   `"NaN"`, `"Infinity"`, `"-Infinity"`, also `"inf"`, `"+inf"`, `"-inf"`, `"nan"` in
//!   any letter case (read as NaN / +inf / -inf), so one bad reading does not make the
//!   whole record undecodable. A numeric string such as `"1.5"` is an error.
//! * Python's `json.dumps` writes non-finite floats as the bare tokens `NaN`, `Infinity`
//!   and `-Infinity`, which are not JSON. When a document fails to parse and holds such a
//!   token outside a string, the tokens are quoted and the document is parsed again, so a
//!   Python gateway's NaN reading is counted as non-finite instead of losing the record.
//! * Encoding writes non-finite measurements as `"NaN"`, `"Infinity"`, `"-Infinity"`,
//!   so they round-trip.
//!
//! Alerts decode with serde_json and encode with a writer of their own that gives serde_json's
//! exact bytes (checked against it on generated alerts); note that a non-finite `f64`
//! outside `measurements` is written as `null`, which does not decode back. Telemetry
//! encodes the same way ([`write_telemetry_json`], serde_json's bytes, checked likewise).

use crate::alert::Alert;
use crate::error::SchemaError;
use crate::telemetry::{Telemetry, TelemetryRef};

mod fast;
mod triage;
mod writer;

pub use triage::{
    write_action_json, write_ranked_action_json, write_triage_json, write_triage_json_with_actions,
};
pub use writer::TelemetryJsonWriter;

/// Decodes one telemetry sample from a JSON document.
///
/// # Errors
///
/// [`SchemaError::TelemetryJson`] when the bytes are not JSON or do not describe a
/// sample, e.g. ``telemetry JSON: missing field `tool_id` at line 1 column 40``.
pub fn decode_telemetry_json(bytes: &[u8]) -> Result<Telemetry, SchemaError> {
    match fast::parse(bytes) {
        Some(t) => Ok(t.into_owned()),
        None => decode_with_serde(bytes),
    }
}

/// Decodes one telemetry sample from a JSON document, borrowing its strings from `bytes`
/// (a string with an escape is unescaped into its own allocation). Accepts and rejects
/// exactly what [`decode_telemetry_json`] does, with the same errors.
///
/// A scanner handles the usual document (strings without escapes, numbers, `null` or the
/// non-finite spellings as values, any unknown fields) in a few thousand instructions; any
/// other document, including every one that fails, goes through serde_json, which decides
/// and words the error.
///
/// # Errors
///
/// As [`decode_telemetry_json`].
pub fn decode_telemetry_json_ref(bytes: &[u8]) -> Result<TelemetryRef<'_>, SchemaError> {
    match fast::parse(bytes) {
        Some(t) => Ok(t),
        None => decode_with_serde(bytes).map(TelemetryRef::from),
    }
}

/// The reference decoder: serde_json on the derived [`Telemetry`], retried with Python's
/// bare non-finite tokens quoted.
fn decode_with_serde(bytes: &[u8]) -> Result<Telemetry, SchemaError> {
    match serde_json::from_slice(bytes) {
        Ok(t) => Ok(t),
        Err(first) => match quote_bare_non_finite(bytes) {
            // Report the original error when the rewrite does not help either.
            Some(fixed) => {
                serde_json::from_slice(&fixed).map_err(|_| SchemaError::TelemetryJson(first))
            }
            None => Err(SchemaError::TelemetryJson(first)),
        },
    }
}

/// Quotes the bare tokens `NaN`, `Infinity` and `-Infinity` that appear outside strings.
/// Returns `None` when there are none.
fn quote_bare_non_finite(bytes: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(tok) = TOKENS.iter().find(|t| bytes[i..].starts_with(t)) {
            out.push(b'"');
            out.extend_from_slice(tok);
            out.push(b'"');
            i += tok.len();
            changed = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed.then_some(out)
}

/// Encodes one telemetry sample as a compact JSON document (no trailing newline): the
/// bytes of serde_json on the derived `Serialize` ([`write_telemetry_json`]).
pub fn encode_telemetry_json(telemetry: &Telemetry) -> Vec<u8> {
    let strings: usize = [
        telemetry.tool_id.as_str(),
        &telemetry.recipe_id,
        telemetry.lot_id.as_deref().unwrap_or_default(),
        telemetry.wafer_id.as_deref().unwrap_or_default(),
    ]
    .iter()
    .map(|s| s.len())
    .sum::<usize>()
        + telemetry
            .measurements
            .keys()
            .map(String::len)
            .sum::<usize>();
    // Field names and punctuation, the numbers, a little for escapes.
    let mut out = Vec::with_capacity(strings + 128 + 28 * telemetry.measurements.len());
    write_telemetry_json(telemetry, &mut out);
    out
}

/// Appends the JSON document of [`encode_telemetry_json`] to `out`: exactly serde_json's
/// bytes for the derived `Serialize` (field order, escapes, number forms; non-finite
/// measurements as `"NaN"`, `"Infinity"`, `"-Infinity"`), without serde's per-field
/// machinery or an allocation of its own: `spcvm simulate` writes a million of these a
/// second into one reused buffer.
pub fn write_telemetry_json(telemetry: &Telemetry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"tool_id\":");
    write_str(out, &telemetry.tool_id);
    out.extend_from_slice(b",\"tool_type\":");
    write_str(out, telemetry.tool_type.as_str());
    out.extend_from_slice(b",\"recipe_id\":");
    write_str(out, &telemetry.recipe_id);
    out.extend_from_slice(b",\"lot_id\":");
    write_opt_str(out, telemetry.lot_id.as_deref());
    out.extend_from_slice(b",\"wafer_id\":");
    write_opt_str(out, telemetry.wafer_id.as_deref());
    out.extend_from_slice(b",\"event_time\":");
    out.extend_from_slice(itoa::Buffer::new().format(telemetry.event_time).as_bytes());
    out.extend_from_slice(b",\"measurements\":{");
    for (i, (name, &value)) in telemetry.measurements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_measurement(out, value);
    }
    out.extend_from_slice(b"}}");
}

/// A measurement value as serde_json writes it through `measurement_values`: the shortest
/// round-tripping number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn write_measurement(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// Decodes one alert from a JSON document.
///
/// # Errors
///
/// [`SchemaError::AlertJson`] when the bytes are not JSON or do not describe an alert.
pub fn decode_alert_json(bytes: &[u8]) -> Result<Alert, SchemaError> {
    serde_json::from_slice(bytes).map_err(SchemaError::AlertJson)
}

/// Encodes one alert as a compact JSON document (no trailing newline).
///
/// The bytes are exactly those of serde_json on the derived `Serialize` (the same field
/// order, escapes and number forms; a non-finite float is `null`), written without
/// serde's per-field machinery: a job sends one of these per alert.
pub fn encode_alert_json(alert: &Alert) -> Vec<u8> {
    let strings: usize = [
        alert.alert_id.as_str(),
        &alert.tool_id,
        &alert.recipe_id,
        alert.lot_id.as_deref().unwrap_or_default(),
        alert.wafer_id.as_deref().unwrap_or_default(),
        &alert.parameter,
        &alert.chart,
        &alert.rule,
        &alert.message,
    ]
    .iter()
    .map(|s| s.len())
    .sum();
    // Field names and punctuation, ten numbers, a little for escapes.
    let mut out = Vec::with_capacity(strings + 540);
    write_alert_json(alert, &mut out);
    out
}

/// Appends the JSON document of [`encode_alert_json`] to `out`: the fields in the order of
/// the struct (serde's order), each name with the separator before it.
pub fn write_alert_json(alert: &Alert, out: &mut Vec<u8>) {
    /// A field's value as JSON knows it.
    enum Value<'a> {
        Str(&'a str),
        OptStr(Option<&'a str>),
        Float(Option<f64>),
        Int(i64),
        OptInt(Option<i64>),
    }
    let fields: [(&[u8], Value<'_>); 22] = [
        (b"{\"alert_id\":", Value::Str(&alert.alert_id)),
        (b",\"tool_id\":", Value::Str(&alert.tool_id)),
        (b",\"tool_type\":", Value::Str(alert.tool_type.as_str())),
        (b",\"recipe_id\":", Value::Str(&alert.recipe_id)),
        (b",\"lot_id\":", Value::OptStr(alert.lot_id.as_deref())),
        (b",\"wafer_id\":", Value::OptStr(alert.wafer_id.as_deref())),
        (b",\"parameter\":", Value::Str(&alert.parameter)),
        (b",\"chart\":", Value::Str(&alert.chart)),
        (b",\"rule\":", Value::Str(&alert.rule)),
        (b",\"severity\":", Value::Str(alert.severity.as_str())),
        (b",\"statistic\":", Value::Float(Some(alert.statistic))),
        (b",\"center_line\":", Value::Float(Some(alert.center_line))),
        (b",\"ucl\":", Value::Float(alert.ucl)),
        (b",\"lcl\":", Value::Float(alert.lcl)),
        (b",\"event_time\":", Value::Int(alert.event_time)),
        (b",\"message\":", Value::Str(&alert.message)),
        (b",\"repeats\":", Value::Int(i64::from(alert.repeats))),
        (b",\"distance_sigma\":", Value::Float(alert.distance_sigma)),
        (b",\"status\":", Value::Str(alert.status.as_str())),
        (b",\"window_start\":", Value::OptInt(alert.window_start)),
        (
            b",\"cusum_upper_sigma\":",
            Value::Float(alert.cusum_upper_sigma),
        ),
        (
            b",\"cusum_lower_sigma\":",
            Value::Float(alert.cusum_lower_sigma),
        ),
    ];
    for (name, value) in fields {
        out.extend_from_slice(name);
        match value {
            Value::Str(s) => write_str(out, s),
            Value::OptStr(Some(s)) => write_str(out, s),
            Value::Float(Some(v)) if v.is_finite() => {
                out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
            }
            Value::OptStr(None) | Value::Float(_) | Value::OptInt(None) => {
                out.extend_from_slice(b"null")
            }
            Value::Int(i) | Value::OptInt(Some(i)) => {
                out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes())
            }
        }
    }
    out.push(b'}');
}

/// An optional JSON string: [`write_str`], or `null` when absent.
pub(crate) fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json writes it: `"` and `\\` escaped, the control characters
/// below U+0020 as `\b`, `\t`, `\n`, `\f`, `\r` or `\u00XX`, everything else as is.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs an escape (the usual string has none).
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !may_need_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0..0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&bytes[start..i - 1]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i - 1]);
        out.extend_from_slice(escape);
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` may need an escape: `"`, `\` or below
/// U+0020. Never false when one does (a true answer is then checked byte by byte).
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A zero byte of `x` sets its high bit in `has_zero(x)` (the lowest one exactly).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (below_space
        | has_zero(word ^ (ONES * u64::from(b'"')))
        | has_zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::Severity;
    use crate::telemetry::ToolType;

    fn sample() -> Telemetry {
        Telemetry {
            tool_id: "IMP-07".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: "B11-5E15".into(),
            lot_id: Some("LOT-42".into()),
            wafer_id: None,
            event_time: 1_732_617_000_123,
            measurements: BTreeMap::from([
                ("beam_current_ma".to_owned(), 4.25),
                ("dose".to_owned(), 5.0e15),
                ("tilt_deg".to_owned(), -0.1),
            ]),
        }
    }

    fn alert() -> Alert {
        Alert {
            alert_id: "3f0c1d2e-0000-5000-8000-000000000001".into(),
            tool_id: "RTP-02".into(),
            tool_type: ToolType::Rtp,
            recipe_id: "SPIKE-1050".into(),
            lot_id: None,
            wafer_id: Some("W07".into()),
            parameter: "peak_temp_c".into(),
            chart: "xbar".into(),
            rule: "rule_1".into(),
            severity: Severity::Critical,
            statistic: 1061.5,
            center_line: 1050.0,
            ucl: Some(1058.25),
            lcl: None,
            event_time: 1_732_617_000_999,
            message: "peak_temp_c above UCL".into(),
            repeats: 3,
            distance_sigma: Some(4.2),
            status: crate::AlertStatus::Closed,
            window_start: Some(1_732_616_000_000),
            cusum_upper_sigma: None,
            cusum_lower_sigma: None,
        }
    }

    #[test]
    fn python_bare_non_finite_tokens_are_accepted() {
        let doc = br#"{"tool_id":"T-NaN","tool_type":"rtp","recipe_id":"Infinity","event_time":5,"measurements":{"a":NaN,"b":-Infinity,"c":Infinity,"d":1.5}}"#;
        let t = decode_telemetry_json(doc).unwrap();
        // Strings that merely contain the words are left alone.
        assert_eq!(t.tool_id, "T-NaN");
        assert_eq!(t.recipe_id, "Infinity");
        assert!(t.measurements["a"].is_nan());
        assert_eq!(t.measurements["b"], f64::NEG_INFINITY);
        assert_eq!(t.measurements["c"], f64::INFINITY);
        assert_eq!(t.measurements["d"], 1.5);
        // A bare token where a number is not allowed still fails, with the original error.
        let bad = br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":NaN,"measurements":{}}"#;
        let err = decode_telemetry_json(bad).unwrap_err().to_string();
        assert!(err.contains("line 1 column"), "{err}");
    }

    #[test]
    fn telemetry_round_trip_and_exact_text() {
        let t = sample();
        let bytes = encode_telemetry_json(&t);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"tool_id":"IMP-07","tool_type":"ion_implant","recipe_id":"B11-5E15","lot_id":"LOT-42","wafer_id":null,"event_time":1732617000123,"measurements":{"beam_current_ma":4.25,"dose":5000000000000000.0,"tilt_deg":-0.1}}"#
        );
        assert_eq!(decode_telemetry_json(&bytes).unwrap(), t);
    }

    #[test]
    fn alert_round_trip_and_exact_text() {
        let a = alert();
        let bytes = encode_alert_json(&a);
        assert!(!bytes.ends_with(b"\n"));
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"alert_id":"3f0c1d2e-0000-5000-8000-000000000001","tool_id":"RTP-02","tool_type":"rtp","recipe_id":"SPIKE-1050","lot_id":null,"wafer_id":"W07","parameter":"peak_temp_c","chart":"xbar","rule":"rule_1","severity":"critical","statistic":1061.5,"center_line":1050.0,"ucl":1058.25,"lcl":null,"event_time":1732617000999,"message":"peak_temp_c above UCL","repeats":3,"distance_sigma":4.2,"status":"closed","window_start":1732616000000,"cusum_upper_sigma":null,"cusum_lower_sigma":null}"#
        );
        assert_eq!(decode_alert_json(&bytes).unwrap(), a);
    }

    /// An alert written before the later fields existed still decodes: `status` from
    /// `repeats`, the others `None`; and an old reader (a struct without them) reads a new
    /// alert, ignoring them.
    #[test]
    fn alert_json_before_and_after_the_later_fields() {
        let old = |repeats: u32| {
            format!(
                r#"{{"alert_id":"a","tool_id":"t","tool_type":"rtp","recipe_id":"r","parameter":"p","chart":"i","rule":"rule_1","severity":"major","statistic":1.0,"center_line":0.0,"ucl":3.0,"lcl":-3.0,"event_time":7,"message":"m","repeats":{repeats}}}"#
            )
        };
        let opening = decode_alert_json(old(0).as_bytes()).unwrap();
        assert_eq!(opening.status, crate::AlertStatus::Open);
        assert_eq!(
            (
                opening.distance_sigma,
                opening.window_start,
                opening.cusum_upper_sigma
            ),
            (None, None, None)
        );
        let closing = decode_alert_json(old(2).as_bytes()).unwrap();
        assert_eq!(closing.status, crate::AlertStatus::Closed);
        // A status that is given wins over the inference.
        let explicit = old(2).replace("\"repeats\":2", "\"repeats\":2,\"status\":\"open\"");
        assert_eq!(
            decode_alert_json(explicit.as_bytes()).unwrap().status,
            crate::AlertStatus::Open
        );
        let bad = old(0).replace("\"repeats\":0", "\"repeats\":0,\"status\":\"gone\"");
        assert!(decode_alert_json(bad.as_bytes()).is_err());

        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct OldReader {
            alert_id: String,
            repeats: u32,
            center_line: f64,
        }
        let new = encode_alert_json(&alert());
        let read: OldReader = serde_json::from_slice(&new).unwrap();
        assert_eq!((read.alert_id.len(), read.repeats), (36, 3));
    }

    #[test]
    fn optional_ids_may_be_absent_and_unknown_fields_are_ignored() {
        let t = decode_telemetry_json(
            br#"{"tool_id":"T1","tool_type":"rtp","recipe_id":"R","event_time":-5,
                "measurements":{},"gateway_version":"2.3","extra":{"nested":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(t.lot_id, None);
        assert_eq!(t.wafer_id, None);
        assert_eq!(t.event_time, -5);
        assert!(t.measurements.is_empty());
        assert_eq!(t.tool_type, ToolType::Rtp);

        let a = decode_alert_json(
            br#"{"alert_id":"a","tool_id":"t","tool_type":"ion_implant","recipe_id":"r",
                "parameter":"p","chart":"spec","rule":"spec_high","severity":"minor",
                "statistic":1,"center_line":0,"ucl":null,"lcl":-2,"event_time":7,
                "message":"m","repeats":0}"#,
        )
        .unwrap();
        assert_eq!(a.lot_id, None);
        assert_eq!(a.wafer_id, None);
        assert_eq!(a.ucl, None);
        assert_eq!(a.lcl, Some(-2.0));
        assert_eq!(a.statistic, 1.0);
        assert_eq!(a.severity, Severity::Minor);
    }

    #[test]
    fn null_and_special_strings_become_non_finite() {
        let t = decode_telemetry_json(
            br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":0,
                "measurements":{"a":null,"b":"NaN","c":"Infinity","d":"-Infinity",
                "e":"inf","f":"-INF","g":"nan","h":7,"i":-2.5e-3,"j":18446744073709551615}}"#,
        )
        .unwrap();
        let m = &t.measurements;
        assert_eq!(m.len(), 10);
        assert!(m["a"].is_nan());
        assert!(m["b"].is_nan());
        assert_eq!(m["c"], f64::INFINITY);
        assert_eq!(m["d"], f64::NEG_INFINITY);
        assert_eq!(m["e"], f64::INFINITY);
        assert_eq!(m["f"], f64::NEG_INFINITY);
        assert!(m["g"].is_nan());
        assert_eq!(m["h"], 7.0);
        assert_eq!(m["i"], -2.5e-3);
        assert_eq!(m["j"], 18_446_744_073_709_551_615.0);
    }

    #[test]
    fn non_finite_measurements_round_trip_as_strings() {
        let mut t = sample();
        t.measurements = BTreeMap::from([
            ("nan".to_owned(), f64::NAN),
            ("pos".to_owned(), f64::INFINITY),
            ("neg".to_owned(), f64::NEG_INFINITY),
            ("ok".to_owned(), 1.5),
        ]);
        let text = String::from_utf8(encode_telemetry_json(&t)).unwrap();
        assert!(
            text.ends_with(
                r#""measurements":{"nan":"NaN","neg":"-Infinity","ok":1.5,"pos":"Infinity"}}"#
            ),
            "{text}"
        );
        let back = decode_telemetry_json(text.as_bytes()).unwrap();
        assert!(back.measurements["nan"].is_nan());
        assert_eq!(back.measurements["pos"], f64::INFINITY);
        assert_eq!(back.measurements["neg"], f64::NEG_INFINITY);
        assert_eq!(back.measurements["ok"], 1.5);
        assert_eq!(back.tool_id, t.tool_id);
    }

    #[test]
    fn numeric_string_measurement_is_rejected_with_parameter_name() {
        let err = decode_telemetry_json(
            br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":0,"measurements":{"dose":"1.5"}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::TelemetryJson(_)));
        assert_eq!(
            err.to_string(),
            "telemetry JSON: invalid value: string \"1.5\", expected a number, null, \"NaN\", \
             \"Infinity\" or \"-Infinity\" for measurement `dose` at line 1 column 92"
        );
    }

    #[test]
    fn wrong_measurement_type_names_the_parameter() {
        let err = decode_telemetry_json(
            br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":0,"measurements":{"ok":1,"flag":true}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("telemetry JSON: invalid type: boolean `true`, expected a number")
                && err.contains("for measurement `flag`"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_measurement_is_rejected() {
        let err = decode_telemetry_json(
            br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":0,"measurements":{"a":1,"a":2}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("telemetry JSON: duplicate measurement `a`"),
            "{err}"
        );
    }

    #[test]
    fn missing_field_error_names_the_field_and_position() {
        let err = decode_telemetry_json(
            br#"{"tool_type":"rtp","recipe_id":"R","event_time":0,"measurements":{}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "telemetry JSON: missing field `tool_id` at line 1 column 68"
        );

        let err = decode_alert_json(br#"{"alert_id":"a"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alert JSON: missing field `tool_id` at line 1 column 16"
        );
        assert!(matches!(err, SchemaError::AlertJson(_)));
    }

    #[test]
    fn bad_enum_and_bad_json_are_errors() {
        let err = decode_telemetry_json(
            br#"{"tool_id":"T","tool_type":"furnace","recipe_id":"R","event_time":0,"measurements":{}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "telemetry JSON: unknown variant `furnace`, expected `ion_implant` or `rtp`"
            ),
            "{err}"
        );
        assert!(decode_telemetry_json(b"").is_err());
        assert!(decode_telemetry_json(b"{\"tool_id\":").is_err());
        assert!(decode_telemetry_json(&[0xff, 0xfe, 0x00]).is_err());
        let err = decode_alert_json(&encode_telemetry_json(&sample()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("alert JSON: missing field `alert_id`"),
            "{err}"
        );
    }

    #[test]
    fn negative_repeats_in_alert_json_is_rejected() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&encode_alert_json(&alert())).unwrap();
        v["repeats"] = serde_json::json!(-1);
        let err = decode_alert_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid value: integer `-1`"), "{err}");
    }

    /// Any string, weighted towards the characters JSON escapes.
    fn any_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "[a-zA-Z0-9_\\-\"\\\\/\u{0}-\u{1f}\u{7f}é€😀 ]{0,40}",
        ]
    }

    /// Any float, weighted towards the special ones.
    fn any_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(1e16),
            Just(5e-324),
            -1e6..1e6f64,
        ]
    }

    proptest::proptest! {
        /// The hand-written alert encoder writes exactly serde_json's bytes for the derived
        /// `Serialize`, whatever the strings and floats.
        #[test]
        fn alert_json_is_serde_jsons_bytes(
            strings in proptest::collection::vec(any_text(), 9),
            floats in proptest::collection::vec(any_f64(), 2),
            limits in proptest::collection::vec(proptest::option::of(any_f64()), 2),
            optional in proptest::collection::vec(proptest::bool::ANY, 2),
            rtp in proptest::bool::ANY,
            severity in 0..3usize,
            event_time in proptest::num::i64::ANY,
            repeats in proptest::num::u32::ANY,
            later in proptest::collection::vec(proptest::option::of(any_f64()), 3),
            window_start in proptest::option::of(proptest::num::i64::ANY),
            closed in proptest::bool::ANY,
        ) {
            let alert = Alert {
                alert_id: strings[0].clone(),
                tool_id: strings[1].clone(),
                tool_type: if rtp { ToolType::Rtp } else { ToolType::IonImplant },
                recipe_id: strings[2].clone(),
                lot_id: optional[0].then(|| strings[3].clone()),
                wafer_id: optional[1].then(|| strings[4].clone()),
                parameter: strings[5].clone(),
                chart: strings[6].clone(),
                rule: strings[7].clone(),
                severity: Severity::ALL[severity],
                statistic: floats[0],
                center_line: floats[1],
                ucl: limits[0],
                lcl: limits[1],
                event_time,
                message: strings[8].clone(),
                repeats,
                distance_sigma: later[0],
                status: if closed { crate::AlertStatus::Closed } else { crate::AlertStatus::Open },
                window_start,
                cusum_upper_sigma: later[1],
                cusum_lower_sigma: later[2],
            };
            let ours = encode_alert_json(&alert);
            let serde = serde_json::to_vec(&alert).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde)
            );
            proptest::prop_assert_eq!(ours, serde);
        }
    }

    proptest::proptest! {
        /// The hand-written telemetry encoder writes exactly serde_json's bytes for the
        /// derived `Serialize`, whatever the strings and floats (non-finite ones included).
        #[test]
        fn telemetry_json_is_serde_jsons_bytes(
            strings in proptest::collection::vec(any_text(), 4),
            optional in proptest::collection::vec(proptest::bool::ANY, 2),
            rtp in proptest::bool::ANY,
            event_time in proptest::num::i64::ANY,
            measurements in proptest::collection::btree_map(any_text(), any_f64(), 0..10),
        ) {
            let telemetry = Telemetry {
                tool_id: strings[0].clone(),
                tool_type: if rtp { ToolType::Rtp } else { ToolType::IonImplant },
                recipe_id: strings[1].clone(),
                lot_id: optional[0].then(|| strings[2].clone()),
                wafer_id: optional[1].then(|| strings[3].clone()),
                event_time,
                measurements,
            };
            let ours = encode_telemetry_json(&telemetry);
            let serde = serde_json::to_vec(&telemetry).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde)
            );
            proptest::prop_assert_eq!(&ours, &serde);
            // Appending leaves what the buffer held before.
            let mut buf = b"x".to_vec();
            write_telemetry_json(&telemetry, &mut buf);
            proptest::prop_assert_eq!(&buf[1..], &serde[..]);
        }
    }

    #[test]
    fn telemetry_json_escapes_like_serde_json() {
        let mut t = sample();
        t.tool_id = "quote \" backslash \\ tab \t nul \u{0} us \u{1f} é".into();
        t.measurements.insert("n\u{7}".into(), f64::NAN);
        t.measurements.insert("p".into(), f64::INFINITY);
        t.measurements.insert("q".into(), f64::NEG_INFINITY);
        t.measurements.insert("z".into(), -0.0);
        let ours = encode_telemetry_json(&t);
        assert_eq!(ours, serde_json::to_vec(&t).unwrap());
        let text = String::from_utf8(ours).unwrap();
        assert!(text.contains(r#""wafer_id":null"#), "{text}");
        assert!(
            text.contains(r#""n\u0007":"NaN","p":"Infinity","q":"-Infinity""#),
            "{text}"
        );
        assert!(text.contains(r#""z":-0.0}}"#), "{text}");
    }

    #[test]
    fn alert_json_escapes_like_serde_json() {
        let mut a = alert();
        a.message = "quote \" backslash \\ tab \t nl \n cr \r bs \u{8} ff \u{c} \
                     nul \u{0} us \u{1f} del \u{7f} é"
            .into();
        a.lot_id = None;
        a.ucl = Some(f64::NAN);
        a.lcl = Some(f64::NEG_INFINITY);
        let ours = encode_alert_json(&a);
        assert_eq!(ours, serde_json::to_vec(&a).unwrap());
        let text = String::from_utf8(ours).unwrap();
        assert!(text.contains(r#""lot_id":null"#), "{text}");
        assert!(text.contains(r#""ucl":null,"lcl":null"#), "{text}");
        assert!(
            text.contains("quote \\\" backslash \\\\ tab \\t nl \\n cr \\r bs \\b ff \\f"),
            "{text}"
        );
        assert!(
            text.contains("nul \\u0000 us \\u001f del \u{7f} é"),
            "{text}"
        );
    }
}
