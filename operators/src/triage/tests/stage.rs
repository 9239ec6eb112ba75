//! The stage: incidents open, re-publish on news, act once per kind, close after their
//! window; recipe changes; the state's snapshot; corroboration; a verdict that holds.

use spcvm_schemas::{ActionKind, Alert, IncidentStatus, Severity, Telemetry, ToolType};

use super::super::*;
use super::{alert, shipped};
use crate::short::ShortStr;
use crate::stage::{Input, Stage, StageOutput, StateStore, ToolStore};

fn record(tool: &str, recipe: &str, minute: i64) -> Telemetry {
    Telemetry {
        tool_id: tool.into(),
        tool_type: ToolType::Rtp,
        recipe_id: recipe.into(),
        lot_id: None,
        wafer_id: None,
        event_time: minute * 60_000,
        measurements: Default::default(),
    }
}

fn kinds(out: &[TriageOutput]) -> Vec<ActionKind> {
    out.iter()
        .filter_map(|o| match o {
            TriageOutput::Action(a) => Some(a.kind),
            TriageOutput::Triage(_) => None,
        })
        .collect()
}

fn triages(out: &[TriageOutput]) -> Vec<spcvm_schemas::Triage> {
    // The JSON the stage writes, its actions joined from the playbook's encoded once, is
    // the record's.
    out.iter()
        .filter_map(|o| match o {
            TriageOutput::Triage(v) => {
                let t = v.to_triage();
                assert_eq!(
                    String::from_utf8(o.to_json()).unwrap(),
                    String::from_utf8(spcvm_schemas::encode_triage_json(&t)).unwrap()
                );
                // ... and its Avro datum decodes to the record, actions in order.
                let avro = spcvm_schemas::decode_triage_avro(&o.to_avro().unwrap()).unwrap();
                assert_eq!(avro, t);
                assert_eq!(v.actions().count(), t.actions.len());
                Some(t)
            }
            TriageOutput::Action(_) => None,
        })
        .collect()
}

#[test]
fn an_incident_opens_republishes_on_news_acts_once_per_kind_and_closes() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let mut store = ToolStore::default();
    let mut out = Vec::new();
    let feed = |store: &mut ToolStore<ToolTriage>, a: &Alert, out: &mut Vec<TriageOutput>| {
        stage.process(store, Input::Upstream(a), out);
    };
    // Records: recipe R0, then R1 from minute 95.
    for (minute, recipe) in [(90, "R0"), (95, "R1"), (96, "R1")] {
        let r = record("RTP-01", recipe, minute);
        let view = spcvm_schemas::TelemetryRef::from(r);
        stage.process(&mut store, Input::Record(&view), &mut out);
    }
    assert!(out.is_empty());
    // A major gas flow spike (a valve; the lot hold its severity calls for), then the same
    // again (no news), then a critical shift (the MFC: news, and the tool inhibit; each
    // OCAP step once).
    let first = alert(
        "RTP-01",
        "gas_flow_deviation_sccm",
        "xbar",
        "rule_1",
        true,
        100,
    );
    feed(&mut store, &first, &mut out);
    let t = triages(&out);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].version, t[0].status), (1, IncidentStatus::Open));
    assert_eq!(t[0].failure_mode, "gas_flow_deviation");
    assert_eq!(t[0].causes[0].cause_id, "valve_malfunction");
    assert_eq!(t[0].actions[0].action_id, "inspect_valves");
    assert_eq!(kinds(&out), [ActionKind::LotHold]);
    let id = t[0].incident_id.clone();
    out.clear();
    feed(
        &mut store,
        &alert(
            "RTP-01",
            "gas_flow_deviation_sccm",
            "xbar",
            "rule_1",
            true,
            101,
        ),
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    let mut shift = alert(
        "RTP-01",
        "gas_flow_deviation_sccm",
        "xbar",
        "rule_2",
        true,
        102,
    );
    shift.severity = Severity::Critical;
    for _ in 0..2 {
        feed(&mut store, &shift, &mut out);
    }
    let t = triages(&out);
    assert_eq!(t.len(), 1, "{out:?}");
    assert_eq!((t[0].version, t[0].severity), (2, Severity::Critical));
    assert_eq!(t[0].incident_id, id);
    assert_eq!(t[0].alert_ids.len(), 3);
    assert_eq!(kinds(&out), [ActionKind::ToolInhibit]);
    out.clear();
    // The window has not passed at minute 219; it has at 221: the last version.
    stage.on_watermark(&mut store, 219 * 60_000, &mut out);
    assert!(out.is_empty());
    stage.on_watermark(&mut store, 223 * 60_000, &mut out);
    let t = triages(&out);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].version, t[0].status), (3, IncidentStatus::Closed));
    assert_eq!(t[0].event_time, 222 * 60_000);
    assert!(store.get("RTP-01").unwrap().incident.is_none());
    // A dedup closing update (repeats > 0) joins an open incident; it opens none.
    out.clear();
    let mut repeat = alert(
        "RTP-01",
        "gas_flow_deviation_sccm",
        "xbar",
        "rule_1",
        true,
        300,
    );
    repeat.repeats = 3;
    feed(&mut store, &repeat, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_recipe_change_counts_only_up_to_the_alerts_event_time() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let emissivity = alert("RTP-02", "emissivity", "spec", "spec_high", true, 100);
    let run = |records: &[(i64, &str)]| {
        let mut store = ToolStore::default();
        let mut out = Vec::new();
        for &(minute, recipe) in records {
            let view = spcvm_schemas::TelemetryRef::from(record("RTP-02", recipe, minute));
            stage.process(&mut store, Input::Record(&view), &mut out);
        }
        stage.process(&mut store, Input::Upstream(&emissivity), &mut out);
        triages(&out)[0].causes[0].cause_id.clone()
    };
    // Changed at minute 99: the wafer type; changed only after the alert (a batch's later
    // records seen first): not evidence; changed long before: not evidence either.
    assert_eq!(run(&[(90, "A"), (99, "B")]), "wafer_type_change");
    assert_eq!(run(&[(90, "A"), (101, "B")]), "backside_coating");
    assert_eq!(run(&[(0, "A"), (10, "B"), (90, "B")]), "backside_coating");
}

