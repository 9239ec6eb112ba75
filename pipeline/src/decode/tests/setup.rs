//! Set-up errors: keys that do not fit the format, the registry URL, bad schema and id
//! files named, writer schemas that cannot be read, the config table, and a decoder that
//! is shareable.

use super::*;

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
