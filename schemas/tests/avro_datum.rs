//! Single-datum Avro codecs: round trips, schema evolution and malformed input.

mod common;

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;
use apache_avro::types::Value;
use proptest::prelude::*;
use spcvm_schemas::{
    AvroError, SchemaError, Severity, ToolType, decode_alert_avro, decode_alert_avro_with_writer,
    decode_telemetry_avro, decode_telemetry_avro_with_writer, encode_alert_avro,
    encode_telemetry_avro, telemetry_schema,
};

fn zigzag(n: i64) -> Vec<u8> {
    let mut raw = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn telemetry_round_trip_keeps_exact_values() {
    let mut t = common::telemetry();
    t.measurements.insert("pos_inf".into(), f64::INFINITY);
    t.measurements.insert("neg_inf".into(), f64::NEG_INFINITY);
    t.measurements.insert("neg_zero".into(), -0.0);
    t.measurements
        .insert("odd_nan".into(), f64::from_bits(0x7ff8_dead_beef_0001));
    t.event_time = i64::MIN;
    let bytes = encode_telemetry_avro(&t).unwrap();
    let back = decode_telemetry_avro(&bytes).unwrap();
    common::assert_same_telemetry(&back, &t);
    assert!(back.measurements["faraday_cup_na"].is_nan());
    assert_eq!(
        back.measurements["odd_nan"].to_bits(),
        0x7ff8_dead_beef_0001
    );
    assert_eq!(back.event_time, i64::MIN);

    // No header, no fingerprint: the datum starts with the tool_id string.
    assert_eq!(&bytes[..7], b"\x0cIMP-07");
}

#[test]
fn telemetry_encoding_is_deterministic() {
    // apache-avro writes a map in HashMap order; our encoding sorts the keys, so the same
    // sample always gives the same bytes.
    let mut t = common::telemetry();
    for i in 0..50 {
        t.measurements.insert(format!("p{i:02}"), f64::from(i));
    }
    let first = encode_telemetry_avro(&t).unwrap();
    for _ in 0..10 {
        assert_eq!(encode_telemetry_avro(&t.clone()).unwrap(), first);
    }
}

#[test]
fn telemetry_without_optional_ids_round_trips() {
    let mut t = common::telemetry();
    t.lot_id = None;
    t.wafer_id = None;
    t.measurements.clear();
    let back = decode_telemetry_avro(&encode_telemetry_avro(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn alert_round_trip_keeps_exact_values() {
    let a = common::alert();
    let back = decode_alert_avro(&encode_alert_avro(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    assert_eq!(back.repeats, 4_000_000_000);
    assert_eq!(back.event_time, 1_732_617_000_999);

    let mut b = a.clone();
    b.ucl = None;
    b.lcl = None;
    b.lot_id = None;
    b.repeats = u32::MAX;
    b.severity = Severity::Critical;
    b.tool_type = ToolType::IonImplant;
    let back = decode_alert_avro(&encode_alert_avro(&b).unwrap()).unwrap();
    assert_eq!(back, b);
}

#[test]
fn event_time_is_encoded_as_plain_zigzag_millis() {
    // timestamp-millis is a long on the wire: the datum is readable with "long".
    let t = common::telemetry();
    let bytes = encode_telemetry_avro(&t).unwrap();
    let plain = Schema::parse_str(&spcvm_schemas::TELEMETRY_SCHEMA_JSON.replace(
        r#"{"type": "long", "logicalType": "timestamp-millis"}"#,
        r#""long""#,
    ))
    .unwrap();
    assert_ne!(plain, *telemetry_schema());
    let value = apache_avro::from_avro_datum(&plain, &mut &bytes[..], None).unwrap();
    let Value::Record(fields) = value else {
        panic!()
    };
    assert_eq!(
        fields[5],
        ("event_time".into(), Value::Long(1_732_617_000_123))
    );
    // And decoding with that writer schema gives the same i64 back.
    let back = decode_telemetry_avro_with_writer(&bytes, &plain).unwrap();
    assert_eq!(back.event_time, 1_732_617_000_123);
}

// ---------------------------------------------------------------- schema evolution

/// An older telemetry schema without `lot_id` / `wafer_id`, with fields in another order,
/// enum symbols in another order and `float` measurements.
const OLD_TELEMETRY: &str = r#"{
  "type": "record", "name": "Telemetry", "namespace": "io.spcvm",
  "fields": [
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tool_type", "type": {"type": "enum", "name": "ToolType", "symbols": ["rtp", "ion_implant"]}},
    {"name": "tool_id", "type": "string"},
    {"name": "recipe_id", "type": "string"},
    {"name": "measurements", "type": {"type": "map", "values": "float"}}
  ]
}"#;

/// A newer telemetry schema with extra fields the reader does not know.
const NEW_TELEMETRY: &str = r#"{
  "type": "record", "name": "Telemetry", "namespace": "io.spcvm",
  "fields": [
    {"name": "tool_id", "type": "string"},
    {"name": "chamber", "type": ["null", "string"], "default": null},
    {"name": "tool_type", "type": {"type": "enum", "name": "ToolType", "symbols": ["ion_implant", "rtp"]}},
    {"name": "recipe_id", "type": "string"},
    {"name": "lot_id", "type": ["null", "string"], "default": null},
    {"name": "wafer_id", "type": ["null", "string"], "default": null},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "measurements", "type": {"type": "map", "values": "double"}},
    {"name": "quality", "type": {"type": "array", "items": {"type": "record", "name": "Flag",
       "fields": [{"name": "code", "type": "int"}, {"name": "note", "type": "string"}]}}},
    {"name": "gateway", "type": "string"}
  ]
}"#;

fn record(schema: &Schema, fields: Vec<(&str, Value)>) -> Value {
    let mut record = apache_avro::types::Record::new(schema).unwrap();
    for (name, value) in fields {
        record.put(name, value);
    }
    record.into()
}

#[test]
fn writer_without_optional_fields_and_reordered_decodes_with_defaults() {
    let writer = Schema::parse_str(OLD_TELEMETRY).unwrap();
    let value = record(
        &writer,
        vec![
            ("event_time", Value::TimestampMillis(1_600_000_000_000)),
            ("tool_type", Value::Enum(0, "rtp".into())),
            ("tool_id", Value::String("RTP-01".into())),
            ("recipe_id", Value::String("ANNEAL".into())),
            (
                "measurements",
                Value::Map(HashMap::from([
                    ("temp_c".to_owned(), Value::Float(1000.5)),
                    ("bad".to_owned(), Value::Float(f32::NAN)),
                ])),
            ),
        ],
    );
    let bytes = apache_avro::to_avro_datum(&writer, value).unwrap();
    let t = decode_telemetry_avro_with_writer(&bytes, &writer).unwrap();
    assert_eq!(t.tool_id, "RTP-01");
    assert_eq!(t.tool_type, ToolType::Rtp);
    assert_eq!(t.recipe_id, "ANNEAL");
    assert_eq!(t.lot_id, None);
    assert_eq!(t.wafer_id, None);
    assert_eq!(t.event_time, 1_600_000_000_000);
    assert_eq!(t.measurements["temp_c"], 1000.5);
    assert!(t.measurements["bad"].is_nan());
    assert_eq!(t.measurements.len(), 2);

    // Without the writer schema the same bytes are not a valid datum of ours.
    assert!(decode_telemetry_avro(&bytes).is_err());
}

#[test]
fn writer_with_extra_fields_decodes_and_ignores_them() {
    let writer = Schema::parse_str(NEW_TELEMETRY).unwrap();
    let Schema::Record(rec) = &writer else {
        panic!()
    };
    let flag_schema = match &rec.fields[rec.lookup["quality"]].schema {
        Schema::Array(a) => (*a.items).clone(),
        _ => panic!(),
    };
    let flag = record(
        &flag_schema,
        vec![
            ("code", Value::Int(3)),
            ("note", Value::String("drift".into())),
        ],
    );
    let value = record(
        &writer,
        vec![
            ("tool_id", Value::String("IMP-01".into())),
            (
                "chamber",
                Value::Union(1, Box::new(Value::String("B".into()))),
            ),
            ("tool_type", Value::Enum(0, "ion_implant".into())),
            ("recipe_id", Value::String("R1".into())),
            (
                "lot_id",
                Value::Union(1, Box::new(Value::String("L9".into()))),
            ),
            ("wafer_id", Value::Union(0, Box::new(Value::Null))),
            ("event_time", Value::TimestampMillis(42)),
            (
                "measurements",
                Value::Map(HashMap::from([("dose".to_owned(), Value::Double(1e15))])),
            ),
            ("quality", Value::Array(vec![flag])),
            ("gateway", Value::String("gw-3".into())),
        ],
    );
    let bytes = apache_avro::to_avro_datum(&writer, value).unwrap();
    let t = decode_telemetry_avro_with_writer(&bytes, &writer).unwrap();
    assert_eq!(
        t,
        spcvm_schemas::Telemetry {
            tool_id: "IMP-01".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: "R1".into(),
            lot_id: Some("L9".into()),
            wafer_id: None,
            event_time: 42,
            measurements: BTreeMap::from([("dose".to_owned(), 1e15)]),
        }
    );
}

#[test]
fn writer_schema_identical_to_ours_decodes() {
    let t = common::telemetry();
    let bytes = encode_telemetry_avro(&t).unwrap();
    let back = decode_telemetry_avro_with_writer(&bytes, telemetry_schema()).unwrap();
    common::assert_same_telemetry(&back, &t);
}

#[test]
fn old_alert_writer_with_int_repeats_and_no_limits_decodes() {
    let writer = Schema::parse_str(
        r#"{"type": "record", "name": "Alert", "namespace": "io.spcvm", "fields": [
          {"name": "alert_id", "type": "string"},
          {"name": "tool_id", "type": "string"},
          {"name": "tool_type", "type": {"type": "enum", "name": "ToolType", "symbols": ["ion_implant", "rtp"]}},
          {"name": "recipe_id", "type": "string"},
          {"name": "parameter", "type": "string"},
          {"name": "chart", "type": "string"},
          {"name": "rule", "type": "string"},
          {"name": "severity", "type": {"type": "enum", "name": "Severity", "symbols": ["minor", "major", "critical"]}},
          {"name": "statistic", "type": "double"},
          {"name": "center_line", "type": "double"},
          {"name": "event_time", "type": "long"},
          {"name": "message", "type": "string"},
          {"name": "repeats", "type": "int"}
        ]}"#,
    )
    .unwrap();
    let value = record(
        &writer,
        vec![
            ("alert_id", Value::String("a-1".into())),
            ("tool_id", Value::String("IMP-07".into())),
            ("tool_type", Value::Enum(0, "ion_implant".into())),
            ("recipe_id", Value::String("R".into())),
            ("parameter", Value::String("dose".into())),
            ("chart", Value::String("cusum".into())),
            ("rule", Value::String("cusum_upper".into())),
            ("severity", Value::Enum(2, "critical".into())),
            ("statistic", Value::Double(5.5)),
            ("center_line", Value::Double(0.0)),
            ("event_time", Value::Long(99)),
            ("message", Value::String("CUSUM high".into())),
            ("repeats", Value::Int(7)),
        ],
    );
    let bytes = apache_avro::to_avro_datum(&writer, value).unwrap();
    let a = decode_alert_avro_with_writer(&bytes, &writer).unwrap();
    assert_eq!(a.alert_id, "a-1");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.chart, "cusum");
    assert_eq!(a.rule, "cusum_upper");
    assert_eq!(
        (a.ucl, a.lcl, a.lot_id, a.wafer_id),
        (None, None, None, None)
    );
    assert_eq!(a.event_time, 99);
    assert_eq!(a.repeats, 7);
    assert_eq!(a.statistic, 5.5);
}

