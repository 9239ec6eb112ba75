//! What the streaming job's alerts are compared with: `spcvm backtest` on the same records,
//! and the rules by which a stream's alerts equal the backtest's (exactly once, or at least
//! once with identical repeats).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use spcvm_schemas::{Alert, Telemetry, decode_alert_json, encode_alert_json};

use crate::job::output_ok;
use crate::paths::spcvm;
use crate::telemetry::jsonl_lines;

/// The alerts `spcvm backtest` raises on `records` (written to a JSON-lines file in `dir`).
pub fn backtest_alerts(dir: &Path, records: &[Telemetry]) -> Vec<Alert> {
    let input = dir.join("backtest-input.jsonl");
    std::fs::write(&input, jsonl_lines(records).concat()).unwrap();
    let alerts = dir.join("backtest-alerts.jsonl");
    output_ok(
        Command::new(spcvm())
            .args(["backtest", "--quiet", "--input"])
            .arg(&input)
            .arg("--alerts")
            .arg(&alerts),
    );
    std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| decode_alert_json(l.as_bytes()).unwrap())
        .collect()
}

/// Checks the streamed alerts against the backtest's: every alert raised (`repeats` = 0)
/// appears exactly once and equal in every field; every dedup closing update the stream
/// carries is one the backtest has (the backtest also closes the windows still open at the
/// end of its input, which a stream never reaches); nothing else, and nothing twice.
pub fn assert_same_alerts(streamed: &[Alert], backtest: &[Alert]) {
    check_alerts(streamed, backtest, false);
}

/// [`assert_same_alerts`] for at_least_once: an alert may also come more than once (after
/// a rebalance whose commit could not reach the broker), each time identical.
pub fn assert_alerts_at_least_once(streamed: &[Alert], backtest: &[Alert]) {
    check_alerts(streamed, backtest, true);
}

fn check_alerts(streamed: &[Alert], backtest: &[Alert], repeats_allowed: bool) {
    let key = |a: &Alert| (a.alert_id.clone(), a.repeats);
    let mut seen: BTreeMap<_, Alert> = BTreeMap::new();
    for a in streamed {
        match seen.insert(key(a), a.clone()) {
            None => {}
            Some(before) if repeats_allowed => assert_eq!(
                encode_alert_json(a),
                encode_alert_json(&before),
                "an alert delivered again, but different"
            ),
            Some(_) => panic!("alert delivered twice: {a:?}"),
        }
    }
    let expected: BTreeMap<_, _> = backtest.iter().map(|a| (key(a), a.clone())).collect();
    for (k, a) in &seen {
        let want = expected
            .get(k)
            .unwrap_or_else(|| panic!("streamed alert not raised by the backtest: {a:?}"));
        assert_eq!(encode_alert_json(a), encode_alert_json(want));
    }
    for (k, a) in &expected {
        if a.repeats == 0 {
            assert!(seen.contains_key(k), "alert lost: {a:?}");
        }
    }
    let raised = expected.values().filter(|a| a.repeats == 0).count();
    assert!(
        raised >= 10,
        "test data should raise alerts, got {raised}: {:?}",
        expected.keys().collect::<Vec<_>>()
    );
}
