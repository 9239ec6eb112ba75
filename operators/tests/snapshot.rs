//! State is a plain value: snapshotting and restoring every chart at any point gives the same
//! alerts as an uninterrupted run, and interleaving other keys never changes one key's alerts.
//! Runs are compared three ways, arroyo-style: straight, with a checkpoint, and restored.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spcvm_operators::{ChartKey, KeyedState, MonitorConfig, SpcMonitor, SpcState};
use spcvm_schemas::{Alert, Telemetry, ToolType};

const TOOLS: [(&str, ToolType); 3] = [
    ("ION-01", ToolType::IonImplant),
    ("ION-02", ToolType::IonImplant),
    ("RTP-01", ToolType::Rtp),
];

/// One generated record: tool index, recipe index, a shift in sigma, and per-parameter noise
/// (None = parameter missing, Some(None) = NaN).
#[derive(Debug, Clone)]
struct Gen {
    tool: usize,
    recipe: usize,
    shift: f64,
    noise: Vec<Option<Option<f64>>>,
}

fn gen_record() -> impl Strategy<Value = Gen> {
    (
        0..TOOLS.len(),
        0..2usize,
        prop_oneof![4 => Just(0.0), 1 => -3.0..3.0f64],
        prop::collection::vec(
            prop_oneof![
                20 => (-3.0..3.0f64).prop_map(|z| Some(Some(z))),
                1 => Just(Some(None)),
                1 => Just(None),
            ],
            5,
        ),
    )
        .prop_map(|(tool, recipe, shift, noise)| Gen {
            tool,
            recipe,
            shift,
            noise,
        })
}

fn telemetry(i: usize, g: &Gen) -> Telemetry {
    let (tool_id, tool_type) = TOOLS[g.tool];
    let params: [(&str, f64, f64); 5] = match tool_type {
        ToolType::IonImplant => [
            ("beam_current_mA", 1.0, 0.01),
            ("dose_uniformity_pct", 95.0, 0.4),
            ("source_pressure_mtorr", 2.3e-5, 1e-7),
            ("analyzer_field_gauss", 1520.0, 1.5),
            ("unwatched", 0.0, 1.0),
        ],
        ToolType::Rtp => [
            ("ramp_tracking_error_C", 3.0, 0.8),
            ("overshoot_pct", 1.8, 0.3),
            ("lamp_power_pct", 87.5, 0.5),
            ("emissivity", 0.68, 0.01),
            ("gas_flow_deviation_sccm", 0.0, 1.0),
        ],
    };
    let mut measurements = BTreeMap::new();
    for ((name, mean, sd), noise) in params.iter().zip(&g.noise) {
        match noise {
            None => {}
            Some(None) => {
                measurements.insert(name.to_string(), f64::NAN);
            }
            Some(Some(z)) => {
                measurements.insert(name.to_string(), mean + sd * (z + g.shift));
            }
        }
    }
    Telemetry {
        tool_id: tool_id.to_string(),
        tool_type,
        recipe_id: format!("RCP-{}", g.recipe),
        lot_id: Some(format!("LOT-{}", i / 25)),
        wafer_id: Some(format!("W{:02}", i % 25)),
        event_time: 1_770_000_000_000 + 60_000 * i as i64,
        measurements,
    }
}

fn monitor() -> SpcMonitor {
    let mut cfg = MonitorConfig::default();
    // Short baselines and a short dedup window so that short runs exercise every phase.
    cfg.dedup.window_s = 300.0;
    cfg.charts = spcvm_operators::defaults::seed_charts()
        .into_iter()
        .map(|mut c| {
            c.baseline = Some(if c.chart_type.uses_subgroups() { 3 } else { 6 });
            c.rules = Some(if c.chart_type == spcvm_operators::ChartType::Cusum {
                vec![1]
            } else {
                (1..=8).collect()
            });
            c
        })
        .collect();
    SpcMonitor::new(&cfg).unwrap()
}

