//! `spcvm run` with `source = "file"` (the embedded default, no broker): a JSON-lines file
//! in, alert and dead-letter JSON-lines files out, a checkpoint file for restarts.
//!
//! - A complete run writes the alerts `spcvm backtest` writes on the same file, byte for
//!   byte, and one dead-letter line per bad input line.
//! - `kill -9` at several points of a long run, restarting each time: the final files equal
//!   an uninterrupted run's, byte for byte; running again after completion adds nothing.
//! - `follow = true`: lines appended while the job runs are processed (a line written in
//!   two pieces too); SIGTERM stops it with exit 0; a restart continues where it stopped.
//! - A checkpoint of another input file is refused, and nothing is touched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use spcvm_testkit::*;

const CONSUMED: &str = "spcvm_messages_consumed_total{topic=\"file\"}";

/// Output files of one file job, in `dir/NAME/`.
struct Outputs {
    alerts: PathBuf,
    dlq: PathBuf,
    checkpoint: PathBuf,
}

impl Outputs {
    fn new(dir: &Path, name: &str) -> Outputs {
        let out = dir.join(name);
        Outputs {
            alerts: out.join("alerts.jsonl"),
            dlq: out.join("dlq.jsonl"),
            checkpoint: out.join("checkpoint.bin"),
        }
    }

    fn alerts(&self) -> Vec<u8> {
        std::fs::read(&self.alerts).unwrap()
    }

    fn dlq(&self) -> Vec<u8> {
        std::fs::read(&self.dlq).unwrap()
    }
}

/// Writes `NAME.toml` in `dir`: the file source on `input`, outputs in `out`.
fn file_config(
    dir: &Path,
    name: &str,
    input: &Path,
    out: &Outputs,
    follow: bool,
    max_uncheckpointed: u64,
    http: bool,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let http = if http {
        "listen = \"127.0.0.1:0\""
    } else {
        "enabled = false"
    };
    let text = format!(
        r#"source = "file"
[file]
input = "{input}"
alerts = "{alerts}"
dlq = "{dlq}"
checkpoint = "{checkpoint}"
follow = {follow}
[delivery]
max_uncheckpointed = {max_uncheckpointed}
[http]
{http}
"#,
        input = input.display(),
        alerts = out.alerts.display(),
        dlq = out.dlq.display(),
        checkpoint = out.checkpoint.display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the job to its end; returns its log (stderr), failing unless it exits 0.
fn run_to_end(config: &Path, log: &Path) -> String {
    let mut job = start_run(config, log);
    let status = job.wait_exit(Duration::from_secs(120));
    let text = job.log_text();
    assert!(status.success(), "spcvm run failed ({status}):\n{text}");
    text
}

/// `spcvm backtest` on `input`: the alerts file's bytes and the line numbers it reported
/// as bad (`FILE:LINE: reason` on stderr).
fn backtest_file(input: &Path, alerts: &Path) -> (Vec<u8>, Vec<u64>) {
    let out = Command::new(spcvm())
        .args(["backtest", "--quiet", "--input"])
        .arg(input)
        .arg("--alerts")
        .arg(alerts)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "backtest failed:\n{stderr}");
    let prefix = format!("{}:", input.display());
    let bad = stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix)?.split(':').next()?.parse().ok())
        .collect();
    (std::fs::read(alerts).unwrap(), bad)
}

/// The dead-letter file as JSON values.
fn dead_letters(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("DLQ line {l:?}: {e}")))
        .collect()
}

