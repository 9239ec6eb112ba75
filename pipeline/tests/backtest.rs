//! `spcvm backtest` end to end on the shipped example, in every input format.

mod common;

use std::collections::BTreeSet;
use std::fs::File;

use common::*;
use spcvm_schemas::{Alert, Severity, encode_telemetry_json, write_telemetry_container};

fn beam_alerts<'a>(alerts: &'a [Alert], tool: &str) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| a.tool_id == tool && a.parameter == "beam_current_mA")
        .collect()
}

#[test]
fn example_catches_the_drift_on_ion_02_only() {
    let dir = tempfile::tempdir().unwrap();
    let (alerts_path, report_path) = (dir.path().join("a.jsonl"), dir.path().join("r.json"));
    let stderr = backtest_ok(&example_input(), &alerts_path, &report_path, &[]);

    // The two bad lines are reported with their line numbers, and the run goes on.
    assert!(
        stderr.contains(
            "ion_implant_drift.jsonl:201: telemetry JSON: EOF while parsing a value (column 76)\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "ion_implant_drift.jsonl:602: telemetry JSON: unknown variant `cvd`, expected `ion_implant` or `rtp` (column 40)\n"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("... and"), "{stderr}");
    assert!(
        stderr.contains("  bad records skipped       2\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  non-finite values         1 (counted, not plotted)\n"),
        "{stderr}"
    );

    let alerts = read_alerts(&alerts_path);
    assert!(
        beam_alerts(&alerts, "ION-01").is_empty(),
        "{:#?}",
        beam_alerts(&alerts, "ION-01")
    );
    let ion02 = beam_alerts(&alerts, "ION-02");
    assert!(!ion02.is_empty());
    let first = ion02[0];
    assert_eq!(
        (first.chart.as_str(), first.rule.as_str()),
        ("ewma", "rule_1")
    );
    assert_eq!(first.repeats, 0);
    assert!(first.statistic > first.ucl.unwrap());
    assert!(
        first.event_time > DRIFT_START_MS,
        "first alert at {}",
        first.event_time
    );
    // 0.06 sigma per wafer: caught within a few dozen wafers.
    assert!(
        first.event_time <= DRIFT_START_MS + 40 * WAFER_MS,
        "first alert {} wafers after the drift start",
        (first.event_time - DRIFT_START_MS) / WAFER_MS
    );
    // Every beam alert on ION-02 is an upward EWMA signal after the drift start.
    for a in &ion02 {
        assert_eq!(a.chart, "ewma");
        assert!(a.event_time > DRIFT_START_MS);
        assert!(a.statistic > a.center_line);
    }
    // Closing lines reuse the id of an earlier alert.
    let opened: BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a.repeats == 0)
        .map(|a| a.alert_id.as_str())
        .collect();
    for a in alerts.iter().filter(|a| a.repeats > 0) {
        assert!(
            opened.contains(a.alert_id.as_str()),
            "closing line without an opening: {a:?}"
        );
    }

    let report = read_report(&report_path);
    let input = &report["input"];
    assert_eq!(input["format"], "jsonl");
    assert_eq!(input["records"], 1200);
    assert_eq!(input["bad_records"], 2);
    assert_eq!(input["measurements"], 4800);
    assert_eq!(input["non_finite"], 1);
    assert_eq!(input["missing"], 0);
    assert_eq!(input["unmonitored"], 0);

    let count = |sev: Severity| {
        alerts
            .iter()
            .filter(|a| a.repeats == 0 && a.severity == sev)
            .count()
    };
    let by_sev = &report["alerts"]["by_severity"];
    assert_eq!(by_sev["minor"], count(Severity::Minor));
    assert_eq!(by_sev["major"], count(Severity::Major));
    assert_eq!(by_sev["critical"], count(Severity::Critical));
    assert_eq!(
        report["alerts"]["total"],
        alerts.iter().filter(|a| a.repeats == 0).count()
    );
    assert_eq!(
        report["alerts"]["closing_updates"],
        alerts.iter().filter(|a| a.repeats > 0).count()
    );

    // 2 tools x 4 ion-implant parameters, sorted by key.
    let charts = report["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 8);
    let keys: Vec<(String, String)> = charts
        .iter()
        .map(|c| {
            (
                c["tool_id"].as_str().unwrap().into(),
                c["parameter"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    let beam = chart(&report, "ION-02", "B11_30KEV", "beam_current_mA");
    assert_eq!(beam["tool_type"], "ion_implant");
    assert_eq!(beam["chart_type"], "ewma");
    assert_eq!(beam["phase"], "monitoring");
    assert_eq!(beam["samples"], 600);
    let center = beam["center"].as_f64().unwrap();
    assert!((center - 1.00).abs() < 0.005, "center {center}");
    assert!(beam["ucl"].as_f64().unwrap() > center);
    assert!(beam["spread_center"].is_null());
    assert!(beam["alerts_by_rule"]["rule_1"].as_u64().unwrap() >= ion02.len() as u64);

    let quiet = chart(&report, "ION-01", "B11_30KEV", "beam_current_mA");
    assert_eq!(quiet["samples"], 599);
    assert_eq!(quiet["non_finite"], 1);
    assert_eq!(quiet["alerts_by_rule"], serde_json::json!({}));

    let dose = chart(&report, "ION-01", "B11_30KEV", "dose_uniformity_pct");
    assert_eq!(dose["chart_type"], "xbar_r");
    assert!(dose["spread_ucl"].as_f64().unwrap() > dose["spread_center"].as_f64().unwrap());
}

#[test]
fn csv_and_avro_inputs_give_byte_identical_alerts() {
    let records = example_records();
    assert_eq!(records.len(), 1200);
    let dir = tempfile::tempdir().unwrap();

    let jsonl = dir.path().join("good.jsonl");
    let mut text = Vec::new();
    for r in &records {
        text.extend(encode_telemetry_json(r));
        text.push(b'\n');
    }
    std::fs::write(&jsonl, text).unwrap();

    let csv_path = dir.path().join("good.csv");
    let parameters: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.measurements.keys().map(String::as_str))
        .collect();
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    let mut header = vec![
        "tool_id",
        "tool_type",
        "recipe_id",
        "lot_id",
        "wafer_id",
        "event_time",
    ];
    header.extend(parameters.iter().copied());
    w.write_record(&header).unwrap();
    for r in &records {
        let mut row = vec![
            r.tool_id.clone(),
            r.tool_type.to_string(),
            r.recipe_id.clone(),
            r.lot_id.clone().unwrap_or_default(),
            r.wafer_id.clone().unwrap_or_default(),
            r.event_time.to_string(),
        ];
        row.extend(parameters.iter().map(|p| {
            r.measurements
                .get(*p)
                .map(f64::to_string)
                .unwrap_or_default()
        }));
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();

    let avro_path = dir.path().join("good.avro");
    write_telemetry_container(File::create(&avro_path).unwrap(), &records).unwrap();

    let mut outputs = Vec::new();
    for (input, format) in [(&jsonl, "jsonl"), (&csv_path, "csv"), (&avro_path, "avro")] {
        let alerts = dir.path().join(format!("{format}.alerts.jsonl"));
        let report = dir.path().join(format!("{format}.report.json"));
        let stderr = backtest_ok(input, &alerts, &report, &[]);
        assert!(stderr.contains(&format!("({format}) done in")), "{stderr}");
        assert!(
            stderr.contains("  bad records skipped       0\n"),
            "{stderr}"
        );
        let mut report = read_report(&report);
        assert_eq!(report["input"]["format"], format);
        assert_eq!(report["input"]["records"], 1200);
        assert_eq!(report["input"]["non_finite"], 1);
        report["input"]["format"] = serde_json::Value::Null;
        report["input"]["path"] = serde_json::Value::Null;
        outputs.push((std::fs::read(&alerts).unwrap(), report));
    }
    assert!(!outputs[0].0.is_empty());
    // Leaving the two bad lines out changes nothing either.
    let example_alerts = dir.path().join("example.alerts.jsonl");
    backtest_ok(
        &example_input(),
        &example_alerts,
        &dir.path().join("example.json"),
        &["--quiet"],
    );
    assert!(std::fs::read(&example_alerts).unwrap() == outputs[0].0);
    assert!(
        outputs[0].0 == outputs[1].0,
        "CSV alerts differ from JSON-lines alerts"
    );
    assert!(
        outputs[0].0 == outputs[2].0,
        "Avro alerts differ from JSON-lines alerts"
    );
    assert_eq!(outputs[0].1, outputs[1].1);
    assert_eq!(outputs[0].1, outputs[2].1);

    // An explicit --format overrides the extension.
    let renamed = dir.path().join("records.dat");
    std::fs::copy(&csv_path, &renamed).unwrap();
    let alerts = dir.path().join("dat.alerts.jsonl");
    backtest_ok(
        &renamed,
        &alerts,
        &dir.path().join("dat.json"),
        &["--format", "csv", "--quiet"],
    );
    assert!(std::fs::read(&alerts).unwrap() == outputs[0].0);
}

#[test]
fn runs_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for i in 0..2 {
        let alerts = dir.path().join(format!("a{i}.jsonl"));
        let report = dir.path().join(format!("r{i}.json"));
        backtest_ok(&example_input(), &alerts, &report, &["--quiet"]);
        runs.push((
            std::fs::read(&alerts).unwrap(),
            std::fs::read(&report).unwrap(),
        ));
    }
    assert!(!runs[0].0.is_empty());
    assert!(runs[0].0 == runs[1].0, "alert files differ between runs");
    assert!(runs[0].1 == runs[1].1, "reports differ between runs");
}

#[test]
fn quiet_prints_only_the_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = backtest_ok(
        &example_input(),
        &dir.path().join("a.jsonl"),
        &dir.path().join("r.json"),
        &["--quiet"],
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].ends_with(
        "ion_implant_drift.jsonl:201: telemetry JSON: EOF while parsing a value (column 76)"
    ));
    assert!(lines[1].contains("ion_implant_drift.jsonl:602: "));
}

#[test]
fn many_bad_lines_print_twenty_then_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    let mut text = String::new();
    for i in 0..25 {
        text.push_str(&format!("{{\"broken\": {i}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let stderr = backtest_ok(
        &input,
        &dir.path().join("a.jsonl"),
        &dir.path().join("r.json"),
        &["--quiet"],
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 21, "{stderr}");
    assert!(lines[0].starts_with(&format!("{}:1: telemetry JSON: ", input.display())));
    assert!(lines[19].starts_with(&format!("{}:20: ", input.display())));
    assert_eq!(lines[20], "... and 5 more");
    let report = read_report(&dir.path().join("r.json"));
    assert_eq!(report["input"]["bad_records"], 25);
    assert_eq!(report["input"]["records"], 0);
    assert!(
        std::fs::read(dir.path().join("a.jsonl"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn missing_input_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("no-such-history.jsonl");
    let alerts = dir.path().join("a.jsonl");
    let out = backtest(&input, &alerts, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "spcvm: error: cannot open input file `{}`: No such file or directory (os error 2)",
            input.display()
        )
    );
    assert!(
        !alerts.exists(),
        "no alerts file is created when the input cannot be opened"
    );
}

#[test]
fn refuses_to_overwrite_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("history.jsonl");
    std::fs::copy(example_input(), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let same = dir.path().join(".").join("history.jsonl");
    for option in ["--alerts", "--report"] {
        let other = dir.path().join("out.json");
        let (alerts, report) = if option == "--alerts" {
            (&same, &other)
        } else {
            (&other, &same)
        };
        let out = backtest(&input, alerts, &["--report".as_ref(), report.as_os_str()]);
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            format!(
                "spcvm: error: {option} `{}` is the input file; choose another output path",
                same.display()
            )
        );
        assert!(
            std::fs::read(&input).unwrap() == before,
            "the input is untouched"
        );
    }
}

#[test]
fn csv_without_a_required_column_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("h.csv");
    std::fs::write(
        &input,
        "tool_id,tool_type,event_time,beam_current_mA\nION-01,ion_implant,1,1.0\n",
    )
    .unwrap();
    let out = backtest(&input, &dir.path().join("a.jsonl"), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "spcvm: error: {}:1: CSV header has no `recipe_id` column",
            input.display()
        )),
        "{stderr}"
    );
}

/// Several `--input`s are merged as the Kafka runtime merges co-partitioned topics: of the
/// files' next records, the lowest event time first, ties to the file given first. The
/// rule is written out here, on the example split over three files (one of them in
/// reversed runs, so a file's own records are not in time order), and the merged backtest
/// equals the backtest of the single file in that order, byte for byte.
#[test]
fn several_inputs_merge_by_event_time_like_co_partitioned_topics() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example_input()).unwrap();
    let mut files: [Vec<&str>; 3] = Default::default();
    for (run, lines) in text.lines().collect::<Vec<_>>().chunks(7).enumerate() {
        let file = &mut files[run % 3];
        if run % 3 == 1 {
            file.extend(lines.iter().rev());
        } else {
            file.extend(lines);
        }
    }
    // The rule; a line that is not telemetry is a bad record, passed over where it is.
    let time = |line: &str| {
        spcvm_schemas::decode_telemetry_json(line.as_bytes())
            .ok()
            .map(|t| t.event_time)
    };
    let mut at = [0usize; 3];
    let mut merged = Vec::new();
    loop {
        let mut best: Option<(i64, usize)> = None;
        for (k, file) in files.iter().enumerate() {
            while at[k] < file.len() && time(file[at[k]]).is_none() {
                at[k] += 1;
            }
            if let Some(t) = file.get(at[k]).and_then(|line| time(line))
                && best.is_none_or(|(b, _)| t < b)
            {
                best = Some((t, k));
            }
        }
        let Some((_, k)) = best else { break };
        merged.push(files[k][at[k]]);
        at[k] += 1;
    }
    let write = |name: &str, lines: &[&str]| {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let inputs: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(k, lines)| write(&format!("part-{k}.jsonl"), lines))
        .collect();
    let single = write("merged.jsonl", &merged);
    let concatenated = write("concatenated.jsonl", &files.concat());

    let alerts = |name: &str, inputs: &[&std::path::Path]| {
        let path = dir.path().join(name);
        let mut args: Vec<&std::ffi::OsStr> = vec!["backtest".as_ref()];
        for input in inputs {
            args.extend(["--input".as_ref(), input.as_os_str()]);
        }
        args.extend(["--alerts".as_ref(), path.as_os_str()]);
        let out = spcvm(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        (std::fs::read(&path).unwrap(), stderr)
    };
    let (by_rule, _) = alerts("rule.jsonl", &[&single]);
    let parts: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    let (by_merge, stderr) = alerts("merge.jsonl", &parts);
    assert!(!by_rule.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&by_merge),
        String::from_utf8_lossy(&by_rule)
    );
    assert!(
        stderr.contains("  bad records skipped       2\n")
            && stderr.contains("part-0.jsonl, ")
            && stderr.contains("part-2.jsonl"),
        "{stderr}"
    );
    // The files one after the other chart another history: the order is what matters.
    let (one_after_the_other, _) = alerts("concat.jsonl", &[&concatenated]);
    assert_ne!(one_after_the_other, by_rule);
}

