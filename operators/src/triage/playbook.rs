//! Playbooks: the failure modes triage knows, as data (`deploy/playbooks/*.toml`, built
//! into the binary as the defaults).
//!
//! A playbook names the parameters whose alerts point at its failure mode (`trigger`), the
//! likely causes, the evidence for or against each (an alert on a parameter with a pattern
//! and a direction, the absence of one, a recipe change just before) with a weight, and the
//! corrective actions with their priority and owner; an action may be an out-of-control
//! action plan step (a lot hold or a tool inhibit) called for from a severity on.
//! [`Playbooks::validate`] checks what the TOML shape cannot: unique ids, known parameters,
//! every cause with evidence, actions that name existing causes.

use serde::Deserialize;
use spcvm_schemas::{ActionKind, Severity, ToolType};

use super::evidence::{Direction, Pattern};

/// A set of playbooks: one file's `[[playbook]]` tables, or several files' together.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbooks {
    /// The failure modes.
    #[serde(rename = "playbook", default)]
    pub playbooks: Vec<Playbook>,
}

/// One failure mode.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Unique id, e.g. `beam_current_instability` (the triage's `failure_mode`).
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// The kind of tool it applies to.
    pub tool_type: ToolType,
    /// Parameters whose alerts point at this failure mode.
    pub trigger: Vec<String>,
    /// Likely causes.
    #[serde(rename = "cause", default)]
    pub causes: Vec<Cause>,
    /// Corrective actions.
    #[serde(rename = "action", default)]
    pub actions: Vec<Action>,
}

/// A likely cause of a failure mode.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cause {
    /// Unique within its playbook, e.g. `vacuum_leak`.
    pub id: String,
    /// Its name for people.
    pub name: String,
    /// Belief before any evidence, added to the matched evidence's weights (log-odds).
    #[serde(default)]
    pub prior: f64,
    /// What points at it (positive weight) or away from it (negative).
    #[serde(rename = "evidence", default)]
    pub evidence: Vec<Evidence>,
}

/// What kind of observation a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The incident holds an alert on `parameter` (of one of `pattern`, in `direction`).
    Alert,
    /// The incident holds no alert on `parameter`.
    NoAlert,
    /// The tool's recipe changed shortly before the incident's alerts.
    RecipeChange,
}

/// One piece of evidence for or against a cause.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The kind of observation.
    pub when: When,
    /// The parameter (`alert`, `no_alert`).
    #[serde(default)]
    pub parameter: Option<String>,
    /// The alert's pattern, one of these (`alert`; empty: any).
    #[serde(default)]
    pub pattern: Vec<Pattern>,
    /// The direction of the move (`alert`; absent: either).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// How much it counts: added to the cause's score when observed.
    pub weight: f64,
    /// What it means, for the person who reads the triage.
    pub says: String,
}

/// A corrective action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Unique within its playbook.
    pub id: String,
    /// What to do.
    pub description: String,
    /// 1 is the most urgent.
    pub priority: u32,
    /// Who does it (a role).
    pub owner: String,
    /// `inspect` (default), `lot_hold` or `tool_inhibit`.
    #[serde(default = "inspect")]
    pub kind: ActionKind,
    /// The cause it addresses: listed first when that cause ranks first, and an OCAP step
    /// is called for only then. Absent: whatever the cause.
    #[serde(default)]
    pub cause: Option<String>,
    /// OCAP steps: the incident severity from which it is called for (default `critical`).
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

fn inspect() -> ActionKind {
    ActionKind::Inspect
}

impl Action {
    /// Whether it is an out-of-control action plan step (published on the actions topic).
    pub fn is_ocap(&self) -> bool {
        self.kind != ActionKind::Inspect
    }

    /// The severity from which an OCAP step is called for.
    pub fn threshold(&self) -> Severity {
        self.min_severity.unwrap_or(Severity::Critical)
    }
}

/// One step of the path to a value in the playbooks: a key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    /// A table key.
    Key(&'static str),
    /// An index into an array of tables.
    Index(usize),
}

/// A playbook value [`Playbooks::validate`] refuses: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path_text(.path))]
pub struct PlaybookError {
    /// From the file's top: `playbook`, its index, `cause`, ... the key at fault.
    pub path: Vec<PathPart>,
    /// What is wrong.
    pub message: String,
}

