//! Every `.avsc` file in `schemas/avro` parses, documents every field, and round-trips a
//! record; the bundled schemas match the files and the Rust enums.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::schema::ResolvedSchema;
use apache_avro::types::Value;
use spcvm_schemas::{
    ALERT_SCHEMA_JSON, Severity, TELEMETRY_SCHEMA_JSON, ToolType, alert_schema, decode_alert_avro,
    decode_telemetry_avro, encode_alert_avro, encode_telemetry_avro, telemetry_schema,
};

fn avsc_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .collect();
    files.sort();
    files
}

/// A sample value of any schema: first enum symbol, first union branch, one map entry
/// and one array item, non-trivial scalars.
fn sample_value(schema: &Schema, names: &HashMap<apache_avro::schema::Name, &Schema>) -> Value {
    match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => Value::Boolean(true),
        Schema::Int => Value::Int(-7),
        Schema::Long => Value::Long(1 << 40),
        Schema::Float => Value::Float(1.5),
        Schema::Double => Value::Double(-2.25),
        Schema::Bytes => Value::Bytes(vec![0, 1, 255]),
        Schema::String => Value::String("sample ü".into()),
        Schema::TimestampMillis => Value::TimestampMillis(1_732_617_000_123),
        Schema::Array(array) => Value::Array(vec![sample_value(&array.items, names)]),
        Schema::Map(map) => Value::Map(HashMap::from([(
            "key".to_owned(),
            sample_value(&map.types, names),
        )])),
        Schema::Union(union) => {
            // Prefer a non-null branch so the branch's encoding is exercised.
            let (index, branch) = union
                .variants()
                .iter()
                .enumerate()
                .find(|(_, s)| **s != Schema::Null)
                .unwrap_or((0, &union.variants()[0]));
            Value::Union(index as u32, Box::new(sample_value(branch, names)))
        }
        Schema::Record(record) => Value::Record(
            record
                .fields
                .iter()
                .map(|f| (f.name.clone(), sample_value(&f.schema, names)))
                .collect(),
        ),
        Schema::Enum(e) => Value::Enum(0, e.symbols[0].clone()),
        Schema::Fixed(f) => Value::Fixed(f.size, vec![7; f.size]),
        Schema::Ref { name } => sample_value(names[name], names),
        other => panic!("add a sample for {other:?}"),
    }
}

#[test]
fn every_avsc_parses_documents_every_field_and_round_trips() {
    let files = avsc_files();
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"telemetry.avsc".to_owned()), "{names:?}");
    assert!(names.contains(&"alert.avsc".to_owned()), "{names:?}");

    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let schema = Schema::parse_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));

        // Record named in namespace io.spcvm, with a doc on the record and every field.
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "record", "{}", path.display());
        assert_eq!(json["namespace"], "io.spcvm", "{}", path.display());
        assert!(json["doc"].as_str().is_some_and(|d| !d.is_empty()));
        for field in json["fields"].as_array().unwrap() {
            assert!(
                field["doc"].as_str().is_some_and(|d| d.len() > 10),
                "{}: field {} has no doc",
                path.display(),
                field["name"]
            );
        }

        // Generic round trip of a sample record through apache-avro.
        let resolved = ResolvedSchema::try_from(&schema).unwrap();
        let value = sample_value(&schema, resolved.get_names());
        let bytes = apache_avro::to_avro_datum(&schema, value.clone()).unwrap();
        let back = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
        assert_eq!(back, value, "{}", path.display());

        // Typed round trip through this crate for the records it maps.
        match json["name"].as_str().unwrap() {
            "Telemetry" => {
                assert_eq!(schema, *telemetry_schema());
                let t = common::telemetry();
                let back = decode_telemetry_avro(&encode_telemetry_avro(&t).unwrap()).unwrap();
                common::assert_same_telemetry(&back, &t);
                // The generic sample decodes as Telemetry too.
                let generic = decode_telemetry_avro(&bytes).unwrap();
                assert_eq!(generic.tool_id, "sample ü");
                assert_eq!(generic.tool_type, ToolType::IonImplant);
                assert_eq!(generic.event_time, 1_732_617_000_123);
                assert_eq!(generic.measurements["key"], -2.25);
            }
            "Alert" => {
                assert_eq!(schema, *alert_schema());
                let a = common::alert();
                let back = decode_alert_avro(&encode_alert_avro(&a).unwrap()).unwrap();
                common::assert_same_alert(&back, &a);
                // The generic sample's `repeats` (2^40) does not fit the u32.
                assert_eq!(
                    decode_alert_avro(&bytes).unwrap_err().to_string(),
                    "avro datum: Alert.repeats: 1099511627776 does not fit in a u32"
                );
            }
            "Triage" => {
                assert_eq!(schema, *spcvm_schemas::avro::triage_schema());
                let t = spcvm_schemas::decode_triage_avro(&bytes);
                // The generic sample's `version` (-7) does not fit the u32.
                let error = t.unwrap_err().to_string();
                assert!(error.contains("integer `-7`, expected u32"), "{error}");
            }
            "OcapAction" => {
                assert_eq!(schema, *spcvm_schemas::avro::action_schema());
                let generic = spcvm_schemas::decode_action_avro(&bytes).unwrap();
                assert_eq!(generic.kind, spcvm_schemas::ActionKind::Inspect);
                assert_eq!(generic.event_time, 1_732_617_000_123);
            }
            other => panic!("{}: no typed mapping for record {other}", path.display()),
        }
    }
}

