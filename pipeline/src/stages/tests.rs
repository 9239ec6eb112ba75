//! Unit tests of the chain: how it is checked, what a checkpoint writes, and a changelog
//! written before stages restoring.

use std::sync::Arc;

use spcvm_operators::{KeyedState, MonitorConfig, SpcMonitor, SpcState, Stage};
use spcvm_schemas::{Telemetry, TelemetryRef, ToolType};

use super::golden::{documents, views};
use super::*;
use crate::run::changelog::ChangelogKey;

fn spc() -> Arc<dyn DynStage> {
    Arc::new(SpcMonitor::new(&MonitorConfig::default()).unwrap())
}

fn chain(stages: Vec<Arc<dyn DynStage>>) -> Arc<Chain> {
    Arc::new(Chain::new(stages, &["t"]).unwrap())
}

fn record(tool_id: &str, recipe_id: &str, minute: i64) -> Telemetry {
    Telemetry {
        tool_id: tool_id.into(),
        tool_type: ToolType::IonImplant,
        recipe_id: recipe_id.into(),
        lot_id: None,
        wafer_id: None,
        event_time: 1_772_440_200_000 + minute * 60_000,
        measurements: [("beam_current_mA".to_string(), 1.0 + 0.001 * minute as f64)].into(),
    }
}