/// `playbook[2].cause[0].evidence`.
fn path_text(path: &[PathPart]) -> String {
    let mut s = String::new();
    for part in path {
        match part {
            PathPart::Key(k) if s.is_empty() => s.push_str(k),
            PathPart::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathPart::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

impl Playbooks {
    /// Checks what the TOML shape cannot; `known` says whether a tool type has a parameter
    /// (a chart watches it).
    ///
    /// # Errors
    ///
    /// The first [`PlaybookError`], with the path to the value at fault.
    pub fn validate(&self, known: &dyn Fn(ToolType, &str) -> bool) -> Result<(), PlaybookError> {
        use PathPart::{Index, Key};
        let err = |path: Vec<PathPart>, message: String| Err(PlaybookError { path, message });
        for (p, book) in self.playbooks.iter().enumerate() {
            let at = |rest: &[PathPart]| {
                let mut path = vec![Key("playbook"), Index(p)];
                path.extend_from_slice(rest);
                path
            };
            if book.id.is_empty() {
                return err(at(&[Key("id")]), "must not be empty".into());
            }
            if self.playbooks[..p].iter().any(|b| b.id == book.id) {
                return err(
                    at(&[Key("id")]),
                    format!("duplicate playbook id `{}`", book.id),
                );
            }
            if book.trigger.is_empty() {
                return err(at(&[Key("trigger")]), "name at least one parameter".into());
            }
            let parameter_ok = |name: &str, path: Vec<PathPart>| {
                if known(book.tool_type, name) {
                    Ok(())
                } else {
                    err(
                        path,
                        format!(
                            "unknown parameter `{name}`: no {} chart watches it",
                            book.tool_type
                        ),
                    )
                }
            };
            for name in &book.trigger {
                parameter_ok(name, at(&[Key("trigger")]))?;
            }
            if book.causes.is_empty() {
                return err(at(&[Key("cause")]), "name at least one cause".into());
            }
            for (c, cause) in book.causes.iter().enumerate() {
                let at_cause = |rest: &[PathPart]| {
                    let mut path = at(&[Key("cause"), Index(c)]);
                    path.extend_from_slice(rest);
                    path
                };
                if cause.id.is_empty() {
                    return err(at_cause(&[Key("id")]), "must not be empty".into());
                }
                if book.causes[..c].iter().any(|x| x.id == cause.id) {
                    return err(
                        at_cause(&[Key("id")]),
                        format!(
                            "duplicate cause id `{}` in playbook `{}`",
                            cause.id, book.id
                        ),
                    );
                }
                if !cause.prior.is_finite() {
                    return err(at_cause(&[Key("prior")]), "must be a finite number".into());
                }
                if cause.evidence.is_empty() {
                    return err(
                        at_cause(&[Key("evidence")]),
                        format!(
                            "cause `{}` has no evidence: nothing could rank it",
                            cause.id
                        ),
                    );
                }
                for (e, ev) in cause.evidence.iter().enumerate() {
                    let at_ev = |key| at_cause(&[Key("evidence"), Index(e), Key(key)]);
                    match (ev.when, &ev.parameter) {
                        (When::Alert | When::NoAlert, None) => {
                            return err(at_ev("parameter"), "name the parameter".into());
                        }
                        (When::Alert | When::NoAlert, Some(name)) => {
                            parameter_ok(name, at_ev("parameter"))?;
                        }
                        (When::RecipeChange, Some(_)) => {
                            return err(
                                at_ev("parameter"),
                                "a recipe change is the tool's, not a parameter's".into(),
                            );
                        }
                        (When::RecipeChange, None) => {}
                    }
                    if ev.when != When::Alert && (!ev.pattern.is_empty() || ev.direction.is_some())
                    {
                        return err(
                            at_ev(if ev.pattern.is_empty() {
                                "direction"
                            } else {
                                "pattern"
                            }),
                            "only evidence of an alert has a pattern or a direction".into(),
                        );
                    }
                    if !ev.weight.is_finite() || ev.weight == 0.0 {
                        return err(at_ev("weight"), "must be a finite number, not 0".into());
                    }
                    if ev.says.trim().is_empty() {
                        return err(at_ev("says"), "say what it means".into());
                    }
                }
            }
            for (a, action) in book.actions.iter().enumerate() {
                let at_action = |key| at(&[Key("action"), Index(a), Key(key)]);
                if action.id.is_empty() {
                    return err(at_action("id"), "must not be empty".into());
                }
                if book.actions[..a].iter().any(|x| x.id == action.id) {
                    return err(
                        at_action("id"),
                        format!(
                            "duplicate action id `{}` in playbook `{}`",
                            action.id, book.id
                        ),
                    );
                }
                if action.priority == 0 {
                    return err(
                        at_action("priority"),
                        "1 is the most urgent; 0 is not one".into(),
                    );
                }
                if action.owner.trim().is_empty() {
                    return err(at_action("owner"), "name a role".into());
                }
                if action.description.trim().is_empty() {
                    return err(at_action("description"), "say what to do".into());
                }
                if let Some(cause) = &action.cause
                    && !book.causes.iter().any(|c| &c.id == cause)
                {
                    return err(
                        at_action("cause"),
                        format!("no cause `{cause}` in playbook `{}`", book.id),
                    );
                }
                if action.min_severity.is_some() && !action.is_ocap() {
                    return err(
                        at_action("min_severity"),
                        "only a lot_hold or tool_inhibit is gated by severity".into(),
                    );
                }
            }
        }
        Ok(())
    }
}
