//! A stage and a commit participant the `spcvm` binary does not have, through the Kafka
//! runtime on real brokers: the test-only [`AlertCounter`] (it reads the SPC stage's
//! `alerts` and counts them per tool on `alert_counts`) and the test-only
//! [`StagedFiles`](staged_files::StagedFiles) participant (Flink FileSink shape), registered
//! through `spcvm::cli::main_with`, with no change to a runtime.
//!
//! - `kill -9` three times mid-stream, then a restart (`exactly_once`, noida-db, static
//!   membership as in `kafka_crash.rs`): the read_committed `alerts` equal the backtest's;
//!   `alert_counts` equal, per tool, what SPC and the counter give on each input partition
//!   run straight (the golden harness's streaming run), so the counts went on from the state
//!   restored from the changelog after each kill; its `every_3` reports equal those of
//!   `backtest --stages spc,alert_count`. Before the last run, a run whose finalize of the
//!   next epoch fails (a crash between the commit and the finalize) stops with that error;
//!   the last run's recover finishes the epoch. The participant's visible `part-*.jsonl`
//!   files hold every alert exactly once, each partition's in its own directory; the
//!   prepared epoch the committed changelog names is finalized, no `.pending-*` file is
//!   left; the last run's calls follow the protocol (recover, then prepare and finalize
//!   epoch after epoch).
//! - `at_least_once` (tansu), SIGTERM and a restart with more input: every backtest alert,
//!   the counts continue from where the first run left them (not from zero).
//! - A job whose changelog does not exist (tansu): it creates it, with the input's partition
//!   count rather than `topics.partitions`, becomes ready, and raises the backtest's alerts
//!   and the expected counts.
//!
//! The job must be a process of its own (`kill -9`), and one that has the test's stage: so
//! this target has no libtest harness (`harness = false` in `pipeline/Cargo.toml`). Its
//! `main` is `spcvm` with the test's extensions when [`AS_SPCVM`] is set (the setups run it
//! so, as the job, for `topics create` and for the backtest), and otherwise runs the
//! scenarios, in parallel, each on its own topics and group ([`run_scenarios`], which takes
//! libtest's filter arguments).

#[path = "../../pipeline/tests/common/alert_counter.rs"]
mod alert_counter;
#[path = "../../pipeline/tests/common/staged_files.rs"]
mod staged_files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alert_counter::{AlertCount, AlertCounter};
use spcvm::cli::{self, Extensions};
use spcvm::run::changelog::{ChangelogKey, decode_value};
use spcvm::run::config::PipelineConfig;
use spcvm::stages::commit::{COMMIT_STAGE, Participant, ParticipantFactory, Prepared};
use spcvm::stages::golden::{self, Run};
use spcvm::stages::{Chain, DynStage};
use spcvm_schemas::{Alert, Telemetry, decode_alert_json};
use spcvm_testkit::*;
use staged_files::{StagedFilesFactory, visible};

/// Set (to anything): the process is `spcvm` with the test's stage and participant.
const AS_SPCVM: &str = "SPCVM_TEST_AS_SPCVM";
/// The directory of the [`StagedFiles`](staged_files::StagedFiles) participant; unset: no
/// participant.
const STAGED_DIR: &str = "SPCVM_TEST_STAGED_DIR";
/// An epoch whose finalize fails once (in whichever partition finalizes it first), as a
/// crash between a checkpoint's commit and its finalize would: the job stops.
const FAIL_FINALIZE: &str = "SPCVM_TEST_FAIL_FINALIZE";
/// The counter's stage name and stream.
const COUNTER: &str = "alert_count";
const COUNTS: &str = "alert_counts";
const TIMEOUT: Duration = Duration::from_secs(120);
/// Rounds (a wafer per tool) of the `kill -9` scenario's telemetry.
const ROUNDS: usize = 360;

