//! The triage stage's cost per alert (criterion), on the simulator's mixed fab
//! (`deploy/scenarios/mixed_fab.toml`: 8 tools, recipes per lot, five faults and the charts'
//! false alarms).
//!
//! Setup, untimed: the scenario's records go through the SPC stage (built-in charts) once,
//! which gives the stream triage sees: every record (triage tracks recipe changes) with the
//! alerts it caused right after it, and the closing updates at the end. Timed: that whole
//! stream through a fresh triage stage (built-in playbooks). Throughput is counted in
//! alerts, so the figure is the cost per alert with the per-record recipe tracking
//! included. Run with `cargo bench -p spcvm --bench triage`.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spcvm_operators::stage::{Input, Stage};
use spcvm_operators::triage::{TriageConfig, TriageOutput, TriageStage};
use spcvm_schemas::{Alert, TelemetryRef};

/// One step of the stream triage reads.
enum Event {
    Record(TelemetryRef<'static>),
    Alert(Box<Alert>),
}

fn stream() -> (Vec<Event>, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenario = spcvm::simulate::scenario::load(&root.join("deploy/scenarios/mixed_fab.toml"))
        .expect("the shipped mixed fab scenario loads");
    let monitor = spcvm::config::load_monitor(None).expect("the built-in charts");
    let mut spc = Default::default();
    let mut alerts = Vec::new();
    let mut events = Vec::new();
    for record in spcvm::simulate::generate::Generator::new(&scenario) {
        monitor.process_record(&mut spc, &record, &mut alerts);
        events.push(Event::Record(TelemetryRef::from(record)));
        events.extend(alerts.drain(..).map(|a| Event::Alert(Box::new(a))));
    }
    monitor.on_end(&mut spc, &mut alerts);
    events.extend(alerts.drain(..).map(|a| Event::Alert(Box::new(a))));
    let n = events
        .iter()
        .filter(|e| matches!(e, Event::Alert(_)))
        .count();
    (events, n)
}

fn triage(stage: &TriageStage, events: &[Event]) -> usize {
    let mut store = Default::default();
    let mut out: Vec<TriageOutput> = Vec::new();
    let mut published = 0;
    for event in events {
        match event {
            Event::Record(r) => stage.process(&mut store, Input::Record(r), &mut out),
            Event::Alert(a) => stage.process(&mut store, Input::Upstream(a), &mut out),
        };
        published += out.len();
        out.clear();
    }
    stage.on_end(&mut store, &mut out);
    published + out.len()
}

fn bench(c: &mut Criterion) {
    let (events, alerts) = stream();
    let playbooks = spcvm::playbooks::load(&[], &spcvm::config::load_monitor(None).unwrap())
        .expect("the built-in playbooks");
    let stage = TriageStage::new(playbooks, TriageConfig::default());
    let records = events.len() - alerts;
    let published = triage(&stage, &events);
    println!(
        "mixed fab: {records} records, {alerts} alerts, {published} triage versions and actions"
    );
    let mut group = c.benchmark_group("triage");
    group.throughput(Throughput::Elements(alerts as u64));
    group.bench_function("mixed_fab", |b| {
        b.iter(|| black_box(triage(&stage, &events)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
