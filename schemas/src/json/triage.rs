//! The JSON line of a [`Triage`], written directly: the bytes serde_json writes for the
//! derive, without its per-byte escaping loop and buffer regrowth (a triage version carries
//! kilobytes of evidence text and alert ids, and the stage publishes about one per alert).

use super::{write_opt_str as opt_str, write_str};
use crate::triage::{OcapAction, RankedAction, RankedCause, Triage};

/// Appends `triage` as serde_json would write it (field order of the struct) to `out`.
pub fn write_triage_json(t: &Triage, out: &mut Vec<u8>) {
    write(t, &t.causes, None, out);
}

/// [`write_triage_json`] with the `causes` given apart (a stage shares them between the
/// version it publishes and the incident it keeps) and the elements of the `actions` array
/// given already encoded (each by [`write_ranked_action_json`], comma-separated, in order:
/// a playbook's actions read the same in every version, so a stage encodes them once).
/// `t`'s own `causes` and `actions` are not read.
pub fn write_triage_json_with_actions(
    t: &Triage,
    causes: &[RankedCause],
    actions: &[u8],
    out: &mut Vec<u8>,
) {
    write(t, causes, Some(actions), out);
}

/// Appends one element of a triage's `actions` as serde_json would write it.
pub fn write_ranked_action_json(a: &RankedAction, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"action_id\":");
    write_str(out, &a.action_id);
    out.extend_from_slice(b",\"description\":");
    write_str(out, &a.description);
    out.extend_from_slice(b",\"priority\":");
    int(out, i64::from(a.priority));
    out.extend_from_slice(b",\"owner\":");
    write_str(out, &a.owner);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, a.kind.as_str());
    out.extend_from_slice(b",\"cause_id\":");
    opt_str(out, a.cause_id.as_deref());
    out.push(b'}');
}

/// Appends an OCAP action as serde_json would write it (field order of the struct).
pub fn write_action_json(a: &OcapAction, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"action_id\":");
    write_str(out, &a.action_id);
    out.extend_from_slice(b",\"incident_id\":");
    write_str(out, &a.incident_id);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, a.kind.as_str());
    out.extend_from_slice(b",\"tool_id\":");
    write_str(out, &a.tool_id);
    out.extend_from_slice(b",\"tool_type\":");
    write_str(out, a.tool_type.as_str());
    out.extend_from_slice(b",\"recipe_id\":");
    write_str(out, &a.recipe_id);
    out.extend_from_slice(b",\"lot_id\":");
    opt_str(out, a.lot_id.as_deref());
    out.extend_from_slice(b",\"wafer_id\":");
    opt_str(out, a.wafer_id.as_deref());
    out.extend_from_slice(b",\"severity\":");
    write_str(out, a.severity.as_str());
    out.extend_from_slice(b",\"reason\":");
    write_str(out, &a.reason);
    out.extend_from_slice(b",\"description\":");
    write_str(out, &a.description);
    out.extend_from_slice(b",\"owner\":");
    write_str(out, &a.owner);
    out.extend_from_slice(b",\"event_time\":");
    int(out, a.event_time);
    out.push(b'}');
}

fn write(t: &Triage, causes: &[RankedCause], actions: Option<&[u8]>, out: &mut Vec<u8>) {
    let text: usize = causes
        .iter()
        .flat_map(|c| c.evidence.iter().map(String::len).chain([c.name.len()]))
        .chain(std::iter::once(actions.map_or_else(
            || t.actions.iter().map(|a| a.description.len()).sum(),
            <[u8]>::len,
        )))
        .chain(t.alert_ids.iter().map(String::len))
        .sum();
    out.reserve(text + 256 + 64 * causes.len() + 96 * t.actions.len() + 3 * t.alert_ids.len());
    out.extend_from_slice(b"{\"incident_id\":");
    write_str(out, &t.incident_id);
    out.extend_from_slice(b",\"version\":");
    int(out, i64::from(t.version));
    out.extend_from_slice(b",\"status\":");
    write_str(out, t.status.as_str());
    out.extend_from_slice(b",\"tool_id\":");
    write_str(out, &t.tool_id);
    out.extend_from_slice(b",\"tool_type\":");
    write_str(out, t.tool_type.as_str());
    out.extend_from_slice(b",\"recipe_id\":");
    write_str(out, &t.recipe_id);
    out.extend_from_slice(b",\"lot_id\":");
    opt_str(out, t.lot_id.as_deref());
    out.extend_from_slice(b",\"wafer_id\":");
    opt_str(out, t.wafer_id.as_deref());
    out.extend_from_slice(b",\"failure_mode\":");
    write_str(out, &t.failure_mode);
    out.extend_from_slice(b",\"failure_mode_name\":");
    write_str(out, &t.failure_mode_name);
    out.extend_from_slice(b",\"severity\":");
    write_str(out, t.severity.as_str());
    out.extend_from_slice(b",\"causes\":[");
    for (i, c) in causes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"cause_id\":");
        write_str(out, &c.cause_id);
        out.extend_from_slice(b",\"name\":");
        write_str(out, &c.name);
        out.extend_from_slice(b",\"confidence\":");
        float(out, c.confidence);
        out.extend_from_slice(b",\"evidence\":");
        str_list(out, &c.evidence);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"actions\":[");
    match actions {
        Some(encoded) => out.extend_from_slice(encoded),
        None => {
            for (i, a) in t.actions.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_ranked_action_json(a, out);
            }
        }
    }
    out.extend_from_slice(b"],\"alert_ids\":");
    str_list(out, &t.alert_ids);
    out.extend_from_slice(b",\"opened_at\":");
    int(out, t.opened_at);
    out.extend_from_slice(b",\"event_time\":");
    int(out, t.event_time);
    out.push(b'}');
}

