//! Throughput of the keyed SPC monitor with every rule enabled, for 1 and 100,000 chart keys.
//!
//! Each record carries four measurements routed to an I-MR, an X-bar/R (n = 5), an EWMA (all
//! eight rules on each) and a CUSUM chart; throughput is counted in measurements. Run with
//! `cargo bench -p spcvm-operators --bench monitor`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use spcvm_operators::{ChartSpec, ChartType, KeyedState, MonitorConfig, SpcMonitor, SpcState};
use spcvm_schemas::{Alert, Telemetry, ToolType};

const PARAMS: [(&str, ChartType); 4] = [
    ("p_imr", ChartType::Imr),
    ("p_xbar", ChartType::XbarR),
    ("p_ewma", ChartType::Ewma),
    ("p_cusum", ChartType::Cusum),
];

fn monitor() -> SpcMonitor {
    let charts = PARAMS
        .iter()
        .map(|&(p, ty)| {
            let mut c = ChartSpec::new(p, ty);
            c.rules = Some(if ty == ChartType::Cusum {
                vec![1]
            } else {
                (1..=8).collect()
            });
            c.baseline = Some(if ty.uses_subgroups() { 5 } else { 20 });
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

/// Deterministic pseudo-normal noise (sum of uniforms) so the charts see realistic data.
fn noise(state: &mut u64) -> f64 {
    let mut s = 0.0;
    for _ in 0..4 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        s += (*state >> 11) as f64 / (1u64 << 53) as f64;
    }
    (s - 2.0) * 1.732
}

fn records(tools: usize, count: usize) -> Vec<Telemetry> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|i| {
            let measurements: BTreeMap<String, f64> = PARAMS
                .iter()
                .map(|&(p, _)| (p.to_string(), noise(&mut rng)))
                .collect();
            Telemetry {
                tool_id: format!("TOOL-{:06}", i % tools),
                tool_type: ToolType::IonImplant,
                recipe_id: "RCP".to_string(),
                lot_id: None,
                wafer_id: None,
                event_time: 1_770_000_000_000 + i as i64 * 1000,
                measurements,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let m = monitor();
    let mut group = c.benchmark_group("spc_monitor");
    for &keys in &[1usize, 100_000] {
        let tools = keys.div_ceil(PARAMS.len());
        // Warm every key past Phase I, then measure steady-state monitoring.
        let mut store = KeyedState::<SpcState>::default();
        let mut sink: Vec<Alert> = Vec::new();
        for r in records(tools, tools * 40) {
            m.process_record(&mut store, &r, &mut sink);
            sink.clear();
        }
        let batch = records(tools, (tools * 2).max(20_000));
        group.throughput(Throughput::Elements((batch.len() * PARAMS.len()) as u64));
        group.bench_function(format!("{keys}_keys"), |b| {
            b.iter_batched_ref(
                || (),
                |_| {
                    for r in &batch {
                        m.process_record(&mut store, r, &mut sink);
                    }
                    black_box(sink.len());
                    sink.clear();
                },
                BatchSize::PerIteration,
            )
        });
        println!(
            "{keys} keys: {} chart states, {} bytes each (in memory, plus dedup windows)",
            store.len(),
            std::mem::size_of::<SpcState>()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
