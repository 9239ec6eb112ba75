//! RCA triage through the Kafka runtime, exactly-once under `kill -9`, on a broker that
//! hides aborted transactions (noida-db, `KAFKA_BOOTSTRAP_TXN`): the job runs
//! `stages = ["spc", "triage"]`, is killed three times mid-stream and restarted, and its
//! read_committed `triage` and `actions` topics hold what `spcvm backtest --triage
//! --actions` writes on the same records: every version once and equal, every OCAP action
//! once. A restart that lost the incidents' state would open new incidents under other ids.
//!
//! The one difference allowed: a backtest ends its input and closes every open incident
//! (a last, `closed` version), while the stream's watermark closes only those whose window
//! has passed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use spcvm_schemas::{IncidentStatus, OcapAction, Telemetry, Triage};
use spcvm_testkit::*;

/// The backtest's triage and actions on `records`.
fn backtest_triage(dir: &Path, records: &[Telemetry]) -> (Vec<Triage>, Vec<OcapAction>) {
    let input = dir.join("triage-backtest-input.jsonl");
    std::fs::write(&input, jsonl_lines(records).concat()).unwrap();
    let (triage, actions) = (dir.join("bt-triage.jsonl"), dir.join("bt-actions.jsonl"));
    output_ok(
        Command::new(spcvm())
            .args(["backtest", "--quiet", "--input"])
            .arg(&input)
            .arg("--alerts")
            .arg(dir.join("bt-alerts.jsonl"))
            .arg("--triage")
            .arg(&triage)
            .arg("--actions")
            .arg(&actions),
    );
    let lines = |path: &Path| std::fs::read_to_string(path).unwrap();
    (
        lines(&triage)
            .lines()
            .map(|l| spcvm_schemas::decode_triage_json(l.as_bytes()).unwrap())
            .collect(),
        lines(&actions)
            .lines()
            .map(|l| spcvm_schemas::decode_action_json(l.as_bytes()).unwrap())
            .collect(),
    )
}

#[test]
fn triage_and_actions_survive_kill_9_exactly_once() {
    let id = unique("triage");
    let (triage_topic, actions_topic) = (format!("{id}.triage"), format!("{id}.actions"));
    let env = vec![
        (
            "SPCVM__STAGES".to_string(),
            r#"["spc", "triage"]"#.to_string(),
        ),
        (
            "SPCVM__OUTPUTS__TRIAGE__TOPIC".to_string(),
            triage_topic.clone(),
        ),
        (
            "SPCVM__OUTPUTS__ACTIONS__TOPIC".to_string(),
            actions_topic.clone(),
        ),
    ];
    let mut setup = Setup::with_binary(spcvm().to_path_buf(), bootstrap_txn(), "triage", 3, env);
    setup.static_membership = true;
    let records = telemetry(6, 360, 3);
    let (expected, expected_actions) = backtest_triage(setup.dir.path(), &records);
    assert!(
        expected.len() >= 3 && !expected_actions.is_empty(),
        "{} triage versions, {} actions: too few for a test",
        expected.len(),
        expected_actions.len()
    );
    let expected_alerts = backtest_alerts(setup.dir.path(), &records);
    let last_run = setup.kill_9_three_times(&records, "exactly_once");
    assert!(last_run.contains("state restored"), "{last_run}");
    assert_same_alerts(&setup.alerts(), &expected_alerts);

    let read = |topic: &str| read_all(&setup.bootstrap, topic);
    let mut streamed: BTreeMap<(String, u32), Triage> = BTreeMap::new();
    for m in read(&triage_topic) {
        let t = spcvm_schemas::decode_triage_json(&m.payload).unwrap();
        assert_eq!(m.key.as_deref(), Some(t.tool_id.as_bytes()));
        let key = (t.incident_id.clone(), t.version);
        assert!(streamed.insert(key, t.clone()).is_none(), "twice: {t:?}");
    }
    let by_key: BTreeMap<(String, u32), &Triage> = expected
        .iter()
        .map(|t| ((t.incident_id.clone(), t.version), t))
        .collect();
    for (key, t) in &streamed {
        assert_eq!(
            Some(&t),
            by_key.get(key),
            "a streamed version the backtest lacks or differs from"
        );
    }
    for (key, t) in &by_key {
        assert!(
            streamed.contains_key(key) || t.status == IncidentStatus::Closed,
            "missing from the stream: {t:?}"
        );
    }
    let mut actions: Vec<OcapAction> = read(&actions_topic)
        .iter()
        .map(|m| spcvm_schemas::decode_action_json(&m.payload).unwrap())
        .collect();
    actions.sort_by(|a, b| a.action_id.cmp(&b.action_id));
    let mut expected_actions = expected_actions;
    expected_actions.sort_by(|a, b| a.action_id.cmp(&b.action_id));
    assert_eq!(actions, expected_actions);
}
