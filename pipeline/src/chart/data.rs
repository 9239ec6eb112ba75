//! What a chart drawing shows, recovered by re-running the SPC operators over the input for
//! one key: the points come from [`ChartState::update_observed`] (the statistic each sample
//! plots and the limits it was judged against), the alerts from [`SpcMonitor`] itself (the
//! same ids, dedup and rules as the run). Nothing is recomputed here.
//!
//! The run's own outputs serve as a check: the alerts file's alerts on the key and the
//! report's limits must be what the re-run gives; when they are not (another chart
//! configuration, or a job restored under edited settings), [`ChartData::warnings`] says so.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use spcvm_operators::{
    ChartState, ChartType, KeyedState, Limits, Plot, Point, Signal, SpcMonitor, SpcState,
};
use spcvm_schemas::{Alert, Telemetry, TelemetryView, ToolType};

use super::ChartError;
use crate::backtest::Merged;
use crate::input::{Format, RecordSource};

/// The chart to draw: a tool, a recipe (optional when the tool ran one) and a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The tool.
    pub tool_id: String,
    /// The recipe; `None`: the tool's only recipe in the input.
    pub recipe_id: Option<String>,
    /// The parameter.
    pub parameter: String,
}

/// Where the chart's data comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Chart configuration of the run (`None`: the built-in monitors).
    pub charts: Option<PathBuf>,
    /// The run's telemetry, merged as the backtest merges several inputs.
    pub inputs: Vec<PathBuf>,
    /// Input format; `None`: from each file's extension.
    pub format: Option<Format>,
    /// The run's alerts (JSON lines), checked against the re-run's.
    pub alerts: Option<PathBuf>,
    /// The backtest report, whose limits for the key are checked against the re-run's.
    pub report: Option<PathBuf>,
}

/// One plotted point: the chart's statistic at one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plotted {
    /// The chart's sample number (1-based, finite samples only).
    pub sample: u64,
    /// The sample's event time (ms).
    pub event_time: i64,
    /// The statistic and its limits.
    pub point: Point,
}

/// A rule firing on a sample (before dedup).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fired {
    /// The chart's sample number.
    pub sample: u64,
    /// What fired.
    pub signal: Signal,
}

/// An alert the key raised, at the sample that raised it.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The chart's sample number.
    pub sample: u64,
    /// The alert as the run published it (`repeats` from its closing line, if any).
    pub alert: Alert,
}

/// Everything a drawing of one chart needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    /// The tool.
    pub tool_id: String,
    /// The recipe.
    pub recipe_id: String,
    /// The parameter.
    pub parameter: String,
    /// The tool's type.
    pub tool_type: ToolType,
    /// The chart's configuration, as compiled by the monitor.
    pub spec: spcvm_operators::ChartSpec,
    /// Finite samples charted.
    pub samples: u64,
    /// The sample at which the limits froze (end of Phase I); `None`: still in Phase I.
    pub phase1_end: Option<u64>,
    /// The frozen limits at the end.
    pub limits: Option<Limits>,
    /// Event time of each sample, by sample number - 1.
    pub times: Vec<i64>,
    /// Location points (X-bar, I, EWMA, CUSUM), in sample order.
    pub points: Vec<Plotted>,
    /// Every rule firing, in sample order (spec, spread and location).
    pub fired: Vec<Fired>,
    /// The alerts (dedup's first line of each), in sample order.
    pub alerts: Vec<Labelled>,
    /// Where the run's outputs disagree with the re-run.
    pub warnings: Vec<String>,
}

impl ChartData {
    /// The first sample at or after event time `t` (ms), if any.
    pub fn sample_at(&self, t: i64) -> Option<u64> {
        let i = self.times.partition_point(|&x| x < t);
        (i < self.times.len()).then_some(i as u64 + 1)
    }

    /// The title's chart name with its settings, e.g. `EWMA (λ = 0.2, L = 3)`.
    pub fn chart_name(&self) -> String {
        let s = &self.spec;
        match s.chart_type {
            ChartType::XbarR => format!("X-bar/R (n = {}, L = {})", s.subgroup_size, s.l),
            ChartType::XbarS => format!("X-bar/S (n = {}, L = {})", s.subgroup_size, s.l),
            ChartType::Imr => format!("I-MR (L = {})", s.l),
            ChartType::Ewma => format!("EWMA (λ = {}, L = {})", s.lambda, s.l),
            ChartType::Cusum => format!("CUSUM (k = {}, h = {})", s.k, s.h),
        }
    }
}

/// The re-run of one (tool, recipe) group's chart for the parameter.
struct Run {
    tool_type: ToolType,
    chart: ChartState,
    monitor_store: KeyedState<SpcState>,
    times: Vec<i64>,
    points: Vec<Plotted>,
    fired: Vec<Fired>,
    phase1_end: Option<u64>,
    /// Opening alerts on the parameter, with their sample.
    alerts: Vec<Labelled>,
}