#[test]
fn the_state_round_trips_through_its_snapshot() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let mut store = ToolStore::default();
    let mut out = Vec::new();
    let a = alert(
        "ION-03",
        "source_pressure_mtorr",
        "cusum",
        "cusum_upper",
        true,
        5,
    );
    stage.process(&mut store, Input::Upstream(&a), &mut out);
    let mut saved = Vec::new();
    store.drain_changed(|key, state| {
        saved.push((key[0].to_string(), serde_json::to_string(state).unwrap()))
    });
    assert_eq!(saved.len(), 1);
    let mut restored = ToolStore::<ToolTriage>::default();
    let state: ToolTriage = serde_json::from_str(&saved[0].1).unwrap();
    restored.restore(&[saved[0].0.clone()], state).unwrap();
    assert_eq!(restored.get("ION-03"), store.get("ION-03"));
}

#[test]
fn repeats_corroborate_and_a_duplicate_is_one_witness() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let mut store = ToolStore::default();
    let mut out = Vec::new();
    // A gas flow step: rule 1 first (a spike alone says: valve).
    let spike = alert(
        "RTP-01",
        "gas_flow_deviation_sccm",
        "xbar",
        "rule_1",
        true,
        100,
    );
    stage.process(&mut store, Input::Upstream(&spike), &mut out);
    assert_eq!(triages(&out)[0].causes[0].cause_id, "valve_malfunction");
    // A shift rule fires; delivered twice, it is still one witness: no news.
    out.clear();
    let shift = alert(
        "RTP-01",
        "gas_flow_deviation_sccm",
        "xbar",
        "rule_6",
        true,
        104,
    );
    stage.process(&mut store, Input::Upstream(&shift), &mut out);
    let observations = |store: &ToolStore<ToolTriage>| {
        store
            .get("RTP-01")
            .unwrap()
            .incident
            .as_ref()
            .unwrap()
            .observations
            .len()
    };
    assert_eq!(observations(&store), 2);
    let before = out.len();
    stage.process(&mut store, Input::Upstream(&shift), &mut out);
    assert_eq!((observations(&store), out.len()), (2, before));
    // Its dedup window closes with repeats: a second witness of the shift, which now
    // outweighs the lone spike (an MFC that drifted, not a sticking valve).
    let mut closing = shift.clone();
    (closing.repeats, closing.event_time) = (5, 130 * 60_000);
    stage.process(&mut store, Input::Upstream(&closing), &mut out);
    assert_eq!(observations(&store), 3);
    let t = triages(&out);
    assert_eq!(t.last().unwrap().causes[0].cause_id, "mfc_failure", "{t:?}");
    // The closing update names an alert already listed.
    assert_eq!(t.last().unwrap().alert_ids.len(), 2);
}

