//! `spcvm score`: a backtest's alerts (and triage) against a simulation's ground truth.
//!
//! Definitions (all by event time; the tool's samples are `sample_interval_ms` apart):
//!
//! - **Detection** of a fault: the first alert (in file order, of those with the smallest
//!   event time) on the fault's tool with an event time at or after the onset. Its delay
//!   in samples is `(alert time - onset time) / sample_interval_ms` (0: the onset sample
//!   itself alerted), in time the difference in seconds.
//! - **Detection on the fault's parameter**: the same, counting only alerts on the
//!   fault's primary parameter (`primary_parameter` in the truth), so a false alarm on
//!   another chart right after the onset does not pass for the fault's detection.
//! - **False alarms**: distinct alert ids on a tool without a fault, or on a faulty tool
//!   before its onset, per 1,000 of those samples (the fault-free tools' samples plus the
//!   faulty tools' samples before onset). Alerts on tools the truth does not list are
//!   counted apart (`unknown_tool_alerts`).
//! - **Triage**, by cause id: the *first* verdict is the first open triage record (in file
//!   order, which is publication order) on the fault's tool with an event time at or after
//!   the onset: the first version published on an alert of the fault (a closing version
//!   published after the onset for an incident whose alerts all came before it is not a
//!   verdict on the fault; triage publishes a
//!   version only when its failure mode, most likely cause or severity changes, so it may come after
//!   the first alert; it may belong to an incident that false alarms opened before the
//!   onset). Top-1: its first cause
//!   is the expected cause; top-3: the expected cause is among its first three. The
//!   *final* verdict is the last record of the same incident (its closing version, when the
//!   input ends it), scored the same way. The failure mode is reported beside it
//!   (`failure_mode_ok`: one of the accepted playbook ids) but does not decide top-1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spcvm_schemas::{Alert, Triage};

use super::model::FaultKind;
use super::truth::{FaultTruth, Truth};

/// The score of one simulation's alerts (and triage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// One entry per injected fault, in the truth's order.
    pub faults: Vec<FaultScore>,
    /// Faults with a detection.
    pub detected: usize,
    /// Alerts where no fault was active.
    pub false_alarms: FalseAlarms,
    /// Triage totals, when triage was given.
    pub triage: Option<TriageTotals>,
}

/// One fault's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultScore {
    /// The tool.
    pub tool_id: String,
    /// The fault.
    pub kind: FaultKind,
    /// The tool's sample index of the onset.
    pub onset_sample: u64,
    /// Event time of the onset (ms).
    pub onset_event_time: i64,
    /// Accepted failure modes.
    pub expected_failure_modes: Vec<String>,
    /// The cause triage should rank first.
    pub expected_cause: String,
    /// The first alert at or after onset on the tool, if any.
    pub detection: Option<Detection>,
    /// The first alert at or after onset on the tool's fault parameter, if any.
    pub primary_detection: Option<Detection>,
    /// The first and final triage verdicts (`None` without triage, or when none came).
    pub first: Option<Verdict>,
    /// The last version of the first verdict's incident.
    pub last: Option<Verdict>,
}

/// The alert that detected a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Its id.
    pub alert_id: String,
    /// Its parameter.
    pub parameter: String,
    /// Its chart.
    pub chart: String,
    /// Its rule.
    pub rule: String,
    /// Its event time (ms).
    pub event_time: i64,
    /// Samples from the onset sample to the alerting sample.
    pub delay_samples: i64,
    /// Seconds of event time from the onset to the alert.
    pub delay_s: f64,
}

/// What one triage record says about a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The incident.
    pub incident_id: String,
    /// The version.
    pub version: u32,
    /// Its event time (ms).
    pub event_time: i64,
    /// The failure mode it names.
    pub failure_mode: String,
    /// Whether that is one of the accepted failure modes.
    pub failure_mode_ok: bool,
    /// Its causes' ids, most likely first.
    pub causes: Vec<String>,
    /// The expected cause is first.
    pub top1: bool,
    /// The expected cause is among the first three.
    pub top3: bool,
}

/// False alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FalseAlarms {
    /// Distinct alert ids where no fault was active.
    pub alerts: u64,
    /// The samples where no fault was active.
    pub samples: u64,
    /// `alerts` per 1,000 `samples` (0 when there are none).
    pub per_1000_samples: f64,
    /// Alerts on tools the truth does not list.
    pub unknown_tool_alerts: u64,
}

/// Triage totals over the faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriageTotals {
    /// Faults scored.
    pub faults: usize,
    /// First verdicts with the expected cause first.
    pub top1: usize,
    /// First verdicts with the expected cause in the first three.
    pub top3: usize,
    /// Final verdicts with the expected cause first.
    pub final_top1: usize,
    /// Final verdicts with the expected cause in the first three.
    pub final_top3: usize,
}

