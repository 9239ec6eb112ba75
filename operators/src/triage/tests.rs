//! Triage: the shipped playbooks parse and validate; validation names the key at fault;
//! for every failure mode and each of its competing causes, a synthetic history showing
//! that cause's evidence ranks it first; incidents open, re-publish on news, emit each
//! OCAP step once and close after their window.

use spcvm_schemas::{ActionKind, Alert, IncidentStatus, Severity, Telemetry, ToolType};

use super::*;
use crate::stage::{Input, Stage, StageOutput, StateStore, ToolStore};

const PLAYBOOKS: [&str; 2] = [
    include_str!("../../../deploy/playbooks/ion_implant.toml"),
    include_str!("../../../deploy/playbooks/rtp.toml"),
];

fn known(tool_type: ToolType, parameter: &str) -> bool {
    crate::defaults::seed_charts()
        .iter()
        .any(|c| c.tool_type == Some(tool_type) && c.parameter == parameter)
}

fn shipped() -> Playbooks {
    let mut all = Playbooks::default();
    for text in PLAYBOOKS {
        let books: Playbooks = toml::from_str(text).unwrap();
        all.playbooks.extend(books.playbooks);
    }
    all.validate(&known).unwrap();
    all
}

/// An opening alert of `tool` on `parameter` from `chart`'s `rule`, `up` or down from the
/// center line, at minute `minute`.
fn alert(tool: &str, parameter: &str, chart: &str, rule: &str, up: bool, minute: i64) -> Alert {
    let tool_type = if tool.starts_with("ION") {
        ToolType::IonImplant
    } else {
        ToolType::Rtp
    };
    Alert {
        alert_id: format!("{tool}-{parameter}-{rule}-{minute}"),
        tool_id: tool.into(),
        tool_type,
        recipe_id: "R1".into(),
        lot_id: Some("LOT-1".into()),
        wafer_id: Some(format!("W{minute}")),
        parameter: parameter.into(),
        chart: chart.into(),
        rule: rule.into(),
        severity: Severity::Major,
        statistic: if up { 11.0 } else { 9.0 },
        center_line: 10.0,
        ucl: Some(10.5),
        lcl: Some(9.5),
        event_time: minute * 60_000,
        message: String::new(),
        repeats: 0,
        distance_sigma: None,
        status: spcvm_schemas::AlertStatus::Open,
        window_start: Some(minute * 60_000),
        cusum_upper_sigma: None,
        cusum_lower_sigma: None,
    }
}

#[test]
fn the_shipped_playbooks_cover_the_nine_failure_modes() {
    let books = shipped();
    let ids: Vec<&str> = books.playbooks.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "beam_current_instability",
            "dose_uniformity",
            "vacuum_degradation",
            "energy_drift",
            "ramp_tracking_error",
            "overshoot",
            "lamp_power_anomaly",
            "emissivity_drift",
            "gas_flow_deviation"
        ]
    );
    for book in &books.playbooks {
        assert!(book.causes.len() >= 2, "{}", book.id);
        assert!(book.actions.iter().any(Action::is_ocap), "{}", book.id);
    }
}