/// The "N records after line M" numbers of the job's summary line.
fn summary_numbers(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("run of "))
        .unwrap_or_else(|| panic!("no summary line in\n{log}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .windows(4)
        .position(|w| w[1] == "records" && w[2] == "after" && w[3] == "line")
        .unwrap_or_else(|| panic!("unexpected summary: {line}"));
    (
        words[at].parse().unwrap(),
        words[at + 4].trim_end_matches(',').parse().unwrap(),
    )
}

/// Bad lines (and what the DLQ must say about them) interleaved with good records.
struct Bad {
    text: &'static [u8],
    /// `kind` on the dead letter; `None`: not a dead letter (blank line).
    kind: Option<&'static str>,
    /// Whether `spcvm backtest` reports it as a bad line too (it does not validate).
    backtest_bad: bool,
}

fn bad_lines() -> Vec<Bad> {
    vec![
        Bad {
            text: b"{not json",
            kind: Some("json"),
            backtest_bad: true,
        },
        Bad {
            text: br#"{"tool_id":"ION-00","tool_type":"cvd","recipe_id":"R","event_time":1,"measurements":{"x":1.0}}"#,
            kind: Some("json"),
            backtest_bad: true,
        },
        Bad {
            // A record cut short (a writer that crashed mid-line).
            text: br#"{"tool_id":"ION-01","tool_type":"ion_implant","recipe_id":"B11_30KEV","event_time":17724"#,
            kind: Some("json"),
            backtest_bad: true,
        },
        Bad {
            text: b"   \t ",
            kind: None,
            backtest_bad: false,
        },
        Bad {
            // Decodes, but a blank tool cannot be keyed (backtest takes it: unmonitored
            // parameter, no chart, no alert).
            text: br#"{"tool_id":" ","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"x":1.0}}"#,
            kind: Some("invalid"),
            backtest_bad: false,
        },
        Bad {
            text: b"[1, 2, 3]",
            kind: Some("json"),
            backtest_bad: true,
        },
    ]
}

/// An input file: `records` with bad line `i` after record `(i + 1) * every`; one good
/// line ends in `\r\n`. Returns the bad lines' (1-based line number, byte offset, index).
fn write_input(
    path: &Path,
    records: &[spcvm_schemas::Telemetry],
    bad: &[Bad],
    every: usize,
) -> Vec<(u64, u64, usize)> {
    let mut text = Vec::new();
    let mut at = Vec::new();
    let mut line = 0u64;
    for (i, mut good) in jsonl_lines(records).into_iter().enumerate() {
        if i == 7 {
            good.insert(good.len() - 1, b'\r');
        }
        text.extend_from_slice(&good);
        line += 1;
        if i % every == every - 1 && at.len() < bad.len() {
            let b = at.len();
            line += 1;
            at.push((line, text.len() as u64, b));
            text.extend_from_slice(bad[b].text);
            text.push(b'\n');
        }
    }
    assert_eq!(at.len(), bad.len(), "not enough records for the bad lines");
    std::fs::write(path, text).unwrap();
    at
}

/// Checks the dead-letter file against the bad lines written by [`write_input`].
fn assert_dead_letters(dlq: &[u8], input: &Path, bad: &[Bad], at: &[(u64, u64, usize)]) {
    let letters = dead_letters(dlq);
    let expected: Vec<_> = at.iter().filter(|(.., b)| bad[*b].kind.is_some()).collect();
    assert_eq!(letters.len(), expected.len(), "{letters:#?}");
    for (letter, &&(line, offset, b)) in letters.iter().zip(&expected) {
        assert_eq!(letter["line"], line, "{letter}");
        assert_eq!(letter["offset"], offset, "{letter}");
        assert_eq!(letter["kind"], bad[b].kind.unwrap(), "{letter}");
        assert!(
            !letter["error"].as_str().unwrap().is_empty(),
            "no error text: {letter}"
        );
        assert_eq!(
            letter["payload"].as_str().unwrap().as_bytes(),
            bad[b].text,
            "{letter}"
        );
        assert_eq!(letter["input"].as_str().unwrap(), input.to_str().unwrap());
    }
}

#[test]
fn run_writes_the_backtest_alerts_and_a_dead_letter_per_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("telemetry.jsonl");
    let records = telemetry(4, 320, 21);
    let bad = bad_lines();
    let at = write_input(&input, &records, &bad, 300);
    let out = Outputs::new(dir.path(), "run");
    let config = file_config(dir.path(), "run", &input, &out, false, 10_000, false);

    let log = run_to_end(&config, &dir.path().join("run.log"));
    let dead = bad.iter().filter(|b| b.kind.is_some()).count();
    assert!(log.contains("complete"), "{log}");
    assert!(
        log.contains(&format!("{} dead letters", dead)),
        "summary should count {dead} dead letters:\n{log}"
    );
    assert_eq!(summary_numbers(&log), (records.len() as u64, 0));

    let (expected, backtest_bad) = backtest_file(&input, &dir.path().join("backtest.jsonl"));
    let alerts = out.alerts();
    let raised = String::from_utf8_lossy(&alerts)
        .lines()
        .filter(|l| l.contains("\"repeats\":0"))
        .count();
    assert!(raised >= 10, "test data should raise alerts, got {raised}");
    assert!(
        alerts == expected,
        "alerts differ from the backtest's:\n{}",
        first_difference(&alerts, &expected)
    );

    assert_dead_letters(&out.dlq(), &input, &bad, &at);
    // The lines the backtest calls bad are dead letters with the same numbers.
    let want: Vec<u64> = at
        .iter()
        .filter(|(.., b)| bad[*b].backtest_bad)
        .map(|(line, ..)| *line)
        .collect();
    assert_eq!(backtest_bad, want);
}

