//! What a chart reports before it becomes an alert: the rule that fired, on which plotted
//! statistic, and how severe that is.
//!
//! # Severity
//!
//! | condition | severity |
//! |---|---|
//! | a sample beyond a specification limit (`spec_lower`/`spec_upper`) | critical |
//! | a sample further from the center than `critical_pct` | critical |
//! | rule 1 with the point beyond 1.5 times the control-limit distance (4.5σ on a 3σ chart) | critical |
//! | rule 1 (beyond a control limit), an R/S/MR point beyond its limits, a CUSUM signal | major |
//! | rules 2 to 8 (sensitizing run rules) | minor |

use serde::{Deserialize, Serialize};
use spcvm_schemas::Severity;

/// Everything that can raise an alert on a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Rule {
    /// Run rule 1: beyond a control limit.
    Rule1 = 0,
    /// Run rule 2: nine points on one side.
    Rule2,
    /// Run rule 3: six points trending.
    Rule3,
    /// Run rule 4: fourteen points alternating.
    Rule4,
    /// Run rule 5: two of three beyond 2σ, same side.
    Rule5,
    /// Run rule 6: four of five beyond 1σ, same side.
    Rule6,
    /// Run rule 7: fifteen within 1σ.
    Rule7,
    /// Run rule 8: eight beyond 1σ on both sides.
    Rule8,
    /// The spread (R, S or MR) above its upper limit.
    SpreadHigh,
    /// The spread (R or S) below its lower limit (only when that limit is above zero).
    SpreadLow,
    /// The upper CUSUM crossed the decision interval.
    CusumUpper,
    /// The lower CUSUM crossed the decision interval.
    CusumLower,
    /// A sample above the upper specification limit.
    SpecHigh,
    /// A sample below the lower specification limit.
    SpecLow,
    /// A sample above the center by more than the critical percentage.
    CriticalHigh,
    /// A sample below the center by more than the critical percentage.
    CriticalLow,
}

impl Rule {
    /// Number of distinct rules.
    pub const COUNT: usize = 16;

    /// Every rule, in index order.
    pub const ALL: [Rule; Rule::COUNT] = [
        Rule::Rule1,
        Rule::Rule2,
        Rule::Rule3,
        Rule::Rule4,
        Rule::Rule5,
        Rule::Rule6,
        Rule::Rule7,
        Rule::Rule8,
        Rule::SpreadHigh,
        Rule::SpreadLow,
        Rule::CusumUpper,
        Rule::CusumLower,
        Rule::SpecHigh,
        Rule::SpecLow,
        Rule::CriticalHigh,
        Rule::CriticalLow,
    ];

    /// Run rule `n` (1..=8).
    pub fn run_rule(n: u8) -> Option<Rule> {
        (1..=8).contains(&n).then(|| Rule::ALL[n as usize - 1])
    }

    /// A dense index (0..COUNT) for per-rule counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in alerts and reports, e.g. `rule_2` or `cusum_upper`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Rule1 => "rule_1",
            Rule::Rule2 => "rule_2",
            Rule::Rule3 => "rule_3",
            Rule::Rule4 => "rule_4",
            Rule::Rule5 => "rule_5",
            Rule::Rule6 => "rule_6",
            Rule::Rule7 => "rule_7",
            Rule::Rule8 => "rule_8",
            Rule::SpreadHigh => "spread_high",
            Rule::SpreadLow => "spread_low",
            Rule::CusumUpper => "cusum_upper",
            Rule::CusumLower => "cusum_lower",
            Rule::SpecHigh => "spec_high",
            Rule::SpecLow => "spec_low",
            Rule::CriticalHigh => "critical_high",
            Rule::CriticalLow => "critical_low",
        }
    }

    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Rule1 => "beyond a control limit",
            Rule::Rule2 => "nine points in a row on one side of the center line",
            Rule::Rule3 => "six points in a row trending",
            Rule::Rule4 => "fourteen points in a row alternating up and down",
            Rule::Rule5 => "two of three points beyond 2 sigma on one side",
            Rule::Rule6 => "four of five points beyond 1 sigma on one side",
            Rule::Rule7 => "fifteen points in a row within 1 sigma",
            Rule::Rule8 => "eight points in a row beyond 1 sigma on both sides",
            Rule::SpreadHigh => "spread above its upper control limit",
            Rule::SpreadLow => "spread below its lower control limit",
            Rule::CusumUpper => "upper CUSUM beyond the decision interval",
            Rule::CusumLower => "lower CUSUM beyond the decision interval",
            Rule::SpecHigh => "above the upper specification limit",
            Rule::SpecLow => "below the lower specification limit",
            Rule::CriticalHigh => "above the critical threshold",
            Rule::CriticalLow => "below the critical threshold",
        }
    }
}

