//! Throughput of the keyed SPC monitor with every rule enabled, for 1 and 100,000 chart keys.
//!
//! Each record carries four measurements routed to an I-MR and an X-bar/R (n = 5) chart with
//! all eight run rules, an EWMA and a CUSUM, all with spec limits; throughput is counted in
//! measurements. Every tool reports once a minute of event time, and each timed pass continues
//! the clock with fresh values, so dedup windows open and close as in production. The tools
//! report round robin, except in the `shuffled` cases, where each round visits them in a
//! fixed pseudo-random order (their chart states then lie anywhere in memory, not one after
//! the other); the `batched` cases feed the pass through `SpcMonitor::process_records`, which
//! prefetches the chart states of the records a few places ahead, as the Kafka runtime's
//! partition tasks do once a partition holds 4,096 charts or more. The
//! input is a batch of owned `Telemetry` records (strings and a map on the heap, read from
//! memory for 100,000 keys) except in the `decoded` cases, which hand the monitor records
//! as the runtimes do: just decoded, strings borrowed from a buffer still in cache. The
//! workload is in `benches/workload/`; `examples/monitor_load.rs` replays it for cache
//! simulation. Run with `cargo bench -p spcvm-operators --bench monitor`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm_operators::SpcMonitor;
use spcvm_schemas::Alert;

mod workload;
use workload::{PARAMS, Setup};

/// Warms every key past Phase I and reports how often rules fire and alerts go out on one
/// pass of the batch.
fn setup(m: &SpcMonitor, label: &str, tools: usize, batch_len: usize) -> Setup {
    let mut st = workload::warm(m, tools, batch_len);
    st.warm_alerts = Vec::new();
    let mut sink: Vec<Alert> = Vec::new();
    let mut probe = st.store.clone();
    let before = workload::fired(&probe);
    // The first timed pass, on a copy: the timed passes start from the same batch and rng.
    let (batch, rng) = (st.batch.clone(), st.rng);
    st.advance();
    for r in &st.batch {
        m.process_record(&mut probe, r, &mut sink);
    }
    (st.batch, st.rng) = (batch, rng);
    println!(
        "{label}: {} chart states (at most {} bytes each); per pass of {} measurements: \
         {} rule firings, {} alerts",
        st.store.len(),
        st.store
            .iter()
            .map(|(_, s)| s.memory_bytes())
            .max()
            .unwrap_or(0),
        st.batch.len() * PARAMS.len(),
        workload::fired(&probe) - before,
        sink.len(),
    );
    st
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("spc_monitor");
    for (rules, keys, order) in [
        ("all_rules", 1usize, ""),
        ("all_rules", 100_000, ""),
        ("all_rules", 100_000, "_decoded"),
        ("all_rules", 100_000, "_decoded_batched"),
        ("all_rules", 100_000, "_shuffled"),
        ("all_rules", 100_000, "_shuffled_batched"),
        ("all_rules", 100_000, "_shuffled_decoded"),
        ("all_rules", 100_000, "_shuffled_decoded_batched"),
        ("default_rules", 1, ""),
        ("default_rules", 100_000, ""),
        ("default_rules", 100_000, "_decoded"),
    ] {
        let m = workload::monitor(rules == "all_rules");
        let shuffled = order.contains("shuffled");
        let batched = order.ends_with("batched");
        let decoded = order.contains("decoded");
        let tools = keys.div_ceil(PARAMS.len());
        let ids = workload::tool_ids(if decoded { tools } else { 0 });
        let mut fresh = Vec::new();
        // One key: 2,000 records (about 600 KB), which stay in cache as a freshly decoded
        // record would. 100,000 keys: two records per tool, so the state misses, and the
        // input too unless `decoded`.
        let batch_len = (tools * 2).max(2_000);
        let label = format!("{rules}/{keys}_keys{order}");
        // Built on first use, so a filtered run does not pay for the other cases.
        let mut state: Option<Setup> = None;
        let mut sink: Vec<Alert> = Vec::new();
        group.throughput(Throughput::Elements((batch_len * PARAMS.len()) as u64));
        group.bench_function(&label, |b| {
            let st = state.get_or_insert_with(|| {
                let mut st = setup(&m, &label, tools, batch_len);
                if shuffled {
                    st.shuffle_tools(tools);
                }
                st
            });
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: move the batch forward in event time, with fresh values.
                    st.advance();
                    if decoded {
                        workload::decoded(&st.batch, &ids, &mut fresh);
                    }
                    let start = Instant::now();
                    if decoded {
                        workload::pass(&m, &mut st.store, &fresh, &mut sink, batched);
                    } else {
                        workload::pass(&m, &mut st.store, &st.batch, &mut sink, batched);
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