/// The (stage, key) of each stage record of a checkpoint, in order.
fn keys(records: &[StateRecord]) -> Vec<(String, Vec<String>)> {
    records
        .iter()
        .filter_map(|r| match ChangelogKey::decode(&r.key, "t").unwrap() {
            Some(ChangelogKey::Stage { stage, key, .. }) => Some((stage, key)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_checkpoint_writes_each_changed_key_once_in_first_change_order() {
    let chain = chain(vec![spc()]);
    let mut p = PartitionChain::new(chain.clone(), "t", Some(60_000));
    let mut out = Vec::new();
    let records: Vec<Telemetry> = [
        ("B", "R1"),
        ("A", "R1"),
        ("B", "R1"),
        ("A", "R2"),
        ("B", "R1"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (tool, recipe))| record(tool, recipe, i as i64))
    .collect();
    let docs = documents(&records);
    for r in views(&docs) {
        p.process(&r, &mut out);
    }
    let first = p.checkpoint(&[("t", 5), ("u", 7)], Vec::new());
    let key = |t: &str, r: &str| ("spc".to_string(), vec![t.to_string(), r.to_string()]);
    assert_eq!(
        keys(&first),
        [key("B", "R1"), key("A", "R1"), key("A", "R2")]
    );
    // The partition record comes last.
    assert_eq!(
        ChangelogKey::decode(&first.last().unwrap().key, "t").unwrap(),
        Some(ChangelogKey::Partition { topic: "t".into() })
    );
    // Each value holds the group's charts as the store has them, and restores them.
    let mut restored = PartitionChain::new(chain, "t", Some(60_000));
    for r in &first {
        assert!(restored.restore(&r.key, &r.value).unwrap());
    }
    let charts = |p: &PartitionChain| {
        let store: &KeyedState<SpcState> = p.store("spc").unwrap();
        format!("{:?}", store.sorted())
    };
    assert_eq!(charts(&restored), charts(&p));
    assert_eq!(restored.resume_offset("t"), Some(5));
    assert_eq!(restored.resume_offset("u"), Some(7));
    assert_eq!(restored.resume_offset("v"), None);
    assert_eq!(restored.keys(), p.keys());

    // Only what changed since: nothing, then one group.
    assert!(keys(&p.checkpoint(&[("t", 5)], Vec::new())).is_empty());
    assert!(p.checkpoint(&[("t", 5), ("u", 7)], Vec::new()).is_empty());
    let again = documents(&[record("A", "R2", 9)]);
    p.process(&views(&again)[0], &mut out);
    assert_eq!(keys(&p.checkpoint(&[], Vec::new())), [key("A", "R2")]);
}

/// The changelog the build before stages (920370b) wrote for the first 900 lines of the
/// shipped example (topic `tool.telemetry`, watermark lateness 60 s, checkpoints after
/// lines 451 and 900): keys `[topic, tool, recipe]`, values of format version 2.
fn legacy_changelog() -> Vec<(Vec<u8>, Vec<u8>)> {
    use base64::Engine;
    let text = include_str!("../../tests/fixtures/changelog-920370b.jsonl");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let value = base64::engine::general_purpose::STANDARD
                .decode(v["value"].as_str().unwrap())
                .unwrap();
            (v["key"].as_str().unwrap().as_bytes().to_vec(), value)
        })
        .collect()
}

#[test]
fn a_changelog_written_before_stages_restores_into_the_spc_stage() {
    let decoder = crate::decode::Decoder::new(&crate::decode::DecodeConfig::default()).unwrap();
    let text = include_str!("../../../examples/ion_implant_drift.jsonl");
    let records: Vec<TelemetryRef<'_>> = text
        .lines()
        .filter_map(|l| decoder.decode_ref(l.as_bytes()).ok())
        .collect();
    // 900 lines, two of which do not decode.
    let cut = text
        .lines()
        .take(900)
        .filter(|l| decoder.decode_ref(l.as_bytes()).is_ok())
        .count();
    let chain = Arc::new(Chain::new(vec![spc()], &["tool.telemetry"]).unwrap());
    let run = |p: &mut PartitionChain, records: &[TelemetryRef<'_>]| {
        let mut out = Vec::new();
        p.process_batch(records, &mut out);
        out.iter().map(|e| e.output.to_json()).collect::<Vec<_>>()
    };
    let mut straight = PartitionChain::new(chain.clone(), "tool.telemetry", Some(60_000));
    let before = run(&mut straight, &records[..cut]);
    let charts = |p: &PartitionChain| {
        let store: &KeyedState<SpcState> = p.store("spc").unwrap();
        format!("{:?}", store.sorted())
    };
    let state_at_cut = charts(&straight);
    let after = run(&mut straight, &records[cut..]);
    assert!(!after.is_empty(), "the drift alerts come after the cut");

    let mut restored = PartitionChain::new(chain, "tool.telemetry", Some(60_000));
    for (key, value) in legacy_changelog() {
        assert!(restored.restore(&key, &value).unwrap());
    }
    assert!(restored.dropped().is_empty());
    assert_eq!(restored.resume_offset("tool.telemetry"), Some(900));
    assert_eq!(charts(&restored), state_at_cut);
    assert_eq!(run(&mut restored, &records[cut..]), after);
    assert!(!before.is_empty());
}

#[test]
fn state_of_a_stage_the_job_does_not_run_is_dropped_and_counted() {
    let chain = chain(vec![spc()]);
    let mut p = PartitionChain::new(chain, "t", None);
    let key = ChangelogKey::Stage {
        stage: "triage".into(),
        topic: "t".into(),
        key: vec!["ION-01".into()],
    };
    assert!(p.restore(&key.encode(), b"\x02\x90").unwrap());
    assert!(p.restore(&key.encode(), b"\x02\x90").unwrap());
    assert_eq!(p.dropped().get("triage"), Some(&2));
    assert_eq!(p.keys(), 0);
    // Another topic's record is not this partition's.
    let other = ChangelogKey::Partition { topic: "u".into() };
    assert!(!p.restore(&other.encode(), b"\x02\x93\xc0\xc0\xc0").unwrap());
}

#[test]
fn a_chain_is_checked_when_it_is_built() {
    let err =
        |stages: Vec<Arc<dyn DynStage>>, inputs: &[&str]| Chain::new(stages, inputs).unwrap_err();
    assert_eq!(err(vec![], &[]), ChainError::Empty);
    assert_eq!(
        err(vec![spc(), spc()], &[]),
        ChainError::DuplicateStage("spc".into())
    );
    assert_eq!(
        err(vec![spc()], &["spc"]),
        ChainError::NamedLikeTopic("spc".into())
    );
    let c = Chain::new(vec![spc()], &["t"]).unwrap();
    assert_eq!(c.names().collect::<Vec<_>>(), ["spc"]);
    assert_eq!(c.stream("alerts"), Some(StreamId(0)));
    assert_eq!(c.stream("triage"), None);
    assert_eq!(
        Stage::name(&SpcMonitor::new(&MonitorConfig::default()).unwrap()),
        "spc"
    );
}

#[test]
fn the_record_path_dead_letters_what_it_rejects_and_charts_what_is_finite() {
    let chain = chain(vec![spc()]);
    let mut p = PartitionChain::new(chain, "t", None);
    let mut step = step::Step::default();
    let doc = br#"{"tool_id":"ION-01","tool_type":"ion_implant","recipe_id":"R","event_time":1,"measurements":{"beam_current_mA":NaN,"dose_uniformity_pct":95.0}}"#;
    let nan = spcvm_schemas::decode_telemetry_json_ref(doc).unwrap();
    let ok = documents(&[record("ION-01", "R", 2)]);
    let undecodable = step::Rejection::Undecodable {
        kind: "json",
        reason: "expected value at line 1".into(),
    };
    step.batch(
        &mut p,
        [
            (0, Ok(nan)),
            (1, Err(undecodable.clone())),
            (2, Ok(views(&ok)[0].clone())),
        ],
    );
    assert_eq!(step.records, 2);
    assert_eq!(step.rejected.len(), 2);
    assert_eq!(step.rejected[0].0, 0);
    assert_eq!(step.rejected[0].1.kind(), "non_finite");
    assert!(
        step.rejected[0].1.reason().contains("beam_current_mA=NaN"),
        "{}",
        step.rejected[0].1.reason()
    );
    assert_eq!(step.rejected[1], (1, undecodable));
    // The NaN is counted, not charted; the dose of the same record is.
    assert_eq!(step.stats.non_finite, 1);
    assert_eq!(step.stats.routed, 3);
    let store: &KeyedState<SpcState> = p.store("spc").unwrap();
    let chart = |parameter| {
        store
            .get(spcvm_operators::ChartKeyRef {
                tool_id: "ION-01",
                recipe_id: "R",
                parameter,
            })
            .unwrap()
            .chart
            .clone()
    };
    assert_eq!(chart("beam_current_mA").samples, 1);
    assert_eq!(chart("beam_current_mA").non_finite, 1);
    assert_eq!(chart("dose_uniformity_pct").samples, 1);
    step.clear();
    assert!(step.rejected.is_empty() && step.records == 0);
}
