//! The checkpoint's two-phase commit with a sink outside Kafka ([`StagedFiles`], a test
//! participant in the Flink FileSink shape) in the file runtime: prepared at each
//! checkpoint, finalized once the checkpoint is written, and after a failure between the two
//! finished by `recover` from what the checkpoint holds: its visible output equals the
//! alerts stream's, line for line.

mod common;
#[path = "common/staged_files.rs"]
mod staged_files;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use spcvm::run::config::{PipelineConfig, SourceKind};
use spcvm::run::{Job, RunError, file};
use staged_files::{StagedFilesFactory, visible};

/// A following file job (so that it stops at a checkpoint at the end of its input) over
/// `dir/in.jsonl`, with the staged-files participant on the alerts stream.
fn job(dir: &Path, factory: &StagedFilesFactory) -> Job {
    let mut config = PipelineConfig {
        source: SourceKind::File,
        ..PipelineConfig::default()
    };
    config.file.input = dir.join("in.jsonl");
    config.file.alerts = dir.join("out/alerts.jsonl");
    config.file.dlq = dir.join("out/dlq.jsonl");
    config.file.checkpoint = dir.join("out/checkpoint.bin");
    config.file.follow = true;
    // One checkpoint a run, at the end of what is there to read.
    config.delivery.checkpoint_interval_ms = 3_600_000;
    let mut job = Job::new(config).unwrap();
    job.participants.push(Arc::new(factory.clone()));
    job
}

fn append(path: &Path, lines: &[&str]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// A test's directory, participant and input: the example's lines, fed in parts.
struct Case {
    dir: tempfile::TempDir,
    factory: StagedFilesFactory,
    lines: Vec<String>,
    fed: std::cell::Cell<usize>,
}

impl Case {
    fn new(fail_finalize: Option<u64>) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let factory = StagedFilesFactory {
            dir: dir.path().join("staged"),
            streams: vec!["alerts".into()],
            log: Arc::new(Mutex::new(Vec::new())),
            fail_finalize: Arc::new(Mutex::new(fail_finalize)),
        };
        let text = std::fs::read_to_string(common::example_input()).unwrap();
        let lines = text.lines().map(str::to_string).collect();
        Case {
            dir,
            factory,
            lines,
            fed: std::cell::Cell::new(0),
        }
    }

    /// Appends the input's lines up to `upto` (all with `None`) and runs the job to the
    /// end of what is there.
    fn run_to(&self, upto: Option<usize>) -> Result<file::FileSummary, RunError> {
        let upto = upto.unwrap_or(self.lines.len());
        let lines: Vec<&str> = self.lines[self.fed.get()..upto]
            .iter()
            .map(String::as_str)
            .collect();
        append(&self.dir.path().join("in.jsonl"), &lines);
        self.fed.set(upto);
        file::run(&job(self.dir.path(), &self.factory), &AtomicBool::new(true))
    }

    /// The alerts stream's file.
    fn alerts(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("out/alerts.jsonl")).unwrap()
    }

    /// The participant's visible output.
    fn visible(&self) -> Vec<u8> {
        visible(&self.factory.dir.join("file-0"))
    }
}

/// The log without the byte counts of `prepare`.
fn calls(factory: &StagedFilesFactory) -> Vec<String> {
    factory
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.split(" (").next().unwrap().to_string())
        .collect()
}

#[test]
fn a_participant_prepares_at_each_checkpoint_and_finalizes_after_it() {
    let case = Case::new(None);
    case.run_to(Some(900)).unwrap();
    case.run_to(None).unwrap();
    assert_eq!(
        calls(&case.factory),
        [
            "open file-0",
            "recover 0",
            "prepare 1",
            "finalize 1",
            "open file-0",
            "recover 1",
            "prepare 2",
            "finalize 2"
        ]
    );
    let alerts = case.alerts();
    assert!(alerts.len() > 1000, "{} bytes of alerts", alerts.len());
    assert_eq!(case.visible(), alerts);
}

#[test]
fn what_a_committed_checkpoint_prepared_is_finished_after_a_failed_finalize() {
    let case = Case::new(Some(1));
    let err = case.run_to(Some(900)).unwrap_err();
    assert!(matches!(err, RunError::Commit(_)), "{err}");
    // Nothing of the checkpoint is visible yet.
    assert!(case.visible().is_empty());
    case.run_to(None).unwrap();
    assert_eq!(
        calls(&case.factory),
        [
            "open file-0",
            "recover 0",
            "prepare 1",
            "finalize 1 failed",
            "open file-0",
            "recover 1",
            "finalize 1",
            "prepare 2",
            "finalize 2"
        ]
    );
    assert_eq!(case.visible(), case.alerts());
}

#[test]
fn work_prepared_for_a_checkpoint_that_was_not_written_is_discarded() {
    let case = Case::new(None);
    case.run_to(Some(900)).unwrap();
    // A crash after preparing epoch 2 and before its checkpoint was written left this.
    let stale = case.factory.dir.join("file-0/.pending-000002");
    std::fs::write(&stale, b"not committed\n").unwrap();
    case.run_to(None).unwrap();
    assert!(calls(&case.factory).contains(&"discard .pending-000002".to_string()));
    assert_eq!(case.visible(), case.alerts());
}
