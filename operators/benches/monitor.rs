//! Throughput of the keyed SPC monitor with every rule enabled, for 1 and 100,000 chart keys.
//!
//! Each record carries four measurements routed to an I-MR and an X-bar/R (n = 5) chart with
//! all eight run rules, an EWMA and a CUSUM, all with spec limits; throughput is counted in
//! measurements. Every tool reports once a minute of event time, and each timed pass continues the clock, so dedup
//! windows open and close as in production. Run with
//! `cargo bench -p spcvm-operators --bench monitor`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm_operators::{ChartSpec, ChartType, KeyedState, MonitorConfig, SpcMonitor, SpcState};
use spcvm_schemas::{Alert, Telemetry, ToolType};

const PARAMS: [(&str, ChartType); 4] = [
    ("p_imr", ChartType::Imr),
    ("p_xbar", ChartType::XbarR),
    ("p_ewma", ChartType::Ewma),
    ("p_cusum", ChartType::Cusum),
];

/// The monitor; `all_rules` enables all eight run rules on the Shewhart charts, otherwise
/// every chart keeps its default rules (1, 2, 5, 6 on Shewhart charts, 1 on EWMA and CUSUM).
fn monitor(all_rules: bool) -> SpcMonitor {
    let charts = PARAMS
        .iter()
        .map(|&(p, ty)| {
            let mut c = ChartSpec::new(p, ty);
            // All eight run rules where they are defined (Shewhart charts); the EWMA and
            // CUSUM keep rule 1: run rules on an autocorrelated statistic fire on most points.
            if all_rules {
                c.rules = Some(if ty.uses_subgroups() || ty == ChartType::Imr {
                    (1..=8).collect()
                } else {
                    vec![1]
                });
            }
            c.spec_lower = Some(-4.5);
            c.spec_upper = Some(4.5);
            c
        })
        .collect();
    let cfg = MonitorConfig {
        seed_defaults: false,
        charts,
        ..MonitorConfig::default()
    };
    SpcMonitor::new(&cfg).expect("valid bench config")
}

/// Deterministic pseudo-normal noise: a sum of four splitmix64 uniforms, scaled to sd 1.
fn noise(state: &mut u64) -> f64 {
    let mut s = 0.0;
    for _ in 0..4 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        s += (z >> 11) as f64 / (1u64 << 53) as f64;
    }
    (s - 2.0) * 3.0f64.sqrt()
}

/// Cadence of one tool: a record per minute of event time.
const CADENCE_MS: i64 = 60_000;

/// `count` records round-robin over `tools` tools, starting at round `first_round`.
fn records(rng: &mut u64, tools: usize, count: usize, first_round: usize) -> Vec<Telemetry> {
    (0..count)
        .map(|i| {
            let measurements: BTreeMap<String, f64> = PARAMS
                .iter()
                .map(|&(p, _)| (p.to_string(), noise(rng)))
                .collect();
            Telemetry {
                tool_id: format!("TOOL-{:06}", i % tools),
                tool_type: ToolType::IonImplant,
                recipe_id: "RCP".to_string(),
                lot_id: None,
                wafer_id: None,
                event_time: 1_770_000_000_000
                    + ((first_round + i / tools) as i64) * CADENCE_MS
                    + (i % tools) as i64,
                measurements,
            }
        })
        .collect()
}

/// Chart state warmed past Phase I, and the batch of records a timed pass replays.
struct Setup {
    store: KeyedState<SpcState>,
    batch: Vec<Telemetry>,
    span: i64,
}

/// Warms every key past the default Phase I (200 points, 25 subgroups of 5) and reports how
/// often rules fire and alerts go out on one pass of the batch.
fn setup(m: &SpcMonitor, label: &str, tools: usize, batch_len: usize) -> Setup {
    let mut store = KeyedState::<SpcState>::default();
    let mut sink: Vec<Alert> = Vec::new();
    let mut rng = 7u64;
    let warm_rounds = 250;
    for round in 0..warm_rounds {
        for r in records(&mut rng, tools, tools, round) {
            m.process_record(&mut store, &r, &mut sink);
            sink.clear();
        }
    }
    let batch = records(&mut rng, tools, batch_len, warm_rounds);
    let span = (batch.len() / tools) as i64 * CADENCE_MS;
    let fired = |st: &KeyedState<SpcState>| -> u64 {
        st.iter()
            .map(|(_, s)| s.chart.fired.iter().map(|&n| u64::from(n)).sum::<u64>())
            .sum()
    };
    let mut probe = store.clone();
    let before = fired(&probe);
    for r in &batch {
        m.process_record(&mut probe, r, &mut sink);
    }
    println!(
        "{label}: {} chart states (at most {} bytes each); per pass of {} measurements: \
         {} rule firings, {} alerts",
        store.len(),
        store
            .iter()
            .map(|(_, s)| s.memory_bytes())
            .max()
            .unwrap_or(0),
        batch.len() * PARAMS.len(),
        fired(&probe) - before,
        sink.len(),
    );
    Setup { store, batch, span }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("spc_monitor");
    for (rules, keys) in [
        ("all_rules", 1usize),
        ("all_rules", 100_000),
        ("default_rules", 1),
        ("default_rules", 100_000),
    ] {
        let m = monitor(rules == "all_rules");
        let tools = keys.div_ceil(PARAMS.len());
        // One key: 2,000 records (about 600 KB), which stay in cache as a freshly decoded
        // record would. 100,000 keys: two records per tool, so input and state both miss.
        let batch_len = (tools * 2).max(2_000);
        let label = format!("{rules}/{keys}_keys");
        // Built on first use, so a filtered run does not pay for the other cases.
        let mut state: Option<Setup> = None;
        let mut sink: Vec<Alert> = Vec::new();
        group.throughput(Throughput::Elements((batch_len * PARAMS.len()) as u64));
        group.bench_function(&label, |b| {
            let st = state.get_or_insert_with(|| setup(&m, &label, tools, batch_len));
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: move the batch forward in event time.
                    for r in st.batch.iter_mut() {
                        r.event_time += st.span;
                    }
                    let start = Instant::now();
                    for r in &st.batch {
                        m.process_record(&mut st.store, r, &mut sink);
                    }
                    black_box(sink.len());
                    elapsed += start.elapsed();
                    sink.clear();
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
