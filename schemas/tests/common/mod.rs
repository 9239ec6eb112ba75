//! Shared fixtures and proptest strategies for the integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use spcvm_schemas::{Alert, AlertStatus, Severity, Telemetry, ToolType};

/// A realistic implant sample with one NaN reading.
pub fn telemetry() -> Telemetry {
    Telemetry {
        tool_id: "IMP-07".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11-5E15-40KEV".into(),
        lot_id: Some("LOT-2024-0042".into()),
        wafer_id: Some("W13".into()),
        event_time: 1_732_617_000_123,
        measurements: BTreeMap::from([
            ("beam_current_ma".to_owned(), 4.25),
            ("dose_atoms_cm2".to_owned(), 5.0e15),
            ("energy_kev".to_owned(), 40.0),
            ("faraday_cup_na".to_owned(), f64::NAN),
            ("tilt_deg".to_owned(), -0.1),
        ]),
    }
}

/// A realistic RTP alert.
pub fn alert() -> Alert {
    Alert {
        alert_id: "9a4e1f6c-3b2d-5e8f-a1c0-7d6b5a4e3f21".into(),
        tool_id: "RTP-02".into(),
        tool_type: ToolType::Rtp,
        recipe_id: "SPIKE-1050".into(),
        lot_id: Some("LOT-2024-0042".into()),
        wafer_id: None,
        parameter: "peak_temp_c".into(),
        chart: "ewma".into(),
        rule: "rule_1".into(),
        severity: Severity::Major,
        statistic: 1061.5,
        center_line: 1050.0,
        ucl: Some(1058.25),
        lcl: Some(1041.75),
        event_time: 1_732_617_000_999,
        message: "peak_temp_c EWMA 1061.5 above UCL 1058.25".into(),
        repeats: 4_000_000_000,
        distance_sigma: Some(4.18),
        status: AlertStatus::Closed,
        window_start: Some(1_732_615_200_000),
        cusum_upper_sigma: None,
        cusum_lower_sigma: None,
    }
}

/// Bitwise equality of two f64 (so NaN == NaN, and NaN payloads must match).
pub fn same_bits(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

/// Telemetry equality where measurements compare bitwise.
pub fn assert_same_telemetry(a: &Telemetry, b: &Telemetry) {
    let strip = |t: &Telemetry| Telemetry {
        measurements: BTreeMap::new(),
        ..t.clone()
    };
    assert_eq!(strip(a), strip(b));
    assert_eq!(
        a.measurements.keys().collect::<Vec<_>>(),
        b.measurements.keys().collect::<Vec<_>>()
    );
    for (name, &x) in &a.measurements {
        let y = b.measurements[name];
        assert!(same_bits(x, y), "measurement {name}: {x:?} vs {y:?}");
    }
}

/// Alert equality where the doubles compare bitwise.
pub fn assert_same_alert(a: &Alert, b: &Alert) {
    let strip = |x: &Alert| Alert {
        statistic: 0.0,
        center_line: 0.0,
        ucl: None,
        lcl: None,
        distance_sigma: None,
        cusum_upper_sigma: None,
        cusum_lower_sigma: None,
        ..x.clone()
    };
    assert_eq!(strip(a), strip(b));
    assert!(same_bits(a.statistic, b.statistic));
    assert!(same_bits(a.center_line, b.center_line));
    let bits = |x: Option<f64>| x.map(f64::to_bits);
    assert_eq!(bits(a.ucl), bits(b.ucl));
    assert_eq!(bits(a.lcl), bits(b.lcl));
    assert_eq!(bits(a.distance_sigma), bits(b.distance_sigma));
    assert_eq!(bits(a.cusum_upper_sigma), bits(b.cusum_upper_sigma));
    assert_eq!(bits(a.cusum_lower_sigma), bits(b.cusum_lower_sigma));
}

/// Any f64, including NaN (with arbitrary payload), infinities, -0.0 and subnormals.
pub fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        -1.0e6..1.0e6f64,
    ]
}

pub fn tool_type() -> impl Strategy<Value = ToolType> {
    prop_oneof![Just(ToolType::IonImplant), Just(ToolType::Rtp)]
}

pub fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Minor),
        Just(Severity::Major),
        Just(Severity::Critical)
    ]
}

pub fn any_telemetry() -> impl Strategy<Value = Telemetry> {
    (
        "\\PC{0,12}",
        tool_type(),
        "\\PC{0,12}",
        proptest::option::of("\\PC{0,8}"),
        proptest::option::of("\\PC{0,8}"),
        any::<i64>(),
        proptest::collection::btree_map("\\PC{0,10}", any_f64(), 0..12),
    )
        .prop_map(
            |(tool_id, tool_type, recipe_id, lot_id, wafer_id, event_time, measurements)| {
                Telemetry {
                    tool_id,
                    tool_type,
                    recipe_id,
                    lot_id,
                    wafer_id,
                    event_time,
                    measurements,
                }
            },
        )
}

pub fn any_alert() -> impl Strategy<Value = Alert> {
    (
        (
            "\\PC{0,12}",
            "\\PC{0,12}",
            tool_type(),
            "\\PC{0,12}",
            proptest::option::of("\\PC{0,8}"),
            proptest::option::of("\\PC{0,8}"),
            "\\PC{0,8}",
            "[a-z]{1,6}",
            "[a-z_0-9]{1,12}",
        ),
        (
            severity(),
            any_f64(),
            any_f64(),
            proptest::option::of(any_f64()),
            proptest::option::of(any_f64()),
            any::<i64>(),
            "\\PC{0,20}",
            any::<u32>(),
        ),
        (
            proptest::option::of(any_f64()),
            prop_oneof![Just(AlertStatus::Open), Just(AlertStatus::Closed)],
            proptest::option::of(any::<i64>()),
            proptest::option::of(any_f64()),
            proptest::option::of(any_f64()),
        ),
    )
        .prop_map(
            |(
                (alert_id, tool_id, tool_type, recipe_id, lot_id, wafer_id, parameter, chart, rule),
                (severity, statistic, center_line, ucl, lcl, event_time, message, repeats),
                (distance_sigma, status, window_start, cusum_upper_sigma, cusum_lower_sigma),
            )| Alert {
                alert_id,
                tool_id,
                tool_type,
                recipe_id,
                lot_id,
                wafer_id,
                parameter,
                chart,
                rule,
                severity,
                statistic,
                center_line,
                ucl,
                lcl,
                event_time,
                message,
                repeats,
                distance_sigma,
                status,
                window_start,
                cusum_upper_sigma,
                cusum_lower_sigma,
            },
        )
}
