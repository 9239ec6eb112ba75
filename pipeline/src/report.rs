//! The `--report REPORT.json` document: input counts, alert counts, and one entry per chart
//! (tool, recipe, parameter) with its phase, frozen limits and rule firings.
//!
//! Everything in it is derived from the input and the configuration (no timings), so two
//! runs over the same input write the same report.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use spcvm_operators::{ChartType, KeyedState, Rule, SpcState};
use spcvm_schemas::{Severity, ToolType};

use crate::backtest::{InputCounts, Totals};
use crate::input::Format;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was read.
    pub input: InputReport,
    /// What was raised.
    pub alerts: AlertReport,
    /// Every chart that saw at least one record, sorted by (tool, recipe, parameter).
    pub charts: Vec<ChartReport>,
}

/// Input counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputReport {
    /// The input path as given.
    pub path: String,
    /// Its format.
    pub format: Format,
    /// Record and measurement counts.
    #[serde(flatten)]
    pub counts: InputCounts,
}

/// Alert counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertReport {
    /// Distinct alerts (distinct `alert_id`s, i.e. alert lines with `repeats` = 0).
    pub total: u64,
    /// Distinct alerts by severity.
    pub by_severity: SeverityCounts,
    /// Closing lines written when a dedup window that folded repeats closed (same
    /// `alert_id` as the alert that opened it, `repeats` > 0).
    pub closing_updates: u64,
    /// Repeats folded into alerts by dedup, summed over the closing lines.
    pub repeats_folded: u64,
}

/// Counts per severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SeverityCounts {
    /// Minor alerts.
    pub minor: u64,
    /// Major alerts.
    pub major: u64,
    /// Critical alerts.
    pub critical: u64,
}

impl SeverityCounts {
    /// Adds one alert of `severity`.
    pub fn add(&mut self, severity: Severity) {
        match severity {
            Severity::Minor => self.minor += 1,
            Severity::Major => self.major += 1,
            Severity::Critical => self.critical += 1,
        }
    }

    /// The sum over all severities.
    pub fn total(&self) -> u64 {
        self.minor + self.major + self.critical
    }
}

/// Whether a chart is still estimating its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Phase I: collecting the baseline; no limits, no control-chart signals yet.
    Baseline,
    /// Phase II: limits frozen, points plotted against them.
    Monitoring,
}

/// One chart: one parameter of one recipe on one tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartReport {
    /// Tool id.
    pub tool_id: String,
    /// Recipe id.
    pub recipe_id: String,
    /// Parameter name.
    pub parameter: String,
    /// Tool type.
    pub tool_type: ToolType,
    /// Chart type: `xbar_r`, `xbar_s`, `imr`, `ewma` or `cusum`.
    pub chart_type: &'static str,
    /// Finite samples plotted (Phase I included).
    pub samples: u64,
    /// NaN or infinite samples counted and not plotted.
    pub non_finite: u64,
    /// Records of this tool type that lacked the parameter.
    pub missing: u64,
    /// Baseline or monitoring.
    pub phase: Phase,
    /// Center line of the location statistic (null in baseline).
    pub center: Option<f64>,
    /// Process standard deviation of one sample (null in baseline).
    pub sigma: Option<f64>,
    /// Upper control limit of the location statistic: asymptotic for EWMA, +h·σ for CUSUM
    /// (null in baseline).
    pub ucl: Option<f64>,
    /// Lower control limit of the location statistic: asymptotic for EWMA, -h·σ for CUSUM
    /// (null in baseline).
    pub lcl: Option<f64>,
    /// Center of the spread chart (R, S or MR); null in baseline and for EWMA and CUSUM,
    /// which have none.
    pub spread_center: Option<f64>,
    /// Upper limit of the spread chart (null as for `spread_center`).
    pub spread_ucl: Option<f64>,
    /// Lower limit of the spread chart (null as for `spread_center`).
    pub spread_lcl: Option<f64>,
    /// Signals per rule, only rules that fired, in rule order. Counted before dedup, so a
    /// rule that kept firing inside one dedup window counts every firing.
    pub alerts_by_rule: RuleCounts,
}

/// Rule name to count, serialized as a JSON object in [`Rule::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleCounts(pub Vec<(&'static str, u32)>);

impl Serialize for RuleCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (rule, n) in &self.0 {
            map.serialize_entry(rule, n)?;
        }
        map.end()
    }
}

impl RuleCounts {
    /// The count for `rule` (0 when it did not fire).
    pub fn get(&self, rule: &str) -> u32 {
        self.0
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or(0, |(_, n)| *n)
    }
}

/// Builds the report from the run's totals and the final chart states.
pub fn build(path: &str, format: Format, totals: &Totals, store: &KeyedState<SpcState>) -> Report {
    let charts = store
        .sorted()
        .into_iter()
        .map(|(key, state)| {
            let limits = state.chart.limits;
            let has_spread = !matches!(state.chart_type, ChartType::Ewma | ChartType::Cusum);
            let spread = |f: fn(&spcvm_operators::Limits) -> f64| {
                limits.as_ref().filter(|_| has_spread).map(f)
            };
            ChartReport {
                tool_id: key.tool_id.to_string(),
                recipe_id: key.recipe_id.to_string(),
                parameter: key.parameter.to_string(),
                tool_type: state.tool_type,
                chart_type: state.chart_type.as_str(),
                samples: state.chart.samples,
                non_finite: state.chart.non_finite,
                missing: state.chart.missing,
                phase: if limits.is_some() {
                    Phase::Monitoring
                } else {
                    Phase::Baseline
                },
                center: limits.map(|l| l.center),
                sigma: limits.map(|l| l.sigma),
                ucl: limits.map(|l| l.ucl),
                lcl: limits.map(|l| l.lcl),
                spread_center: spread(|l| l.spread_center),
                spread_ucl: spread(|l| l.spread_ucl),
                spread_lcl: spread(|l| l.spread_lcl),
                alerts_by_rule: RuleCounts(
                    Rule::ALL
                        .iter()
                        .map(|r| (r.as_str(), state.chart.fired[r.index()]))
                        .filter(|&(_, n)| n > 0)
                        .collect(),
                ),
            }
        })
        .collect();
    Report {
        input: InputReport {
            path: path.to_string(),
            format,
            counts: totals.input,
        },
        alerts: AlertReport {
            total: totals.alerts.total(),
            by_severity: totals.alerts,
            closing_updates: totals.closing_updates,
            repeats_folded: totals.repeats_folded,
        },
        charts,
    }
}
