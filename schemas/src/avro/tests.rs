//! The Avro codecs against apache-avro's values and schemas: hand-written encoders agree,
//! datums round-trip, and decode from older and newer writers' schemas.

use super::*;

/// The reference mapping to apache-avro values, to check the hand-written encoders.
fn telemetry_value(t: &Telemetry) -> Value {
    Value::Record(vec![
        ("tool_id".into(), Value::String(t.tool_id.clone())),
        ("tool_type".into(), tool_type_value(t.tool_type)),
        ("recipe_id".into(), Value::String(t.recipe_id.clone())),
        ("lot_id".into(), optional_string(t.lot_id.as_deref())),
        ("wafer_id".into(), optional_string(t.wafer_id.as_deref())),
        ("event_time".into(), Value::TimestampMillis(t.event_time)),
        (
            "measurements".into(),
            Value::Map(
                t.measurements
                    .iter()
                    .map(|(k, &v)| (k.clone(), Value::Double(v)))
                    .collect(),
            ),
        ),
    ])
}

fn alert_value(a: &Alert) -> Value {
    Value::Record(vec![
        ("alert_id".into(), Value::String(a.alert_id.clone())),
        ("tool_id".into(), Value::String(a.tool_id.clone())),
        ("tool_type".into(), tool_type_value(a.tool_type)),
        ("recipe_id".into(), Value::String(a.recipe_id.clone())),
        ("lot_id".into(), optional_string(a.lot_id.as_deref())),
        ("wafer_id".into(), optional_string(a.wafer_id.as_deref())),
        ("parameter".into(), Value::String(a.parameter.clone())),
        ("chart".into(), Value::String(a.chart.clone())),
        ("rule".into(), Value::String(a.rule.clone())),
        (
            "severity".into(),
            Value::Enum(
                enum_index(&Severity::ALL, a.severity) as u32,
                a.severity.as_str().into(),
            ),
        ),
        ("statistic".into(), Value::Double(a.statistic)),
        ("center_line".into(), Value::Double(a.center_line)),
        ("ucl".into(), optional_double(a.ucl)),
        ("lcl".into(), optional_double(a.lcl)),
        ("event_time".into(), Value::TimestampMillis(a.event_time)),
        ("message".into(), Value::String(a.message.clone())),
        ("repeats".into(), Value::Long(i64::from(a.repeats))),
        ("distance_sigma".into(), optional_double(a.distance_sigma)),
        (
            "status".into(),
            Value::Union(
                1,
                Box::new(Value::Enum(
                    enum_index(&AlertStatus::ALL, a.status) as u32,
                    a.status.as_str().into(),
                )),
            ),
        ),
        (
            "window_start".into(),
            match a.window_start {
                Some(ms) => Value::Union(1, Box::new(Value::TimestampMillis(ms))),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
        (
            "cusum_upper_sigma".into(),
            optional_double(a.cusum_upper_sigma),
        ),
        (
            "cusum_lower_sigma".into(),
            optional_double(a.cusum_lower_sigma),
        ),
    ])
}

fn tool_type_value(t: ToolType) -> Value {
    Value::Enum(enum_index(&ToolType::ALL, t) as u32, t.as_str().into())
}

fn optional_string(s: Option<&str>) -> Value {
    match s {
        Some(s) => Value::Union(1, Box::new(Value::String(s.into()))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn optional_double(x: Option<f64>) -> Value {
    match x {
        Some(x) => Value::Union(1, Box::new(Value::Double(x))),
        None => Value::Union(0, Box::new(Value::Null)),
    }
}

fn telemetry(measurements: &[(&str, f64)]) -> Telemetry {
    Telemetry {
        tool_id: "RTP-1".into(),
        tool_type: ToolType::Rtp,
        recipe_id: "ANNEAL-1000".into(),
        lot_id: None,
        wafer_id: Some("W01".into()),
        event_time: -1_234_567_890_123,
        measurements: measurements
            .iter()
            .map(|&(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

fn alert() -> Alert {
    Alert {
        alert_id: "id".into(),
        tool_id: "IMP-1".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "R".into(),
        lot_id: Some("L".into()),
        wafer_id: None,
        parameter: "dose".into(),
        chart: "cusum".into(),
        rule: "cusum_upper".into(),
        severity: Severity::Critical,
        statistic: 5.5,
        center_line: f64::NAN,
        ucl: None,
        lcl: Some(-1.0),
        event_time: 1 << 41,
        message: "ü".into(),
        repeats: u32::MAX,
        distance_sigma: Some(-4.25),
        status: AlertStatus::Closed,
        window_start: Some(-(1 << 40)),
        cusum_upper_sigma: Some(5.5),
        cusum_lower_sigma: Some(0.0),
    }
}

#[test]
fn telemetry_encoding_matches_apache_avro() {
    // With at most one measurement the map order cannot differ: bytes are identical.
    for t in [telemetry(&[]), telemetry(&[("temp_c", 1050.5)])] {
        let apache = apache_avro::to_avro_datum(telemetry_schema(), telemetry_value(&t));
        assert_eq!(encode(&t), apache.unwrap());
    }
    // With more, apache-avro writes HashMap order; the values decoded are the same.
    let mut t = telemetry(&[("a", 1.0), ("b", f64::NAN), ("c", f64::NEG_INFINITY)]);
    t.lot_id = Some("L".repeat(200));
    let apache = apache_avro::to_avro_datum(telemetry_schema(), telemetry_value(&t)).unwrap();
    let ours = encode(&t);
    assert_eq!(ours.len(), apache.len());
    let from_apache = decode_telemetry_avro(&apache).unwrap();
    let from_ours = decode_telemetry_avro(&ours).unwrap();
    assert_eq!(format!("{from_apache:?}"), format!("{from_ours:?}"));
    assert_eq!(from_ours.lot_id.as_deref().map(str::len), Some(200));
}

#[test]
fn alert_encoding_matches_apache_avro() {
    let mut a = alert();
    let apache = apache_avro::to_avro_datum(alert_schema(), alert_value(&a)).unwrap();
    assert_eq!(encode(&a), apache);
    a.ucl = Some(f64::INFINITY);
    a.lcl = None;
    a.lot_id = None;
    a.wafer_id = Some(String::new());
    a.severity = Severity::Minor;
    a.tool_type = ToolType::Rtp;
    a.repeats = 0;
    a.distance_sigma = None;
    a.status = AlertStatus::Open;
    a.window_start = None;
    a.cusum_upper_sigma = None;
    a.cusum_lower_sigma = None;
    let apache = apache_avro::to_avro_datum(alert_schema(), alert_value(&a)).unwrap();
    assert_eq!(encode(&a), apache);
}

#[test]
fn zigzag_varints() {
    let cases: [(i64, &[u8]); 7] = [
        (0, &[0]),
        (-1, &[1]),
        (1, &[2]),
        (-64, &[0x7f]),
        (64, &[0x80, 0x01]),
        (
            i64::MAX,
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        (
            i64::MIN,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
    ];
    for (n, expected) in cases {
        let mut out = Vec::new();
        put_long(&mut out, n);
        assert_eq!(out, expected, "{n}");
    }
}

#[test]
fn enum_indexes_follow_declaration_order() {
    assert_eq!(enum_index(&ToolType::ALL, ToolType::IonImplant), 0);
    assert_eq!(enum_index(&ToolType::ALL, ToolType::Rtp), 1);
    assert_eq!(enum_index(&Severity::ALL, Severity::Minor), 0);
    assert_eq!(enum_index(&Severity::ALL, Severity::Critical), 2);
}