impl Run {
    fn new(tool_type: ToolType) -> Self {
        Run {
            tool_type,
            chart: ChartState::default(),
            monitor_store: KeyedState::default(),
            times: Vec::new(),
            points: Vec::new(),
            fired: Vec::new(),
            phase1_end: None,
            alerts: Vec::new(),
        }
    }

    /// One record of the group: the chart step with its points, and the monitor's step on
    /// the parameter alone (other parameters' states are kept apart and never alert).
    fn step(
        &mut self,
        monitor: &SpcMonitor,
        chart: &spcvm_operators::spc::Chart,
        parameter: &str,
        record: &Telemetry,
        out: &mut Vec<Alert>,
    ) {
        let value = record.measurement(parameter);
        let mut only = record.clone();
        only.measurements.retain(|name, _| name == parameter);
        out.clear();
        monitor.process_record(&mut self.monitor_store, &only, out);
        let Some(x) = value.filter(|x| x.is_finite()) else {
            return;
        };
        let sample = self.chart.samples + 1;
        let (points, fired) = (&mut self.points, &mut self.fired);
        self.chart.update_observed(
            chart,
            x,
            &mut |signal| fired.push(Fired { sample, signal }),
            &mut |point| {
                if matches!(point.plot, Plot::Xbar | Plot::I | Plot::Ewma | Plot::Cusum) {
                    points.push(Plotted {
                        sample,
                        event_time: record.event_time,
                        point,
                    });
                }
            },
        );
        self.times.push(record.event_time);
        if self.phase1_end.is_none() && self.chart.limits.is_some() {
            self.phase1_end = Some(sample);
        }
        for alert in out.drain(..) {
            if alert.parameter == parameter && alert.repeats == 0 {
                self.alerts.push(Labelled { sample, alert });
            }
        }
    }
}

/// Re-runs the operators over `sources` for `key` and checks the run's outputs against it.
///
/// # Errors
///
/// [`ChartError`]: an unreadable input, configuration, alerts file or report; no chart for
/// the parameter; no data for the key (the error lists what the input has).
pub fn load(key: &KeySpec, sources: &Sources) -> Result<ChartData, ChartError> {
    let monitor = crate::config::load_monitor(sources.charts.as_deref())?;
    let mut files = sources
        .inputs
        .iter()
        .map(|input| RecordSource::open(input, sources.format))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let mut tools: BTreeMap<String, u64> = BTreeMap::new();
    let mut unrouted: Option<ToolType> = None;
    let mut out = Vec::new();
    let mut ignore = |_: &crate::input::InputError| {};
    let mut merged = Merged::new(&mut files, &mut ignore)?;
    while let Some(record) = merged.next(&mut ignore)? {
        if record.tool_id != key.tool_id {
            if tools.len() < 10_000 {
                *tools.entry(record.tool_id).or_default() += 1;
            }
            continue;
        }
        if key
            .recipe_id
            .as_ref()
            .is_some_and(|r| *r != record.recipe_id)
        {
            runs.entry(record.recipe_id.clone())
                .or_insert_with(|| Run::new(record.tool_type));
            continue;
        }
        let Some(chart) = monitor
            .route(record.tool_type, &key.parameter)
            .and_then(|id| monitor.chart(id))
        else {
            unrouted = Some(record.tool_type);
            continue;
        };
        runs.entry(record.recipe_id.clone())
            .or_insert_with(|| Run::new(record.tool_type))
            .step(&monitor, chart, &key.parameter, &record, &mut out);
    }
    drop(merged);
    if let Some(tool_type) = unrouted {
        return Err(ChartError::NoChart {
            parameter: key.parameter.clone(),
            tool_type,
        });
    }
    let recipe = pick_recipe(key, &runs, &tools)?;
    let mut run = runs.remove(&recipe).expect("picked among the runs");
    let chart = monitor
        .route(run.tool_type, &key.parameter)
        .and_then(|id| monitor.chart(id))
        .expect("routed while running");
    if run.chart.samples == 0 {
        return Err(ChartError::NoData(format!(
            "tool {} recipe {} has no finite value of `{}` in {}",
            key.tool_id,
            recipe,
            key.parameter,
            input_names(sources)
        )));
    }
    // Dedup's closing lines carry each alert's repeat count.
    let mut closing = Vec::new();
    monitor.end_all(&mut run.monitor_store, &mut closing);
    let repeats: HashMap<String, u32> = run
        .alerts
        .iter()
        .map(|l| (l.alert.alert_id.clone(), 0))
        .chain(
            closing
                .into_iter()
                .filter(|a| a.parameter == key.parameter)
                .map(|a| (a.alert_id, a.repeats)),
        )
        .collect();
    for l in &mut run.alerts {
        l.alert.repeats = repeats.get(&l.alert.alert_id).copied().unwrap_or(0);
    }
    let mut data = ChartData {
        tool_id: key.tool_id.clone(),
        recipe_id: recipe,
        parameter: key.parameter.clone(),
        tool_type: run.tool_type,
        spec: chart.spec.clone(),
        samples: run.chart.samples,
        phase1_end: run.phase1_end,
        limits: run.chart.limits,
        times: run.times,
        points: run.points,
        fired: run.fired,
        alerts: run.alerts,
        warnings: Vec::new(),
    };
    if let Some(path) = &sources.alerts {
        check_alerts(&mut data, path)?;
    }
    if let Some(path) = &sources.report {
        check_report(&mut data, path)?;
    }
    Ok(data)
}