#[test]
fn the_recipe_ring_keeps_the_latest_changes_in_order() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let mut store = ToolStore::default();
    let mut out = Vec::new();
    // Recipes R0, R1, R0, R1, ... one a minute (a repeat of the same recipe is no change),
    // well past the ring's size, so dropped changes' strings are reused.
    let n = super::super::stage::RECIPE_CHANGES_KEPT as i64 * 3;
    for minute in 0..=n {
        let recipe = ["R0", "R1"][(minute % 2) as usize];
        for r in [
            record("RTP-01", recipe, minute),
            record("RTP-01", recipe, minute),
        ] {
            let view = spcvm_schemas::TelemetryRef::from(r);
            stage.process(&mut store, Input::Record(&view), &mut out);
        }
    }
    let state = store.get("RTP-01").unwrap();
    assert_eq!(
        state.recipe.as_ref().map(ShortStr::as_str),
        Some(["R0", "R1"][(n % 2) as usize])
    );
    let changes: Vec<(i64, &str, &str)> = state
        .recipe_changes
        .iter()
        .map(|c| (c.at / 60_000, c.from.as_str(), c.to.as_str()))
        .collect();
    let expected: Vec<(i64, &str, &str)> = (n - super::super::stage::RECIPE_CHANGES_KEPT as i64 + 1
        ..=n)
        .map(|m| {
            let (from, to) = if m % 2 == 0 {
                ("R1", "R0")
            } else {
                ("R0", "R1")
            };
            (m, from, to)
        })
        .collect();
    assert_eq!(changes, expected);
    assert!(out.is_empty());
}

#[test]
fn a_published_verdict_turns_only_when_another_failure_mode_clearly_leads() {
    let stage = TriageStage::new(shipped(), TriageConfig::default());
    let mut store = ToolStore::default();
    let mut out = Vec::new();
    let mut feed = |parameter: &str, minute: i64| {
        let a = alert("ION-01", parameter, "ewma", "ewma_lower", false, minute);
        let mut step = Vec::new();
        stage.process(&mut store, Input::Upstream(&a), &mut step);
        out.extend(step.clone());
        triages(&step)
            .iter()
            .map(|t| t.failure_mode.clone())
            .collect::<Vec<_>>()
    };
    // Beam current drifts down: three alerts, one verdict.
    assert_eq!(feed("beam_current_mA", 100), ["beam_current_instability"]);
    assert!(feed("beam_current_mA", 101).is_empty());
    assert!(feed("beam_current_mA", 102).is_empty());
    // A lone alert on dose uniformity, fresher but outweighed: the verdict stands.
    assert!(feed("dose_uniformity_pct", 103).is_empty());
    // Dose uniformity keeps alerting: once its alerts weigh twice the beam current's, the
    // verdict turns, once.
    let turned: Vec<(i64, Vec<String>)> = (104..=112)
        .map(|minute| (minute, feed("dose_uniformity_pct", minute)))
        .filter(|(_, modes)| !modes.is_empty())
        .collect();
    assert_eq!(turned.len(), 1, "{turned:?}");
    assert_eq!(turned[0].1, ["dose_uniformity"]);
    // Six dose alerts (weight 12) against three beam current alerts (weight 6, barely faded).
    assert_eq!(turned[0].0, 108);
    let versions: Vec<u32> = triages(&out).iter().map(|t| t.version).collect();
    assert_eq!(versions, [1, 2]);
}