/// Triage through the command line: `spcvm backtest --triage --actions` and `spcvm run`
/// on the file source with `stages = ["spc", "triage"]` write the same triage and actions,
/// byte for byte; ION-02's drift is triaged as a beam current failure mode.
#[test]
fn triage_of_the_backtest_equals_the_file_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let out = spcvm([
        "backtest".as_ref(),
        "--quiet".as_ref(),
        "--input".as_ref(),
        example_input().as_os_str(),
        "--alerts".as_ref(),
        path("alerts.jsonl").as_os_str(),
        "--triage".as_ref(),
        path("triage.jsonl").as_os_str(),
        "--actions".as_ref(),
        path("actions.jsonl").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::create_dir(path("run")).unwrap();
    let config = format!(
        "stages = [\"spc\", \"triage\"]\n[file]\ninput = {:?}\nalerts = \"run/alerts.jsonl\"\n\
         dlq = \"run/dlq.jsonl\"\ncheckpoint = \"run/checkpoint.json\"\n[http]\nenabled = false\n",
        example_input()
    );
    std::fs::write(path("pipeline.toml"), config).unwrap();
    let out = spcvm([
        "run".as_ref(),
        "--config".as_ref(),
        path("pipeline.toml").as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in ["alerts", "triage", "actions"] {
        let backtest = std::fs::read_to_string(path(&format!("{stream}.jsonl"))).unwrap();
        let run = std::fs::read_to_string(path(&format!("run/{stream}.jsonl"))).unwrap();
        assert_eq!(run, backtest, "{stream}");
    }
    let triage: Vec<spcvm_schemas::Triage> = std::fs::read_to_string(path("triage.jsonl"))
        .unwrap()
        .lines()
        .map(|l| spcvm_schemas::decode_triage_json(l.as_bytes()).unwrap())
        .collect();
    assert!(
        triage
            .iter()
            .any(|t| t.tool_id == "ION-02" && t.failure_mode == "beam_current_instability"),
        "{triage:#?}"
    );
    // Every incident ends with a closed version, the highest.
    let last = triage.iter().rfind(|t| t.tool_id == "ION-02").unwrap();
    assert_eq!(last.status, spcvm_schemas::IncidentStatus::Closed);
}

/// `--charts` names the chart file (`--config`, its old name, still works), and the help
/// ends with examples.
#[test]
fn charts_is_the_chart_files_option_and_help_shows_examples() {
    let dir = tempfile::tempdir().unwrap();
    let run = |option: &str, name: &str| {
        let alerts = dir.path().join(name);
        let out = spcvm([
            "backtest".as_ref(),
            "--quiet".as_ref(),
            option.as_ref(),
            example_config().as_os_str(),
            "--input".as_ref(),
            example_input().as_os_str(),
            "--alerts".as_ref(),
            alerts.as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(alerts).unwrap()
    };
    assert_eq!(run("--charts", "a.jsonl"), run("--config", "b.jsonl"));
    let help = String::from_utf8(spcvm(["backtest", "--help"]).stdout).unwrap();
    assert!(
        help.contains("--charts <CHARTS.toml>")
            && help.contains("Examples (from the repository root):\n  spcvm backtest"),
        "{help}"
    );
}
