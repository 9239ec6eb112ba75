//! Round trips of triage and actions through JSON and Avro, and bad bytes refused.

use super::*;

fn triage() -> Triage {
    Triage {
        incident_id: "ION-02:1772431200000:ab12".into(),
        version: 2,
        status: IncidentStatus::Open,
        tool_id: "ION-02".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11_30KEV".into(),
        lot_id: Some("LOT-01001".into()),
        wafer_id: None,
        failure_mode: "vacuum_degradation".into(),
        failure_mode_name: "Vacuum degradation".into(),
        severity: Severity::Critical,
        causes: vec![
            RankedCause {
                cause_id: "vacuum_leak".into(),
                name: "Vacuum leak".into(),
                confidence: 0.7,
                evidence: vec!["source pressure rose (cusum_upper)".into()],
            },
            RankedCause {
                cause_id: "pump_failure".into(),
                name: "Pump failure".into(),
                confidence: 0.3,
                evidence: vec![],
            },
        ],
        actions: vec![RankedAction {
            action_id: "leak_check".into(),
            description: "Helium leak check".into(),
            priority: 1,
            owner: "equipment_engineer".into(),
            kind: ActionKind::ToolInhibit,
            cause_id: Some("vacuum_leak".into()),
        }],
        alert_ids: vec!["a1".into(), "a2".into()],
        opened_at: 1_772_431_200_000,
        event_time: 1_772_431_260_000,
    }
}

fn action() -> OcapAction {
    OcapAction {
        action_id: "ION-02:1772431200000:ab12:tool_inhibit".into(),
        incident_id: "ION-02:1772431200000:ab12".into(),
        kind: ActionKind::ToolInhibit,
        tool_id: "ION-02".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11_30KEV".into(),
        lot_id: None,
        wafer_id: Some("W7".into()),
        severity: Severity::Critical,
        reason: "vacuum degradation, most likely a vacuum leak".into(),
        description: "Inhibit the tool until the leak check passes".into(),
        owner: "equipment_engineer".into(),
        event_time: 1_772_431_260_000,
    }
}

#[test]
fn triage_and_actions_round_trip_through_json_and_avro() {
    let t = triage();
    assert_eq!(decode_triage_json(&encode_triage_json(&t)).unwrap(), t);
    let bytes = encode_triage_avro(&t).unwrap();
    assert_eq!(decode_triage_avro(&bytes).unwrap(), t);
    // Deterministic: the same value, the same bytes.
    assert_eq!(encode_triage_avro(&t).unwrap(), bytes);
    let a = action();
    assert_eq!(decode_action_json(&encode_action_json(&a)).unwrap(), a);
    let bytes = encode_action_avro(&a).unwrap();
    assert_eq!(decode_action_avro(&bytes).unwrap(), a);
    // The JSON names the wire values.
    let json = String::from_utf8(encode_triage_json(&t)).unwrap();
    assert!(json.contains(r#""status":"open""#) && json.contains(r#""kind":"tool_inhibit""#));
}

#[test]
fn the_avro_encoding_is_apache_avros_generic_one() {
    // Written by apache-avro from a generic value built field by field from the schema:
    // the same bytes as ours.
    use apache_avro::types::{Record, Value};
    let a = action();
    let schema = crate::avro::action_schema();
    let mut record = Record::new(schema).unwrap();
    record.put("action_id", a.action_id.as_str());
    record.put("incident_id", a.incident_id.as_str());
    record.put("kind", Value::Enum(2, "tool_inhibit".into()));
    record.put("tool_id", "ION-02");
    record.put("tool_type", Value::Enum(0, "ion_implant".into()));
    record.put("recipe_id", "B11_30KEV");
    record.put("lot_id", Value::Union(0, Box::new(Value::Null)));
    record.put(
        "wafer_id",
        Value::Union(1, Box::new(Value::String("W7".into()))),
    );
    record.put("severity", Value::Enum(2, "critical".into()));
    record.put("reason", a.reason.as_str());
    record.put("description", a.description.as_str());
    record.put("owner", "equipment_engineer");
    record.put("event_time", Value::TimestampMillis(a.event_time));
    let expected = apache_avro::to_avro_datum(schema, record).unwrap();
    assert_eq!(encode_action_avro(&a).unwrap(), expected);
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let bytes = encode_triage_avro(&triage()).unwrap();
    for cut in 0..bytes.len() {
        assert!(decode_triage_avro(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_triage_avro(&longer).is_err());
    // An incident id of one byte, then a version, then a status far out of range.
    assert!(decode_triage_avro(&[0x02, b'x', 0xfe, 0xff, 0xff, 0xff, 0x0f]).is_err());
    assert!(decode_triage_json(b"{\"incident_id\": 3}").is_err());
    assert!(decode_action_json(b"[]").is_err());
}