/// The first differing line of two JSON-lines files, for failure messages.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let got = String::from_utf8_lossy(got);
    let want = String::from_utf8_lossy(want);
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for i in 0..g.len().max(w.len()) {
        if g.get(i) != w.get(i) {
            return format!(
                "line {} of {} / {}:\n  got  {:?}\n  want {:?}",
                i + 1,
                g.len(),
                w.len(),
                g.get(i),
                w.get(i)
            );
        }
    }
    "same lines, different bytes".into()
}

/// A small deterministic generator for kill points (seeded from the clock, printed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[test]
fn kill_9_at_random_points_then_restart_gives_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("telemetry.jsonl");
    // 50 implanters and 50 RTP tools, 3000 wafers each: 300 000 records, a second or two
    // of work for the optimized test binary.
    let records = telemetry(50, 3000, 5);
    let bad = bad_lines();
    write_input(&input, &records, &bad, 30_000);
    drop(records);

    // The reference: one uninterrupted run, first, timed, so that the kills below land at
    // points of the run however fast this machine is.
    let straight = Outputs::new(dir.path(), "straight");
    let straight_config = file_config(dir.path(), "straight", &input, &straight, false, 500, false);
    let started = Instant::now();
    let mut reference = start_run(&straight_config, &dir.path().join("straight.log"));
    let status = reference.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", reference.log_text());
    let whole_ms = started.elapsed().as_millis() as u64;

    let out = Outputs::new(dir.path(), "killed");
    let config = file_config(dir.path(), "killed", &input, &out, false, 500, false);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill points seeded with {seed}");
    let mut rng = Lcg(seed);
    let mut kills = Vec::new();
    let mut resumed_after = Vec::new();
    let mut completed = None;
    for round in 0..40 {
        let log = dir.path().join(format!("killed-{round}.log"));
        let mut job = start_run(&config, &log);
        // Up to 8 kills, each after 5 to 25 % of the uninterrupted run's time (a restart
        // resumes from its checkpoint, so at least three land before the input runs out);
        // then the run may finish.
        let wait = Duration::from_millis(whole_ms / 20 + rng.next(whole_ms / 5 + 1));
        let started = Instant::now();
        while started.elapsed() < wait && job.running() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if kills.len() < 8 && job.running() {
            job.kill9();
            kills.push(wait.as_millis());
            if let Ok(text) = std::fs::read_to_string(&log) {
                assert!(!text.contains("panicked"), "{text}");
            }
            continue;
        }
        let status = job.wait_exit(Duration::from_secs(120));
        let text = job.log_text();
        assert!(status.success(), "run {round} failed ({status}):\n{text}");
        resumed_after.push(summary_numbers(&text).1);
        completed = Some(text);
        break;
    }
    let completed = completed.expect("the job completed");
    eprintln!(
        "killed after {kills:?} ms (an uninterrupted run: {whole_ms} ms); the last run resumed \
         after line {resumed_after:?}"
    );
    assert!(
        kills.len() >= 3,
        "only {} kill(s) landed mid-run (the input is too small?)",
        kills.len()
    );
    assert!(completed.contains("complete"), "{completed}");
    // The last run resumed from a checkpoint rather than starting over.
    assert!(resumed_after[0] > 0, "{completed}");

    let (want_alerts, want_dlq) = (straight.alerts(), straight.dlq());
    assert!(!want_alerts.is_empty());
    let got_alerts = out.alerts();
    assert!(
        got_alerts == want_alerts,
        "alerts after {} kills differ from the uninterrupted run's:\n{}",
        kills.len(),
        first_difference(&got_alerts, &want_alerts)
    );
    assert_eq!(dead_letters(&out.dlq()).len(), bad.len() - 1);
    assert!(out.dlq() == want_dlq, "dead letters differ");

    // Running again after completion adds nothing.
    let checkpoint = std::fs::read(&out.checkpoint).unwrap();
    let again = run_to_end(&config, &dir.path().join("again.log"));
    assert!(again.contains("complete"), "{again}");
    assert_eq!(summary_numbers(&again).0, 0, "{again}");
    assert!(
        out.alerts() == want_alerts,
        "a run after completion changed the alerts"
    );
    assert!(
        out.dlq() == want_dlq,
        "a run after completion changed the DLQ"
    );
    assert!(std::fs::read(&out.checkpoint).unwrap() == checkpoint);
}