#[test]
fn validation_names_the_key_at_fault() {
    let check = |edit: &dyn Fn(&mut Playbooks)| {
        let mut books = shipped();
        edit(&mut books);
        books.validate(&known).unwrap_err().to_string()
    };
    assert_eq!(
        check(&|b| b.playbooks[3].id = "dose_uniformity".into()),
        "playbook[3].id: duplicate playbook id `dose_uniformity`"
    );
    assert_eq!(
        check(&|b| b.playbooks[0].causes[1].evidence.clear()),
        "playbook[0].cause[1].evidence: cause `optics_misalignment` has no evidence: nothing could rank it"
    );
    assert_eq!(
        check(&|b| b.playbooks[4].causes[0].evidence[1].parameter = Some("lamp_pwr".into())),
        "playbook[4].cause[0].evidence[1].parameter: unknown parameter `lamp_pwr`: no rtp chart watches it"
    );
    assert_eq!(
        check(&|b| b.playbooks[0].trigger = vec!["lamp_power_pct".into()]),
        "playbook[0].trigger: unknown parameter `lamp_power_pct`: no ion_implant chart watches it"
    );
    assert_eq!(
        check(&|b| b.playbooks[1].actions[0].cause = Some("gremlins".into())),
        "playbook[1].action[0].cause: no cause `gremlins` in playbook `dose_uniformity`"
    );
    assert_eq!(
        check(&|b| b.playbooks[1].actions[0].priority = 0),
        "playbook[1].action[0].priority: 1 is the most urgent; 0 is not one"
    );
    assert_eq!(
        check(&|b| b.playbooks[2].causes[2].evidence[0].parameter = Some("emissivity".into())),
        "playbook[2].cause[2].evidence[0].parameter: a recipe change is the tool's, not a parameter's"
    );
    // An action without a priority is a shape error, caught by the parser.
    let missing = "[[playbook]]\nid = \"x\"\nname = \"X\"\ntool_type = \"rtp\"\ntrigger = [\"emissivity\"]\n\
                   [[playbook.action]]\nid = \"a\"\ndescription = \"d\"\nowner = \"o\"\n";
    let err = toml::from_str::<Playbooks>(missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing field `priority`"), "{err}");
}

/// One synthetic history: the tool's alerts (parameter, chart, rule, up) and whether its
/// recipe changed just before, and the cause it must rank first.
struct Case {
    playbook: &'static str,
    expected: &'static str,
    alerts: &'static [(&'static str, &'static str, &'static str, bool)],
    recipe_change: bool,
}