#[test]
fn writer_lacking_a_required_field_is_an_error_naming_it() {
    let writer = Schema::parse_str(
        r#"{"type": "record", "name": "Telemetry", "fields": [
          {"name": "tool_type", "type": {"type": "enum", "name": "ToolType", "symbols": ["ion_implant", "rtp"]}},
          {"name": "recipe_id", "type": "string"},
          {"name": "event_time", "type": "long"},
          {"name": "measurements", "type": {"type": "map", "values": "double"}}
        ]}"#,
    )
    .unwrap();
    let value = record(
        &writer,
        vec![
            ("tool_type", Value::Enum(1, "rtp".into())),
            ("recipe_id", Value::String("R".into())),
            ("event_time", Value::Long(1)),
            ("measurements", Value::Map(HashMap::new())),
        ],
    );
    let bytes = apache_avro::to_avro_datum(&writer, value).unwrap();
    let err = decode_telemetry_avro_with_writer(&bytes, &writer).unwrap_err();
    assert!(
        matches!(err, SchemaError::AvroDatum(AvroError::Library(_))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "avro datum: Missing field in record: \"tool_id\""
    );
}

#[test]
fn writer_with_unknown_tool_type_symbol_is_an_error() {
    let writer = Schema::parse_str(&spcvm_schemas::TELEMETRY_SCHEMA_JSON.replace(
        r#"["ion_implant", "rtp"]"#,
        r#"["ion_implant", "rtp", "furnace"]"#,
    ))
    .unwrap();
    let mut t = common::telemetry();
    t.tool_type = ToolType::Rtp;
    // Index 2 ("furnace") instead of 1: patch the enum byte right after tool_id.
    let mut bytes = encode_telemetry_avro(&t).unwrap();
    assert_eq!(bytes[7], 2);
    bytes[7] = 4;
    let err = decode_telemetry_avro_with_writer(&bytes, &writer)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("avro datum: ") && err.contains("furnace"),
        "{err}"
    );
    // With our own schema the same byte is an out-of-range enum index.
    assert_eq!(
        decode_telemetry_avro(&bytes).unwrap_err().to_string(),
        "avro datum: malformed data at byte 7: enum index 2 is out of range for ToolType (2 symbols)"
    );
}

