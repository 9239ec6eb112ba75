//! Triage: the shipped playbooks parse and validate, and validation names the key at
//! fault (here); the ranking ([`rank`]: for every failure mode and each of its competing
//! causes, a synthetic history showing that cause's evidence ranks it first); the stage
//! ([`stage`]: incidents open, re-publish on news, emit each OCAP step once and close
//! after their window); an incident's observations ([`observations`]: dropping the oldest,
//! and what is serialized and compared).

mod observations;
mod rank;
mod stage;

use spcvm_schemas::{Alert, Severity, ToolType};

use super::*;

const PLAYBOOKS: [&str; 2] = [
    include_str!("../../../../deploy/playbooks/ion_implant.toml"),
    include_str!("../../../../deploy/playbooks/rtp.toml"),
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
