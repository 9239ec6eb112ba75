//! Helpers shared by the integration tests: running the real `spcvm` binary and reading
//! its outputs.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spcvm_schemas::{Alert, Telemetry, decode_alert_json, decode_telemetry_json};

/// Event time of the first example record: 2026-03-02T06:00:00Z.
pub const EXAMPLE_START_MS: i64 = 1_772_431_200_000;
/// One wafer per minute.
pub const WAFER_MS: i64 = 60_000;
/// Event time of ION-02's first drifted wafer (wafer 400).
pub const DRIFT_START_MS: i64 = EXAMPLE_START_MS + 400 * WAFER_MS;

/// The shipped example telemetry.
pub fn example_input() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ion_implant_drift.jsonl")
}

/// The shipped example chart configuration.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/charts.toml")
}

/// Runs `spcvm` with `args` and returns its output.
pub fn spcvm<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_spcvm"))
        .args(args)
        .output()
        .expect("the spcvm binary runs")
}

/// Runs `spcvm backtest --input INPUT --alerts ALERTS [extra...]` and returns its output.
pub fn backtest(input: &Path, alerts: &Path, extra: &[&OsStr]) -> Output {
    let mut args: Vec<&OsStr> = vec![
        "backtest".as_ref(),
        "--input".as_ref(),
        input.as_os_str(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
    ];
    args.extend_from_slice(extra);
    spcvm(&args)
}

/// Runs `spcvm backtest --input INPUT --alerts ALERTS --report REPORT [extra...]`, asserts it
/// succeeded and returns its stderr.
pub fn backtest_ok(input: &Path, alerts: &Path, report: &Path, extra: &[&str]) -> String {
    let mut args: Vec<&OsStr> = vec!["--report".as_ref(), report.as_os_str()];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    let out = backtest(input, alerts, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "spcvm failed ({}):\n{stderr}",
        out.status
    );
    stderr
}

/// Reads an alerts file, decoding every line.
pub fn read_alerts(path: &Path) -> Vec<Alert> {
    let text = std::fs::read_to_string(path).expect("alerts file exists");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            decode_alert_json(line.as_bytes())
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Reads a report file as JSON.
pub fn read_report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("report file exists");
    serde_json::from_str(&text).expect("report is JSON")
}

/// The example's decodable records, in file order (the two bad lines left out).
pub fn example_records() -> Vec<Telemetry> {
    let text = std::fs::read_to_string(example_input()).expect("example exists");
    text.lines()
        .filter_map(|line| decode_telemetry_json(line.as_bytes()).ok())
        .collect()
}

/// The report's chart entry for (tool, recipe, parameter).
pub fn chart<'a>(
    report: &'a serde_json::Value,
    tool: &str,
    recipe: &str,
    parameter: &str,
) -> &'a serde_json::Value {
    report["charts"]
        .as_array()
        .expect("charts is an array")
        .iter()
        .find(|c| c["tool_id"] == tool && c["recipe_id"] == recipe && c["parameter"] == parameter)
        .unwrap_or_else(|| panic!("no chart for {tool}/{recipe}/{parameter}"))
}