// ---------------------------------------------------------------- malformed input

#[test]
fn every_truncation_of_a_datum_is_an_error() {
    let telemetry = encode_telemetry_avro(&common::telemetry()).unwrap();
    for len in 0..telemetry.len() {
        let err = decode_telemetry_avro(&telemetry[..len]).unwrap_err();
        assert!(
            matches!(err, SchemaError::AvroDatum(AvroError::Malformed { .. })),
            "prefix {len}: {err}"
        );
    }
    let alert = encode_alert_avro(&common::alert()).unwrap();
    for len in 0..alert.len() {
        let err = decode_alert_avro(&alert[..len]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("avro datum: malformed data at byte "),
            "{err}"
        );
    }
    assert_eq!(
        decode_telemetry_avro(&[]).unwrap_err().to_string(),
        "avro datum: malformed data at byte 0: string is cut short by end of input"
    );
    assert_eq!(
        decode_telemetry_avro(&telemetry[..3])
            .unwrap_err()
            .to_string(),
        "avro datum: malformed data at byte 1: string needs 6 byte(s) but only 2 remain (truncated input?)"
    );
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = encode_alert_avro(&common::alert()).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0, 0]);
    let err = decode_alert_avro(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("avro datum: datum ended at byte {len} but the input has 2 more byte(s)")
    );
}

