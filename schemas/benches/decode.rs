//! Telemetry JSON decoding: the borrowing decoder the runtimes and `spcvm backtest` use
//! (`decode_telemetry_json_ref`), the owned decoder (`decode_telemetry_json`), and serde_json
//! on the derived type (the decoder before the scanner, still the fallback and the referee).
//! Documents: `benches/documents/`, with full-precision and five-digit values. Run with
//! `cargo bench -p spcvm-schemas --bench decode`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm_schemas::{Telemetry, TelemetryView, decode_telemetry_json, decode_telemetry_json_ref};

mod documents;
use documents::{Values, documents};

fn decode(c: &mut Criterion) {
    for (label, values) in [("full", Values::Full), ("short", Values::Short)] {
        let docs = documents(1000, values);
        let bytes: usize = docs.iter().map(Vec::len).sum();
        println!(
            "{label}: {} documents, {} bytes on average",
            docs.len(),
            bytes / docs.len()
        );
        let mut g = c.benchmark_group(format!("telemetry_json_{label}"));
        g.throughput(Throughput::Elements(docs.len() as u64));
        g.bench_function("borrowed", |b| {
            b.iter(|| {
                for d in &docs {
                    let t = decode_telemetry_json_ref(black_box(d)).unwrap();
                    black_box(t.measurement_count());
                }
            })
        });
        g.bench_function("owned", |b| {
            b.iter(|| {
                for d in &docs {
                    black_box(decode_telemetry_json(black_box(d)).unwrap());
                }
            })
        });
        g.bench_function("serde_json", |b| {
            b.iter(|| {
                for d in &docs {
                    black_box(serde_json::from_slice::<Telemetry>(black_box(d)).unwrap());
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