/// Error from reading the alerts or triage.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The truth file is unreadable.
    #[error(transparent)]
    Truth(#[from] super::truth::TruthError),
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not an alert or a triage.
    #[error("{}:{line}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// One-based line.
        line: usize,
        /// Why.
        #[source]
        source: spcvm_schemas::SchemaError,
    },
    /// The score could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Reads a JSON-lines file with `decode` (blank lines skipped).
fn read_lines<T>(
    path: &Path,
    decode: fn(&[u8]) -> Result<T, spcvm_schemas::SchemaError>,
) -> Result<Vec<T>, ScoreError> {
    let read_err = |source| ScoreError::Read {
        path: path.to_path_buf(),
        source,
    };
    // `-`: standard input (the CLI lets one input be `-`).
    let reader: Box<dyn BufRead> = if crate::stdio::is_dash(path) {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(path).map_err(read_err)?))
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            decode(line.as_bytes()).map_err(|source| ScoreError::Record {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

/// Reads alerts (JSON lines, as `spcvm backtest --alerts` writes them).
///
/// # Errors
///
/// [`ScoreError`] naming the file (and the line of a bad record).
pub fn load_alerts(path: &Path) -> Result<Vec<Alert>, ScoreError> {
    read_lines(path, spcvm_schemas::decode_alert_json)
}

/// Reads triage records (JSON lines, as `spcvm backtest --triage` writes them).
///
/// # Errors
///
/// As [`load_alerts`].
pub fn load_triage(path: &Path) -> Result<Vec<Triage>, ScoreError> {
    read_lines(path, spcvm_schemas::decode_triage_json)
}

/// Scores `alerts` (and `triage`) against `truth`; see the module's definitions.
pub fn score(truth: &Truth, alerts: &[Alert], triage: Option<&[Triage]>) -> Score {
    let faults: Vec<FaultScore> = truth
        .faults
        .iter()
        .map(|f| score_fault(truth, f, alerts, triage))
        .collect();
    let detected = faults.iter().filter(|f| f.detection.is_some()).count();
    let triage_totals = triage.map(|_| TriageTotals {
        faults: faults.len(),
        top1: faults
            .iter()
            .filter(|f| f.first.as_ref().is_some_and(|v| v.top1))
            .count(),
        top3: faults
            .iter()
            .filter(|f| f.first.as_ref().is_some_and(|v| v.top3))
            .count(),
        final_top1: faults
            .iter()
            .filter(|f| f.last.as_ref().is_some_and(|v| v.top1))
            .count(),
        final_top3: faults
            .iter()
            .filter(|f| f.last.as_ref().is_some_and(|v| v.top3))
            .count(),
    });
    Score {
        faults,
        detected,
        false_alarms: false_alarms(truth, alerts),
        triage: triage_totals,
    }
}

fn score_fault(
    truth: &Truth,
    fault: &FaultTruth,
    alerts: &[Alert],
    triage: Option<&[Triage]>,
) -> FaultScore {
    let interval = truth
        .tools
        .iter()
        .find(|t| t.tool_id == fault.tool_id)
        .map_or(1, |t| t.sample_interval_ms.max(1));
    let onset = fault.onset_event_time;
    let detect = |primary_only: bool| {
        let mut first_alert: Option<&Alert> = None;
        for a in alerts.iter().filter(|a| {
            a.tool_id == fault.tool_id
                && a.event_time >= onset
                && (!primary_only || a.parameter == fault.primary_parameter)
        }) {
            if first_alert.is_none_or(|b| a.event_time < b.event_time) {
                first_alert = Some(a);
            }
        }
        first_alert.map(|a| Detection {
            alert_id: a.alert_id.clone(),
            parameter: a.parameter.clone(),
            chart: a.chart.clone(),
            rule: a.rule.clone(),
            event_time: a.event_time,
            delay_samples: (a.event_time - onset) / interval,
            delay_s: (a.event_time - onset) as f64 / 1000.0,
        })
    };
    let detection = detect(false);
    let primary_detection = detect(true);
    let verdict = |t: &Triage| {
        let causes: Vec<String> = t.causes.iter().map(|c| c.cause_id.clone()).collect();
        let expected = &fault.expected.cause_id;
        Verdict {
            incident_id: t.incident_id.clone(),
            version: t.version,
            event_time: t.event_time,
            failure_mode: t.failure_mode.clone(),
            failure_mode_ok: fault.expected.failure_modes.contains(&t.failure_mode),
            top1: causes.first() == Some(expected),
            top3: causes.iter().take(3).any(|c| c == expected),
            causes,
        }
    };
    let first = triage.and_then(|records| {
        records.iter().find(|t| {
            t.tool_id == fault.tool_id
                && t.event_time >= onset
                && t.status == spcvm_schemas::IncidentStatus::Open
        })
    });
    let last = first.and_then(|first| {
        triage.and_then(|records| {
            records
                .iter()
                .rev()
                .find(|t| t.incident_id == first.incident_id)
        })
    });
    FaultScore {
        tool_id: fault.tool_id.clone(),
        kind: fault.kind,
        onset_sample: fault.onset_sample,
        onset_event_time: onset,
        expected_failure_modes: fault.expected.failure_modes.clone(),
        expected_cause: fault.expected.cause_id.clone(),
        detection,
        primary_detection,
        first: first.map(verdict),
        last: last.map(verdict),
    }
}

fn false_alarms(truth: &Truth, alerts: &[Alert]) -> FalseAlarms {
    let mut samples = 0u64;
    let mut ids = std::collections::BTreeSet::new();
    let mut unknown = std::collections::BTreeSet::new();
    for tool in &truth.tools {
        let onset = truth
            .faults
            .iter()
            .find(|f| f.tool_id == tool.tool_id)
            .map(|f| (f.onset_sample, f.onset_event_time));
        samples += onset.map_or(tool.samples, |(k, _)| k.min(tool.samples));
        for a in alerts.iter().filter(|a| a.tool_id == tool.tool_id) {
            if onset.is_none_or(|(_, t)| a.event_time < t) {
                ids.insert(a.alert_id.as_str());
            }
        }
    }
    for a in alerts {
        if !truth.tools.iter().any(|t| t.tool_id == a.tool_id) {
            unknown.insert(a.alert_id.as_str());
        }
    }
    let alerts = ids.len() as u64;
    FalseAlarms {
        alerts,
        samples,
        per_1000_samples: if samples == 0 {
            0.0
        } else {
            alerts as f64 * 1000.0 / samples as f64
        },
        unknown_tool_alerts: unknown.len() as u64,
    }
}

/// `yes` / `no` / `-`.
fn mark(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// The score as a table for people (a Markdown table, then the totals).
pub fn table(score: &Score) -> String {
    let mut s = String::from(
        "| fault | tool | onset | first alert | delay (samples) | delay (min) | fault parameter's first alert: delay (samples) | triage: failure mode / top cause | top-1 | top-3 | final top-1 | final top-3 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in &score.faults {
        let (alert, samples, minutes) = match &f.detection {
            Some(d) => (
                format!("{} {} {}", d.parameter, d.chart, d.rule),
                d.delay_samples.to_string(),
                format!("{:.1}", d.delay_s / 60.0),
            ),
            None => ("not detected".into(), "-".into(), "-".into()),
        };
        let primary = f.primary_detection.as_ref().map_or_else(
            || "not detected".to_string(),
            |d| format!("{} ({} {})", d.delay_samples, d.chart, d.rule),
        );
        let verdict = f.first.as_ref().map_or_else(
            || "-".to_string(),
            |v| {
                format!(
                    "{}{} / {}",
                    v.failure_mode,
                    if v.failure_mode_ok {
                        ""
                    } else {
                        " (wrong mode)"
                    },
                    v.causes.first().map_or("-", String::as_str)
                )
            },
        );
        s.push_str(&format!(
            "| {} | {} | {} | {alert} | {samples} | {minutes} | {primary} | {verdict} | {} | {} | {} | {} |\n",
            f.kind,
            f.tool_id,
            f.onset_sample,
            mark(f.first.as_ref().map(|v| v.top1)),
            mark(f.first.as_ref().map(|v| v.top3)),
            mark(f.last.as_ref().map(|v| v.top1)),
            mark(f.last.as_ref().map(|v| v.top3)),
        ));
    }
    let fa = &score.false_alarms;
    s.push_str(&format!(
        "\ndetected {} of {} faults; false alarms: {} alerts in {} fault-free samples = {:.3} per 1,000 samples",
        score.detected,
        score.faults.len(),
        fa.alerts,
        fa.samples,
        fa.per_1000_samples
    ));
    if fa.unknown_tool_alerts > 0 {
        s.push_str(&format!(
            " ({} alerts on tools not in the truth)",
            fa.unknown_tool_alerts
        ));
    }
    s.push('\n');
    if let Some(t) = &score.triage {
        s.push_str(&format!(
            "triage: top-1 {} of {}, top-3 {} of {} (first version after onset); final version: top-1 {}, top-3 {}\n",
            t.top1, t.faults, t.top3, t.faults, t.final_top1, t.final_top3
        ));
    }
    s
}
