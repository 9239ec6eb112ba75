//! Telemetry JSON decoding: the borrowing decoder the Kafka runtime uses, the owned decoder
//! the file inputs use, and serde_json on the derived type (the decoder before the scanner,
//! still the fallback). Documents are the shape the end-to-end bench produces: an implanter
//! sample with lot, wafer and five measurements, about 300 bytes, values varying from one
//! document to the next. Run with `cargo bench -p spcvm-schemas --bench decode`.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm_schemas::{
    Telemetry, TelemetryView, ToolType, decode_telemetry_json, decode_telemetry_json_ref,
    encode_telemetry_json,
};

fn documents() -> Vec<Vec<u8>> {
    (0..1000u32)
        .map(|i| {
            let x = f64::from(i);
            let t = Telemetry {
                tool_id: format!("IMP-{:03}", i % 50),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11-5E15-40KEV".into(),
                lot_id: Some(format!("LOT-{:06}", i / 25)),
                wafer_id: Some(format!("W-{:02}", i % 25)),
                event_time: 1_732_617_000_000 + i64::from(i) * 60_000,
                measurements: BTreeMap::from([
                    ("beam_current_mA".into(), 4.25 + (x * 0.37).sin() * 0.02),
                    ("dose_uniformity_pct".into(), 98.5 + (x * 0.11).cos() * 0.3),
                    ("energy_keV".into(), 40.0 + (x * 0.05).sin() * 0.01),
                    ("tilt_deg".into(), 7.0 + (x * 0.7).cos() * 0.003),
                    (
                        "vacuum_torr".into(),
                        1.2e-6 * (1.0 + (x * 0.3).sin() * 0.05),
                    ),
                ]),
            };
            encode_telemetry_json(&t)
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let docs = documents();
    let bytes: usize = docs.iter().map(Vec::len).sum();
    println!(
        "{} documents, {} bytes on average",
        docs.len(),
        bytes / docs.len()
    );
    let mut g = c.benchmark_group("telemetry_json");
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.bench_function("borrowed (decode_telemetry_json_ref)", |b| {
        b.iter(|| {
            for d in &docs {
                let t = decode_telemetry_json_ref(black_box(d)).unwrap();
                black_box(t.measurement_count());
            }
        })
    });
    g.bench_function("owned (decode_telemetry_json)", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(decode_telemetry_json(black_box(d)).unwrap());
            }
        })
    });
    g.bench_function("serde_json::from_slice::<Telemetry>", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(serde_json::from_slice::<Telemetry>(black_box(d)).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
