//! RCA triage: the `triage` stage turns a tool's SPC alerts into incidents with likely
//! causes, ranked by evidence, and corrective actions, following playbooks that are data.
//!
//! # Layout
//!
//! - [`playbook`]: the playbook model ([`Playbooks`]: failure modes, causes, evidence,
//!   actions) and its validation.
//! - [`evidence`]: what one alert says ([`Observation`]: the pattern of the move, from the
//!   chart and rule, and its direction).
//! - [`observations`]: an incident's observations ([`Observations`]), laid out for the
//!   ranking that reads them at every alert.
//! - [`rank`](mod@rank): causes scored by the evidence an incident shows (confidence: the softmax of
//!   the scores), and the failure mode chosen among the playbooks its alerts trigger.
//! - [`stage`]: [`TriageStage`], the stage: incidents per tool within a window of event
//!   time, versions published when the ranking changes, OCAP steps once per incident and
//!   kind, and the last version at the close.
//!
//! # Data flow
//!
//! ```text
//! records ──> recipe changes (per tool, with their event time)
//! alerts (SpcMonitor) ──Observation::of──> incident of the tool (window of event time)
//!     └─ rank(playbooks, facts) ──> failure mode + causes ──> Triage (version n) ──> `triage`
//!                                      └─ OCAP actions (severity, top cause) ──> `actions`
//! watermark / end ──> incidents past their window close: a last version
//! ```

pub mod evidence;
pub mod observations;
pub mod playbook;
pub mod rank;
pub mod stage;

#[cfg(test)]
mod tests;

pub use evidence::{Direction, Observation, Pattern};
pub use observations::Observations;
pub use playbook::{Action, Cause, Evidence, PathPart, Playbook, PlaybookError, Playbooks, When};
pub use rank::{Facts, Ranked, RecipeChange, rank, rank_causes};
pub use stage::{
    Incident, Published, ToolTriage, TriageConfig, TriageOutput, TriageStage, TriageVersion,
};
