//! Ranking a playbook's causes by the evidence an incident holds, and choosing the failure
//! mode among the playbooks its alerts trigger.
//!
//! A cause's score is its prior plus the weight of every piece of its evidence that the
//! incident shows (each counted once, however many alerts show it); the confidences are
//! the softmax of the scores, so they sum to 1 and a weight is a log-odds. Causes tie-break
//! in playbook order. The failure mode is the triggered playbook where most of the trouble
//! is: the most alerts on its trigger parameters, weighted by severity (minor 1, major 2,
//! critical 3); then the one whose first cause scores highest; then the one triggered
//! first; then playbook order. Evidence decides, not the order alerts came in.

use spcvm_schemas::RankedCause;

use super::evidence::Observation;
use super::playbook::{Evidence, Playbook, Playbooks, When};

/// A recipe change of a tool, as triage keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipeChange {
    /// Event time of the first record of the new recipe (ms).
    pub at: i64,
    /// The recipe before.
    pub from: String,
    /// The recipe after.
    pub to: String,
}

/// What the evidence says about one incident: the scores only (ranking runs at every
/// alert; the words of [`Ranked::explain`] only when a version is published).
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'p> {
    /// The failure mode's playbook.
    pub playbook: &'p Playbook,
    /// Its causes (index in the playbook) and their scores, most likely first.
    pub scores: Vec<(usize, f64)>,
    /// The first cause's score.
    pub top_score: f64,
}

impl Ranked<'_> {
    /// The causes' ids, most likely first.
    pub fn cause_ids(&self) -> impl Iterator<Item = &str> {
        self.scores
            .iter()
            .map(|&(i, _)| self.playbook.causes[i].id.as_str())
    }

    /// The confidence of the cause ranked `rank` (0: the first): the softmax of the scores.
    pub fn confidence(&self, rank: usize) -> f64 {
        let total: f64 = self
            .scores
            .iter()
            .map(|s| (s.1 - self.top_score).exp())
            .sum();
        self.scores
            .get(rank)
            .map_or(0.0, |s| (s.1 - self.top_score).exp() / total)
    }

    /// The causes with their confidence and the evidence the facts show, in words.
    pub fn explain(&self, facts: &Facts<'_>) -> Vec<RankedCause> {
        self.scores
            .iter()
            .enumerate()
            .map(|(rank, &(i, _))| {
                let cause = &self.playbook.causes[i];
                let evidence = cause
                    .evidence
                    .iter()
                    .filter_map(|ev| {
                        let detail = observed(ev, facts)?;
                        let against = if ev.weight < 0.0 { "against: " } else { "" };
                        Some(format!("{against}{} [{detail}]", ev.says))
                    })
                    .collect();
                RankedCause {
                    cause_id: cause.id.clone(),
                    name: cause.name.clone(),
                    confidence: self.confidence(rank),
                    evidence,
                }
            })
            .collect()
    }
}

/// The facts an incident offers the evidence.
pub struct Facts<'a> {
    /// Its alerts' observations, in arrival order.
    pub observations: &'a [Observation],
    /// A recipe change of the tool in the lookback before the incident's latest alert.
    pub recipe_change: Option<&'a RecipeChange>,
    /// Event time of the incident's first alert (for the recipe change's "N min before").
    pub opened_at: i64,
}

/// Ranks the failure mode the facts point at; `None` when no playbook of `tool_type` is
/// triggered by the incident's alerts.
pub fn rank<'p>(
    playbooks: &'p Playbooks,
    tool_type: spcvm_schemas::ToolType,
    facts: &Facts<'_>,
) -> Option<Ranked<'p>> {
    let mut best: Option<(Ranked<'p>, u64, i64)> = None;
    for book in playbooks
        .playbooks
        .iter()
        .filter(|b| b.tool_type == tool_type)
    {
        let triggers = || {
            facts
                .observations
                .iter()
                .filter(|o| book.trigger.contains(&o.parameter))
        };
        let Some(triggered_at) = triggers().map(|o| o.event_time).min() else {
            continue;
        };
        let weight: u64 = triggers().map(|o| severity_weight(o.severity)).sum();
        let ranked = rank_causes(book, facts);
        let better = best.as_ref().is_none_or(|(b, w, at)| {
            (weight, ranked.top_score) > (*w, b.top_score)
                || (weight == *w && ranked.top_score == b.top_score && triggered_at < *at)
        });
        if better {
            best = Some((ranked, weight, triggered_at));
        }
    }
    best.map(|(ranked, _, _)| ranked)
}

/// How much an alert of `severity` weighs in choosing the failure mode.
fn severity_weight(severity: spcvm_schemas::Severity) -> u64 {
    match severity {
        spcvm_schemas::Severity::Minor => 1,
        spcvm_schemas::Severity::Major => 2,
        spcvm_schemas::Severity::Critical => 3,
    }
}

/// One playbook's causes ranked by the facts.
pub fn rank_causes<'p>(book: &'p Playbook, facts: &Facts<'_>) -> Ranked<'p> {
    let mut scores: Vec<(usize, f64)> = book
        .causes
        .iter()
        .enumerate()
        .map(|(i, cause)| {
            let shown = cause.evidence.iter().filter(|ev| shows(ev, facts));
            (i, cause.prior + shown.map(|ev| ev.weight).sum::<f64>())
        })
        .collect();
    // Highest score first; equal scores keep playbook order (the sort is stable).
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_score = scores.first().map_or(0.0, |s| s.1);
    Ranked {
        playbook: book,
        scores,
        top_score,
    }
}

/// Whether the facts show `ev`.
fn shows(ev: &Evidence, facts: &Facts<'_>) -> bool {
    let parameter = ev.parameter.as_deref().unwrap_or_default();
    match ev.when {
        When::Alert => facts.observations.iter().any(|o| matches(ev, parameter, o)),
        When::NoAlert => !facts.observations.iter().any(|o| o.parameter == parameter),
        When::RecipeChange => facts.recipe_change.is_some(),
    }
}

/// Whether observation `o` is an alert `ev` (on `parameter`) describes.
fn matches(ev: &Evidence, parameter: &str, o: &Observation) -> bool {
    o.parameter == parameter
        && (ev.pattern.is_empty() || ev.pattern.contains(&o.pattern))
        && ev.direction.is_none_or(|d| o.direction == Some(d))
}

/// What the facts show of `ev`, in words, if they show it.
fn observed(ev: &Evidence, facts: &Facts<'_>) -> Option<String> {
    let parameter = ev.parameter.as_deref().unwrap_or_default();
    match ev.when {
        When::Alert => facts
            .observations
            .iter()
            .find(|o| matches(ev, parameter, o))
            .map(Observation::describe),
        When::NoAlert => (!facts.observations.iter().any(|o| o.parameter == parameter))
            .then(|| format!("no alert on {parameter}")),
        When::RecipeChange => facts.recipe_change.map(|c| {
            let before = (facts.opened_at - c.at) / 60_000;
            if before >= 0 {
                format!(
                    "recipe {} -> {}, {before} min before the first alert",
                    c.from, c.to
                )
            } else {
                format!("recipe {} -> {} during the incident", c.from, c.to)
            }
        }),
    }
}
