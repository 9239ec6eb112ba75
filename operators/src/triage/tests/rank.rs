//! The ranking: each cause first on its own evidence, the failure mode where the trouble
//! is, fading, ties, and patterns named twice.

use spcvm_schemas::{Severity, ToolType};

use super::super::*;
use super::{alert, shipped};

/// The facts of `observations` with no recipe change, weighed as if nothing faded.
fn unfaded(observations: &Observations) -> Facts<'_> {
    Facts {
        observations,
        recipe_change: None,
        opened_at: 0,
        now: i64::MAX,
        half_life_ms: 0,
    }
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
        let observations: Observations = case
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
        let observations: Observations =
            order.iter().map(|&i| Observation::of(&alerts[i])).collect();
        let facts = unfaded(&observations);
        let ranked = rank(&books, ToolType::IonImplant, &facts).unwrap();
        assert_eq!(ranked.playbook.id, "beam_current_instability");
        assert_eq!(ranked.cause_ids().next(), Some("vacuum_leak"));
    }
    // Many critical beam current alerts and one major dose spike: the beam current's
    // failure mode, though the spike alone makes a strong case for wafer handling.
    let mut observations: Observations = [Observation::of(&alert(
        "ION-01",
        "dose_uniformity_pct",
        "xbar",
        "rule_1",
        false,
        0,
    ))]
    .into_iter()
    .collect();
    for minute in 1..4 {
        let mut a = alert("ION-01", "beam_current_mA", "ewma", "rule_1", true, minute);
        a.severity = Severity::Critical;
        observations.push(Observation::of(&a));
    }
    let facts = unfaded(&observations);
    let ranked = rank(&books, ToolType::IonImplant, &facts).unwrap();
    assert_eq!(ranked.playbook.id, "beam_current_instability");
    // No playbook of RTP tools is triggered by an ion implant parameter.
    let observations: Observations = [Observation::of(&alert(
        "RTP-01",
        "beam_current_mA",
        "ewma",
        "rule_1",
        false,
        0,
    ))]
    .into_iter()
    .collect();
    let facts = unfaded(&observations);
    assert!(rank(&books, ToolType::Rtp, &facts).is_none());
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
    let observations: Observations = [&pressure, &beam, &beam_closing]
        .map(Observation::of)
        .into_iter()
        .collect();
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
    let observations: Observations = (0..3)
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