#[test]
fn bundled_schema_text_is_the_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    assert_eq!(
        std::fs::read_to_string(dir.join("telemetry.avsc")).unwrap(),
        TELEMETRY_SCHEMA_JSON
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("alert.avsc")).unwrap(),
        ALERT_SCHEMA_JSON
    );
}

fn enum_symbols(schema: &Schema, field: &str) -> Vec<String> {
    let Schema::Record(record) = schema else {
        panic!("not a record")
    };
    let f = &record.fields[record.lookup[field]];
    match &f.schema {
        Schema::Enum(e) => e.symbols.clone(),
        other => panic!("{field} is not an enum: {other:?}"),
    }
}

#[test]
fn avro_enums_match_rust_enums() {
    let tool_types: Vec<String> = ToolType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(enum_symbols(telemetry_schema(), "tool_type"), tool_types);
    assert_eq!(enum_symbols(alert_schema(), "tool_type"), tool_types);
    let severities: Vec<String> = Severity::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(enum_symbols(alert_schema(), "severity"), severities);
}

#[test]
fn chart_and_rule_are_strings_and_optional_fields_default_to_null() {
    let Schema::Record(record) = alert_schema() else {
        panic!("not a record")
    };
    for field in ["chart", "rule", "parameter", "message", "alert_id"] {
        assert_eq!(
            record.fields[record.lookup[field]].schema,
            Schema::String,
            "{field}"
        );
    }
    assert_eq!(record.fields[record.lookup["repeats"]].schema, Schema::Long);
    assert_eq!(
        record.fields[record.lookup["event_time"]].schema,
        Schema::TimestampMillis
    );
    // The fields added after the first version are null-first unions defaulting to null,
    // so that readers and writers of either version resolve against each other.
    for field in [
        "lot_id",
        "wafer_id",
        "ucl",
        "lcl",
        "distance_sigma",
        "status",
        "window_start",
        "cusum_upper_sigma",
        "cusum_lower_sigma",
    ] {
        let f = &record.fields[record.lookup[field]];
        assert_eq!(f.default, Some(serde_json::Value::Null), "{field}");
        match &f.schema {
            Schema::Union(u) => assert_eq!(u.variants()[0], Schema::Null, "{field}"),
            other => panic!("{field} is not a union: {other:?}"),
        }
    }
    let Schema::Union(status) = &record.fields[record.lookup["status"]].schema else {
        panic!("status is a union")
    };
    let Schema::Enum(status) = &status.variants()[1] else {
        panic!("status holds an enum")
    };
    let statuses: Vec<&str> = spcvm_schemas::AlertStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(status.symbols, statuses);
    let Schema::Record(telemetry) = telemetry_schema() else {
        panic!("not a record")
    };
    for field in ["lot_id", "wafer_id"] {
        let f = &telemetry.fields[telemetry.lookup[field]];
        assert_eq!(f.default, Some(serde_json::Value::Null), "{field}");
    }
}
