//! JSON codecs against arbitrary records, and JSON <-> Avro agreement.

mod common;

use proptest::prelude::*;
use spcvm_schemas::{
    Alert, decode_alert_avro, decode_alert_json, decode_telemetry_avro, decode_telemetry_json,
    encode_alert_avro, encode_alert_json, encode_telemetry_avro, encode_telemetry_json,
};

/// JSON keeps every finite value exactly, and NaN as "NaN" (payload not kept).
fn assert_same_via_json(a: &spcvm_schemas::Telemetry, b: &spcvm_schemas::Telemetry) {
    let mut a = a.clone();
    for v in a.measurements.values_mut() {
        if v.is_nan() {
            *v = f64::NAN;
        }
    }
    common::assert_same_telemetry(&a, b);
}

fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.5 }
}

#[test]
fn gateway_json_to_avro_and_back() {
    // A Python gateway's document: null and string non-finite values, no wafer_id.
    let json = br#"{"tool_id": "IMP-07", "tool_type": "ion_implant", "recipe_id": "B11",
        "lot_id": "LOT-1", "event_time": 1732617000123,
        "measurements": {"dose": 5e15, "cup": null, "beam": "-Infinity", "tilt": 0}}"#;
    let t = decode_telemetry_json(json).unwrap();
    let back = decode_telemetry_avro(&encode_telemetry_avro(&t).unwrap()).unwrap();
    common::assert_same_telemetry(&back, &t);
    assert!(back.measurements["cup"].is_nan());
    assert_eq!(back.measurements["beam"], f64::NEG_INFINITY);
    assert_eq!(back.measurements["dose"], 5e15);
    assert_eq!(back.measurements["tilt"], 0.0);
    assert_eq!(back.wafer_id, None);
    assert_eq!(
        String::from_utf8(encode_telemetry_json(&back)).unwrap(),
        r#"{"tool_id":"IMP-07","tool_type":"ion_implant","recipe_id":"B11","lot_id":"LOT-1","wafer_id":null,"event_time":1732617000123,"measurements":{"beam":"-Infinity","cup":"NaN","dose":5000000000000000.0,"tilt":0.0}}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_telemetry_round_trips_through_json(t in common::any_telemetry()) {
        let bytes = encode_telemetry_json(&t);
        prop_assert!(!bytes.ends_with(b"\n"));
        let back = decode_telemetry_json(&bytes).unwrap();
        assert_same_via_json(&t, &back);
        // And JSON -> Avro -> JSON gives the same text.
        let via_avro = decode_telemetry_avro(&encode_telemetry_avro(&back).unwrap()).unwrap();
        prop_assert_eq!(encode_telemetry_json(&via_avro), bytes);
    }

    #[test]
    fn any_finite_alert_round_trips_through_json(a in common::any_alert()) {
        let a = Alert {
            statistic: finite(a.statistic),
            center_line: finite(a.center_line),
            ucl: a.ucl.map(finite),
            lcl: a.lcl.map(finite),
            distance_sigma: a.distance_sigma.map(finite),
            cusum_upper_sigma: a.cusum_upper_sigma.map(finite),
            cusum_lower_sigma: a.cusum_lower_sigma.map(finite),
            ..a
        };
        let back = decode_alert_json(&encode_alert_json(&a)).unwrap();
        common::assert_same_alert(&back, &a);
        let via_avro = decode_alert_avro(&encode_alert_avro(&back).unwrap()).unwrap();
        prop_assert_eq!(encode_alert_json(&via_avro), encode_alert_json(&a));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(decode_telemetry_json(&bytes).is_err());
        prop_assert!(decode_alert_json(&bytes).is_err());
    }
}