const CASES: &[Case] = &[
    Case {
        playbook: "beam_current_instability",
        expected: "source_degradation",
        alerts: &[("beam_current_mA", "ewma", "rule_1", false)],
        recipe_change: false,
    },
    Case {
        playbook: "beam_current_instability",
        expected: "optics_misalignment",
        alerts: &[
            ("beam_current_mA", "spec", "critical_high", true),
            ("dose_uniformity_pct", "xbar", "rule_1", false),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "beam_current_instability",
        expected: "vacuum_leak",
        alerts: &[
            ("beam_current_mA", "ewma", "rule_1", false),
            ("source_pressure_mtorr", "cusum", "cusum_upper", true),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "dose_uniformity",
        expected: "scan_system_malfunction",
        alerts: &[("dose_uniformity_pct", "xbar", "rule_2", false)],
        recipe_change: false,
    },
    Case {
        playbook: "dose_uniformity",
        expected: "wafer_handling",
        alerts: &[("dose_uniformity_pct", "xbar", "rule_1", false)],
        recipe_change: false,
    },
    Case {
        playbook: "dose_uniformity",
        expected: "beam_profile",
        alerts: &[
            ("dose_uniformity_pct", "r", "rule_1", true),
            ("beam_current_mA", "ewma", "rule_1", true),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "vacuum_degradation",
        expected: "pump_failure",
        alerts: &[("source_pressure_mtorr", "cusum", "cusum_upper", true)],
        recipe_change: false,
    },
    Case {
        playbook: "vacuum_degradation",
        expected: "vacuum_leak",
        alerts: &[
            ("source_pressure_mtorr", "cusum", "cusum_upper", true),
            ("beam_current_mA", "ewma", "rule_1", false),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "vacuum_degradation",
        expected: "outgassing",
        alerts: &[("source_pressure_mtorr", "spec", "critical_high", true)],
        recipe_change: true,
    },
    Case {
        playbook: "energy_drift",
        expected: "hv_supply_drift",
        alerts: &[("analyzer_field_gauss", "xbar", "rule_3", true)],
        recipe_change: false,
    },
    Case {
        playbook: "energy_drift",
        expected: "analyzer_misalignment",
        alerts: &[
            ("analyzer_field_gauss", "r", "rule_1", true),
            ("beam_current_mA", "ewma", "rule_1", false),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "ramp_tracking_error",
        expected: "pyrometer_drift",
        alerts: &[("ramp_tracking_error_C", "ewma", "rule_1", true)],
        recipe_change: false,
    },
    Case {
        playbook: "ramp_tracking_error",
        expected: "lamp_degradation",
        alerts: &[
            ("ramp_tracking_error_C", "ewma", "rule_1", true),
            ("lamp_power_pct", "cusum", "cusum_upper", true),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "ramp_tracking_error",
        expected: "thermal_mass_change",
        alerts: &[("ramp_tracking_error_C", "spec", "critical_high", true)],
        recipe_change: true,
    },
    Case {
        playbook: "overshoot",
        expected: "pid_tuning",
        alerts: &[("overshoot_pct", "xbar", "rule_2", true)],
        recipe_change: false,
    },
    Case {
        playbook: "overshoot",
        expected: "lamp_response",
        alerts: &[
            ("overshoot_pct", "xbar", "rule_1", true),
            ("lamp_power_pct", "cusum", "cusum_upper", true),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "overshoot",
        expected: "emissivity_mismatch",
        alerts: &[
            ("overshoot_pct", "spec", "spec_high", true),
            ("emissivity", "ewma", "rule_1", false),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "lamp_power_anomaly",
        expected: "lamp_aging",
        alerts: &[("lamp_power_pct", "cusum", "cusum_upper", true)],
        recipe_change: false,
    },
    Case {
        playbook: "lamp_power_anomaly",
        expected: "reflector_degradation",
        alerts: &[
            ("lamp_power_pct", "cusum", "cusum_upper", true),
            ("ramp_tracking_error_C", "ewma", "rule_1", true),
        ],
        recipe_change: false,
    },
    Case {
        playbook: "lamp_power_anomaly",
        expected: "power_supply",
        alerts: &[("lamp_power_pct", "spec", "critical_low", false)],
        recipe_change: false,
    },
    Case {
        playbook: "emissivity_drift",
        expected: "surface_contamination",
        alerts: &[("emissivity", "ewma", "rule_1", false)],
        recipe_change: false,
    },
    Case {
        playbook: "emissivity_drift",
        expected: "backside_coating",
        alerts: &[("emissivity", "spec", "spec_low", false)],
        recipe_change: false,
    },
    Case {
        playbook: "emissivity_drift",
        expected: "wafer_type_change",
        alerts: &[("emissivity", "spec", "spec_high", true)],
        recipe_change: true,
    },
    Case {
        playbook: "gas_flow_deviation",
        expected: "mfc_failure",
        alerts: &[("gas_flow_deviation_sccm", "xbar", "rule_2", true)],
        recipe_change: false,
    },
    Case {
        playbook: "gas_flow_deviation",
        expected: "pressure_control",
        alerts: &[("gas_flow_deviation_sccm", "r", "spread_high", true)],
        recipe_change: false,
    },
    Case {
        playbook: "gas_flow_deviation",
        expected: "valve_malfunction",
        alerts: &[("gas_flow_deviation_sccm", "xbar", "rule_1", true)],
        recipe_change: false,
    },
];

#[test]
fn each_cause_ranks_first_on_the_evidence_that_points_at_it() {
    let books = shipped();
    // Every cause of every playbook has its case.
    for book in &books.playbooks {
        for cause in &book.causes {
            assert!(
                CASES
                    .iter()
                    .any(|c| c.playbook == book.id && c.expected == cause.id),
                "no case for {}/{}",
                book.id,
                cause.id
            );
        }
    }
    for case in CASES {
        let book = books
            .playbooks
            .iter()
            .find(|b| b.id == case.playbook)
            .unwrap();
        let tool = if book.tool_type == ToolType::IonImplant {
            "ION-01"
        } else {
            "RTP-01"
        };
        // Each alert as a persisting signal shows it: opened, then repeated until its
        // dedup window closed (two witnesses; a lone alert is weaker evidence).
        let observations: Vec<Observation> = case
            .alerts
            .iter()
            .enumerate()
            .flat_map(|(i, (p, chart, rule, up))| {
                let opening = alert(tool, p, chart, rule, *up, 100 + i as i64);
                let mut closing = opening.clone();
                closing.repeats = 3;
                [Observation::of(&opening), Observation::of(&closing)]
            })
            .collect();
        let change = RecipeChange {
            at: 95 * 60_000,
            from: "R0".into(),
            to: "R1".into(),
        };
        let facts = Facts {
            observations: &observations,
            recipe_change: case.recipe_change.then_some(&change),
            opened_at: 100 * 60_000,
            now: i64::MAX,
            half_life_ms: 0,
        };
        let ranked = rank_causes(book, &facts).explain(&facts);
        let names: Vec<(&str, f64)> = ranked
            .iter()
            .map(|c| (c.cause_id.as_str(), c.confidence))
            .collect();
        assert_eq!(
            ranked[0].cause_id, case.expected,
            "{}: {names:?}",
            case.playbook
        );
        assert!(
            ranked[0].confidence > ranked[1].confidence,
            "{}: a tie is not a ranking: {names:?}",
            case.playbook
        );
        let total: f64 = ranked.iter().map(|c| c.confidence).sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        assert!(!ranked[0].evidence.is_empty());
    }
}

#[test]
fn the_failure_mode_is_the_playbook_the_evidence_points_at_hardest() {
    let books = shipped();
    // Beam current falling with the source pressure rising: both the beam current and the
    // vacuum playbooks are triggered; the beam current one holds the stronger case (vacuum
    // leak, 3.5 against 3.0), whichever alert came first.
    for order in [[0, 1], [1, 0]] {
        let alerts = [
            alert("ION-01", "beam_current_mA", "ewma", "rule_1", false, 0),
            alert(
                "ION-01",
                "source_pressure_mtorr",
                "cusum",
                "cusum_upper",
                true,
                1,
            ),
        ];
        let observations: Vec<Observation> =
            order.iter().map(|&i| Observation::of(&alerts[i])).collect();
        let facts = Facts {
            observations: &observations,
            recipe_change: None,
            opened_at: 0,
            now: i64::MAX,
            half_life_ms: 0,
        };
        let ranked = rank(&books, ToolType::IonImplant, &facts).unwrap();
        assert_eq!(ranked.playbook.id, "beam_current_instability");
        assert_eq!(ranked.cause_ids().next(), Some("vacuum_leak"));
    }
    // Many critical beam current alerts and one major dose spike: the beam current's
    // failure mode, though the spike alone makes a strong case for wafer handling.
    let mut observations = vec![Observation::of(&alert(
        "ION-01",
        "dose_uniformity_pct",
        "xbar",
        "rule_1",
        false,
        0,
    ))];
    for minute in 1..4 {
        let mut a = alert("ION-01", "beam_current_mA", "ewma", "rule_1", true, minute);
        a.severity = Severity::Critical;
        observations.push(Observation::of(&a));
    }
    let facts = Facts {
        observations: &observations,
        recipe_change: None,
        opened_at: 0,
        now: i64::MAX,
        half_life_ms: 0,
    };
    let ranked = rank(&books, ToolType::IonImplant, &facts).unwrap();
    assert_eq!(ranked.playbook.id, "beam_current_instability");
    // No playbook of RTP tools is triggered by an ion implant parameter.
    let observations = [Observation::of(&alert(
        "RTP-01",
        "beam_current_mA",
        "ewma",
        "rule_1",
        false,
        0,
    ))];
    let facts = Facts {
        observations: &observations,
        recipe_change: None,
        opened_at: 0,
        now: i64::MAX,
        half_life_ms: 0,
    };
    assert!(rank(&books, ToolType::Rtp, &facts).is_none());
}

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
fn a_lone_early_alert_fades_and_a_persisting_move_decides() {
    let books = shipped();
    // A lone source pressure alert (up: a leak's sign) an hour before the beam current
    // starts falling; the beam current alert then repeats for half an hour.
    let pressure = alert(
        "ION-01",
        "source_pressure_mtorr",
        "cusum",
        "cusum_upper",
        true,
        0,
    );
    let beam = alert("ION-01", "beam_current_mA", "ewma", "rule_1", false, 60);
    let mut beam_closing = beam.clone();
    (beam_closing.repeats, beam_closing.event_time) = (29, 90 * 60_000);
    let observations = [&pressure, &beam, &beam_closing].map(Observation::of);
    let facts = |half_life_ms| Facts {
        observations: &observations,
        recipe_change: None,
        opened_at: 0,
        now: 90 * 60_000,
        half_life_ms,
    };
    // Faded (half-life 30 min: the pressure alert speaks with 1/8 of its weight), the
    // persisting beam current decline decides: source wear.
    let faded = facts(30 * 60_000);
    assert!((faded.strength(&observations[0]) - 0.125).abs() < 1e-12);
    let ranked = rank(&books, ToolType::IonImplant, &faded).unwrap();
    assert_eq!(ranked.playbook.id, "beam_current_instability");
    assert_eq!(ranked.cause_ids().next(), Some("source_degradation"));
    let words = ranked.explain(&faded);
    assert!(
        words[0].evidence.iter().any(|e| e.contains("2 alerts")),
        "{:?}",
        words[0].evidence
    );
    // Were nothing to fade, the hour-old pressure alert would still make it a leak.
    let unfaded = facts(0);
    let ranked = rank(&books, ToolType::IonImplant, &unfaded).unwrap();
    assert_eq!(ranked.cause_ids().next(), Some("vacuum_leak"));
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
    let n = super::stage::RECIPE_CHANGES_KEPT as i64 * 3;
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
        state.recipe.as_deref(),
        Some(["R0", "R1"][(n % 2) as usize])
    );
    let changes: Vec<(i64, &str, &str)> = state
        .recipe_changes
        .iter()
        .map(|c| (c.at / 60_000, c.from.as_str(), c.to.as_str()))
        .collect();
    let expected: Vec<(i64, &str, &str)> = (n - super::stage::RECIPE_CHANGES_KEPT as i64 + 1..=n)
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

#[test]
fn an_exact_tie_keeps_the_published_cause_first() {
    let books = shipped();
    let book = &books.playbooks[0];
    let id = |i: usize| book.causes[i].id.as_str();
    let mut ranked = Ranked {
        playbook: book,
        scores: vec![(0, 1.0), (1, 1.0), (2, 0.5)],
        top_score: 1.0,
        weights: Vec::new(),
    };
    // A cause that ties the first goes first; one that scores lower does not.
    ranked.prefer_on_tie(id(1));
    assert_eq!(
        ranked.cause_ids().collect::<Vec<_>>(),
        [id(1), id(0), id(2)]
    );
    ranked.prefer_on_tie(id(2));
    assert_eq!(
        ranked.cause_ids().collect::<Vec<_>>(),
        [id(1), id(0), id(2)]
    );
    ranked.prefer_on_tie(id(0));
    assert_eq!(
        ranked.cause_ids().collect::<Vec<_>>(),
        [id(0), id(1), id(2)]
    );
}

#[test]
fn a_pattern_named_twice_counts_once() {
    let books = shipped();
    let book = &books.playbooks[0];
    let (c, e) = book
        .causes
        .iter()
        .enumerate()
        .find_map(|(c, cause)| {
            let e = cause.evidence.iter().position(|ev| {
                ev.when == When::Alert && !ev.pattern.is_empty() && ev.parameter.is_some()
            })?;
            Some((c, e))
        })
        .expect("a playbook with pattern evidence");
    let ev = &book.causes[c].evidence[e];
    let parameter = ev.parameter.clone().unwrap();
    let mut twice = book.clone();
    let doubled = &mut twice.causes[c].evidence[e].pattern;
    doubled.extend(doubled.clone());
    // Alerts showing that evidence: its pattern, from a chart and rule that give it, the
    // direction from the statistic.
    let (chart, rule) = match ev.pattern[0] {
        Pattern::Trend => ("ewma", "rule_1"),
        Pattern::Shift => ("xbar", "rule_2"),
        Pattern::Spike => ("xbar", "rule_1"),
        Pattern::Variance => ("r", "rule_1"),
        Pattern::Stratification => ("xbar", "rule_7"),
    };
    let up = ev.direction != Some(Direction::Down);
    let observations: Vec<Observation> = (0..3)
        .map(|m| Observation::of(&alert("ION-01", &parameter, chart, rule, up, 100 + m)))
        .collect();
    let facts = Facts {
        observations: &observations,
        recipe_change: None,
        opened_at: 100 * 60_000,
        now: 102 * 60_000,
        half_life_ms: 1_800_000,
    };
    let once = rank_causes(book, &facts);
    assert!(
        once.scores
            .iter()
            .any(|&(i, s)| i == c && s != book.causes[c].prior)
    );
    assert_eq!(rank_causes(&twice, &facts).scores, once.scores);
}
