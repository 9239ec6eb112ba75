//! State size: at most 512 bytes per chart (`SpcState::memory_bytes`, open dedup windows with
//! their lot and wafer ids included) in the realistic worst case: charts with all eight run
//! rules, spec limits and a critical threshold under a sustained shift or a drift, which keep
//! several rules firing (and their dedup windows open) at once.

use std::collections::BTreeMap;

use spcvm_operators::{ChartSpec, ChartType, KeyedState, MonitorConfig, SpcMonitor, SpcState};
use spcvm_schemas::{Telemetry, ToolType};

// The bench's workload: its noise generator.
#[path = "../benches/workload/mod.rs"]
mod workload;
use workload::noise;

const PARAMS: [(&str, ChartType); 5] = [
    ("p_imr", ChartType::Imr),
    ("p_xbar_r", ChartType::XbarR),
    ("p_xbar_s", ChartType::XbarS),
    ("p_ewma", ChartType::Ewma),
    ("p_cusum", ChartType::Cusum),
];

/// The bench's charts (all eight run rules on the Shewhart charts, rule 1 on the EWMA and
/// the CUSUM, spec limits at ±4.5 sigma, spread charts at their defaults), with a critical threshold too when
/// `critical` (25 % of a center at 10: ±2.5 sigma of one sample, so that it fires along with
/// the rules during a shift).
fn monitor(critical: bool) -> SpcMonitor {
    let charts = PARAMS
        .iter()
        .map(|&(p, ty)| {
            let mut c = ChartSpec::new(p, ty);
            c.rules = Some(if ty.uses_subgroups() || ty == ChartType::Imr {
                (1..=8).collect()
            } else {
                vec![1]
            });
            c.baseline = Some(if ty.uses_subgroups() { 25 } else { 100 });
            c.spec_lower = Some(10.0 - 4.5);
            c.spec_upper = Some(10.0 + 4.5);
            c.critical_pct = critical.then_some(25.0);
            c
        })
        .collect();
    SpcMonitor::new(&MonitorConfig {
        seed_defaults: false,
        charts,
        ..MonitorConfig::default()
    })
    .unwrap()
}

/// Runs 3,000 one-minute samples (a 30-minute dedup window holds 30), in control for the
/// first 1,000, then shifted by `shift(i)` sigma; returns the largest state and the most
/// open windows seen on any chart.
fn run(critical: bool, shift: impl Fn(i64) -> f64) -> (usize, usize) {
    let m = monitor(critical);
    let mut store = KeyedState::<SpcState>::default();
    let mut out = vec![];
    let mut rng = 11u64;
    let (mut bytes, mut windows) = (0, 0);
    for i in 0..3000i64 {
        let s = if i >= 1000 { shift(i - 1000) } else { 0.0 };
        let measurements: BTreeMap<String, f64> = PARAMS
            .iter()
            .map(|&(p, _)| (p.to_string(), 10.0 + noise(&mut rng) + s))
            .collect();
        let r = Telemetry {
            tool_id: "ION-07".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: "B11_30KEV".into(),
            lot_id: Some(format!("LOT-{:05}", i / 25)),
            wafer_id: Some(format!("W{:02}", i % 25)),
            event_time: 1_770_000_000_000 + i * 60_000,
            measurements,
        };
        m.process_record(&mut store, &r, &mut out);
        for (_, st) in store.iter() {
            bytes = bytes.max(st.memory_bytes());
            windows = windows.max(st.dedup().open_windows());
        }
    }
    (bytes, windows)
}

/// The shift in sigma at each sample after the in-control start.
type Shift = Box<dyn Fn(i64) -> f64>;

#[test]
fn chart_state_stays_within_512_bytes_under_sustained_shifts_and_drifts() {
    let mut worst = (0, 0);
    for critical in [false, true] {
        let mut scenarios: Vec<(String, Shift)> = vec![];
        for shift in [
            0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, -1.0, -2.0, -3.0,
        ] {
            scenarios.push((format!("shift {shift:+}"), Box::new(move |_| shift)));
        }
        scenarios.push(("drift".into(), Box::new(|i| 0.02 * i as f64)));
        for (name, shift) in scenarios {
            let (bytes, windows) = run(critical, shift);
            println!("critical {critical}, {name}: {bytes} bytes, {windows} windows");
            worst = worst.max((bytes, windows));
        }
    }
    assert!(
        worst.1 >= 6,
        "the scenarios keep several windows open: {worst:?}"
    );
    assert!(worst.0 <= 512, "{} bytes with {} windows", worst.0, worst.1);
}

/// A square wave of ±3 sigma, ten samples each way, fires nearly every rule on both sides of
/// the center line: an adversarial case rather than a realistic one. Within 512 bytes on the
/// bench's charts; a critical threshold at ±2.5 sigma adds two more open windows.
#[test]
fn chart_state_under_an_oscillation_firing_both_sides() {
    let square = |i: i64| if (i / 10) % 2 == 0 { 3.0 } else { -3.0 };
    let (bytes, windows) = run(false, square);
    println!("oscillation: {bytes} bytes, {windows} windows");
    assert!(bytes <= 512, "{bytes} bytes with {windows} windows");
    let (bytes, windows) = run(true, square);
    println!("oscillation, critical threshold: {bytes} bytes, {windows} windows");
    assert!(bytes <= 576, "{bytes} bytes with {windows} windows");
}
