//! RCA triage through the Kafka runtime (`stages = ["spc", "triage"]`): the job's
//! `triage` and `actions` topics, read_committed, against what `spcvm backtest --triage
//! --actions` writes on the same records.
//!
//! - exactly_once on a broker that hides aborted transactions (noida-db,
//!   `KAFKA_BOOTSTRAP_TXN`): killed three times mid-stream (`kill -9`) and restarted; and,
//!   apart, a second instance joining the group mid-stream and leaving again (a rebalance
//!   each way). Every version comes once and equals the backtest's; every OCAP action once.
//!   A restart or a partition move that lost the incidents' state would open new incidents
//!   under other ids.
//! - at_least_once (`KAFKA_BOOTSTRAP`), killed three times: nothing lost (every version the
//!   backtest publishes is on the topic); a version may come again after a restart, equal.
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

/// The job's environment: both stages, the two streams on topics of this test.
fn triage_env(id: &str) -> (Vec<(String, String)>, String, String) {
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
    (env, triage_topic, actions_topic)
}

/// Whether versions and actions may come more than once (at_least_once).
#[derive(Clone, Copy, PartialEq)]
enum Repeats {
    Never,
    Allowed,
}

/// Checks the topics against the backtest: every streamed version and action is the
/// backtest's; none is missing (but closing versions the stream's watermark has not
/// reached); with [`Repeats::Never`], none comes twice.
fn assert_same_triage(
    setup: &Setup,
    (triage_topic, actions_topic): (&str, &str),
    (expected, expected_actions): (&[Triage], &[OcapAction]),
    repeats: Repeats,
) {
    let read = |topic: &str| read_all(&setup.bootstrap, topic);
    let mut streamed: BTreeMap<(String, u32), Triage> = BTreeMap::new();
    for m in read(triage_topic) {
        let t = spcvm_schemas::decode_triage_json(&m.payload).unwrap();
        assert_eq!(m.key.as_deref(), Some(t.tool_id.as_bytes()));
        let key = (t.incident_id.clone(), t.version);
        if let Some(earlier) = streamed.insert(key, t.clone()) {
            assert!(repeats == Repeats::Allowed, "twice: {t:?}");
            assert_eq!(earlier, t, "a version repeated with other contents");
        }
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
    let mut actions: Vec<OcapAction> = read(actions_topic)
        .iter()
        .map(|m| spcvm_schemas::decode_action_json(&m.payload).unwrap())
        .collect();
    actions.sort_by(|a, b| a.action_id.cmp(&b.action_id));
    if repeats == Repeats::Allowed {
        actions.dedup();
    }
    let mut expected_actions = expected_actions.to_vec();
    expected_actions.sort_by(|a, b| a.action_id.cmp(&b.action_id));
    assert_eq!(actions, expected_actions);
}

/// The backtest's triage of `records`, checked to be enough for a test.
fn expected_triage(setup: &Setup, records: &[Telemetry]) -> (Vec<Triage>, Vec<OcapAction>) {
    let (expected, actions) = backtest_triage(setup.dir.path(), records);
    assert!(
        expected.len() >= 3 && !actions.is_empty(),
        "{} triage versions, {} actions: too few for a test",
        expected.len(),
        actions.len()
    );
    (expected, actions)
}

#[test]
fn triage_and_actions_survive_kill_9_exactly_once() {
    let (env, triage_topic, actions_topic) = triage_env(&unique("triage"));
    let mut setup = Setup::with_binary(spcvm().to_path_buf(), bootstrap_txn(), "triage", 3, env);
    setup.static_membership = true;
    let records = telemetry(6, 360, 3);
    let (expected, expected_actions) = expected_triage(&setup, &records);
    let expected_alerts = backtest_alerts(setup.dir.path(), &records);
    let last_run = setup.kill_9_three_times(&records, "exactly_once");
    assert!(last_run.contains("state restored"), "{last_run}");
    assert_same_alerts(&setup.alerts(), &expected_alerts);
    assert_same_triage(
        &setup,
        (&triage_topic, &actions_topic),
        (&expected, &expected_actions),
        Repeats::Never,
    );
}

#[test]
fn triage_follows_its_partitions_through_a_rebalance_exactly_once() {
    let (env, triage_topic, actions_topic) = triage_env(&unique("triage-rebalance"));
    let setup = Setup::with_binary(
        spcvm().to_path_buf(),
        bootstrap_txn(),
        "triage-rebalance",
        4,
        env,
    );
    let records = telemetry(6, 360, 5);
    let (expected, expected_actions) = expected_triage(&setup, &records);
    let (first, _) = setup.second_instance_joins_and_leaves(&records, "exactly_once");
    // Both instances held partitions at some point.
    assert!(first.matches("partitions assigned").count() >= 2, "{first}");
    assert_same_triage(
        &setup,
        (&triage_topic, &actions_topic),
        (&expected, &expected_actions),
        Repeats::Never,
    );
}

#[test]
fn triage_loses_nothing_at_least_once() {
    let (env, triage_topic, actions_topic) = triage_env(&unique("triage-alo"));
    let mut setup = Setup::with_binary(spcvm().to_path_buf(), bootstrap(), "triage-alo", 3, env);
    setup.static_membership = true;
    let records = telemetry(6, 360, 7);
    let (expected, expected_actions) = expected_triage(&setup, &records);
    setup.kill_9_three_times(&records, "at_least_once");
    assert_same_triage(
        &setup,
        (&triage_topic, &actions_topic),
        (&expected, &expected_actions),
        Repeats::Allowed,
    );
}
