//! The fab simulator's hot path (`spcvm simulate`): the generator the CLI uses
//! ([`Generator`]) alone, and through [`generate_into`] into the CLI's own writers (JSON
//! lines through the writer thread the CLI writes files with, [`WriteBehind`]; an Avro
//! container) with the bytes thrown away (`io::sink`), so the figures are the generator
//! and the encoders, not the disk. A reference case encodes the same records with
//! serde_json on the derived type (the encoder before `TelemetryJsonWriter`).
//!
//! ```sh
//! cargo bench -p spcvm --bench simulate
//! ```
//!
//! One iteration is the whole of `deploy/scenarios/mixed_fab.toml` (8 tools x 1,500
//! samples = 12,000 records, five faults); throughput is in records.

use std::hint::black_box;
use std::io::{Sink, Write};
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm::simulate::{
    AvroFile, FILE_BUFFER_BYTES, Generator, JsonLines, Pacing, Scenario, SystemClock, WriteBehind,
    generate_into, scenario,
};

fn mixed_fab() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/scenarios/mixed_fab.toml");
    scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn simulate(c: &mut Criterion) {
    let scenario = mixed_fab();
    let records = Generator::new(&scenario).len();
    let mut g = c.benchmark_group("simulate");
    g.throughput(Throughput::Elements(records));
    g.bench_function("generate", |b| {
        b.iter(|| {
            let mut generator = Generator::new(&scenario);
            let mut sum = 0.0;
            while let Some(record) = generator.next_record() {
                sum += record.event_time as f64;
            }
            black_box(sum)
        })
    });
    g.bench_function("jsonl", |b| {
        b.iter(|| {
            let out = WriteBehind::new(std::io::sink(), FILE_BUFFER_BYTES)
                .unwrap_or_else(|e| panic!("{e}"));
            let mut sink = JsonLines::new(out, Path::new("sink"));
            let n = generate_into(
                Generator::new(&scenario),
                &mut sink,
                None::<Pacing<'_, SystemClock>>,
                &mut |_| {},
            );
            black_box(n.unwrap_or_default())
        })
    });
    g.bench_function("avro", |b| {
        b.iter(|| {
            let mut sink = AvroFile::<Sink>::new(std::io::sink(), Path::new("sink"))
                .unwrap_or_else(|e| panic!("{e}"));
            let n = generate_into(
                Generator::new(&scenario),
                &mut sink,
                None::<Pacing<'_, SystemClock>>,
                &mut |_| {},
            );
            black_box(n.unwrap_or_default())
        })
    });
    g.bench_function("jsonl_serde_json_reference", |b| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::sink());
        b.iter(|| {
            let mut generator = Generator::new(&scenario);
            while let Some(record) = generator.next_record() {
                let line = serde_json::to_vec(record).unwrap_or_default();
                let _ = out.write_all(&line).and_then(|()| out.write_all(b"\n"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, simulate);
criterion_main!(benches);
