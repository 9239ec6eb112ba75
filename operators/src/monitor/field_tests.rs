//! The alert fields that say how far out a point is and where it stands in its dedup window
//! (`distance_sigma`, `status`, `window_start`, the CUSUM sums in σ units), each against a
//! number worked out by hand.

use std::collections::BTreeMap;

use super::*;
use spcvm_schemas::Telemetry;

fn record(minute: i64, x: f64) -> Telemetry {
    Telemetry {
        tool_id: "T1".into(),
        tool_type: ToolType::Rtp,
        recipe_id: "R1".into(),
        lot_id: None,
        wafer_id: None,
        event_time: minute * 60_000,
        measurements: BTreeMap::from([("x".to_string(), x)]),
    }
}

/// A monitor of the one chart `spec` (parameter `x`), with dedup window `window_s`.
fn monitor(spec: ChartSpec, window_s: f64) -> SpcMonitor {
    SpcMonitor::new(&MonitorConfig {
        seed_defaults: false,
        dedup: DedupConfig { window_s },
        charts: vec![spec],
    })
    .unwrap()
}

/// Every alert of `xs`, one a minute from minute 0, then of the end of input.
fn alerts(m: &SpcMonitor, xs: &[f64]) -> Vec<Alert> {
    let mut store = KeyedState::default();
    let mut out = vec![];
    for (i, &x) in xs.iter().enumerate() {
        m.process_record(&mut store, &record(i as i64, x), &mut out);
    }
    m.end_all(&mut store, &mut out);
    out
}