/// Appends `bytes` to `path` (and flushes it to the file).
fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
}

#[test]
fn follow_processes_appended_lines_and_restarts_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("telemetry.jsonl");
    let records = telemetry(3, 320, 8);
    let lines = jsonl_lines(&records);
    let bad_line: &[u8] = b"{\"tool_id\": \"RTP-01\", \"tool_type\": \"rtp\"";
    // The whole input: records 0..600, a bad line, records 600.. .
    let mut whole = Vec::new();
    let mut bad_offset = 0;
    for (i, line) in lines.iter().enumerate() {
        if i == 600 {
            bad_offset = whole.len() as u64;
            whole.extend_from_slice(bad_line);
            whole.push(b'\n');
        }
        whole.extend_from_slice(line);
    }
    let out = Outputs::new(dir.path(), "follow");
    let config = file_config(dir.path(), "follow", &input, &out, true, 10_000, true);

    // First run: 400 lines there at the start, more appended while it runs.
    std::fs::write(&input, lines[..400].concat()).unwrap();
    let mut job = start_run(&config, &dir.path().join("follow-1.log"));
    job.wait_metric(CONSUMED, 400.0, Duration::from_secs(30));
    append(&input, &lines[400..600].concat());
    append(&input, bad_line);
    append(&input, b"\n");
    // A line written in two pieces, the job looking at the file in between.
    let (head, tail) = lines[600].split_at(lines[600].len() / 2);
    append(&input, head);
    job.wait_metric(CONSUMED, 601.0, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    append(&input, tail);
    append(&input, &lines[601..1000].concat());
    job.wait_metric(CONSUMED, 1001.0, Duration::from_secs(30));
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let log = job.log_text();
    assert!(log.contains("stopped"), "{log}");
    assert_eq!(summary_numbers(&log), (1000, 0), "{log}");
    let letters = dead_letters(&out.dlq());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["line"], 601);
    assert_eq!(letters[0]["offset"], bad_offset);
    assert_eq!(letters[0]["kind"], "json");
    assert_eq!(letters[0]["payload"].as_str().unwrap().as_bytes(), bad_line);
    let first_alerts = out.alerts();

    // Lines appended while it is stopped, then while the restarted job runs.
    append(&input, &lines[1000..1400].concat());
    let mut job = start_run(&config, &dir.path().join("follow-2.log"));
    job.wait_metric(CONSUMED, 400.0, Duration::from_secs(30));
    append(&input, &lines[1400..].concat());
    job.wait_metric(
        CONSUMED,
        (lines.len() - 1000) as f64,
        Duration::from_secs(30),
    );
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let log = job.log_text();
    assert_eq!(
        summary_numbers(&log),
        ((lines.len() - 1000) as u64, 1001),
        "the restart continues after the 1001 lines read before:\n{log}"
    );
    assert!(std::fs::read(&input).unwrap() == whole);
    let second_alerts = out.alerts();
    assert!(
        second_alerts.starts_with(&first_alerts),
        "the restart changed what the first run wrote"
    );

    // Finish without following: the windows still open close, as in the backtest.
    let finish = file_config(dir.path(), "finish", &input, &out, false, 10_000, false);
    let log = run_to_end(&finish, &dir.path().join("finish.log"));
    assert_eq!(summary_numbers(&log), (0, lines.len() as u64 + 1), "{log}");
    let (expected, _) = backtest_file(&input, &dir.path().join("backtest.jsonl"));
    let alerts = out.alerts();
    assert!(alerts.starts_with(&second_alerts));
    let raised = String::from_utf8_lossy(&expected)
        .lines()
        .filter(|l| l.contains("\"repeats\":0"))
        .count();
    assert!(raised >= 10, "test data should raise alerts, got {raised}");
    assert!(
        alerts == expected,
        "followed, stopped, restarted and finished: alerts differ from the backtest's:\n{}",
        first_difference(&alerts, &expected)
    );
    assert_eq!(dead_letters(&out.dlq()), letters);
}

