//! The alert schema's evolution: `tests/fixtures/alert-v1.avsc` is `schemas/avro/alert.avsc`
//! as it was before `distance_sigma`, `status`, `window_start` and the CUSUM sums in sigma
//! units were added. Both directions go through apache-avro's schema resolution: a v1 datum
//! read with the current schema (backward compatibility: the new fields take their
//! defaults), and a current datum read with v1 (forward compatibility: an old reader skips
//! the new fields).

mod common;

use apache_avro::Schema;
use apache_avro::types::Value;
use spcvm_schemas::{AlertStatus, alert_schema, decode_alert_avro_with_writer, encode_alert_avro};

fn v1() -> Schema {
    Schema::parse_str(include_str!("fixtures/alert-v1.avsc")).unwrap()
}

/// The value of `field` in a decoded record.
fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    match record {
        Value::Record(fields) => &fields.iter().find(|(n, _)| n == name).unwrap().1,
        other => panic!("not a record: {other:?}"),
    }
}

/// A v1 datum of `common::alert()` with `repeats`, written by apache-avro from v1.
fn v1_datum(repeats: u32) -> Vec<u8> {
    let a = common::alert();
    let s = |v: &str| Value::String(v.to_owned());
    let value = Value::Record(vec![
        ("alert_id".into(), s(&a.alert_id)),
        ("tool_id".into(), s(&a.tool_id)),
        ("tool_type".into(), Value::Enum(1, "rtp".into())),
        ("recipe_id".into(), s(&a.recipe_id)),
        (
            "lot_id".into(),
            Value::Union(1, Box::new(s("LOT-2024-0042"))),
        ),
        ("wafer_id".into(), Value::Union(0, Box::new(Value::Null))),
        ("parameter".into(), s(&a.parameter)),
        ("chart".into(), s(&a.chart)),
        ("rule".into(), s(&a.rule)),
        ("severity".into(), Value::Enum(1, "major".into())),
        ("statistic".into(), Value::Double(a.statistic)),
        ("center_line".into(), Value::Double(a.center_line)),
        (
            "ucl".into(),
            Value::Union(1, Box::new(Value::Double(1058.25))),
        ),
        (
            "lcl".into(),
            Value::Union(1, Box::new(Value::Double(1041.75))),
        ),
        ("event_time".into(), Value::TimestampMillis(a.event_time)),
        ("message".into(), s(&a.message)),
        ("repeats".into(), Value::Long(i64::from(repeats))),
    ]);
    apache_avro::to_avro_datum(&v1(), value).unwrap()
}

#[test]
fn the_new_schema_resolves_against_v1_both_ways() {
    // Resolution itself (apache-avro's), independent of our value mapping.
    let new_reads_old =
        apache_avro::from_avro_datum(&v1(), &mut &v1_datum(0)[..], Some(alert_schema())).unwrap();
    for name in [
        "distance_sigma",
        "window_start",
        "cusum_upper_sigma",
        "cusum_lower_sigma",
        "status",
    ] {
        assert_eq!(
            field(&new_reads_old, name),
            &Value::Union(0, Box::new(Value::Null)),
            "{name} takes its default"
        );
    }
    let new = encode_alert_avro(&common::alert()).unwrap();
    let old_reads_new =
        apache_avro::from_avro_datum(alert_schema(), &mut &new[..], Some(&v1())).unwrap();
    let Value::Record(fields) = &old_reads_new else {
        panic!("not a record")
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 17, "{names:?}");
    assert!(!names.contains(&"status"));
    assert_eq!(
        field(&old_reads_new, "repeats"),
        &Value::Long(4_000_000_000)
    );
    assert_eq!(field(&old_reads_new, "statistic"), &Value::Double(1061.5));
    assert_eq!(
        field(&old_reads_new, "event_time"),
        &Value::TimestampMillis(1_732_617_000_999)
    );
}

#[test]
fn a_v1_alert_decodes_with_status_from_repeats_and_no_new_values() {
    let opening = decode_alert_avro_with_writer(&v1_datum(0), &v1()).unwrap();
    assert_eq!(opening.status, AlertStatus::Open);
    assert_eq!(opening.repeats, 0);
    assert_eq!((opening.distance_sigma, opening.window_start), (None, None));
    assert_eq!(
        (opening.cusum_upper_sigma, opening.cusum_lower_sigma),
        (None, None)
    );
    assert_eq!(opening.lot_id.as_deref(), Some("LOT-2024-0042"));
    assert_eq!((opening.ucl, opening.lcl), (Some(1058.25), Some(1041.75)));
    let closing = decode_alert_avro_with_writer(&v1_datum(5), &v1()).unwrap();
    assert_eq!((closing.status, closing.repeats), (AlertStatus::Closed, 5));
}

#[test]
fn a_new_alert_round_trips_with_every_new_field() {
    let mut a = common::alert();
    a.chart = "cusum".into();
    a.distance_sigma = Some(-5.5);
    a.cusum_upper_sigma = Some(0.25);
    a.cusum_lower_sigma = Some(5.5);
    a.window_start = Some(-1);
    let bytes = encode_alert_avro(&a).unwrap();
    let back = decode_alert_avro_with_writer(&bytes, alert_schema()).unwrap();
    assert_eq!(back, a);
    // Written by apache-avro from the schema: the same bytes as ours.
    let reread = apache_avro::from_avro_datum(alert_schema(), &mut &bytes[..], None).unwrap();
    assert_eq!(
        apache_avro::to_avro_datum(alert_schema(), reread).unwrap(),
        bytes
    );
}
