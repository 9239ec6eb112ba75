//! Unit tests of the decoder: every format, every error kind, config checks, and robustness
//! against random and truncated bytes. The registry over HTTP and the real Confluent
//! serializer are covered by `pipeline/tests/confluent_wire.rs`.
//!
//! Here: the shared fixtures, every format, size limits and validation; [`setup`]: set-up
//! errors and the config table; [`robust`]: random bytes, registry caching, error kinds.

mod robust;
mod setup;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use spcvm_schemas::apache_avro::to_avro_datum;
use spcvm_schemas::apache_avro::types::Value;
use spcvm_schemas::{
    TELEMETRY_SCHEMA_JSON, Telemetry, ToolType, encode_telemetry_avro, encode_telemetry_json,
    parse_schema,
};

use super::*;

/// A producer's evolved schema: an extra field with a default, fields reordered,
/// `wafer_id` dropped, `event_time` a plain long, measurements as floats (promoted to
/// double), and an extra tool type.
const EVOLVED: &str = r#"{"type":"record","name":"Telemetry","namespace":"io.spcvm","fields":[
  {"name":"gateway_version","type":"string","default":"1.0"},
  {"name":"event_time","type":"long"},
  {"name":"tool_id","type":"string"},
  {"name":"tool_type","type":{"type":"enum","name":"ToolType","symbols":["rtp","ion_implant","furnace"]}},
  {"name":"recipe_id","type":"string"},
  {"name":"lot_id","type":["null","string"],"default":null},
  {"name":"measurements","type":{"type":"map","values":"float"}}]}"#;

fn sample() -> Telemetry {
    Telemetry {
        tool_id: "IMP-07".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11-5E15".into(),
        lot_id: Some("LOT-42".into()),
        wafer_id: Some("W03".into()),
        event_time: 1_732_617_000_123,
        measurements: BTreeMap::from([
            ("beam_current_mA".to_owned(), 4.25),
            ("dose_uniformity_pct".to_owned(), 97.5),
            ("source_pressure_mtorr".to_owned(), f64::NAN),
        ]),
    }
}

/// Compares two records, NaN equal to NaN.
fn assert_same(a: &Telemetry, b: &Telemetry) {
    let strip = |t: &Telemetry| Telemetry {
        measurements: BTreeMap::new(),
        ..t.clone()
    };
    assert_eq!(strip(a), strip(b));
    assert_eq!(
        a.measurements.keys().collect::<Vec<_>>(),
        b.measurements.keys().collect::<Vec<_>>()
    );
    for (name, x) in &a.measurements {
        let y = b.measurements[name];
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{name}: {x} != {y}"
        );
    }
}

fn config(format: PayloadFormat) -> DecodeConfig {
    DecodeConfig {
        format,
        ..DecodeConfig::default()
    }
}

fn decoder(format: PayloadFormat) -> Decoder {
    Decoder::new(&config(format)).unwrap()
}

fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Writes `files` (name, content) into a fresh temporary directory.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// A decoder for Confluent payloads with schema ids 1 (ours) and 2 ([`EVOLVED`]).
fn confluent_decoder(dir: &Path, ids_file: &str) -> Decoder {
    Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_ids_file: Some(dir.join(ids_file)),
        ..DecodeConfig::default()
    })
    .unwrap()
}

fn evolved_dir() -> tempfile::TempDir {
    dir_with(&[
        ("telemetry.avsc", TELEMETRY_SCHEMA_JSON),
        ("evolved.avsc", EVOLVED),
        (
            "schemas.json",
            r#"{"1": "telemetry.avsc", "2": "evolved.avsc"}"#,
        ),
        (
            "schemas.toml",
            "# ids\n1 = \"telemetry.avsc\"\n\"2\" = \"evolved.avsc\"\n",
        ),
    ])
}

/// A datum of [`EVOLVED`].
fn evolved_datum(tool_type: (u32, &str), measurements: &[(&str, f32)]) -> Vec<u8> {
    let schema = parse_schema(EVOLVED).unwrap();
    let value = Value::Record(vec![
        ("gateway_version".into(), Value::String("2.3.1".into())),
        ("event_time".into(), Value::Long(1_700_000_000_000)),
        ("tool_id".into(), Value::String("RTP-02".into())),
        (
            "tool_type".into(),
            Value::Enum(tool_type.0, tool_type.1.into()),
        ),
        ("recipe_id".into(), Value::String("SPIKE-1050".into())),
        ("lot_id".into(), Value::Union(0, Box::new(Value::Null))),
        (
            "measurements".into(),
            Value::Map(
                measurements
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::Float(*v)))
                    .collect::<HashMap<_, _>>(),
            ),
        ),
    ]);
    to_avro_datum(&schema, value).unwrap()
}