fn known(chart_type: ChartType, target: f64, sigma: f64) -> ChartSpec {
    let mut spec = ChartSpec::new("x", chart_type);
    (spec.target, spec.sigma) = (Some(target), Some(sigma));
    spec
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn an_i_chart_alert_opens_a_window_and_its_update_closes_it() {
    let mut spec = known(ChartType::Imr, 1.0, 0.01);
    spec.rules = Some(vec![1]);
    // 1.04 is (1.04 - 1.0) / 0.01 = 4 σ out; the repeat 1.035 is 3.5 σ out.
    let out = alerts(&monitor(spec, 600.0), &[1.0, 1.04, 1.035, 1.0]);
    assert_eq!(out.len(), 2);
    let (open, closed) = (&out[0], &out[1]);
    assert_eq!(open.status, AlertStatus::Open);
    assert!(close(open.distance_sigma, 4.0), "{:?}", open.distance_sigma);
    assert_eq!(open.window_start, Some(60_000), "its own event time");
    assert_eq!(
        (open.cusum_upper_sigma, open.cusum_lower_sigma),
        (None, None)
    );
    assert_eq!(closed.status, AlertStatus::Closed);
    assert_eq!(closed.alert_id, open.alert_id);
    assert!(
        close(closed.distance_sigma, 3.5),
        "{:?}",
        closed.distance_sigma
    );
    assert_eq!(
        closed.window_start,
        Some(60_000),
        "the opening alert's time"
    );
    assert_eq!(closed.event_time, 120_000, "the last repeat's time");
}

#[test]
fn below_the_center_the_distance_is_negative_and_without_dedup_every_alert_is_open() {
    let mut spec = known(ChartType::Imr, 1.0, 0.01);
    spec.rules = Some(vec![1]);
    let out = alerts(&monitor(spec, 0.0), &[0.95, 0.96]);
    let got: Vec<_> = out
        .iter()
        .map(|a| (a.status, a.window_start, a.event_time))
        .collect();
    assert_eq!(
        got,
        [
            (AlertStatus::Open, Some(0), 0),
            (AlertStatus::Open, Some(60_000), 60_000)
        ]
    );
    assert!(close(out[0].distance_sigma, -5.0));
    assert!(close(out[1].distance_sigma, -4.0));
}

#[test]
fn xbar_and_range_distances_use_the_sigma_of_their_statistic() {
    let mut spec = known(ChartType::XbarR, 10.0, 1.0);
    spec.subgroup_size = 5;
    spec.rules = Some(vec![1]);
    spec.spread = Some(true);
    // Subgroup 1: mean 12 against σ/√5 = 0.447214: 2√5 = 4.472136 σ out.
    // Subgroup 2: mean 10, range 6 against R̄ = d2 σ = 2.326 and σ_R = d3 σ = 0.864:
    // (6 - 2.326) / 0.864 = 4.252315 σ out (above D4 R̄ = 4.917).
    let xs = [12.0, 12.0, 12.0, 12.0, 12.0, 7.0, 13.0, 10.0, 10.0, 10.0];
    let out = alerts(&monitor(spec, 0.0), &xs);
    let got: Vec<_> = out
        .iter()
        .map(|a| (a.chart.as_str(), a.rule.as_str()))
        .collect();
    assert_eq!(got, [("xbar", "rule_1"), ("r", "spread_high")]);
    assert!(close(out[0].distance_sigma, 2.0 * 5f64.sqrt()));
    assert!(close(out[1].distance_sigma, (6.0 - 2.326) / 0.864));
}

#[test]
fn an_ewma_distance_uses_the_exact_sigma_at_that_sample() {
    let mut spec = known(ChartType::Ewma, 0.0, 1.0);
    spec.lambda = 0.2;
    // z1 = 0.4, inside; z2 = 0.2 * 4 + 0.8 * 0.4 = 1.12 against
    // σ_z(2) = √(0.2 / 1.8 · (1 - 0.8⁴)) = √(0.5904 / 9) = 0.256125: 4.372863 σ out.
    let out = alerts(&monitor(spec, 0.0), &[2.0, 4.0]);
    assert_eq!(out.len(), 1);
    let sigma_z = (0.5904f64 / 9.0).sqrt();
    assert!(
        close(out[0].distance_sigma, 1.12 / sigma_z),
        "{:?}",
        out[0].distance_sigma
    );
}

#[test]
fn cusum_alerts_carry_both_sums_in_sigma_units() {
    let mut spec = known(ChartType::Cusum, 10.0, 2.0);
    (spec.k, spec.h) = (0.5, 4.0);
    // x = 13: z = 1.5, C+ grows by z - k = 1 a point and crosses h = 4 at the fifth: C+ = 5,
    // C- = max(0, C- - z - k) = 0. The statistic is C+ σ = 10, 5 σ above the center 0.
    let out = alerts(&monitor(spec.clone(), 0.0), &[13.0; 5]);
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!((a.rule.as_str(), a.statistic), ("cusum_upper", 10.0));
    assert!(close(a.cusum_upper_sigma, 5.0));
    assert!(close(a.cusum_lower_sigma, 0.0));
    assert!(close(a.distance_sigma, 5.0));
    // x = 12 twice (C+ = 0.5, 1.0) then 7: z = -1.5, so C+ = max(0, 1 - 2) = 0 and
    // C- = 1 a point: it crosses 4 at the fifth 7, with C- = 5 and C+ = 0.
    let xs = [12.0, 12.0, 7.0, 7.0, 7.0, 7.0, 7.0];
    let out = alerts(&monitor(spec, 0.0), &xs);
    assert_eq!(out.len(), 1);
    let a = &out[0];
    assert_eq!((a.rule.as_str(), a.statistic), ("cusum_lower", -10.0));
    assert!(close(a.cusum_upper_sigma, 0.0));
    assert!(close(a.cusum_lower_sigma, 5.0));
    assert!(close(a.distance_sigma, -5.0));
}

#[test]
fn a_spec_alert_needs_a_known_sigma_for_its_distance() {
    let mut spec = ChartSpec::new("x", ChartType::Imr);
    (spec.spec_lower, spec.spec_upper) = (Some(0.0), Some(10.0));
    // Phase I with no σ configured: no distance. Center = spec midpoint 5.
    let out = alerts(&monitor(spec.clone(), 0.0), &[11.0]);
    assert_eq!(
        (out[0].rule.as_str(), out[0].distance_sigma),
        ("spec_high", None)
    );
    // With σ = 2 configured: (11 - 5) / 2 = 3 σ from the spec center.
    spec.sigma = Some(2.0);
    let out = alerts(&monitor(spec, 0.0), &[11.0]);
    assert!(
        close(out[0].distance_sigma, 3.0),
        "{:?}",
        out[0].distance_sigma
    );
}

#[test]
fn an_ewma_window_closes_with_the_exact_sigma_of_its_last_firing() {
    let mut spec = known(ChartType::Ewma, 0.0, 1.0);
    spec.lambda = 0.2;
    // z2 = 1.12 opens the window; z3 = 0.2 * 4 + 0.8 * 1.12 = 1.696 repeats it, against
    // σ_z(3) = √(1/9 · (1 - 0.8⁶)) = √(0.737856 / 9) = 0.286329: 5.923267 σ out.
    let out = alerts(&monitor(spec, 600.0), &[2.0, 4.0, 4.0]);
    assert_eq!(out.len(), 2);
    let closed = &out[1];
    assert_eq!((closed.status, closed.repeats), (AlertStatus::Closed, 1));
    let sigma_z = (0.737856f64 / 9.0).sqrt();
    assert!(
        close(closed.distance_sigma, 1.696 / sigma_z),
        "{:?}",
        closed.distance_sigma
    );
}
