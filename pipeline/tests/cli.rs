//! The `spcvm` binary as a user runs it: `-` for standard output and input, `spcvm config
//! check` on good and bad files, and the examples of every subcommand's `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use spcvm_schemas::{Alert, AlertStatus, decode_alert_json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

const DRIFT: &str = "examples/ion_implant_drift.jsonl";

/// Runs `spcvm args` in `dir`, with `stdin` as standard input.
fn spcvm_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spcvm"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that does not read its input may close it first: ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn spcvm(args: &[&str]) -> Output {
    spcvm_in(&root(), args, b"")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alerts_of(bytes: &[u8]) -> Vec<Alert> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| decode_alert_json(l).unwrap())
        .collect()
}

#[test]
fn backtest_alerts_to_standard_output_are_the_file_s_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let input = root().join(DRIFT);
    let input = input.to_str().unwrap();
    let to_file = spcvm(&[
        "backtest",
        "--input",
        input,
        "--alerts",
        file.to_str().unwrap(),
    ]);
    assert!(to_file.status.success(), "{}", text(&to_file.stderr));
    assert!(to_file.stdout.is_empty(), "the summary goes to stderr");
    let to_stdout = spcvm(&["backtest", "--input", input, "--alerts", "-", "--quiet"]);
    assert!(to_stdout.status.success(), "{}", text(&to_stdout.stderr));
    let written = std::fs::read(&file).unwrap();
    assert_eq!(to_stdout.stdout, written);
    let alerts = alerts_of(&written);
    assert!(alerts.len() >= 5, "{} alerts", alerts.len());
    // Every alert carries the new fields: an open alert its own time as the window's start.
    for a in &alerts {
        match a.status {
            AlertStatus::Open => assert_eq!(a.window_start, Some(a.event_time)),
            AlertStatus::Closed => assert!(a.repeats > 0 && a.window_start < Some(a.event_time)),
        }
    }
    assert!(alerts.iter().any(|a| a.distance_sigma.is_some()));
    // The summary names standard output.
    let summary = spcvm(&["backtest", "--input", input, "--alerts", "-"]);
    assert!(
        text(&summary.stderr).contains("standard output"),
        "{}",
        text(&summary.stderr)
    );
}