fn expected_evolved() -> Telemetry {
    Telemetry {
        tool_id: "RTP-02".into(),
        tool_type: ToolType::Rtp,
        recipe_id: "SPIKE-1050".into(),
        lot_id: None,
        wafer_id: None,
        event_time: 1_700_000_000_000,
        measurements: BTreeMap::from([
            ("overshoot_pct".to_owned(), 2.5),
            ("emissivity".to_owned(), f64::NAN),
        ]),
    }
}

/// A tiny deterministic random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Appends a zig-zag varint long.
fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut raw = ((n << 1) ^ (n >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

// ---------------------------------------------------------------- formats

#[test]
fn json_decodes_and_reports_position() {
    let d = decoder(PayloadFormat::Json);
    assert_eq!(d.format(), PayloadFormat::Json);
    let t = sample();
    assert_same(&d.decode(&encode_telemetry_json(&t)).unwrap(), &t);

    let err = d.decode(br#"{"tool_id": 7}"#).unwrap_err();
    assert_eq!(err.kind(), "json");
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.starts_with("JSON payload: invalid type") && text.contains("line 1 column"),
        "{text}"
    );
}

#[test]
fn plain_avro_with_our_schema() {
    let d = decoder(PayloadFormat::Avro);
    let t = sample();
    assert_same(&d.decode(&encode_telemetry_avro(&t).unwrap()).unwrap(), &t);

    let mut long = encode_telemetry_avro(&t).unwrap();
    long.push(0);
    let err = d.decode(&long).unwrap_err();
    assert_eq!(err.kind(), "avro");
    assert_eq!(err.schema_id(), None);
    let text = err.to_string();
    assert!(
        text.starts_with("Avro payload (built-in telemetry schema): datum ended at byte"),
        "{text}"
    );
}

#[test]
fn plain_avro_with_an_evolved_writer_schema_file() {
    let dir = evolved_dir();
    let d = Decoder::new(&DecodeConfig {
        format: PayloadFormat::Avro,
        avro_schema_file: Some(dir.path().join("evolved.avsc")),
        ..DecodeConfig::default()
    })
    .unwrap();
    let datum = evolved_datum(
        (0, "rtp"),
        &[("overshoot_pct", 2.5), ("emissivity", f32::NAN)],
    );
    assert_same(&d.decode(&datum).unwrap(), &expected_evolved());

    let err = d.decode(&datum[..datum.len() - 3]).unwrap_err();
    assert_eq!(err.kind(), "avro");
    assert!(err.to_string().contains("evolved.avsc"), "{err}");
}

#[test]
fn confluent_with_ids_file_json_and_toml() {
    let dir = evolved_dir();
    for ids in ["schemas.json", "schemas.toml"] {
        let d = confluent_decoder(dir.path(), ids);
        let t = sample();
        let ours = frame(1, &encode_telemetry_avro(&t).unwrap());
        assert_same(&d.decode(&ours).unwrap(), &t);
        let evolved = frame(
            2,
            &evolved_datum(
                (0, "rtp"),
                &[("overshoot_pct", 2.5), ("emissivity", f32::NAN)],
            ),
        );
        assert_same(&d.decode(&evolved).unwrap(), &expected_evolved());

        // Our datum under the evolved schema's id: a datum error naming the id and offset.
        let err = d
            .decode(&frame(2, &encode_telemetry_avro(&t).unwrap()))
            .unwrap_err();
        assert_eq!(err.kind(), "avro");
        assert_eq!(err.schema_id(), Some(2));
        assert!(
            err.to_string()
                .starts_with("Avro payload (schema id 2, datum from payload byte 5): "),
            "{err}"
        );

        let err = d.decode(&frame(9, &[0; 8])).unwrap_err();
        assert_eq!(err.kind(), "unknown_schema_id");
        assert!(!err.is_transient());
        assert_eq!(err.schema_id(), Some(9));
        let text = err.to_string();
        assert!(
            text.starts_with("unknown schema id 9: not in the schema ids file")
                && text.contains(ids)
                && text.contains("[1, 2]"),
            "{text}"
        );
    }
}

#[test]
fn unknown_enum_symbol_fails_per_datum_only() {
    let dir = evolved_dir();
    let d = confluent_decoder(dir.path(), "schemas.json");
    let furnace = frame(2, &evolved_datum((2, "furnace"), &[("zone1_temp", 900.0)]));
    let err = d.decode(&furnace).unwrap_err();
    assert_eq!(err.kind(), "avro");
    assert!(err.to_string().contains("schema id 2"), "{err}");
    let ion = frame(2, &evolved_datum((1, "ion_implant"), &[("dose", 1.0)]));
    assert_eq!(d.decode(&ion).unwrap().tool_type, ToolType::IonImplant);
}

#[test]
fn framing_errors() {
    let dir = evolved_dir();
    let d = confluent_decoder(dir.path(), "schemas.json");
    for short in [&[0u8][..], &[0, 0, 0, 1]] {
        let err = d.decode(short).unwrap_err();
        assert_eq!(err.kind(), "magic_byte");
        assert!(
            err.to_string()
                .contains(&format!("payload of {} byte(s) is shorter", short.len())),
            "{err}"
        );
    }
    let err = d
        .decode(&encode_telemetry_json(&sample()))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("not Confluent wire format: byte 0 is 0x7b, expected magic byte 0x00")
            && err.contains("looks like JSON"),
        "{err}"
    );
    let err = d.decode(&[1, 2, 3, 4, 5, 6]).unwrap_err().to_string();
    assert!(err.contains("GUID"), "{err}");
    assert_eq!(
        confluent::split_frame(&[0, 0, 0, 1, 2, 9]).unwrap(),
        (258, &[9u8][..])
    );
}

// ---------------------------------------------------------------- size and validation

#[test]
fn size_limits_are_checked_before_decoding() {
    let d = Decoder::new(&DecodeConfig {
        max_message_bytes: 10,
        ..DecodeConfig::default()
    })
    .unwrap();
    let err = d.decode(&[b'x'; 11]).unwrap_err();
    assert_eq!(err.kind(), "too_large");
    assert_eq!(
        err.to_string(),
        "payload of 11 bytes exceeds max_message_bytes = 10"
    );
    assert_eq!(d.decode(&[b'x'; 10]).unwrap_err().kind(), "json");
    let err = d.decode(b"").unwrap_err();
    assert_eq!(err.kind(), "empty");
    assert_eq!(DecodeConfig::default().max_message_bytes, 1_048_576);
}

#[test]
fn validation_rejects_unusable_records_but_keeps_non_finite_values() {
    let d = decoder(PayloadFormat::Json);
    let check = |edit: &dyn Fn(&mut Telemetry), field: &str, text: &str| {
        let mut t = sample();
        edit(&mut t);
        let err = d.decode(&encode_telemetry_json(&t)).unwrap_err();
        assert_eq!(err.kind(), "invalid", "{err}");
        assert!(!err.is_transient());
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("invalid telemetry: `{field}` ")) && msg.contains(text),
            "{msg}"
        );
    };
    check(&|t| t.tool_id = String::new(), "tool_id", "is blank");
    check(&|t| t.tool_id = "  ".into(), "tool_id", "is blank");
    check(&|t| t.recipe_id = String::new(), "recipe_id", "tool IMP-07");
    check(&|t| t.measurements.clear(), "measurements", "is empty");
    check(&|t| t.event_time = -1, "event_time", "is negative (1 ms");

    let mut t = sample();
    t.measurements = BTreeMap::from([
        ("a".to_owned(), f64::NAN),
        ("b".to_owned(), f64::INFINITY),
        ("c".to_owned(), f64::NEG_INFINITY),
    ]);
    t.event_time = 0;
    assert_same(&d.decode(&encode_telemetry_json(&t)).unwrap(), &t);
    let avro = decoder(PayloadFormat::Avro);
    assert_same(
        &avro.decode(&encode_telemetry_avro(&t).unwrap()).unwrap(),
        &t,
    );
}
