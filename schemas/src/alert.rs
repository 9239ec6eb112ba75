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

/// Where an alert stands in its dedup window.
///
/// The first firing of a rule on a chart emits an `Open` alert at once and opens a dedup
/// window of event time (`dedup.window_s`, 30 minutes by default). Repeats of that rule on
/// that chart inside the window are folded, not emitted. When event time passes the end of
/// the window (the chart's next sample, a watermark, or the end of a bounded input) and the
/// window folded at least one repeat, one `Closed` alert follows: the same `alert_id`, the
/// last repeat's statistic, time, lot and wafer, the worst severity seen, and `repeats`.
///
/// A window that folded no repeat ends without a second alert: its `Open` alert already
/// says everything that happened, and a "nothing more" message for every isolated firing
/// would double the topic's traffic for the commonest case while every consumer (triage,
/// dashboards, pagers) would have to discard it. So a subscriber that tracks open
/// incidents closes an `Open` alert either on its `Closed` update or, absent one, once event
/// time has passed `window_start` + the dedup window. With dedup off (`window_s = 0`) every
/// firing is an `Open` alert and none closes.
///
/// Everything here is decided in event time, so a backtest, the streaming job and a job
/// restored from a checkpoint emit the same alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The first alert of a dedup window: news.
    Open,
    /// The update that closes a window that folded repeats (`repeats` > 0).
    Closed,
}

impl AlertStatus {
    /// Every status, in Avro symbol order.
    pub const ALL: [AlertStatus; 2] = [AlertStatus::Open, AlertStatus::Closed];

    /// The wire name: `"open"` or `"closed"` (also the Avro enum symbol).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Closed => "closed",
        }
    }

    /// The status of an alert written before `status` existed: the closing update of a
    /// window was then the only alert with `repeats` > 0, so this is exact for such alerts.
    pub fn from_repeats(repeats: u32) -> Self {
        if repeats > 0 {
            AlertStatus::Closed
        } else {
            AlertStatus::Open
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertStatus {
    type Err = ParseEnumError;

    /// Parses the wire name exactly (`"open"` or `"closed"`, case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "alert status",
                value: s.to_owned(),
                expected: &["open", "closed"],
            })
    }
}

/// One SPC alert: a control-chart rule or specification limit violated by one parameter
/// of one tool.
///
/// In JSON, `lot_id` and `wafer_id` may be absent or `null`, and unknown fields are
/// ignored. `chart` and `rule` are free strings (not enums) so that new charts and rules
/// do not break old readers.
///
/// The fields after `repeats` came later (schema evolution): each may be absent or `null`
/// in JSON and is a `["null", ...]` union with a `null` default in Avro, so alerts written
/// before them still decode (and old readers skip them). An absent `status` is inferred
/// from `repeats` ([`AlertStatus::from_repeats`]); the others are then `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "AlertFields")]
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
    pub lot_id: Option<String>,
    /// Wafer of the triggering sample, if known.
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
    /// Signed distance of `statistic` from `center_line` in standard deviations of the
    /// plotted statistic: σ/√n on X-bar, σ on I and spec/critical checks, the exact
    /// σ_z(t) on EWMA (asymptotic on the closing update of a chart with configured limits), d3·σ on R and MR, σ·√(1-c4²) on S, σ on CUSUM (so it is C+/σ or
    /// -C-/σ there). `None` when no σ is known yet (a spec alert during Phase I without a
    /// configured `sigma`) or for alerts written before the field existed.
    pub distance_sigma: Option<f64>,
    /// `open` for the first alert of a dedup window, `closed` for the update that closes it
    /// (see [`AlertStatus`]).
    pub status: AlertStatus,
    /// Event time (ms since the Unix epoch) of the alert that opened this alert's dedup
    /// window: `event_time` itself on an `open` alert, the window's start on a `closed`
    /// one. `None` for alerts written before the field existed.
    pub window_start: Option<i64>,
    /// The upper CUSUM sum C+ in units of σ (C+ = max(0, C+ + z - k), z = (x - μ0)/σ) at
    /// the alert's sample, before the reset that follows a signal. Only on `cusum` alerts.
    pub cusum_upper_sigma: Option<f64>,
    /// The lower CUSUM sum C- in units of σ (C- = max(0, C- - z - k), so ≥ 0; the
    /// `statistic` of a `cusum_lower` alert shows it negated) at the alert's sample, before
    /// the reset that follows a signal. Only on `cusum` alerts.
    pub cusum_lower_sigma: Option<f64>,
}

/// [`Alert`] as deserialized: the later fields may be absent, and an absent `status`
/// is inferred from `repeats`.
#[derive(Deserialize)]
struct AlertFields {
    alert_id: String,
    tool_id: String,
    tool_type: ToolType,
    recipe_id: String,
    #[serde(default)]
    lot_id: Option<String>,
    #[serde(default)]
    wafer_id: Option<String>,
    parameter: String,
    chart: String,
    rule: String,
    severity: Severity,
    statistic: f64,
    center_line: f64,
    ucl: Option<f64>,
    lcl: Option<f64>,
    event_time: i64,
    message: String,
    repeats: u32,
    #[serde(default)]
    distance_sigma: Option<f64>,
    #[serde(default)]
    status: Option<AlertStatus>,
    #[serde(default)]
    window_start: Option<i64>,
    #[serde(default)]
    cusum_upper_sigma: Option<f64>,
    #[serde(default)]
    cusum_lower_sigma: Option<f64>,
}

impl From<AlertFields> for Alert {
    fn from(f: AlertFields) -> Self {
        Alert {
            status: f
                .status
                .unwrap_or_else(|| AlertStatus::from_repeats(f.repeats)),
            alert_id: f.alert_id,
            tool_id: f.tool_id,
            tool_type: f.tool_type,
            recipe_id: f.recipe_id,
            lot_id: f.lot_id,
            wafer_id: f.wafer_id,
            parameter: f.parameter,
            chart: f.chart,
            rule: f.rule,
            severity: f.severity,
            statistic: f.statistic,
            center_line: f.center_line,
            ucl: f.ucl,
            lcl: f.lcl,
            event_time: f.event_time,
            message: f.message,
            repeats: f.repeats,
            distance_sigma: f.distance_sigma,
            window_start: f.window_start,
            cusum_upper_sigma: f.cusum_upper_sigma,
            cusum_lower_sigma: f.cusum_lower_sigma,
        }
    }
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