#[test]
fn huge_map_count_is_an_error_not_an_abort() {
    // A valid telemetry prefix followed by a map announcing 500 million entries: this makes
    // apache-avro 0.20 abort the process on its own.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\x02T"); // tool_id "T"
    bytes.push(0); // ion_implant
    bytes.extend_from_slice(b"\x02R"); // recipe_id "R"
    bytes.extend_from_slice(&[0, 0]); // lot_id, wafer_id null
    bytes.push(0); // event_time 0
    let map_at = bytes.len();
    bytes.extend_from_slice(&zigzag(500_000_000));
    bytes.extend_from_slice(&[2, b'a']);
    assert_eq!(
        decode_telemetry_avro(&bytes).unwrap_err().to_string(),
        format!(
            "avro datum: malformed data at byte {map_at}: map block announces 500000000 \
             element(s), more than the 2 remaining byte(s) can hold"
        )
    );
}

#[test]
fn repeats_out_of_u32_range_is_an_error_naming_the_field() {
    let mut a = common::alert();
    a.repeats = 0;
    (a.distance_sigma, a.window_start) = (None, None);
    (a.cusum_upper_sigma, a.cusum_lower_sigma) = (None, None);
    let mut bytes = encode_alert_avro(&a).unwrap();
    // repeats (zig-zag 0, one byte) is followed by the later fields: null, status (branch
    // 1, symbol 1 = zig-zag 2, 2), three nulls. Replace it with -1 (zig-zag 1).
    let at = bytes.len() - 7;
    assert_eq!(bytes[at..], [0, 0, 2, 2, 0, 0, 0]);
    bytes[at] = 1;
    assert_eq!(
        decode_alert_avro(&bytes).unwrap_err().to_string(),
        "avro datum: Alert.repeats: -1 does not fit in a u32"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_telemetry_round_trips(t in common::any_telemetry()) {
        let back = decode_telemetry_avro(&encode_telemetry_avro(&t).unwrap()).unwrap();
        common::assert_same_telemetry(&back, &t);
    }

    #[test]
    fn any_alert_round_trips(a in common::any_alert()) {
        let back = decode_alert_avro(&encode_alert_avro(&a).unwrap()).unwrap();
        common::assert_same_alert(&back, &a);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_telemetry_avro(&bytes);
        let _ = decode_alert_avro(&bytes);
        let _ = decode_telemetry_avro_with_writer(&bytes, &Schema::parse_str(NEW_TELEMETRY).unwrap());
    }

    #[test]
    fn corrupted_datums_never_panic(
        t in common::any_telemetry(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_telemetry_avro(&t).unwrap();
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        if let Ok(back) = decode_telemetry_avro(&bytes) {
            // Whatever decodes survives another round trip unchanged.
            let again = decode_telemetry_avro(&encode_telemetry_avro(&back).unwrap()).unwrap();
            common::assert_same_telemetry(&again, &back);
        }
    }
}