#[test]
fn a_checkpoint_of_another_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    std::fs::write(&first, jsonl_lines(&telemetry(2, 260, 1)).concat()).unwrap();
    std::fs::write(&second, jsonl_lines(&telemetry(2, 260, 2)).concat()).unwrap();
    let out = Outputs::new(dir.path(), "out");
    let config = file_config(dir.path(), "first", &first, &out, false, 10_000, false);
    run_to_end(&config, &dir.path().join("first.log"));
    let (alerts, checkpoint) = (out.alerts(), std::fs::read(&out.checkpoint).unwrap());
    assert!(!alerts.is_empty());

    // The same outputs and checkpoint, another input.
    let other = file_config(dir.path(), "second", &second, &out, false, 10_000, false);
    let mut job = start_run(&other, &dir.path().join("second.log"));
    let status = job.wait_exit(Duration::from_secs(60));
    let log = job.log_text();
    assert!(
        !status.success(),
        "a foreign checkpoint was accepted:\n{log}"
    );
    assert!(log.contains("spcvm: error: checkpoint"), "{log}");
    assert!(
        log.contains(out.checkpoint.to_str().unwrap()),
        "names the checkpoint: {log}"
    );
    assert!(
        log.contains(&format!(
            "belongs to input `{}`, not `{}`",
            first.display(),
            second.display()
        )),
        "names both inputs: {log}"
    );
    // Nothing was touched.
    assert!(out.alerts() == alerts);
    assert!(std::fs::read(&out.checkpoint).unwrap() == checkpoint);

    // Once the checkpoint is deleted, the other input starts over.
    std::fs::remove_file(&out.checkpoint).unwrap();
    let log = run_to_end(&other, &dir.path().join("second-again.log"));
    assert_eq!(summary_numbers(&log).1, 0, "{log}");
    let (expected, _) = backtest_file(&second, &dir.path().join("backtest.jsonl"));
    assert!(out.alerts() == expected);
}

#[test]
fn a_window_left_open_by_a_tool_that_goes_quiet_closes_where_the_backtest_closes_it() {
    // ION-00 drifts into alerts and stops reporting at wafer 260, with its dedup window
    // open; the other tools go on for 140 more wafers. A bounded (not followed) file closes
    // that window at the end of its input, as the backtest does: byte-identical output.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("telemetry.jsonl");
    let mut records = telemetry(3, 400, 21);
    let quiet_from = records
        .iter()
        .find(|r| r.wafer_id.as_deref() == Some("W00260"))
        .unwrap()
        .event_time;
    records.retain(|r| !(r.tool_id == "ION-00" && r.event_time > quiet_from));
    std::fs::write(&input, jsonl_lines(&records).concat()).unwrap();
    let out = Outputs::new(dir.path(), "run");
    let config = file_config(dir.path(), "run", &input, &out, false, 10_000, false);
    run_to_end(&config, &dir.path().join("run.log"));
    let (expected, _) = backtest_file(&input, &dir.path().join("backtest.jsonl"));
    // The quiet tool's window was open, folded repeats, and closed.
    assert!(
        String::from_utf8_lossy(&expected)
            .lines()
            .any(|l| l.contains("\"tool_id\":\"ION-00\"") && !l.contains("\"repeats\":0")),
        "test data should leave ION-00 with an open window"
    );
    assert!(
        out.alerts() == expected,
        "alerts differ from the backtest's"
    );
}

#[test]
fn a_replaced_or_truncated_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("telemetry.jsonl");
    std::fs::write(&input, jsonl_lines(&telemetry(2, 260, 1)).concat()).unwrap();
    let out = Outputs::new(dir.path(), "out");
    let config = file_config(dir.path(), "first", &input, &out, false, 10_000, false);
    run_to_end(&config, &dir.path().join("first.log"));
    let checkpoint = std::fs::read(&out.checkpoint).unwrap();
    // Rotated: another file of the same name, shorter than what was read.
    std::fs::write(&input, jsonl_lines(&telemetry(2, 30, 9)).concat()).unwrap();
    let mut job = start_run(&config, &dir.path().join("rotated.log"));
    let status = job.wait_exit(Duration::from_secs(60));
    let log = job.log_text();
    assert!(!status.success(), "a rotated input was accepted:\n{log}");
    assert!(
        log.contains("is not the file the checkpoint was taken on"),
        "{log}"
    );
    // Replaced by a file as long, but different: refused too.
    let mut longer = jsonl_lines(&telemetry(2, 300, 5)).concat();
    longer.truncate(longer.len().max(1));
    std::fs::write(&input, &longer).unwrap();
    let mut job = start_run(&config, &dir.path().join("replaced.log"));
    let status = job.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", job.log_text());
    assert!(std::fs::read(&out.checkpoint).unwrap() == checkpoint);
}

#[test]
fn the_testkit_runs_the_binary_cargo_built_for_these_tests() {
    assert_eq!(spcvm(), Path::new(env!("CARGO_BIN_EXE_spcvm")));
}