fn input_names(sources: &Sources) -> String {
    let names: Vec<String> = sources
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.join(", ")
}

/// The recipe to chart: the one asked for, else the tool's only one.
fn pick_recipe(
    key: &KeySpec,
    runs: &BTreeMap<String, Run>,
    tools: &BTreeMap<String, u64>,
) -> Result<String, ChartError> {
    if runs.is_empty() {
        let some: Vec<&str> = tools.keys().take(12).map(String::as_str).collect();
        return Err(ChartError::NoData(format!(
            "no record of tool {} in the input (its tools: {}{})",
            key.tool_id,
            if some.is_empty() {
                "none".into()
            } else {
                some.join(", ")
            },
            if tools.len() > some.len() {
                ", ..."
            } else {
                ""
            }
        )));
    }
    let recipes: Vec<&str> = runs.keys().map(String::as_str).collect();
    match &key.recipe_id {
        Some(r) if runs.contains_key(r) => Ok(r.clone()),
        Some(r) => Err(ChartError::NoData(format!(
            "tool {} has no record with recipe {r} (its recipes: {})",
            key.tool_id,
            recipes.join(", ")
        ))),
        None if recipes.len() == 1 => Ok(recipes[0].to_string()),
        None => Err(ChartError::NoData(format!(
            "tool {} ran several recipes; choose one with --recipe ({})",
            key.tool_id,
            recipes.join(", ")
        ))),
    }
}

/// Compares the alerts file's alerts on the key with the re-run's.
fn check_alerts(data: &mut ChartData, path: &std::path::Path) -> Result<(), ChartError> {
    let published = crate::simulate::score::load_alerts(path)?;
    let ours: std::collections::HashSet<&str> = data
        .alerts
        .iter()
        .map(|l| l.alert.alert_id.as_str())
        .collect();
    let theirs: Vec<&Alert> = published
        .iter()
        .filter(|a| {
            a.repeats == 0
                && a.tool_id == data.tool_id
                && a.recipe_id == data.recipe_id
                && a.parameter == data.parameter
        })
        .collect();
    let missing = theirs
        .iter()
        .filter(|a| !ours.contains(a.alert_id.as_str()))
        .count();
    let extra = data.alerts.len() + missing - theirs.len();
    if missing > 0 || extra > 0 {
        data.warnings.push(format!(
            "{}: {} alerts on this chart, the re-run raises {} ({missing} not reproduced, {extra} \
             not in the file): was the run's chart configuration another (--charts)?",
            path.display(),
            theirs.len(),
            data.alerts.len()
        ));
    }
    Ok(())
}

/// Compares the report's center line and limits for the key with the re-run's.
fn check_report(data: &mut ChartData, path: &std::path::Path) -> Result<(), ChartError> {
    let read = |e: String| ChartError::Report {
        path: path.to_path_buf(),
        reason: e,
    };
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
    let charts = report["charts"]
        .as_array()
        .ok_or_else(|| read("no `charts` list: not a backtest report".into()))?;
    let Some(entry) = charts.iter().find(|c| {
        c["tool_id"] == data.tool_id.as_str()
            && c["recipe_id"] == data.recipe_id.as_str()
            && c["parameter"] == data.parameter.as_str()
    }) else {
        data.warnings.push(format!(
            "{}: the report has no chart for this key",
            path.display()
        ));
        return Ok(());
    };
    let ours = data.limits.map(|l| [l.center, l.ucl, l.lcl]);
    let theirs = ["center", "ucl", "lcl"].map(|k| entry[k].as_f64());
    let same = match (ours, theirs) {
        (Some(o), [Some(c), Some(u), Some(l)]) => o
            .iter()
            .zip([c, u, l])
            .all(|(a, b)| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)),
        (None, [None, None, None]) => true,
        _ => false,
    };
    if !same {
        data.warnings.push(format!(
            "{}: the report's center and limits ({:?}) differ from the re-run's ({:?})",
            path.display(),
            theirs,
            ours
        ));
    }
    Ok(())
}