fn snapshot(store: &KeyedState<SpcState>) -> String {
    let entries: Vec<(ChartKey, &SpcState)> = store
        .sorted()
        .into_iter()
        .map(|(k, s)| (k.to_owned_key(), s))
        .collect();
    serde_json::to_string(&entries).unwrap()
}

fn restore(json: &str) -> KeyedState<SpcState> {
    let entries: Vec<(ChartKey, SpcState)> = serde_json::from_str(json).unwrap();
    let mut store = KeyedState::default();
    for (k, s) in entries {
        store.insert(k.as_ref(), s);
    }
    store
}

fn run(m: &SpcMonitor, records: &[Telemetry], store: &mut KeyedState<SpcState>) -> Vec<Alert> {
    let mut out = vec![];
    for r in records {
        m.process_record(store, r, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn restore_at_any_point_gives_the_same_alerts(
        gens in prop::collection::vec(gen_record(), 1..400),
        cut in 0.0..1.0f64,
    ) {
        let m = monitor();
        let records: Vec<Telemetry> = gens.iter().enumerate().map(|(i, g)| telemetry(i, g)).collect();
        let cut = ((records.len() as f64) * cut) as usize;

        let mut straight_store = KeyedState::default();
        let mut straight = run(&m, &records, &mut straight_store);
        m.end_all(&mut straight_store, &mut straight);

        // With a checkpoint taken mid-run (the run itself continues).
        let mut ck_store = KeyedState::default();
        let mut checkpointed = run(&m, &records[..cut], &mut ck_store);
        let snap = snapshot(&ck_store);
        checkpointed.extend(run(&m, &records[cut..], &mut ck_store));
        m.end_all(&mut ck_store, &mut checkpointed);

        // Restored from that checkpoint into a fresh store.
        let mut restored = run(&m, &records[..cut], &mut KeyedState::default());
        let mut fresh = restore(&snap);
        restored.extend(run(&m, &records[cut..], &mut fresh));
        m.end_all(&mut fresh, &mut restored);

        prop_assert_eq!(&straight, &checkpointed);
        prop_assert_eq!(&straight, &restored);
        prop_assert_eq!(snapshot(&straight_store), snapshot(&fresh));
    }

    #[test]
    fn other_keys_never_change_a_keys_alerts(
        gens in prop::collection::vec(gen_record(), 1..400),
    ) {
        let m = monitor();
        let records: Vec<Telemetry> = gens.iter().enumerate().map(|(i, g)| telemetry(i, g)).collect();
        let is_key = |r: &Telemetry| r.tool_id == "ION-01" && r.recipe_id == "RCP-0";
        let alone: Vec<Telemetry> = records.iter().filter(|r| is_key(r)).cloned().collect();
        let mut s1 = KeyedState::default();
        let mut mixed = run(&m, &records, &mut s1);
        m.end_all(&mut s1, &mut mixed);
        let mut s2 = KeyedState::default();
        let mut solo = run(&m, &alone, &mut s2);
        m.end_all(&mut s2, &mut solo);
        let mixed: Vec<Alert> = mixed.into_iter().filter(|a| a.tool_id == "ION-01" && a.recipe_id == "RCP-0").collect();
        prop_assert_eq!(mixed, solo);
    }
}

#[test]
fn generated_runs_do_raise_alerts() {
    // Guard against a vacuous property: a shifted stream must alert.
    let m = monitor();
    let records: Vec<Telemetry> = (0..200)
        .map(|i| {
            telemetry(
                i,
                &Gen {
                    tool: 0,
                    recipe: 0,
                    shift: if i > 100 { 2.5 } else { 0.0 },
                    noise: vec![Some(Some(((i * 7919) % 13) as f64 / 13.0 - 0.5)); 5],
                },
            )
        })
        .collect();
    let alerts = run(&m, &records, &mut KeyedState::default());
    assert!(
        alerts.iter().any(|a| a.parameter == "beam_current_mA"),
        "{alerts:?}"
    );
}
