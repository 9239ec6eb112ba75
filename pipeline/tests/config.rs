//! `spcvm backtest --config`: the shipped example loads, and mistakes are reported with the
//! file, the line and the key.

mod common;

use std::path::Path;

use common::*;

/// Runs a backtest of the example with `config` written to `charts.toml`; returns whether it
/// succeeded, its stderr, and the config path.
fn run_with(config: &str) -> (bool, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charts.toml");
    std::fs::write(&path, config).unwrap();
    let alerts = dir.path().join("a.jsonl");
    let out = backtest(
        &example_input(),
        &alerts,
        &["--config".as_ref(), path.as_os_str()],
    );
    if !out.status.success() {
        assert!(!alerts.exists(), "no alerts file after a config error");
    }
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
        dir,
    )
}

const HEAD: &str = "seed_defaults = true\n\n[[chart]]\ntool_type = \"ion_implant\"\nparameter = \"beam_current_mA\"\ntype = \"ewma\"\n";

#[test]
fn unknown_key_names_file_line_and_key() {
    let (ok, stderr, path, _dir) = run_with(&format!("{HEAD}lamda = 0.1\n"));
    assert!(!ok);
    let expected = format!(
        "spcvm: error: {}:7:1: unknown field `lamda`, expected one of `tool_type`, `parameter`, `type`, `lambda`,",
        path.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[test]
fn out_of_range_value_names_file_line_chart_and_key() {
    let (ok, stderr, path, _dir) = run_with(&format!("{HEAD}l = 2.8\nlambda = 1.5\n"));
    assert!(!ok);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "spcvm: error: {}:8: chart[0] (beam_current_mA): `lambda`: 1.5 must be in (0, 1]",
            path.display()
        )
    );
}

#[test]
fn unknown_chart_type_names_the_line() {
    let (ok, stderr, path, _dir) =
        run_with("[[chart]]\nparameter = \"beam_current_mA\"\n\ntype = \"shewhart\"\n");
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "spcvm: error: {}:4:8: unknown variant `shewhart`, expected one of `xbar_r`, `xbar_s`, `imr`, `ewma`, `cusum`",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn unreadable_config_names_the_path() {
    let (ok, stderr, _path, dir) = run_with("");
    assert!(ok, "{stderr}");
    let missing = dir.path().join("nope.toml");
    let out = backtest(
        &example_input(),
        &dir.path().join("b.jsonl"),
        &["--config".as_ref(), missing.as_os_str()],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "spcvm: error: cannot read config file `{}`: ",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn shipped_example_config_loads_and_still_catches_the_drift() {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let (config, _monitor) = spcvm::config::parse(&text, Path::new("charts.toml")).unwrap();
    assert!(config.seed_defaults);
    assert_eq!(config.dedup.window_s, 1800.0);
    assert_eq!(config.charts.len(), 4);
    let beam = &config.charts[0];
    assert_eq!(
        (beam.parameter.as_str(), beam.lambda, beam.l),
        ("beam_current_mA", 0.1, 2.814)
    );

    let dir = tempfile::tempdir().unwrap();
    let (alerts, report) = (dir.path().join("a.jsonl"), dir.path().join("r.json"));
    let config_path = example_config();
    backtest_ok(
        &example_input(),
        &alerts,
        &report,
        &["--quiet", "--config", config_path.to_str().unwrap()],
    );
    let alerts = read_alerts(&alerts);
    let first_after_drift = alerts
        .iter()
        .find(|a| {
            a.tool_id == "ION-02"
                && a.parameter == "beam_current_mA"
                && a.event_time > DRIFT_START_MS
        })
        .expect("the drift is caught");
    assert!(first_after_drift.statistic > first_after_drift.center_line);
    assert!(first_after_drift.event_time <= DRIFT_START_MS + 40 * WAFER_MS);
    assert!(
        !alerts
            .iter()
            .any(|a| a.tool_id == "ION-01" && a.parameter == "beam_current_mA"),
        "no beam-current alert on the steady tool"
    );
    let report = read_report(&report);
    let field = chart(&report, "ION-01", "B11_30KEV", "analyzer_field_gauss");
    // Known target and sigma: no estimation, the configured values are the limits' basis.
    assert_eq!(field["center"], 1520.0);
    assert_eq!(field["sigma"], 1.5);
}
