//! Unit tests of the decoder: every format, every error kind, config checks, and robustness
//! against random and truncated bytes. The registry over HTTP and the real Confluent
//! serializer are covered by `pipeline/tests/confluent_wire.rs`.

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

// ---------------------------------------------------------------- set-up errors

fn setup_error(config: &DecodeConfig) -> String {
    Decoder::new(config).unwrap_err().to_string()
}

#[test]
fn keys_must_fit_the_format() {
    let url = Some("http://127.0.0.1:8081".to_string());
    let err = setup_error(&DecodeConfig {
        schema_registry_url: url.clone(),
        ..DecodeConfig::default()
    });
    assert_eq!(
        err,
        "`decode.schema_registry_url`: is only used with format = \"avro_confluent\", but \
         format = \"json\"; remove the key or change the format"
    );
    let err = setup_error(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        avro_schema_file: Some("x.avsc".into()),
        schema_registry_url: url.clone(),
        ..DecodeConfig::default()
    });
    assert!(err.starts_with("`decode.avro_schema_file`: is only used with format = \"avro\""));
    let err = setup_error(&config(PayloadFormat::AvroConfluent));
    assert!(
        err.contains("needs `decode.schema_registry_url` or `decode.schema_ids_file`"),
        "{err}"
    );
    let err = setup_error(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: url.clone(),
        schema_registry_username: Some("key".into()),
        ..DecodeConfig::default()
    });
    assert!(
        err.starts_with("`decode.schema_registry_password`: is missing"),
        "{err}"
    );
    let err = setup_error(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_password: Some("secret".into()),
        schema_registry_username: Some("key".into()),
        schema_ids_file: Some("ids.json".into()),
        ..DecodeConfig::default()
    });
    assert!(
        err.starts_with("`decode.schema_registry_url`: is missing"),
        "{err}"
    );
    let err = setup_error(&DecodeConfig {
        max_message_bytes: 0,
        ..DecodeConfig::default()
    });
    assert_eq!(err, "`decode.max_message_bytes`: must be at least 1");
}

