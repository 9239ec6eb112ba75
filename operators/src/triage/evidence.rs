//! What one alert says about its parameter ([`Observation`]): the pattern of the move
//! (read from the chart and the rule that fired) and its direction.
//!
//! | pattern | alerts | what it suggests |
//! |---|---|---|
//! | `trend` | EWMA beyond its limits, run rule 3 (six in a row trending) | a slow drift: wear, a drifting sensor |
//! | `shift` | CUSUM, run rules 2, 5, 6 (runs on one side) | a step to a new level that stays |
//! | `spike` | a single point beyond the limits (run rule 1 of a Shewhart chart), a specification or critical limit | a one-off or a sudden failure |
//! | `variance` | the spread chart, run rules 4 and 8 (alternation, points on both sides) | instability, scatter |
//! | `stratification` | run rule 7 (fifteen within one sigma) | mixed streams, a changed measurement |

use serde::{Deserialize, Serialize};
use spcvm_schemas::{Alert, Severity};

use crate::short::ShortStr;

/// The shape of a parameter's move, from the chart and rule that caught it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A slow drift.
    Trend,
    /// A step to a level that stays.
    Shift,
    /// A single point far out.
    Spike,
    /// More scatter than usual.
    Variance,
    /// Less scatter than usual (rule 7).
    Stratification,
}

impl Pattern {
    /// Every pattern, in declaration order (`as usize` indexes it).
    pub const ALL: [Pattern; 5] = [
        Pattern::Trend,
        Pattern::Shift,
        Pattern::Spike,
        Pattern::Variance,
        Pattern::Stratification,
    ];

    /// The name in playbooks and triage text.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Trend => "trend",
            Pattern::Shift => "shift",
            Pattern::Spike => "spike",
            Pattern::Variance => "variance",
            Pattern::Stratification => "stratification",
        }
    }

    /// The pattern an alert of `chart` for `rule` shows.
    pub fn of(chart: &str, rule: &str) -> Pattern {
        match (chart, rule) {
            ("ewma", _) | (_, "rule_3") => Pattern::Trend,
            ("cusum", _) | (_, "rule_2" | "rule_5" | "rule_6") => Pattern::Shift,
            ("r" | "s" | "mr", _) | (_, "rule_4" | "rule_8" | "spread_high" | "spread_low") => {
                Pattern::Variance
            }
            (_, "rule_7") => Pattern::Stratification,
            _ => Pattern::Spike,
        }
    }
}

/// Which way a parameter moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Above its center line (or its spread grew).
    Up,
    /// Below its center line (or its spread shrank).
    Down,
}

impl Direction {
    /// The name in playbooks and triage text.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }

    /// The direction of an alert: from a rule that names it (`*_high`, `*_upper`), else
    /// the statistic against the center line; `None` when they are equal.
    pub fn of(alert: &Alert) -> Option<Direction> {
        let rule = alert.rule.as_str();
        if rule.ends_with("_high") || rule.ends_with("_upper") {
            return Some(Direction::Up);
        }
        if rule.ends_with("_low") || rule.ends_with("_lower") {
            return Some(Direction::Down);
        }
        if alert.statistic > alert.center_line {
            Some(Direction::Up)
        } else if alert.statistic < alert.center_line {
            Some(Direction::Down)
        } else {
            None
        }
    }
}

/// What one alert says, as triage keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The alert.
    pub alert_id: String,
    /// Its parameter (the short ids inline: an incident keeps hundreds of observations,
    /// and each would otherwise cost three allocations).
    pub parameter: ShortStr,
    /// Its chart and rule, as the alert names them (for the evidence text).
    pub chart: ShortStr,
    /// The rule.
    pub rule: ShortStr,
    /// The pattern they show.
    pub pattern: Pattern,
    /// The direction of the move, if it has one.
    pub direction: Option<Direction>,
    /// The alert's severity.
    pub severity: Severity,
    /// Its event time (ms).
    pub event_time: i64,
    /// Repeats its dedup window had folded (0: the opening alert; more: a closing update).
    #[serde(default)]
    pub repeats: u32,
}

impl Observation {
    /// What `alert` says.
    pub fn of(alert: &Alert) -> Observation {
        Observation {
            alert_id: alert.alert_id.clone(),
            parameter: ShortStr::new(&alert.parameter),
            chart: ShortStr::new(&alert.chart),
            rule: ShortStr::new(&alert.rule),
            pattern: Pattern::of(&alert.chart, &alert.rule),
            direction: Direction::of(alert),
            severity: alert.severity,
            event_time: alert.event_time,
            repeats: alert.repeats,
        }
    }

    /// `source_pressure_mtorr up (shift cusum_upper on the cusum chart)`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        self.describe_into(&mut text);
        text
    }

    /// [`Observation::describe`], appended to `text`.
    pub fn describe_into(&self, text: &mut String) {
        text.push_str(self.parameter.as_str());
        text.push(' ');
        if let Some(d) = self.direction {
            text.push_str(d.as_str());
            text.push(' ');
        }
        text.push('(');
        text.push_str(self.pattern.as_str());
        text.push(' ');
        text.push_str(self.rule.as_str());
        text.push_str(" on the ");
        text.push_str(self.chart.as_str());
        text.push_str(" chart)");
    }
}
