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

use super::evidence::{Direction, Observation, Pattern};
use super::observations::{CELLS, Observations, cell};
use super::playbook::{Evidence, Playbook, Playbooks, When};
use crate::state::short_eq;

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
        let total = self.softmax_total();
        self.scores
            .get(rank)
            .map_or(0.0, |s| (s.1 - self.top_score).exp() / total)
    }

    /// The softmax's denominator (scores taken from the first's, so no term overflows).
    fn softmax_total(&self) -> f64 {
        self.scores
            .iter()
            .map(|s| (s.1 - self.top_score).exp())
            .sum()
    }

    /// The causes with their confidence and the evidence the facts show, in words.
    pub fn explain(&self, facts: &Facts<'_>) -> Vec<RankedCause> {
        let weighed = Weighed::new(facts);
        // The softmax's denominator once, not once per cause.
        let total = self.softmax_total();
        self.scores
            .iter()
            .map(|&(i, score)| {
                let cause = &self.playbook.causes[i];
                RankedCause {
                    cause_id: cause.id.clone(),
                    name: cause.name.clone(),
                    confidence: (score - self.top_score).exp() / total,
                    evidence: cause
                        .evidence
                        .iter()
                        .filter_map(|ev| observed(ev, &weighed))
                        .collect(),
                }
            })
            .collect()
    }
}

