//! Stages without a broker: the golden harness (straight = checkpointed = restored, byte for
//! byte on every stream) on the SPC stage alone and with a second, test-only stage
//! ([`AlertCounter`]) that reads the SPC stage's alerts; and that second stage through
//! `spcvm backtest`'s loop and the file runtime, restored from a checkpoint, with no change
//! to either.

#[path = "common/alert_counter.rs"]
mod alert_counter;
mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use alert_counter::{AlertCount, AlertCounter};
use common::example_records;
use proptest::prelude::*;
use spcvm::run::config::{PipelineConfig, SourceKind};
use spcvm::run::{Job, file};
use spcvm::stages::golden::{self, Run};
use spcvm::stages::{Chain, DynStage};
use spcvm_operators::{MonitorConfig, SpcMonitor};
use spcvm_sinks::LineWriter;

fn spc() -> Arc<dyn DynStage> {
    Arc::new(SpcMonitor::new(&MonitorConfig::default()).unwrap())
}

fn chain(with_counter: bool) -> Arc<Chain> {
    let mut stages = vec![spc()];
    if with_counter {
        stages.push(Arc::new(AlertCounter));
    }
    Arc::new(Chain::new(stages, &["golden"]).unwrap())
}

fn run_of(lateness: bool, batches: Vec<usize>) -> Run {
    Run {
        lateness_ms: lateness.then_some(60_000),
        batches,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The shipped example (two implanters, one drifting) through SPC alone and SPC with the
    /// counter: checkpoints anywhere, batches of any size, bounded or with sweeps.
    #[test]
    fn straight_checkpointed_and_restored_runs_write_the_same_bytes(
        cuts in prop::collection::vec(0usize..1200, 1..4),
        batches in prop::collection::vec(1usize..300, 1..4),
        lateness in any::<bool>(),
        with_counter in any::<bool>(),
    ) {
        let docs = golden::documents(&example_records());
        let records = golden::views(&docs);
        let chain = chain(with_counter);
        let lines = golden::check(&chain, &records, &cuts, &run_of(lateness, batches));
        let lines = match lines {
            Ok(lines) => lines,
            Err(mismatch) => return Err(TestCaseError::fail(format!("{mismatch:?}"))),
        };
        // Not vacuous: the drift raises alerts, and the counter reports them.
        prop_assert!(lines[0].len() >= 5, "{} alerts", lines[0].len());
        if with_counter {
            prop_assert!(!lines[1].is_empty());
        }
    }
}

/// The example with ION-02's recipe changed for a stretch before its drift, so that
/// triage weighs recipe changes too.
fn example_with_a_recipe_change() -> Vec<spcvm_schemas::Telemetry> {
    let mut records = example_records();
    let mut seen = 0;
    for r in records.iter_mut().filter(|r| r.tool_id == "ION-02") {
        seen += 1;
        if (380..400).contains(&seen) {
            r.recipe_id = "B11_30KEV_B".into();
        }
    }
    records
}

fn triage_chain() -> Arc<Chain> {
    let monitor = SpcMonitor::new(&MonitorConfig::default()).unwrap();
    let playbooks = spcvm::playbooks::load(&[], &monitor).unwrap();
    let triage = spcvm_operators::triage::TriageStage::new(playbooks, Default::default());
    Arc::new(Chain::new(vec![spc(), Arc::new(triage)], &["golden"]).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// SPC with triage: the same, byte for byte on the alerts, triage and actions streams.
    #[test]
    fn spc_with_triage_straight_checkpointed_and_restored_write_the_same_bytes(
        cuts in prop::collection::vec(0usize..1200, 1..4),
        batches in prop::collection::vec(1usize..300, 1..4),
        lateness in any::<bool>(),
    ) {
        let docs = golden::documents(&example_with_a_recipe_change());
        let records = golden::views(&docs);
        let lines = golden::check(&triage_chain(), &records, &cuts, &run_of(lateness, batches));
        let lines = match lines {
            Ok(lines) => lines,
            Err(mismatch) => return Err(TestCaseError::fail(format!("{mismatch:?}"))),
        };
        // Not vacuous: ION-02's drift opens an incident of a beam current failure mode.
        let drift = lines[1].iter().any(|line| {
            let t = spcvm_schemas::decode_triage_json(line).unwrap();
            t.tool_id == "ION-02" && t.failure_mode == "beam_current_instability"
        });
        prop_assert!(drift, "{} triage lines", lines[1].len());
    }
}

#[test]
fn the_harness_catches_a_stage_whose_state_does_not_restore() {
    // A counter whose state is not written at checkpoints: restored runs start it at zero.
    #[derive(Debug, Clone, Copy)]
    struct Forgetful;
    impl spcvm_operators::Stage for Forgetful {
        type Store = Unsaved;
        type Upstream = spcvm_schemas::Alert;
        type Output = AlertCount;
        fn name(&self) -> &str {
            "forgetful"
        }
        fn reads_records(&self) -> bool {
            false
        }
        fn upstream(&self) -> Option<&str> {
            Some("alerts")
        }
        fn outputs(&self) -> &[spcvm_operators::StreamSpec] {
            &alert_counter::STREAMS
        }
        fn process(
            &self,
            store: &mut Unsaved,
            input: spcvm_operators::Input<'_, spcvm_schemas::Alert>,
            out: &mut Vec<AlertCount>,
        ) -> spcvm_operators::RecordStats {
            if let spcvm_operators::Input::Upstream(a) = input {
                store.0 += 1;
                out.push(AlertCount {
                    tool_id: a.tool_id.clone(),
                    alerts: store.0,
                    critical: 0,
                    event_time: a.event_time,
                    reason: "forgetful".into(),
                });
            }
            Default::default()
        }
    }
    #[derive(Default)]
    struct Unsaved(u64);
    impl spcvm_operators::StateStore for Unsaved {
        type Snapshot = ();
        type SnapshotRef<'a> = ();
        fn drain_changed(&mut self, _f: impl FnMut(&[&str], ())) {}
        fn restore(&mut self, _key: &[String], _snapshot: ()) -> Result<(), String> {
            Ok(())
        }
        fn len(&self) -> usize {
            1
        }
    }
    let chain = Arc::new(Chain::new(vec![spc(), Arc::new(Forgetful)], &[]).unwrap());
    let docs = golden::documents(&example_records());
    let records = golden::views(&docs);
    let mismatch = golden::check(&chain, &records, &[1100], &Run::bounded()).unwrap_err();
    assert_eq!(mismatch.run, "restored at 1100");
    assert_eq!(mismatch.stream, "alert_counts");
}

/// The counter through `spcvm backtest`'s loop: its stream is written like the alerts.
#[test]
fn a_second_stage_runs_in_the_backtest_loop() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(true);
    let mut source =
        spcvm::input::RecordSource::open(&common::example_input(), None).expect("example opens");
    let mut writers: spcvm::backtest::StreamWriters<Vec<u8>> = vec![
        Some(LineWriter::new(Vec::new(), dir.path().join("alerts"))),
        Some(LineWriter::new(Vec::new(), dir.path().join("counts"))),
    ];
    let outcome = spcvm::backtest::run(
        &chain,
        std::slice::from_mut(&mut source),
        &mut writers,
        &mut spcvm::backtest::Silent,
    )
    .unwrap();
    let written: Vec<Vec<u8>> = writers
        .into_iter()
        .map(|w| w.unwrap().finish().unwrap())
        .collect();
    let docs = golden::documents(&example_records());
    let expected = golden::straight(&chain, &golden::views(&docs), &Run::bounded());
    for (stream, lines) in expected.iter().enumerate() {
        let text: Vec<u8> = lines
            .iter()
            .flat_map(|l| [&l[..], b"\n"].concat())
            .collect();
        assert_eq!(written[stream], text, "stream {stream}");
    }
    let counts: Vec<AlertCount> = expected[1]
        .iter()
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    // The end reports every tool once, and together they count every distinct alert.
    let ends: Vec<&AlertCount> = counts.iter().filter(|c| c.reason == "end").collect();
    assert!(ends.iter().any(|c| c.tool_id == "ION-02"));
    assert_eq!(
        ends.iter().map(|c| c.alerts).sum::<u64>(),
        outcome.totals.alerts.total()
    );
    assert_eq!(
        ends.iter().map(|c| c.critical).sum::<u64>(),
        outcome.totals.alerts.critical
    );
}

/// The counter through the file runtime, stopped at a checkpoint and restarted on the grown
/// input: its stream (a file of its own beside the alerts) and the alerts equal an
/// uninterrupted run's.
#[test]
fn a_second_stage_runs_in_the_file_runtime_and_restores_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::example_input()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let input = dir.path().join("in.jsonl");
    let write = |lines: &[&str]| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&input)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    };
    let mut config = PipelineConfig {
        source: SourceKind::File,
        stages: vec!["spc".into(), "alert_count".into()],
        ..PipelineConfig::default()
    };
    config.file.input = input.clone();
    config.file.alerts = dir.path().join("out/alerts.jsonl");
    config.file.dlq = dir.path().join("out/dlq.jsonl");
    config.file.checkpoint = dir.path().join("out/checkpoint.bin");
    // Following, so that the first run stops at a checkpoint instead of ending the input;
    // one checkpoint a run, at the end of what is there to read.
    config.file.follow = true;
    config.delivery.checkpoint_interval_ms = 3_600_000;
    let stop = AtomicBool::new(true);
    let run = || {
        let job = Job::with_stages(config.clone(), |name| {
            (name == "alert_count").then(|| Arc::new(AlertCounter) as Arc<dyn DynStage>)
        })
        .unwrap();
        file::run(&job, &stop).unwrap()
    };
    write(&lines[..700]);
    let first = run();
    assert_eq!(first.resumed_after_line, 0);
    write(&lines[700..]);
    let second = run();
    assert_eq!(second.resumed_after_line, 700);
    assert_eq!(
        first.records + second.records,
        example_records().len() as u64
    );

    let docs = golden::documents(&example_records());
    let run = Run {
        lateness_ms: Some(config.delivery.watermark_lateness_ms),
        batches: vec![1],
    };
    let expected = golden::straight(&chain(true), &golden::views(&docs), &run);
    for (stream, file) in [(0, "alerts.jsonl"), (1, "alert_counts.jsonl")] {
        let written = std::fs::read(dir.path().join("out").join(file)).unwrap();
        let lines: Vec<u8> = expected[stream]
            .iter()
            .flat_map(|l| [&l[..], b"\n"].concat())
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(&lines),
            "{file}"
        );
    }
    assert!(!expected[1].is_empty());
}

/// A job refuses stages it does not know, and streams no stage emits.
#[test]
fn a_job_names_the_unknown_stage_or_stream() {
    let config = PipelineConfig {
        stages: vec!["spc".into(), "drift".into()],
        ..PipelineConfig::default()
    };
    let err = Job::new(config).unwrap_err().to_string();
    assert_eq!(
        err,
        "stages: unknown stage `drift` (this build has spc, triage)"
    );
    // The triage stream exists only with the triage stage.
    let mut config = PipelineConfig::default();
    config.outputs.insert("triage".into(), Default::default());
    let err = Job::new(config.clone()).unwrap_err().to_string();
    assert!(
        err.starts_with("outputs.triage: no configured stage emits"),
        "{err}"
    );
    config.stages.push("triage".into());
    let job = Job::new(config).unwrap();
    let names: Vec<&str> = job.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["alerts", "triage", "actions"]);
    assert_eq!(job.outputs[2].topic, "spc.actions");
}