fn int(out: &mut Vec<u8>, i: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// A float as serde_json writes it; `null` when not finite.
fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn str_list(out: &mut Vec<u8>, list: &[String]) {
    out.push(b'[');
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use crate::telemetry::ToolType;
    use crate::triage::{ActionKind, IncidentStatus, OcapAction, RankedCause};

    fn sample(awkward: &str) -> Triage {
        Triage {
            incident_id: format!("ION-01:1:{awkward}"),
            version: 7,
            status: IncidentStatus::Closed,
            tool_id: "ION-01".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: awkward.into(),
            lot_id: Some("LOT-1".into()),
            wafer_id: None,
            failure_mode: "beam_current_instability".into(),
            failure_mode_name: "Beam \"current\" instability".into(),
            severity: Severity::Critical,
            causes: vec![
                RankedCause {
                    cause_id: "source_degradation".into(),
                    name: awkward.into(),
                    confidence: 0.723_456_789_012_345_6,
                    evidence: vec![awkward.into(), "plain".into()],
                },
                RankedCause {
                    cause_id: "vacuum_leak".into(),
                    name: "Vacuum leak".into(),
                    confidence: 1e-17,
                    evidence: vec![],
                },
            ],
            actions: vec![
                RankedAction {
                    action_id: "check_source".into(),
                    description: awkward.into(),
                    priority: 1,
                    owner: "equipment_engineer".into(),
                    kind: ActionKind::ToolInhibit,
                    cause_id: None,
                },
                RankedAction {
                    action_id: "leak_check".into(),
                    description: "Leak-check the chamber".into(),
                    priority: 2,
                    owner: awkward.into(),
                    kind: ActionKind::Inspect,
                    cause_id: Some("vacuum_leak".into()),
                },
            ],
            alert_ids: vec!["a1".into(), awkward.into()],
            opened_at: -5,
            event_time: 1_796_623_200_000,
        }
    }

    #[test]
    fn writes_actions_as_serde_json_does() {
        for awkward in [
            "",
            "quote \" backslash \\ newline \n nul \0",
            "ünïcødé ✓ 🚀",
        ] {
            for (lot, wafer) in [(Some(awkward), None), (None, Some("W01"))] {
                let a = OcapAction {
                    action_id: format!("ION-01:1:{awkward}:lot_hold"),
                    incident_id: format!("ION-01:1:{awkward}"),
                    kind: ActionKind::LotHold,
                    tool_id: "ION-01".into(),
                    tool_type: ToolType::IonImplant,
                    recipe_id: awkward.into(),
                    lot_id: lot.map(str::to_string),
                    wafer_id: wafer.map(str::to_string),
                    severity: Severity::Major,
                    reason: format!("Beam current instability; most likely {awkward} (72 %)"),
                    description: awkward.into(),
                    owner: "process_engineer".into(),
                    event_time: -1_796_623_200_000,
                };
                let mut ours = Vec::new();
                write_action_json(&a, &mut ours);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(serde_json::to_vec(&a).unwrap()).unwrap()
                );
            }
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        for awkward in [
            "",
            "plain text, longer than eight bytes",
            "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 end",
            "ünïcødé ✓ 🚀 \u{1f}",
        ] {
            let t = sample(awkward);
            let mut ours = Vec::new();
            write_triage_json(&t, &mut ours);
            let serde = serde_json::to_vec(&t).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde.clone()).unwrap()
            );
            // The same with the causes given apart and the actions encoded beforehand (the
            // head's own are not read).
            let mut actions = Vec::new();
            for (i, a) in t.actions.iter().enumerate() {
                if i > 0 {
                    actions.push(b',');
                }
                write_ranked_action_json(a, &mut actions);
            }
            let head = Triage {
                causes: Vec::new(),
                actions: Vec::new(),
                ..t.clone()
            };
            let mut spliced = Vec::new();
            write_triage_json_with_actions(&head, &t.causes, &actions, &mut spliced);
            assert_eq!(spliced, serde);
        }
    }
}