/// The facts an incident offers the evidence.
pub struct Facts<'a> {
    /// Its alerts' observations, in arrival order.
    pub observations: &'a Observations,
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
        self.strength_at(o.event_time)
    }

    /// [`Facts::strength`] of an alert of `event_time`.
    fn strength_at(&self, event_time: i64) -> f64 {
        if self.half_life_ms <= 0 {
            return 1.0;
        }
        let age = self.now.saturating_sub(event_time).max(0) as f64;
        (-age / self.half_life_ms as f64).exp2()
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
    // Every triggered playbook's weight first: only those of the highest weight can be
    // chosen, so only their causes are scored.
    let mut triggered: Vec<(&'p Playbook, f64, i64)> = Vec::with_capacity(4);
    for book in playbooks
        .playbooks
        .iter()
        .filter(|b| b.tool_type == tool_type)
    {
        let mut triggered_at: Option<i64> = None;
        let mut weight = 0.0;
        for g in book.trigger.iter().filter_map(|p| weighed.of(p)) {
            weight += g.weight;
            triggered_at = Some(triggered_at.map_or(g.first_at, |t| t.min(g.first_at)));
        }
        if let Some(at) = triggered_at {
            triggered.push((book, weight, at));
        }
    }
    let top_weight = triggered
        .iter()
        .map(|&(_, w, _)| w)
        .max_by(f64::total_cmp)?;
    let mut best: Option<(Ranked<'p>, i64)> = None;
    for &(book, _, triggered_at) in triggered.iter().filter(|t| t.1 == top_weight) {
        let ranked = rank_weighed(book, &weighed);
        let better = best.as_ref().is_none_or(|(b, at)| {
            ranked.top_score > b.top_score
                || (ranked.top_score == b.top_score && triggered_at < *at)
        });
        if better {
            best = Some((ranked, triggered_at));
        }
    }
    let weights = triggered
        .iter()
        .map(|&(book, w, _)| (book.id.as_str(), w))
        .collect();
    best.map(|(ranked, _)| Ranked { weights, ..ranked })
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

/// Equality of two parameter names (a few bytes each; no `memcmp` call).
fn same(a: &str, b: &str) -> bool {
    short_eq(a.as_bytes(), b.as_bytes())
}

/// What one parameter's observations weigh: the doubt (`Π(1 - 0.6·strength)`) of those in
/// each pattern-and-direction cell, of all of them, and their strength weighted by severity.
#[derive(Debug, Clone, Copy)]
struct Group<'f> {
    parameter: &'f str,
    /// Its observations (a parameter whose observations all left has none).
    n: u32,
    doubt: [f64; CELLS],
    all: f64,
    weight: f64,
    first_at: i64,
}

/// The facts made ready to weigh, in one pass over the observations' rows: each
/// observation's strength computed once and folded into its parameter's [`Group`]. A piece
/// of evidence then reads the few cells it describes instead of scanning the observations.
struct Weighed<'f, 'a> {
    facts: &'f Facts<'a>,
    groups: Vec<Group<'f>>,
}

impl<'f, 'a> Weighed<'f, 'a> {
    fn new(facts: &'f Facts<'a>) -> Self {
        let mut groups: Vec<Group<'f>> = facts
            .observations
            .params()
            .iter()
            .map(|parameter| Group {
                parameter,
                n: 0,
                doubt: [1.0; CELLS],
                all: 1.0,
                weight: 0.0,
                first_at: i64::MAX,
            })
            .collect();
        // Alerts of one record share an event time, and so a strength.
        let mut strength_at = (i64::MIN, 0.0);
        for row in facts.observations.rows() {
            let g = &mut groups[row.param as usize];
            if strength_at.0 != row.event_time {
                strength_at = (row.event_time, facts.strength_at(row.event_time));
            }
            let strength = strength_at.1;
            let doubt = 1.0 - LONE_ALERT_BELIEF * strength;
            g.n += 1;
            g.doubt[usize::from(row.cell)] *= doubt;
            g.all *= doubt;
            g.weight += severity_weight(row.severity) * strength;
            g.first_at = g.first_at.min(row.event_time);
        }
        Weighed { facts, groups }
    }

    /// The group of `parameter`, if the incident holds alerts on it.
    fn of(&self, parameter: &str) -> Option<&Group<'f>> {
        self.groups
            .iter()
            .find(|g| g.n > 0 && same(g.parameter, parameter))
    }

    /// The belief that `ev`'s alerts (on `parameter`) show a real move:
    /// `1 - Π(1 - 0.6·strength)` over the observations it describes.
    fn belief(&self, ev: &Evidence, parameter: &str) -> f64 {
        let Some(g) = self.of(parameter) else {
            return 0.0;
        };
        if ev.pattern.is_empty() && ev.direction.is_none() {
            return 1.0 - g.all;
        }
        let mut doubt = 1.0;
        // Each cell once, even if the playbook names a pattern twice.
        for p in Pattern::ALL
            .into_iter()
            .filter(|p| ev.pattern.is_empty() || ev.pattern.contains(p))
        {
            match ev.direction {
                Some(d) => doubt *= g.doubt[cell(p, Some(d))],
                None => {
                    for d in [Some(Direction::Up), Some(Direction::Down), None] {
                        doubt *= g.doubt[cell(p, d)];
                    }
                }
            }
        }
        1.0 - doubt
    }

    /// The belief that `parameter` moved at all (any alert on it).
    fn moved(&self, parameter: &str) -> f64 {
        self.of(parameter).map_or(0.0, |g| 1.0 - g.all)
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
        When::Alert => weighed.belief(ev, parameter),
        When::NoAlert => 1.0 - weighed.moved(parameter),
        When::RecipeChange => f64::from(u8::from(weighed.facts.recipe_change.is_some())),
    }
}

/// Whether observation `o` is an alert `ev` (on `parameter`) describes.
fn matches(ev: &Evidence, parameter: &str, o: &Observation) -> bool {
    o.parameter.is(parameter)
        && (ev.pattern.is_empty() || ev.pattern.contains(&o.pattern))
        && ev.direction.is_none_or(|d| o.direction == Some(d))
}

/// What the facts show of `ev`, in words, if they show it: what it says, then the latest
/// alert that shows it, how many do, and the belief they give it.
fn observed(ev: &Evidence, weighed: &Weighed<'_, '_>) -> Option<String> {
    let facts = weighed.facts;
    let parameter = ev.parameter.as_deref().unwrap_or_default();
    let start = |text: &mut String| {
        if ev.weight < 0.0 {
            text.push_str("against: ");
        }
        text.push_str(&ev.says);
        text.push_str(" [");
    };
    let mut text = String::with_capacity(ev.says.len() + 112);
    match ev.when {
        When::Alert => {
            let mut shown = facts
                .observations
                .iter()
                .filter(|o| matches(ev, parameter, o));
            let latest = shown.next_back()?;
            let n = 1 + shown.count();
            start(&mut text);
            latest.describe_into(&mut text);
            if n > 1 {
                text.push_str(", ");
                text.push_str(itoa::Buffer::new().format(n));
                text.push_str(" alerts");
            }
            text.push_str("; belief ");
            push_hundredths(&mut text, weighed.belief(ev, parameter));
        }
        When::NoAlert => {
            start(&mut text);
            let moved = weighed.moved(parameter);
            if moved == 0.0 {
                text.push_str("no alert on ");
                text.push_str(parameter);
            } else {
                let n = facts
                    .observations
                    .iter()
                    .filter(|o| o.parameter.is(parameter))
                    .count();
                text.push_str(itoa::Buffer::new().format(n));
                text.push_str(" alert(s) on ");
                text.push_str(parameter);
                text.push_str(", belief it moved ");
                push_hundredths(&mut text, moved);
            }
        }
        When::RecipeChange => {
            let c = facts.recipe_change?;
            start(&mut text);
            text.push_str("recipe ");
            text.push_str(&c.from);
            text.push_str(" -> ");
            text.push_str(&c.to);
            let before = (facts.opened_at - c.at) / 60_000;
            if before >= 0 {
                text.push_str(", ");
                text.push_str(itoa::Buffer::new().format(before));
                text.push_str(" min before the first alert");
            } else {
                text.push_str(" during the incident");
            }
        }
    }
    text.push(']');
    Some(text)
}

/// `v` in [0, 1] with two decimals (`0.60`), rounded to the nearest hundredth.
fn push_hundredths(text: &mut String, v: f64) {
    let h = (v.clamp(0.0, 1.0) * 100.0).round() as u32;
    text.push(char::from(b'0' + (h / 100) as u8));
    text.push('.');
    text.push(char::from(b'0' + (h / 10 % 10) as u8));
    text.push(char::from(b'0' + (h % 10) as u8));
}
