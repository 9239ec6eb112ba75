//! The ground truth written next to the telemetry (`*.truth.json`): the tools with their
//! sample counts and clocks, and every injected fault with its onset and the triage
//! expected of it. [`score`](super::score) reads it back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spcvm_schemas::ToolType;

use super::generate::Generator;
use super::model::{ExpectedTriage, FaultKind};
use super::scenario::Scenario;

/// The ground truth of one simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// The scenario file it came from, as given.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// Every simulated tool.
    pub tools: Vec<ToolTruth>,
    /// Every injected fault.
    pub faults: Vec<FaultTruth>,
}

/// One simulated tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolTruth {
    /// Its id.
    pub tool_id: String,
    /// Its type.
    pub tool_type: ToolType,
    /// The recipe it ran.
    pub recipe_id: String,
    /// Samples it gave.
    pub samples: u64,
    /// Event time of its first sample (ms).
    pub first_event_time: i64,
    /// Event time between its samples (ms).
    pub sample_interval_ms: i64,
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultTruth {
    /// The tool.
    pub tool_id: String,
    /// What was injected.
    pub kind: FaultKind,
    /// The tool's sample index of the first affected sample.
    pub onset_sample: u64,
    /// Its event time (ms).
    pub onset_event_time: i64,
    /// Samples from onset to full effect.
    pub ramp_samples: u64,
    /// Full effect in sd of `primary_parameter`.
    pub magnitude_sigma: f64,
    /// The parameter the magnitude is measured on.
    pub primary_parameter: String,
    /// The failure modes and cause triage should name.
    pub expected: ExpectedTriage,
}

impl Truth {
    /// The truth of `scenario` (loaded from `source`) run with its seed.
    pub fn of(scenario: &Scenario, source: &str) -> Truth {
        Truth {
            scenario: source.to_string(),
            seed: scenario.seed,
            tools: scenario
                .tools
                .iter()
                .map(|t| ToolTruth {
                    tool_id: t.tool_id.clone(),
                    tool_type: t.tool_type,
                    recipe_id: t.recipe_id.clone(),
                    samples: scenario.samples_per_tool,
                    first_event_time: scenario.start_ms,
                    sample_interval_ms: scenario.interval_ms,
                })
                .collect(),
            faults: scenario
                .faults
                .iter()
                .map(|f| FaultTruth {
                    tool_id: scenario.tools[f.tool].tool_id.clone(),
                    kind: f.kind,
                    onset_sample: f.onset_sample,
                    onset_event_time: Generator::event_time(scenario, f.onset_sample),
                    ramp_samples: f.ramp_samples,
                    magnitude_sigma: f.magnitude,
                    primary_parameter: f.kind.primary().to_string(),
                    expected: f.kind.expected(),
                })
                .collect(),
        }
    }

    /// Reads a truth file.
    ///
    /// # Errors
    ///
    /// [`TruthError`] naming the file (and the line and column of a JSON error).
    pub fn load(path: &Path) -> Result<Truth, TruthError> {
        let read_err = |source| TruthError::Read {
            path: path.to_path_buf(),
            source,
        };
        // `-`: standard input (the CLI lets one input be `-`).
        let text = if crate::stdio::is_dash(path) {
            std::io::read_to_string(std::io::stdin()).map_err(read_err)?
        } else {
            std::fs::read_to_string(path).map_err(read_err)?
        };
        serde_json::from_str(&text).map_err(|source| TruthError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Error from reading a truth file.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    /// It could not be read.
    #[error("cannot read truth file `{}`", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a truth document.
    #[error("{}: not a truth file: {source}", path.display())]
    Parse {
        /// The path.
        path: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
}
