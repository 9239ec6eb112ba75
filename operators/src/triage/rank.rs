//! Ranking a playbook's causes by the evidence an incident holds, and choosing the failure
//! mode among the playbooks its alerts trigger.
//!
//! How strongly an incident shows a piece of evidence weighs two things:
//! - **Evidence fades**: an alert speaks with weight 1 when it is the incident's latest and
//!   half that every half-life of event time before ([`Facts::strength`]).
//! - **Repeats corroborate**: a lone alert is as likely a false alarm as a real move (belief
//!   [`LONE_ALERT_BELIEF`]); each further alert that shows the same evidence (a dedup
//!   window's closing update counts as one) makes a real move likelier, as independent
//!   witnesses do: belief `1 - Π(1 - 0.6·strength)` over the alerts that show it.
//!
//! A persisting fault keeps alerting, so its evidence stays strong; a lone false alarm,
//! before the fault or during it, fades instead of deciding the incident.
//!
//! A cause's score is its prior plus the weight of every piece of its evidence times that
//! belief (for "no alert on P": one minus the belief that P moved). The confidences are the
//! softmax of the scores, so they sum to 1 and a weight is a log-odds. Causes tie-break in
//! playbook order. The failure mode is the triggered playbook where most of the trouble is:
//! the sum of its trigger parameters' alerts' strengths weighted by severity (minor 1, major
//! 2, critical 3); then the one whose first cause scores highest; then the one triggered
//! first; then playbook order.
//! Evidence decides, not the order alerts came in.

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

/// The belief that one fresh alert alone shows a real move: little better than even odds,
/// since a chart's false alarms are rare per sample but a tool has many charts and rules.
/// Above one half, so that two parameters moving the way one cause predicts (beam current
/// down, source pressure up: a leak) outweigh one of them plus "the other held".
pub const LONE_ALERT_BELIEF: f64 = 0.6;

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
    /// Every playbook the incident's alerts trigger (id) and how much of the trouble is
    /// its (see [`rank`]); the chosen one included.
    pub weights: Vec<(&'p str, f64)>,
}

impl Ranked<'_> {
    /// How much of the trouble is failure mode `id`'s (0 when its alerts trigger nothing).
    pub fn weight_of(&self, id: &str) -> f64 {
        self.weights
            .iter()
            .find(|(b, _)| *b == id)
            .map_or(0.0, |&(_, w)| w)
    }

    /// The score of cause `id` of the chosen playbook, if it has one.
    pub fn score_of(&self, id: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|&&(i, _)| self.playbook.causes[i].id == id)
            .map(|&(_, s)| s)
    }

    /// Puts cause `id` first when it scores exactly as high as the first: equal scores
    /// otherwise go in playbook order, and a published verdict should not turn on a tie.
    pub fn prefer_on_tie(&mut self, id: &str) {
        let book = self.playbook;
        let top = self.top_score;
        if let Some(at) = self
            .scores
            .iter()
            .position(|&(i, s)| s == top && book.causes[i].id == id)
        {
            self.scores[..=at].rotate_right(1);
        }
    }

    /// The chosen playbook's weight.
    pub fn weight(&self) -> f64 {
        self.weight_of(&self.playbook.id)
    }

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
    /// Event time the evidence is weighed at: the incident's latest alert (ms).
    pub now: i64,
    /// How long an alert's evidence takes to lose half its strength (ms); 0 or less: it
    /// never fades.
    pub half_life_ms: i64,
}

impl Facts<'_> {
    /// How strongly `o` still speaks: `0.5^(age / half-life)`, its age counted from
    /// [`Facts::now`] (1 for the latest alert, and for any alert when nothing fades).
    pub fn strength(&self, o: &Observation) -> f64 {
        if self.half_life_ms <= 0 {
            return 1.0;
        }
        let age = self.now.saturating_sub(o.event_time).max(0) as f64;
        (-age / self.half_life_ms as f64).exp2()
    }

    /// The belief that the observations `select` picks show a real move: each a witness
    /// of belief [`LONE_ALERT_BELIEF`] times its strength (0 when it picks none).
    fn belief(&self, select: impl Fn(&Observation) -> bool) -> f64 {
        let doubt: f64 = self
            .observations
            .iter()
            .filter(|o| select(o))
            .map(|o| 1.0 - LONE_ALERT_BELIEF * self.strength(o))
            .product();
        1.0 - doubt
    }
}

/// Ranks the failure mode the facts point at; `None` when no playbook of `tool_type` is
/// triggered by the incident's alerts.
pub fn rank<'p>(
    playbooks: &'p Playbooks,
    tool_type: spcvm_schemas::ToolType,
    facts: &Facts<'_>,
) -> Option<Ranked<'p>> {
    let weighed = Weighed::new(facts);
    let mut best: Option<(Ranked<'p>, f64, i64)> = None;
    let mut weights = Vec::new();
    for book in playbooks
        .playbooks
        .iter()
        .filter(|b| b.tool_type == tool_type)
    {
        let triggers = || {
            book.trigger
                .iter()
                .flat_map(|p| weighed.of(p))
                .map(|&i| (&facts.observations[i], weighed.strengths[i]))
        };
        let Some(triggered_at) = triggers().map(|(o, _)| o.event_time).min() else {
            continue;
        };
        let weight: f64 = triggers()
            .map(|(o, strength)| severity_weight(o.severity) * strength)
            .sum();
        weights.push((book.id.as_str(), weight));
        let ranked = rank_weighed(book, &weighed);
        let better = best.as_ref().is_none_or(|(b, w, at)| {
            (weight, ranked.top_score) > (*w, b.top_score)
                || (weight == *w && ranked.top_score == b.top_score && triggered_at < *at)
        });
        if better {
            best = Some((ranked, weight, triggered_at));
        }
    }
    best.map(|(ranked, _, _)| Ranked { weights, ..ranked })
}