/// The statistic a signal was raised on (the `chart` field of an alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Plot {
    /// Subgroup mean.
    Xbar,
    /// Subgroup range.
    R,
    /// Subgroup standard deviation.
    S,
    /// Individual value.
    I,
    /// Moving range of two individuals.
    Mr,
    /// EWMA statistic.
    Ewma,
    /// CUSUM sums (upper positive, lower shown negative), in the data's units.
    Cusum,
    /// A raw sample checked against specification or critical limits.
    Spec,
}

impl Plot {
    /// The name used in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Plot::Xbar => "xbar",
            Plot::R => "r",
            Plot::S => "s",
            Plot::I => "i",
            Plot::Mr => "mr",
            Plot::Ewma => "ewma",
            Plot::Cusum => "cusum",
            Plot::Spec => "spec",
        }
    }
}

/// Multiple of the control-limit distance beyond which a rule-1 point becomes critical.
pub const CRITICAL_LIMIT_MULTIPLE: f64 = 1.5;

/// One rule firing on one plotted point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// What fired.
    pub rule: Rule,
    /// On which statistic.
    pub plot: Plot,
    /// The plotted value.
    pub statistic: f64,
    /// The center line of that statistic.
    pub center: f64,
    /// Its upper limit, if it has one.
    pub ucl: Option<f64>,
    /// Its lower limit, if it has one.
    pub lcl: Option<f64>,
    /// Zone score of the point (distance from center in thirds of the limit distance); 0 where
    /// that has no meaning.
    pub zone: f64,
    /// Standard deviation of the plotted statistic, when known: σ/√n for X-bar, σ for I,
    /// CUSUM and raw (spec) samples, σ_z(t) for EWMA, d3·σ for R and MR, σ·√(1-c4²) for S.
    /// The unit of [`Signal::distance_sigma`].
    #[serde(default)]
    pub sigma: Option<f64>,
    /// On a CUSUM signal, the sums (C+, C-) in σ units at the point, before the reset that
    /// follows the signal.
    #[serde(default)]
    pub cusum: Option<[f64; 2]>,
}

impl Signal {
    /// Signed distance of the statistic from the center line in units of
    /// [`Signal::sigma`]; `None` when no positive, finite σ is known.
    pub fn distance_sigma(&self) -> Option<f64> {
        self.sigma
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(|s| (self.statistic - self.center) / s)
    }

    /// The alert severity of this signal (see the module table).
    pub fn severity(&self) -> Severity {
        match self.rule {
            Rule::SpecHigh | Rule::SpecLow | Rule::CriticalHigh | Rule::CriticalLow => {
                Severity::Critical
            }
            Rule::Rule1 if self.zone.abs() >= 3.0 * CRITICAL_LIMIT_MULTIPLE => Severity::Critical,
            Rule::Rule1
            | Rule::SpreadHigh
            | Rule::SpreadLow
            | Rule::CusumUpper
            | Rule::CusumLower => Severity::Major,
            _ => Severity::Minor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(rule: Rule, zone: f64) -> Signal {
        Signal {
            rule,
            plot: Plot::I,
            statistic: 0.0,
            center: 0.0,
            ucl: None,
            lcl: None,
            zone,
            sigma: None,
            cusum: None,
        }
    }

    #[test]
    fn severity_mapping() {
        assert_eq!(sig(Rule::SpecHigh, 0.0).severity(), Severity::Critical);
        assert_eq!(sig(Rule::CriticalLow, 0.0).severity(), Severity::Critical);
        assert_eq!(sig(Rule::Rule1, 3.2).severity(), Severity::Major);
        assert_eq!(sig(Rule::Rule1, -4.6).severity(), Severity::Critical);
        assert_eq!(sig(Rule::CusumUpper, 0.0).severity(), Severity::Major);
        assert_eq!(sig(Rule::SpreadHigh, 0.0).severity(), Severity::Major);
        for n in 2..=8 {
            assert_eq!(
                sig(Rule::run_rule(n).unwrap(), 1.0).severity(),
                Severity::Minor
            );
        }
    }

    #[test]
    fn distance_in_sigma_is_signed_and_needs_a_sigma() {
        let mut s = sig(Rule::Rule1, 0.0);
        (s.statistic, s.center) = (7.0, 10.0);
        assert_eq!(s.distance_sigma(), None);
        s.sigma = Some(0.5);
        assert_eq!(s.distance_sigma(), Some(-6.0));
        s.sigma = Some(0.0);
        assert_eq!(s.distance_sigma(), None, "no unit");
    }

    #[test]
    fn indices_are_dense_and_named() {
        for (i, r) in Rule::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Rule::run_rule(7), Some(Rule::Rule7));
        assert_eq!(Rule::run_rule(9), None);
        assert_eq!(Rule::Rule7.as_str(), "rule_7");
    }
}