fn main() -> ExitCode {
    if std::env::var_os(AS_SPCVM).is_some() {
        return as_spcvm();
    }
    run_scenarios(&[
        (
            "exactly_once_kill_9_counts_continue_and_staged_files_hold_each_alert_once",
            exactly_once_kill_9_three_times,
        ),
        (
            "at_least_once_sigterm_restart_counts_continue",
            at_least_once_sigterm_and_restart,
        ),
        (
            "the_job_creates_its_missing_changelog",
            missing_changelog_is_created,
        ),
    ])
}

// ---- the job: spcvm with the test's extensions --------------------------------------

/// `spcvm` with [`AlertCounter`] and, when [`STAGED_DIR`] is set,
/// [`StagedFiles`](staged_files::StagedFiles) on the
/// alerts; after a clean stop the participants' calls are saved beside their files.
fn as_spcvm() -> ExitCode {
    let fail_finalize = std::env::var(FAIL_FINALIZE)
        .ok()
        .map(|e| e.parse().expect("an epoch"));
    let staged =
        std::env::var_os(STAGED_DIR).map(|dir| Arc::new(CallLogs::new(dir.into(), fail_finalize)));
    let extensions = Extensions {
        stages: Some(Arc::new(|name: &str| {
            (name == COUNTER).then(|| Arc::new(AlertCounter) as Arc<dyn DynStage>)
        })),
        participants: staged
            .iter()
            .map(|s| s.clone() as Arc<dyn ParticipantFactory>)
            .collect(),
    };
    let code = cli::main_with(extensions);
    if let Some(staged) = staged {
        staged.save();
    }
    code
}

/// [`StagedFilesFactory`] with a call log per participant (its own log is one list for
/// every partition, whose calls interleave and do not say whose they are).
#[derive(Debug)]
struct CallLogs {
    dir: PathBuf,
    /// Each participant opened: its partition (`topic-partition`) and its calls.
    opened: Mutex<Vec<(String, CallLog)>>,
    /// Shared by the participants, so that the finalize fails once in the process.
    fail_finalize: Arc<Mutex<Option<u64>>>,
}

/// A participant's calls, as [`StagedFilesFactory`] logs them.
type CallLog = Arc<Mutex<Vec<String>>>;

impl CallLogs {
    fn new(dir: PathBuf, fail_finalize: Option<u64>) -> CallLogs {
        CallLogs {
            dir,
            opened: Mutex::default(),
            fail_finalize: Arc::new(Mutex::new(fail_finalize)),
        }
    }

    /// Writes each participant's calls to `calls/<pid>/<n>-<topic>-<partition>.log` in
    /// the participant's directory (`n`: the order they were opened in).
    fn save(&self) {
        let dir = calls_dir(&self.dir, std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        for (n, (name, log)) in self.opened.lock().unwrap().iter().enumerate() {
            let text: String = log
                .lock()
                .unwrap()
                .iter()
                .map(|l| l.clone() + "\n")
                .collect();
            std::fs::write(dir.join(format!("{n:03}-{name}.log")), text).unwrap();
        }
    }
}

impl ParticipantFactory for CallLogs {
    fn open(&self, topic: &str, partition: i32) -> Box<dyn Participant> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let name = format!("{topic}-{partition}");
        self.opened.lock().unwrap().push((name, log.clone()));
        let factory = StagedFilesFactory {
            dir: self.dir.clone(),
            streams: vec!["alerts".into()],
            log,
            fail_finalize: self.fail_finalize.clone(),
        };
        factory.open(topic, partition)
    }
}

/// Where the job with process id `pid` saved its participants' calls.
fn calls_dir(staged: &Path, pid: u32) -> PathBuf {
    staged.join("calls").join(pid.to_string())
}

// ---- setups and expectations --------------------------------------------------------