/// How much an alert of `severity` weighs in choosing the failure mode.
fn severity_weight(severity: spcvm_schemas::Severity) -> f64 {
    match severity {
        spcvm_schemas::Severity::Minor => 1.0,
        spcvm_schemas::Severity::Major => 2.0,
        spcvm_schemas::Severity::Critical => 3.0,
    }
}

/// One playbook's causes ranked by the facts.
pub fn rank_causes<'p>(book: &'p Playbook, facts: &Facts<'_>) -> Ranked<'p> {
    rank_weighed(book, &Weighed::new(facts))
}

/// The facts made ready to weigh: each observation's strength computed once, and the
/// observations grouped by parameter (evidence names one parameter; an incident's alerts
/// come from a few), so each piece of evidence looks only at its parameter's alerts.
struct Weighed<'f, 'a> {
    facts: &'f Facts<'a>,
    strengths: Vec<f64>,
    by_parameter: Vec<(&'f str, Vec<usize>)>,
}

impl<'f, 'a> Weighed<'f, 'a> {
    fn new(facts: &'f Facts<'a>) -> Self {
        let mut by_parameter: Vec<(&'f str, Vec<usize>)> = Vec::new();
        for (i, o) in facts.observations.iter().enumerate() {
            match by_parameter.iter_mut().find(|(p, _)| *p == o.parameter) {
                Some((_, members)) => members.push(i),
                None => by_parameter.push((&o.parameter, vec![i])),
            }
        }
        Weighed {
            facts,
            strengths: facts
                .observations
                .iter()
                .map(|o| facts.strength(o))
                .collect(),
            by_parameter,
        }
    }

    /// The indices of the observations of `parameter`.
    fn of(&self, parameter: &str) -> &[usize] {
        self.by_parameter
            .iter()
            .find(|(p, _)| *p == parameter)
            .map_or(&[], |(_, members)| members)
    }

    /// [`Facts::belief`] over the observations of `parameter` that `select` picks.
    fn belief(&self, parameter: &str, select: impl Fn(&Observation) -> bool) -> f64 {
        let doubt: f64 = self
            .of(parameter)
            .iter()
            .filter(|&&i| select(&self.facts.observations[i]))
            .map(|&i| 1.0 - LONE_ALERT_BELIEF * self.strengths[i])
            .product();
        1.0 - doubt
    }
}

/// One playbook's causes ranked by the weighed facts.
fn rank_weighed<'p>(book: &'p Playbook, weighed: &Weighed<'_, '_>) -> Ranked<'p> {
    let mut scores: Vec<(usize, f64)> = book
        .causes
        .iter()
        .enumerate()
        .map(|(i, cause)| {
            let shown = cause
                .evidence
                .iter()
                .map(|ev| ev.weight * shows(ev, weighed));
            (i, cause.prior + shown.sum::<f64>())
        })
        .collect();
    // Highest score first; equal scores keep playbook order (the sort is stable).
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_score = scores.first().map_or(0.0, |s| s.1);
    Ranked {
        playbook: book,
        scores,
        top_score,
        weights: Vec::new(),
    }
}

/// How strongly the facts show `ev`, in [0, 1].
fn shows(ev: &Evidence, weighed: &Weighed<'_, '_>) -> f64 {
    let parameter = ev.parameter.as_deref().unwrap_or_default();
    match ev.when {
        When::Alert => weighed.belief(parameter, |o| matches(ev, parameter, o)),
        When::NoAlert => 1.0 - weighed.belief(parameter, |_| true),
        When::RecipeChange => f64::from(u8::from(weighed.facts.recipe_change.is_some())),
    }
}

/// Whether observation `o` is an alert `ev` (on `parameter`) describes.
fn matches(ev: &Evidence, parameter: &str, o: &Observation) -> bool {
    o.parameter == parameter
        && (ev.pattern.is_empty() || ev.pattern.contains(&o.pattern))
        && ev.direction.is_none_or(|d| o.direction == Some(d))
}

/// What the facts show of `ev`, in words, if they show it: the latest alert that shows
/// it, how many do, and the belief they give it.
fn observed(ev: &Evidence, facts: &Facts<'_>) -> Option<String> {
    let parameter = ev.parameter.as_deref().unwrap_or_default();
    match ev.when {
        When::Alert => {
            let shown = || {
                facts
                    .observations
                    .iter()
                    .filter(|o| matches(ev, parameter, o))
            };
            let latest = shown().next_back()?;
            let belief = facts.belief(|o| matches(ev, parameter, o));
            Some(match shown().count() {
                1 => format!("{}; belief {belief:.2}", latest.describe()),
                n => format!("{}, {n} alerts; belief {belief:.2}", latest.describe()),
            })
        }
        When::NoAlert => {
            let moved = facts.belief(|o| o.parameter == parameter);
            if moved == 0.0 {
                Some(format!("no alert on {parameter}"))
            } else {
                let n = facts
                    .observations
                    .iter()
                    .filter(|o| o.parameter == parameter)
                    .count();
                Some(format!(
                    "{n} alert(s) on {parameter}, belief it moved {moved:.2}"
                ))
            }
        }
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