#[test]
fn registry_url_is_checked() {
    for (url, expected) in [
        ("localhost:8081", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("https://key:secret@registry", "must not hold credentials"),
        ("http://registry:8081/?x=1", "without query or fragment"),
        ("http://bad host/", "is not a valid URL"),
    ] {
        let err = setup_error(&DecodeConfig {
            format: PayloadFormat::AvroConfluent,
            schema_registry_url: Some(url.into()),
            ..DecodeConfig::default()
        });
        assert!(
            err.starts_with("`decode.schema_registry_url`: ") && err.contains(expected),
            "{url}: {err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }
    let ok = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some("https://psrc-123.eu-west-1.aws.confluent.cloud/".into()),
        schema_registry_username: Some("key".into()),
        schema_registry_password: Some("secret".into()),
        ..DecodeConfig::default()
    });
    assert!(ok.is_ok(), "{ok:?}");
}

fn confluent_files(files: &[(&str, &str)], ids_file: &str) -> String {
    let dir = dir_with(files);
    let err = setup_error(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_ids_file: Some(dir.path().join(ids_file)),
        ..DecodeConfig::default()
    });
    err.replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn bad_files_are_named() {
    let err = confluent_files(&[], "ids.json");
    assert!(
        err.starts_with("`decode.schema_ids_file`: cannot read `DIR/ids.json`: "),
        "{err}"
    );
    let err = confluent_files(&[("ids.json", r#"{"1": "gone.avsc"}"#)], "ids.json");
    assert!(
        err.starts_with("`decode.schema_ids_file`: cannot read `DIR/gone.avsc`"),
        "{err}"
    );
    let err = confluent_files(&[("ids.json", r#"{"one": "t.avsc"}"#)], "ids.json");
    assert_eq!(
        err,
        "DIR/ids.json: key \"one\" is not a schema id (an integer from 0 to 4294967295)"
    );
    let err = confluent_files(&[("ids.json", r#"["t.avsc"]"#)], "ids.json");
    assert!(
        err.starts_with("DIR/ids.json: expected a JSON object"),
        "{err}"
    );
    let err = confluent_files(&[("ids.json", "{}")], "ids.json");
    assert_eq!(err, "DIR/ids.json: lists no schema ids");
    let err = confluent_files(&[("ids.toml", "1 = \"a.avsc\"\n2 = 3\n")], "ids.toml");
    assert!(
        err.starts_with("DIR/ids.toml: line 2: expected a TOML table"),
        "{err}"
    );
    let err = confluent_files(
        &[("ids.json", r#"{"4": "t.avsc"}"#), ("t.avsc", "{not json")],
        "ids.json",
    );
    assert!(
        err.starts_with("DIR/t.avsc (schema id 4): not a valid Avro schema: "),
        "{err}"
    );
    let err = setup_error(&DecodeConfig {
        format: PayloadFormat::Avro,
        avro_schema_file: Some("/nonexistent/w.avsc".into()),
        ..DecodeConfig::default()
    });
    assert!(
        err.starts_with("`decode.avro_schema_file`: cannot read `/nonexistent/w.avsc`"),
        "{err}"
    );
}

/// A writer schema with our fields, `field`'s type replaced by `ty` and its default dropped
/// (or the field removed when `ty` is `None`).
fn variant(field: &str, ty: Option<&str>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(TELEMETRY_SCHEMA_JSON).unwrap();
    let fields = v["fields"].as_array_mut().unwrap();
    let i = fields.iter().position(|f| f["name"] == field).unwrap();
    match ty {
        Some(ty) => {
            fields[i]["type"] = serde_json::from_str(ty).unwrap();
            fields[i].as_object_mut().unwrap().remove("default");
        }
        None => {
            fields.remove(i);
        }
    }
    v.to_string()
}

#[test]
fn writer_schemas_that_cannot_be_read_are_rejected_at_start() {
    let cases = [
        (
            variant("tool_id", None),
            "the writer schema has no field `tool_id`, which telemetry requires",
        ),
        (
            variant("event_time", Some(r#""string""#)),
            "field `event_time`: the writer's string cannot be read as our timestamp-millis long",
        ),
        (
            variant(
                "event_time",
                Some(r#"{"type":"long","logicalType":"timestamp-micros"}"#),
            ),
            "field `event_time`: the writer's timestamp-micros long",
        ),
        (
            variant("measurements", Some(r#"{"type":"map","values":"string"}"#)),
            "field `measurements`: the writer's map of string cannot be read as our map of double",
        ),
        (
            variant("lot_id", Some(r#"["null","string","long"]"#)),
            "field `lot_id`: the writer's union [null, string, long]",
        ),
        (
            variant(
                "tool_type",
                Some(r#"{"type":"enum","name":"ToolType","symbols":["furnace"]}"#),
            ),
            "field `tool_type`: the writer's enum io.spcvm.ToolType cannot be read as our enum io.spcvm.ToolType: no symbol in common",
        ),
        (
            r#"{"type":"array","items":"double"}"#.to_string(),
            "the writer schema is a array of double, not a record",
        ),
    ];
    for (schema, expected) in cases {
        let dir = dir_with(&[("w.avsc", &schema)]);
        let err = setup_error(&DecodeConfig {
            format: PayloadFormat::Avro,
            avro_schema_file: Some(dir.path().join("w.avsc")),
            ..DecodeConfig::default()
        });
        let path = dir.path().join("w.avsc").display().to_string();
        assert!(
            err.starts_with(&format!("{path}: {expected}")),
            "expected {expected:?}, got {err}"
        );
    }
    // Compatible changes pass: dropped optional ids, added fields with or without
    // defaults, promotions, a plain long event time, a named-type reference.
    let fine = [
        variant("wafer_id", None),
        variant("lot_id", None),
        variant("event_time", Some(r#""long""#)),
        variant("measurements", Some(r#"{"type":"map","values":"int"}"#)),
        variant("lot_id", Some(r#""string""#)),
        EVOLVED.to_string(),
        r#"{"type":"record","name":"Other","fields":[
            {"name":"previous","type":{"type":"enum","name":"ToolType","symbols":["ion_implant","rtp"]}},
            {"name":"tool_type","type":"ToolType"},
            {"name":"tool_id","type":"string"},{"name":"recipe_id","type":"string"},
            {"name":"event_time","type":"long"},
            {"name":"measurements","type":{"type":"map","values":"double"}},
            {"name":"extra","type":{"type":"array","items":"Other"}}]}"#
            .to_string(),
    ];
    for schema in fine {
        let dir = dir_with(&[("w.avsc", &schema)]);
        let result = Decoder::new(&DecodeConfig {
            format: PayloadFormat::Avro,
            avro_schema_file: Some(dir.path().join("w.avsc")),
            ..DecodeConfig::default()
        });
        let d = match result {
            Ok(d) => d,
            Err(e) => panic!("{schema}: {e}"),
        };
        // And data written with it really decodes.
        let writer = parse_schema(&schema).unwrap();
        let value = Value::from(serde_json::json!({
            "tool_id": "T", "tool_type": "rtp", "recipe_id": "R", "lot_id": "L",
            "wafer_id": "W", "event_time": 5, "measurements": {"a": 1},
            "gateway_version": "x", "previous": "ion_implant", "extra": [],
        }))
        .resolve(&writer)
        .unwrap();
        let t = d.decode(&to_avro_datum(&writer, value).unwrap()).unwrap();
        assert_eq!((t.tool_id.as_str(), t.event_time), ("T", 5), "{schema}");
        assert_eq!(t.measurements["a"], 1.0, "{schema}");
        let has = |field: &str| schema.contains(&format!("\"name\":\"{field}\""));
        assert_eq!(t.lot_id.is_some(), has("lot_id"), "{schema}");
        assert_eq!(t.wafer_id.is_some(), has("wafer_id"), "{schema}");
    }
}

#[test]
fn config_table_parses_with_defaults_and_rejects_unknown_keys() {
    let c: DecodeConfig = toml::from_str(
        "format = \"avro_confluent\"\nschema_registry_url = \"http://r:8081\"\n\
         schema_registry_password = \"hunter2\"\nschema_registry_username = \"u\"",
    )
    .unwrap();
    assert_eq!(c.format, PayloadFormat::AvroConfluent);
    assert_eq!(c.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    assert_eq!(c.schema_ids_file, None);
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && debug.contains("***"),
        "{debug}"
    );
    let back: DecodeConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);

    assert_eq!(
        toml::from_str::<DecodeConfig>("").unwrap(),
        DecodeConfig::default()
    );
    let c: DecodeConfig = toml::from_str("format = \"avro\"\nmax_message_bytes = 512").unwrap();
    assert_eq!((c.format, c.max_message_bytes), (PayloadFormat::Avro, 512));
    let err = toml::from_str::<DecodeConfig>("formt = \"json\"").unwrap_err();
    assert!(err.message().contains("unknown field `formt`"), "{err}");
    let err = toml::from_str::<DecodeConfig>("format = \"protobuf\"").unwrap_err();
    assert!(
        err.message().contains("unknown variant `protobuf`"),
        "{err}"
    );
    assert_eq!(PayloadFormat::AvroConfluent.to_string(), "avro_confluent");
}

#[test]
fn decoder_is_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Decoder>();
    assert_send_sync::<DecodeError>();
    assert_send_sync::<DecodeSetupError>();

    let dir = evolved_dir();
    let d = Arc::new(confluent_decoder(dir.path(), "schemas.json"));
    let payload = frame(1, &encode_telemetry_avro(&sample()).unwrap());
    std::thread::scope(|s| {
        for _ in 0..4 {
            let d = Arc::clone(&d);
            let payload = &payload;
            s.spawn(move || {
                for _ in 0..100 {
                    assert_eq!(d.decode(payload).unwrap().tool_id, "IMP-07");
                }
            });
        }
    });
}

// ---------------------------------------------------------------- never panic

#[test]
fn random_and_truncated_bytes_never_panic() {
    let dir = evolved_dir();
    let decoders = [
        decoder(PayloadFormat::Json),
        decoder(PayloadFormat::Avro),
        Decoder::new(&DecodeConfig {
            format: PayloadFormat::Avro,
            avro_schema_file: Some(dir.path().join("evolved.avsc")),
            ..DecodeConfig::default()
        })
        .unwrap(),
        confluent_decoder(dir.path(), "schemas.json"),
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let valid_ours = encode_telemetry_avro(&sample()).unwrap();
    let valid_evolved = evolved_datum((0, "rtp"), &[("a", 1.0), ("b", 2.0)]);
    let json = encode_telemetry_json(&sample());

    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3000 {
        inputs.push(rng.bytes(64));
        // Arbitrary bytes after a valid header, for each known id and an unknown one.
        let id = [1, 2, 3][(rng.next() % 3) as usize];
        inputs.push(frame(id, &rng.bytes(48)));
        // A valid datum with one byte flipped.
        let mut flipped = valid_ours.clone();
        let i = (rng.next() as usize) % flipped.len();
        flipped[i] ^= 1 << (rng.next() % 8);
        inputs.push(flipped.clone());
        inputs.push(frame(1, &flipped));
        let mut text = json.clone();
        let i = (rng.next() as usize) % text.len();
        text[i] = rng.next() as u8;
        inputs.push(text);
    }
    for valid in [&valid_ours, &valid_evolved, &json] {
        for end in 0..valid.len() {
            inputs.push(valid[..end].to_vec());
            inputs.push(frame(1, &valid[..end]));
            inputs.push(frame(2, &valid[..end]));
        }
    }
    // Huge announced lengths and counts: a string, then a map block.
    for huge in [i64::MAX, i64::MIN, 1 << 40, -(1 << 40), u32::MAX as i64, -1] {
        let mut s = Vec::new();
        put_long(&mut s, huge);
        s.extend_from_slice(b"abc");
        inputs.push(s.clone());
        inputs.push(frame(1, &s));
        let mut m = Vec::new();
        for text in ["T", "", "R"] {
            if text.is_empty() {
                put_long(&mut m, 0); // tool_type index
            } else {
                put_long(&mut m, 1);
                m.extend_from_slice(text.as_bytes());
            }
        }
        m.extend_from_slice(&[0, 0, 2]); // lot null, wafer null, event_time 1
        put_long(&mut m, huge); // map block count
        put_long(&mut m, 8); // or a byte size, for a negative count
        m.extend_from_slice(&[2, b'x', 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        inputs.push(m.clone());
        inputs.push(frame(1, &m));
        inputs.push(frame(2, &m));
    }

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &decoders {
        for input in &inputs {
            match d.decode(input) {
                Ok(_) => *kinds.entry("ok").or_default() += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    assert!(!e.is_transient());
                    *kinds.entry(e.kind()).or_default() += 1;
                }
            }
        }
    }
    for kind in [
        "ok",
        "json",
        "avro",
        "magic_byte",
        "unknown_schema_id",
        "empty",
    ] {
        assert!(kinds.contains_key(kind), "{kind} never seen: {kinds:?}");
    }
}

// ---------------------------------------------------------------- registry caching

/// A registry answering 404 to everything, counting requests.
fn not_found_registry() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"error_code":40403,"message":"Schema not found"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

#[test]
fn registry_not_found_is_remembered_for_a_while() {
    let (url, hits) = not_found_registry();
    let mut d = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(url.clone()),
        ..DecodeConfig::default()
    })
    .unwrap();
    let Format::AvroConfluent(store) = &mut d.format else {
        unreachable!()
    };
    store.not_found_ttl = Duration::from_millis(300);
    let payload = frame(77, &[0; 4]);
    let err = d.decode(&payload).unwrap_err();
    assert_eq!(err.kind(), "unknown_schema_id");
    assert!(
        err.to_string().contains(&format!("{url}/schemas/ids/77")),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    for _ in 0..50 {
        let err = d.decode(&payload).unwrap_err();
        assert_eq!(err.kind(), "unknown_schema_id");
        assert!(err.to_string().contains("remembered for 0.3 s"), "{err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(d.decode(&payload).unwrap_err().kind(), "unknown_schema_id");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[test]
fn unreachable_registry_is_transient() {
    // A port nothing listens on, below the kernel's ephemeral range: a port the kernel
    // picked for `bind(":0")` and released may be handed to the next `bind(":0")` (this
    // module's stub registries run concurrently), ports below it only to whoever asks.
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let start = low - 4000 + (std::process::id() % 3000) as u16;
    let port = (start..low)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range");
    let d = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(format!("http://127.0.0.1:{port}")),
        ..DecodeConfig::default()
    })
    .unwrap();
    let err = d.decode(&frame(5, &[0; 4])).unwrap_err();
    assert_eq!(err.kind(), "registry");
    assert!(err.is_transient());
    assert_eq!(err.schema_id(), Some(5));
    assert!(
        err.to_string()
            .starts_with("schema registry, fetching schema id 5: GET http://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn kinds_are_stable() {
    let all = [
        (DecodeError::TooLarge { size: 2, max: 1 }, "too_large"),
        (DecodeError::Empty, "empty"),
        (
            DecodeError::Json {
                reason: String::new(),
            },
            "json",
        ),
        (
            DecodeError::Avro {
                schema: String::new(),
                reason: String::new(),
                schema_id: None,
            },
            "avro",
        ),
        (
            DecodeError::Framing {
                reason: String::new(),
            },
            "magic_byte",
        ),
        (
            DecodeError::UnknownSchemaId {
                id: 1,
                reason: String::new(),
            },
            "unknown_schema_id",
        ),
        (
            DecodeError::Registry {
                id: 1,
                reason: String::new(),
            },
            "registry",
        ),
        (
            DecodeError::Invalid {
                field: "tool_id",
                reason: String::new(),
            },
            "invalid",
        ),
    ];
    for (error, kind) in all {
        assert_eq!(error.kind(), kind);
        assert_eq!(error.is_transient(), kind == "registry");
    }
    let long = "é".repeat(1000);
    let clipped = error::clip(long);
    assert!(clipped.len() <= 603 && clipped.ends_with('…'));
}