#[test]
fn backtest_reads_standard_input_and_writes_the_report_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let drift = std::fs::read(root().join(DRIFT)).unwrap();
    let out = spcvm_in(
        dir.path(),
        &[
            "backtest", "--input", "-", "--format", "jsonl", "--alerts", "a.jsonl", "--report",
            "-", "-q",
        ],
        &drift,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["input"]["records"], 1200, "{report}");
    let alerts = alerts_of(&std::fs::read(dir.path().join("a.jsonl")).unwrap());
    assert!(!alerts.is_empty());
    // Without --format there is no extension to tell the format by.
    let out = spcvm_in(
        dir.path(),
        &["backtest", "--input", "-", "--alerts", "a.jsonl"],
        &drift,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--format"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn only_one_output_may_be_standard_output() {
    let input = root().join(DRIFT);
    let input = input.to_str().unwrap();
    for (args, named) in [
        (
            vec!["--alerts", "-", "--report", "-"],
            "--alerts and --report",
        ),
        (
            vec!["--alerts", "a.jsonl", "--triage", "-", "--actions", "-"],
            "--triage and --actions",
        ),
        (
            vec![
                "--alerts",
                "-",
                "--output",
                "triage=-",
                "--stages",
                "spc,triage",
            ],
            "--alerts and --output triage=-",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["backtest", "--input", input];
        all.extend(args);
        let out = spcvm_in(dir.path(), &all, b"");
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("only one output may be `-`") && err.contains(named),
            "{err}"
        );
        assert!(out.stdout.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
    let out = spcvm(&[
        "backtest", "--input", "-", "--input", "-", "--format", "jsonl", "--alerts", "-",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("standard input can be read once"));
}

#[test]
fn score_writes_json_to_standard_output_and_reads_alerts_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scenario = root().join("deploy/scenarios/vacuum_leak.toml");
    let run = |args: &[&str], stdin: &[u8]| {
        let out = spcvm_in(d, args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        out
    };
    run(
        &[
            "simulate",
            "--scenario",
            scenario.to_str().unwrap(),
            "--out",
            "fab.jsonl",
        ],
        b"",
    );
    run(
        &[
            "backtest",
            "--input",
            "fab.jsonl",
            "--alerts",
            "alerts.jsonl",
            "-q",
        ],
        b"",
    );
    let files = run(
        &[
            "score",
            "--truth",
            "fab.truth.json",
            "--alerts",
            "alerts.jsonl",
            "--json",
            "score.json",
        ],
        b"",
    );
    let alerts = std::fs::read(d.join("alerts.jsonl")).unwrap();
    let piped = run(
        &[
            "score",
            "--truth",
            "fab.truth.json",
            "--alerts",
            "-",
            "--json",
            "-",
        ],
        &alerts,
    );
    assert_eq!(piped.stdout, std::fs::read(d.join("score.json")).unwrap());
    serde_json::from_slice::<serde_json::Value>(&piped.stdout).unwrap();
    // The table moves to stderr when stdout holds the JSON.
    assert_eq!(text(&piped.stderr), text(&files.stdout));
    let twice = spcvm_in(d, &["score", "--truth", "-", "--alerts", "-"], b"");
    assert_eq!(twice.status.code(), Some(1));
    assert!(text(&twice.stderr).contains("only one of --truth, --alerts and --triage may be `-`"));
}

#[test]
fn config_check_accepts_the_shipped_files() {
    let out = spcvm(&[
        "config",
        "check",
        "deploy/config/pipeline.example.toml",
        "deploy/config/charts.toml",
        "deploy/playbooks/ion_implant.toml",
        "deploy/playbooks/rtp.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "ok: deploy/config/pipeline.example.toml (pipeline: source kafka, stages spc"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("ok: deploy/config/charts.toml (charts: "),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("ok: deploy/playbooks/ion_implant.toml (playbooks: "),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains("playbooks"), "{}", lines[3]);
}

/// Writes `text` to NAME in a fresh directory and checks it with `extra` arguments.
fn check_file(name: &str, text_: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text_).unwrap();
    let mut args = vec!["config", "check", name];
    args.extend(extra);
    let out = spcvm_in(dir.path(), &args, b"");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn config_check_names_file_line_and_key_and_exits_with_2() {
    // Charts: an unknown key, then a value out of range.
    let charts =
        "[dedup]\nwindow_s = 60.0\n\n[[chart]]\nparameter = \"x\"\ntype = \"ewma\"\nlamda = 0.2\n";
    let (code, out, err) = check_file("charts.toml", charts, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        err.contains("charts.toml:7:1: unknown field `lamda`"),
        "{err}"
    );
    let charts = "[[chart]]\nparameter = \"x\"\ntype = \"ewma\"\nlambda = 1.5\n";
    let (code, _, err) = check_file("charts.toml", charts, &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("charts.toml:4: chart[0] (x): `lambda`"),
        "{err}"
    );
    // Pipeline: an unknown key, a bad value, an empty required one.
    let (code, _, err) = check_file(
        "p.toml",
        "source = \"file\"\n[kafka]\nbootstrap = \"x\"\n",
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("p.toml:3:1: unknown field `bootstrap`"),
        "{err}"
    );
    let (code, _, err) = check_file("p.toml", "source = \"tape\"\n", &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("p.toml:1:10:") && err.contains("tape"),
        "{err}"
    );
    let (code, _, err) = check_file(
        "p.toml",
        "source = \"kafka\"\n[kafka]\ngroup_id = \"\"\n",
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("p.toml:3: kafka.group_id"), "{err}");
    let (code, _, err) = check_file(
        "p.toml",
        "source = \"file\"\nstages = [\"spc\", \"nope\"]\n",
        &[],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("p.toml:2: stages: unknown stage `nope`"),
        "{err}"
    );
    // A pipeline that names a bad charts file: that file's line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[[chart]]\nparameter = \"x\"\ntype = \"imr\"\nl = -1.0\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "source = \"file\"\ncharts = \"c.toml\"\n",
    )
    .unwrap();
    let out = spcvm_in(dir.path(), &["config", "check", "p.toml"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("c.toml:4: chart[0] (x): `l`"),
        "{}",
        text(&out.stderr)
    );
    // --kind overrides the detection: a chart file read as playbooks is refused.
    let (code, _, err) = check_file(
        "charts.toml",
        "[[chart]]\nparameter = \"x\"\ntype = \"imr\"\n",
        &["--kind", "playbooks"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("charts.toml:"), "{err}");
    // A good file and a bad one: the good one is ok, the exit code still 2.
    let (code, out, _) = check_file("ok.toml", "source = \"file\"\n", &["ok.toml"]);
    assert_eq!(code, Some(0), "{out}");
}

/// The example command lines of `spcvm SUBCOMMAND --help`.
fn examples(subcommand: &[&str]) -> Vec<String> {
    let mut args = subcommand.to_vec();
    args.push("--help");
    let help = text(&spcvm(&args).stdout);
    let start = help
        .find("Example")
        .unwrap_or_else(|| panic!("no example in `spcvm {} --help`", subcommand.join(" ")));
    help[start..]
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains("spcvm "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Options whose value is a file an example reads.
const INPUT_OPTIONS: [&str; 7] = [
    "--input",
    "--charts",
    "--config",
    "--playbooks",
    "--truth",
    "--scenario",
    "<",
];
/// Options whose value is a file an example writes.
const OUTPUT_OPTIONS: [&str; 8] = [
    "--alerts",
    "--report",
    "--triage",
    "--actions",
    "--json",
    "--out",
    "--output",
    ">",
];

#[test]
fn every_help_example_names_files_that_exist_and_the_offline_ones_run() {
    let dir = tempfile::tempdir().unwrap();
    for top in ["examples", "deploy"] {
        std::os::unix::fs::symlink(root().join(top), dir.path().join(top)).unwrap();
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_spcvm")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let subcommands: [&[&str]; 5] = [
        &["backtest"],
        &["run"],
        &["score"],
        &["config", "check"],
        &["topics", "create"],
    ];
    for sub in subcommands {
        let lines = examples(sub);
        assert!(!lines.is_empty(), "{sub:?}");
        // Written by an earlier line of the same help (a chain: simulate, backtest, score).
        let mut written: Vec<String> = Vec::new();
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "spcvm").unwrap();
            for (i, w) in words.iter().enumerate().skip(at + 1) {
                let value = words.get(i + 1).copied().unwrap_or("-");
                let value = value.split_once('=').map_or(value, |(_, f)| f);
                // `spcvm config check FILE...`: the files are positional.
                let input = INPUT_OPTIONS.contains(w)
                    || (words[at + 1] == "config" && w.ends_with(".toml"));
                let file = if INPUT_OPTIONS.contains(w) { value } else { w };
                if input && file != "-" {
                    assert!(
                        root().join(file).exists() || written.iter().any(|f| f == file),
                        "`{line}` (spcvm {} --help) names {file}, which does not exist",
                        sub.join(" ")
                    );
                }
                if OUTPUT_OPTIONS.contains(w) {
                    written.push(value.to_string());
                    written.push(value.replace(".jsonl", ".truth.json"));
                }
            }
            // Those that need no broker run, from a directory that looks like the repository.
            if matches!(words[at + 1], "backtest" | "score" | "config" | "simulate") {
                let out = Command::new("sh")
                    .arg("-c")
                    .arg(line)
                    .current_dir(dir.path())
                    .env("PATH", &path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "`{line}` failed: {}",
                    text(&out.stderr)
                );
            }
        }
    }
}