/// A setup whose jobs are this executable as `spcvm`, with stages `spc` and the counter,
/// the counts on a topic of their own (made by its `topics create`); returns that topic.
/// The stages and outputs come from `SPCVM__*` variables, which the setup passes to
/// every process it starts (its config files do not show them).
fn stage_setup(bootstrap: String, name: &str, partitions: i32) -> (Setup, String) {
    let counts = format!("{}.{COUNTS}", unique(name));
    let env = vec![
        (AS_SPCVM.to_string(), "1".to_string()),
        (
            "SPCVM__STAGES".to_string(),
            format!(r#"["spc", "{COUNTER}"]"#),
        ),
        (
            "SPCVM__OUTPUTS__ALERT_COUNTS__TOPIC".to_string(),
            counts.clone(),
        ),
    ];
    let exe = std::env::current_exe().unwrap();
    let setup = Setup::with_binary(exe, bootstrap, name, partitions, env);
    assert!(
        setup.partitions_of(&counts) > 0,
        "topics create made no {counts}"
    );
    (setup, counts)
}

/// The chain the jobs run: the built-in charts, then the counter.
fn stage_chain() -> Arc<Chain> {
    let spc = spcvm::config::load_monitor(None).unwrap();
    let stages: Vec<Arc<dyn DynStage>> = vec![Arc::new(spc), Arc::new(AlertCounter)];
    Arc::new(Chain::new(stages, &[]).unwrap())
}

/// Counts by tool, each tool's in the order they were emitted.
type ByTool = BTreeMap<String, Vec<AlertCount>>;

fn by_tool(counts: impl IntoIterator<Item = AlertCount>) -> ByTool {
    let mut out = ByTool::new();
    for c in counts {
        out.entry(c.tool_id.clone()).or_default().push(c);
    }
    out
}

/// What the job's counter emits: each input partition's records (read back, in offset
/// order) run straight through the chain with the job's watermark lateness, the golden
/// harness's streaming run (a stream has sweeps and no end, unlike a backtest).
fn expected_counts(setup: &Setup) -> ByTool {
    let mut input = read_all(&setup.bootstrap, &setup.input);
    input.sort_by_key(|m| (m.partition, m.offset));
    let chain = stage_chain();
    let stream = chain.stream(COUNTS).unwrap();
    let run = Run {
        lateness_ms: Some(PipelineConfig::default().delivery.watermark_lateness_ms),
        batches: vec![1],
    };
    let mut counts = Vec::new();
    for p in 0..setup.partitions {
        let docs: Vec<Vec<u8>> = input
            .iter()
            .filter(|m| m.partition == p)
            .map(|m| m.payload.clone())
            .collect();
        let lines = golden::straight(&chain, &golden::views(&docs), &run);
        counts.extend(lines[usize::from(stream.0)].iter().map(|l| parse_count(l)));
    }
    let counts = by_tool(counts);
    let reports = |reason: &str| {
        counts
            .values()
            .flatten()
            .filter(|c| c.reason == reason)
            .count()
    };
    assert!(
        counts.values().any(|c| c.len() >= 3)
            && reports("every_3") >= 3
            && reports("watermark") >= 1,
        "test data should make several counts per tool: {counts:?}"
    );
    counts
}

fn parse_count(line: &[u8]) -> AlertCount {
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

/// The counts on `topic` (read_committed), by tool, in the order they were written.
fn streamed_counts(setup: &Setup, topic: &str) -> ByTool {
    let mut read = read_all(&setup.bootstrap, topic);
    read.sort_by_key(|m| (m.partition, m.offset));
    by_tool(read.iter().map(|m| {
        let count = parse_count(&m.payload);
        assert_eq!(
            m.key.as_deref(),
            Some(count.tool_id.as_bytes()),
            "keyed by tool"
        );
        count
    }))
}

/// `backtest --stages spc,alert_count` on `records` through this executable as `spcvm`:
/// its counts by tool. Its alerts must be the plain backtest's (`expected`): the counter
/// reads them and changes none.
fn backtest_counts(dir: &Path, records: &[Telemetry], expected: &[Alert]) -> ByTool {
    let input = dir.join("counter-backtest-input.jsonl");
    std::fs::write(&input, jsonl_lines(records).concat()).unwrap();
    let alerts = dir.join("counter-backtest-alerts.jsonl");
    let counts = dir.join("counter-backtest-counts.jsonl");
    output_ok(
        Command::new(std::env::current_exe().unwrap())
            .env(AS_SPCVM, "1")
            .args(["backtest", "--quiet", "--stages", &format!("spc,{COUNTER}")])
            .arg("--input")
            .arg(&input)
            .arg("--alerts")
            .arg(&alerts)
            .arg("--output")
            .arg(format!("{COUNTS}={}", counts.display())),
    );
    let alerts: Vec<Alert> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| decode_alert_json(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(
        alerts, expected,
        "the counter changed the backtest's alerts"
    );
    by_tool(
        std::fs::read_to_string(&counts)
            .unwrap()
            .lines()
            .map(|l| parse_count(l.as_bytes())),
    )
}

/// Each tool's reports of `reason`.
fn reports(counts: &ByTool, reason: &str) -> ByTool {
    counts
        .iter()
        .map(|(tool, c)| {
            let of: Vec<AlertCount> = c.iter().filter(|c| c.reason == reason).cloned().collect();
            (tool.clone(), of)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect()
}

/// Checks the streamed counts against the expected ones, tool by tool; with
/// `repeats_allowed` (at_least_once) a count may come again, identical.
fn assert_same_counts(streamed: &ByTool, expected: &ByTool, repeats_allowed: bool) {
    for (tool, want) in expected {
        let got = streamed.get(tool).map_or(&[][..], Vec::as_slice);
        let mut distinct: Vec<&AlertCount> = Vec::new();
        for c in got {
            // A tool's counts strictly grow (a report needs alerts not yet reported), so a
            // count equal to an earlier one is a repeat.
            match distinct
                .iter()
                .find(|d| d.alerts == c.alerts && d.reason == c.reason)
            {
                Some(seen) if repeats_allowed => {
                    assert_eq!(
                        *seen, c,
                        "{tool}: a count again, but different (or counted again from zero)"
                    )
                }
                Some(_) => {
                    panic!("{tool}: count delivered twice, or counted again from zero: {c:?}")
                }
                None => distinct.push(c),
            }
        }
        let distinct: Vec<AlertCount> = distinct.into_iter().cloned().collect();
        assert_eq!(
            &distinct, want,
            "{tool}: streamed counts differ from the expected ones"
        );
    }
    let unexpected: Vec<&String> = streamed
        .keys()
        .filter(|t| !expected.contains_key(*t))
        .collect();
    assert!(
        unexpected.is_empty(),
        "counts of tools with no expected count: {unexpected:?}"
    );
}

// ---- exactly_once: kill -9 three times ----------------------------------------------

fn exactly_once_kill_9_three_times() {
    let (mut setup, counts_topic) = stage_setup(bootstrap_txn(), "kstage-crash", 3);
    setup.static_membership = true;
    let staged = setup.dir.path().join("staged");
    setup
        .env
        .push((STAGED_DIR.into(), staged.display().to_string()));
    let records = telemetry(6, ROUNDS, 3);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let backtest = backtest_counts(setup.dir.path(), &records, &expected);

    // The rounds before the drift raise no alert: produced at once. Then paced, so that
    // each kill lands while records arrive, a transaction is open and the counter holds
    // counts. The last rounds are kept for the run whose finalize fails.
    let per_round = records.len() / ROUNDS;
    let (split, tail) = (per_round * DRIFT_FROM, records.len() - per_round * 10);
    setup.produce_telemetry(&records[..split]);
    let producer = setup.produce_paced(
        records[split..tail].to_vec(),
        40,
        Duration::from_millis(200),
    );
    let config = setup.write_config("job", "exactly_once", "a", "");
    // Each run is killed once it has committed input offsets and counts of its own, so
    // that the next run restores a counter state this run changed.
    let step = (tail - split) as i64 / 8;
    let (mut offsets, mut counts) = (0, 0);
    for round in 0..3 {
        let mut job = setup.start(&config, &format!("killed-{round}"));
        let progressed = wait_for(TIMEOUT, || {
            assert!(job.running(), "job exited early:\n{}", job.log_text());
            let done = setup.committed_total().is_some_and(|c| c >= offsets + step)
                && read_all(&setup.bootstrap, &counts_topic).len() > counts;
            done.then_some(())
        });
        assert!(
            progressed.is_some(),
            "round {round}: no {step} more offsets and new counts committed:\n{}",
            job.log_text()
        );
        job.kill9();
        offsets = wait_for(TIMEOUT, || setup.committed_total()).expect("committed offsets");
        counts = read_all(&setup.bootstrap, &counts_topic).len();
    }
    producer.join().unwrap();

    // A crash between a commit and its finalize: the finalize of the epoch after the last
    // committed one fails, once, and the job stops; the next run's recover finishes it.
    let epoch = committed_prepared(&setup)
        .values()
        .map(|p| p.epoch)
        .max()
        .unwrap()
        + 1;
    setup.env.push((FAIL_FINALIZE.into(), epoch.to_string()));
    let mut failing = setup.start(&config, "finalize-fails");
    setup.env.pop();
    setup.produce_telemetry(&records[tail..]);
    let failed = failing.wait_exit(TIMEOUT);
    let failed_log = failing.log_text();
    assert!(
        !failed.success() && failed_log.contains(&format!("finalize {epoch} made to fail")),
        "{failed_log}"
    );

    let mut job = setup.start(&config, "final");
    // The failing run committed up to the end already: caught up says nothing of this run,
    // ready says it restored the state and recovered its participants.
    job.wait_ready(TIMEOUT);
    setup.wait_caught_up(TIMEOUT, &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let log = job.log_text();
    assert!(log.contains("state restored"), "{log}");

    // The alerts, and the counts the restored counter went on with.
    assert_same_alerts(&setup.alerts(), &expected);
    let streamed = streamed_counts(&setup, &counts_topic);
    assert_same_counts(&streamed, &expected_counts(&setup), false);
    // The counts of the first opening alerts of a tool, every third: the backtest's too.
    assert_eq!(reports(&streamed, "every_3"), reports(&backtest, "every_3"));

    check_staged_files(&setup, &staged, &expected, job.pid());
    // The failed finalize, and its finish by the final run's recover.
    let calls_of = |pid| -> Vec<String> {
        let dir = calls_dir(&staged, pid);
        let logs = files(&dir).into_iter();
        logs.map(|name| std::fs::read_to_string(dir.join(name)).unwrap())
            .collect()
    };
    let failed_calls = calls_of(failing.pid());
    assert!(
        failed_calls
            .iter()
            .any(|c| c.contains(&format!("\nfinalize {epoch} failed\n"))),
        "{failed_calls:?}"
    );
    let finished = format!("\nrecover {epoch}\nfinalize {epoch}\n");
    let final_calls = calls_of(job.pid());
    assert!(
        final_calls.iter().any(|c| c.contains(&finished)),
        "no recover finished epoch {epoch}: {final_calls:?}"
    );
}

/// The participant's files after the kills and the final clean stop: every alert once,
/// nothing prepared left behind, and the final run's calls in protocol order.
fn check_staged_files(setup: &Setup, staged: &Path, expected: &[Alert], final_pid: u32) {
    // Which tools each input partition carries.
    let mut tools_of: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for m in read_all(&setup.bootstrap, &setup.input) {
        let tool = String::from_utf8(m.key.unwrap()).unwrap();
        let tools = tools_of.entry(m.partition).or_default();
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    let committed = committed_prepared(setup);
    let mut visible_alerts = Vec::new();
    for p in 0..setup.partitions {
        let dir = staged.join(format!("{}-{p}", setup.input));
        let text = String::from_utf8(visible(&dir)).unwrap();
        let alerts: Vec<Alert> = text
            .lines()
            .map(|l| decode_alert_json(l.as_bytes()).unwrap())
            .collect();
        for a in &alerts {
            assert!(
                tools_of.get(&p).is_some_and(|t| t.contains(&a.tool_id)),
                "{}: alert of {} in partition {p}'s files",
                dir.display(),
                a.tool_id
            );
        }
        visible_alerts.extend(alerts);
        // The last prepared epoch a committed checkpoint names is visible; nothing is
        // left pending (the final run discarded what killed runs prepared after it).
        let prepared = committed
            .get(&p)
            .unwrap_or_else(|| panic!("no committed `{COMMIT_STAGE}` record for partition {p}"));
        let name = String::from_utf8(prepared.data.clone()).unwrap();
        assert!(
            !dir.join(&name).exists(),
            "{name}, named by the committed checkpoint, is still pending"
        );
        assert!(
            dir.join(format!("part-{:06}.jsonl", prepared.epoch))
                .exists(),
            "part of epoch {} missing",
            prepared.epoch
        );
        let pending: Vec<String> = files(&dir)
            .into_iter()
            .filter(|f| f.starts_with(".pending-"))
            .collect();
        assert!(
            pending.is_empty(),
            "{}: left pending: {pending:?}",
            dir.display()
        );
    }
    assert_same_alerts(&visible_alerts, expected);

    // The final run's calls, participant by participant; the last one of a partition
    // stopped at the committed checkpoint (a rebalance may have opened others before it).
    let calls = calls_dir(staged, final_pid);
    let logs = files(&calls);
    let partition_of = |name: &str| -> i32 {
        let p = name
            .rsplit_once('-')
            .and_then(|(_, p)| p.strip_suffix(".log"));
        p.and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("call log {name}"))
    };
    for p in 0..setup.partitions {
        let of_p: Vec<&String> = logs.iter().filter(|n| partition_of(n) == p).collect();
        assert!(!of_p.is_empty(), "no call log of partition {p}: {logs:?}");
        for (i, name) in of_p.iter().enumerate() {
            let text = std::fs::read_to_string(calls.join(name)).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let last = (i + 1 == of_p.len()).then(|| committed[&p].epoch);
            check_calls(&lines, last).unwrap_or_else(|e| panic!("{name}: {e}:\n{text}"));
        }
    }
}

/// The names of the files in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The last record the participant prepared in each input partition's committed
/// checkpoints (the changelog, read_committed).
fn committed_prepared(setup: &Setup) -> BTreeMap<i32, Prepared> {
    let key = ChangelogKey::encode_stage(COMMIT_STAGE, &setup.input, &["staged_files"]);
    let mut read = read_all(&setup.bootstrap, &setup.changelog());
    read.sort_by_key(|m| (m.partition, m.offset));
    read.iter()
        .filter(|m| m.key.as_deref() == Some(&key[..]))
        .map(|m| (m.partition, decode_value::<Prepared>(&m.payload).unwrap()))
        .collect()
}

/// Checks one participant's calls in a run that stopped cleanly: opened, recovered from a
/// committed epoch `r` (finishing it, discarding only later pending files), then epochs
/// `r+1..` each prepared once and finalized once, in order, up to `last` (the epoch the
/// committed checkpoint names) when given.
fn check_calls(lines: &[&str], last: Option<u64>) -> Result<(), String> {
    let [open, recover, rest @ ..] = lines else {
        return Err("fewer than two calls".into());
    };
    if !open.starts_with("open ") {
        return Err(format!("first call `{open}`"));
    }
    let r: u64 = recover
        .strip_prefix("recover ")
        .and_then(|e| e.parse().ok())
        .ok_or(format!("second call `{recover}`"))?;
    if r == 0 {
        return Err("recovered no committed epoch after three killed runs".into());
    }
    let (mut next_prepare, mut next_finalize) = (r + 1, r + 1);
    for (i, line) in rest.iter().enumerate() {
        let epoch = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|e| e.split(' ').next()?.parse::<u64>().ok())
        };
        if let Some(e) = epoch("discard .pending-") {
            if e <= r || next_prepare > r + 1 {
                return Err(format!("`{line}` after recover {r}"));
            }
        } else if let Some(e) = epoch("prepare ") {
            if e != next_prepare {
                return Err(format!("`{line}`, expected prepare {next_prepare}"));
            }
            next_prepare += 1;
        } else if let Some(e) = epoch("finalize ") {
            let finishes_recovered = i == 0 && e == r;
            if !finishes_recovered {
                if e != next_finalize || e >= next_prepare || line.ends_with("failed") {
                    return Err(format!("`{line}`, expected finalize {next_finalize}"));
                }
                next_finalize += 1;
            }
        } else {
            return Err(format!("unexpected call `{line}`"));
        }
    }
    if next_finalize != next_prepare || last.is_some_and(|last| next_prepare - 1 != last.max(r)) {
        return Err(format!(
            "prepared up to {}, finalized up to {}, the committed checkpoint names {last:?}",
            next_prepare - 1,
            next_finalize - 1
        ));
    }
    Ok(())
}

// ---- at_least_once: SIGTERM and a restart -------------------------------------------

fn at_least_once_sigterm_and_restart() {
    let (setup, counts_topic) = stage_setup(bootstrap(), "kstage-alo", 3);
    let records = telemetry(4, 320, 31);
    // The first run sees the first 280 rounds (into the drift), the second the rest.
    let split = records.len() * 280 / 320;
    let (first, rest) = records.split_at(split);
    let expected = backtest_alerts(setup.dir.path(), &records);

    setup.produce_telemetry(first);
    let config = setup.write_config("job", "at_least_once", "a", "");
    let mut job = setup.start(&config, "first");
    setup.wait_caught_up(TIMEOUT, &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let before = streamed_counts(&setup, &counts_topic);
    assert!(!before.is_empty(), "the first run counted nothing");

    setup.produce_telemetry(rest);
    let mut job = setup.start(&config, "second");
    setup.wait_caught_up(TIMEOUT, &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert!(
        job.log_text().contains("state restored"),
        "{}",
        job.log_text()
    );

    assert_alerts_at_least_once(&setup.alerts(), &expected);
    let all = streamed_counts(&setup, &counts_topic);
    assert_same_counts(&all, &expected_counts(&setup), true);
    // Continued: a tool counted in the first run and again in the second goes on from its
    // count, where a counter that restarted from zero would report 3 first.
    let mut continued = 0;
    for (tool, earlier) in &before {
        let later = &all[tool][earlier.len()..];
        let last = earlier.last().unwrap();
        if let Some(next) = later.iter().find(|c| *c != last) {
            assert!(next.alerts > last.alerts, "{tool}: {next:?} after {last:?}");
            continued += 1;
        }
    }
    assert!(continued > 0, "no tool was counted in both runs: {all:?}");
}

// ---- the missing changelog ----------------------------------------------------------

fn missing_changelog_is_created() {
    let (mut setup, counts_topic) = stage_setup(bootstrap(), "kstage-newlog", 4);
    // A group whose changelog nobody made: `topics create` made the original group's.
    setup.group = unique("kstage-newlog-group");
    assert_eq!(
        setup.partitions_of(&setup.changelog()),
        0,
        "the changelog exists already"
    );
    // `topics.partitions` says 2: the changelog must follow the input's 4 instead.
    setup.partitions = 2;
    let config = setup.write_config("job", "exactly_once", "a", "");
    setup.partitions = 4;
    let records = telemetry(4, 300, 13);
    let expected = backtest_alerts(setup.dir.path(), &records);
    setup.produce_telemetry(&records);

    let mut job = setup.start(&config, "job");
    job.wait_ready(TIMEOUT);
    assert!(
        job.log_text()
            .contains("created the missing changelog topic"),
        "{}",
        job.log_text()
    );
    assert_eq!(setup.partitions_of(&setup.changelog()), 4);
    setup.wait_caught_up(TIMEOUT, &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert_same_alerts(&setup.alerts(), &expected);
    assert_same_counts(
        &streamed_counts(&setup, &counts_topic),
        &expected_counts(&setup),
        false,
    );
}
