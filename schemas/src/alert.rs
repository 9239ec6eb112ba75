//! SPC alerts as the pipeline emits them: [`Alert`] and [`Severity`].
//!
//! The Avro form is `schemas/avro/alert.avsc`; the JSON form is produced by the serde
//! derives here (see [`crate::json`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::telemetry::{ParseEnumError, ToolType};

/// How urgent an alert is.
///
/// Ordered from least to most urgent: `Minor < Major < Critical`. Serialized (JSON and
/// Avro) as `"minor"`, `"major"` or `"critical"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; no action required yet.
    Minor,
    /// Needs attention soon.
    Major,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// Every severity, from least to most urgent (also the Avro symbol order).
    pub const ALL: [Severity; 3] = [Severity::Minor, Severity::Major, Severity::Critical];

    /// The wire name: `"minor"`, `"major"` or `"critical"` (also the Avro enum symbol).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = ParseEnumError;

    /// Parses the wire name exactly (`"minor"`, `"major"` or `"critical"`, case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "severity",
                value: s.to_owned(),
                expected: &["minor", "major", "critical"],
            })
    }
}

/// One SPC alert: a control-chart rule or specification limit violated by one parameter
/// of one tool.
///
/// In JSON, `lot_id` and `wafer_id` may be absent or `null`, and unknown fields are
/// ignored. `chart` and `rule` are free strings (not enums) so that new charts and rules
/// do not break old readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic identifier derived from the alert's content, so that replaying the
    /// same telemetry yields the same id.
    pub alert_id: String,
    /// Tool whose parameter violated the rule.
    pub tool_id: String,
    /// Kind of tool.
    pub tool_type: ToolType,
    /// Recipe running when the violation was observed.
    pub recipe_id: String,
    /// Lot of the triggering sample, if known.
    #[serde(default)]
    pub lot_id: Option<String>,
    /// Wafer of the triggering sample, if known.
    #[serde(default)]
    pub wafer_id: Option<String>,
    /// Measured parameter, a key of [`crate::Telemetry::measurements`].
    pub parameter: String,
    /// Chart that raised the alert: one of `xbar`, `r`, `s`, `i`, `mr`, `ewma`, `cusum`,
    /// `spec`.
    pub chart: String,
    /// Rule that was violated, e.g. `rule_1`, `cusum_upper`, `spec_high`.
    pub rule: String,
    /// How urgent the alert is.
    pub severity: Severity,
    /// Value of the plotted statistic that violated the rule (for spec alerts, the
    /// measured value).
    pub statistic: f64,
    /// Center line of the chart when the alert was raised.
    pub center_line: f64,
    /// Upper control limit (upper spec limit for spec alerts), if the chart has one.
    pub ucl: Option<f64>,
    /// Lower control limit (lower spec limit for spec alerts), if the chart has one.
    pub lcl: Option<f64>,
    /// Event time of the triggering sample, in milliseconds since the Unix epoch (UTC).
    pub event_time: i64,
    /// Human-readable description of the violation.
    pub message: String,
    /// How many repeats of this alert deduplication folded into it.
    pub repeats: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order_and_names() {
        assert!(Severity::Minor < Severity::Major);
        assert!(Severity::Major < Severity::Critical);
        assert_eq!(Severity::ALL.iter().max(), Some(&Severity::Critical));
        for sev in Severity::ALL {
            assert_eq!(sev.as_str().parse::<Severity>(), Ok(sev));
            assert_eq!(sev.to_string(), sev.as_str());
        }
        assert_eq!(
            "urgent".parse::<Severity>().unwrap_err().to_string(),
            "unknown severity `urgent` (expected one of: minor, major, critical)"
        );
    }
}
