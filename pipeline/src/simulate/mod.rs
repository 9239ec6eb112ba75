//! `spcvm simulate`'s fab simulator and `spcvm score`'s scoring: telemetry of a small fab,
//! reproducible from a seed, with the faults the triage playbooks know injected, the
//! ground truth beside it, and the score of a backtest's alerts and triage against it.
//!
//! # Layout
//!
//! - [`scenario`]: scenario files (`deploy/scenarios/*.toml`) into a validated
//!   [`Scenario`]; errors name the file, the line and the key.
//! - [`model`]: the charted parameters' levels and noise per recipe, the [`FaultKind`]s,
//!   their signatures across parameters and the triage expected of each.
//! - [`generate`]: [`Generator`], every tool's samples in event-time order, faults applied.
//! - [`truth`]: the ground truth document ([`Truth`]) written next to the telemetry.
//! - [`score`]: detection delay, false alarms and triage top-1 / top-3 of alerts (and
//!   triage) against a truth ([`score::score`]), as JSON and as a table.
//! - this module: [`simulate`], the whole run to files.
//!
//! # Data flow
//!
//! ```text
//! scenario.toml ──scenario::load──> Scenario ──Generator──> Telemetry ──> FILE.jsonl | FILE.avro
//!                                       └──Truth::of──> FILE.truth.json
//! truth + alerts.jsonl (+ triage.jsonl) ──score::score──> Score ──> table / score.json
//! ```

pub mod generate;
pub mod model;
pub mod scenario;
pub mod score;
pub mod truth;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use generate::Generator;
pub use model::FaultKind;
pub use scenario::{Scenario, ScenarioError};
pub use truth::Truth;

/// How the telemetry is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// JSON lines, one record a line (as `spcvm backtest` reads them).
    Jsonl,
    /// An Avro object-container file (`schemas/avro/telemetry.avsc`).
    Avro,
}

impl OutputFormat {
    /// The format a file name's extension implies: `.avro` is Avro, anything else JSON lines.
    pub fn of(path: &Path) -> OutputFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("avro") => OutputFormat::Avro,
            _ => OutputFormat::Jsonl,
        }
    }
}

/// Error from a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The scenario is unreadable or invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An output file could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Avro container could not be written.
    #[error("cannot write the Avro container `{}`", path.display())]
    Avro {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: spcvm_schemas::SchemaError,
    },
}

/// The default truth file of telemetry file `out`: `NAME.truth.json` beside it
/// (`fab.jsonl` → `fab.truth.json`).
pub fn default_truth_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "telemetry".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.truth.json"))
}

/// Generates `scenario`'s telemetry into `out` in `format` and its ground truth into
/// `truth_path`; `source` names the scenario in the truth. `progress` is called now and
/// then with the records written so far.
///
/// Avro output is built in memory first (the container writer takes every record at once).
///
/// # Errors
///
/// [`SimulateError`] naming the file that could not be written.
pub fn simulate(
    scenario: &Scenario,
    source: &str,
    out: &Path,
    format: OutputFormat,
    truth_path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Truth, SimulateError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimulateError::Write { path, source }
    };
    let file = File::create(out).map_err(write_err(out))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let generator = Generator::new(scenario);
    match format {
        OutputFormat::Jsonl => {
            let mut n = 0u64;
            for record in generator {
                writer
                    .write_all(&spcvm_schemas::encode_telemetry_json(&record))
                    .and_then(|()| writer.write_all(b"\n"))
                    .map_err(write_err(out))?;
                n += 1;
                if n.is_multiple_of(8192) {
                    progress(n);
                }
            }
            progress(n);
        }
        OutputFormat::Avro => {
            let mut records = Vec::with_capacity(usize::try_from(generator.len()).unwrap_or(0));
            for record in generator {
                records.push(record);
                if records.len().is_multiple_of(8192) {
                    progress(records.len() as u64);
                }
            }
            spcvm_schemas::write_telemetry_container(&mut writer, &records).map_err(|source| {
                SimulateError::Avro {
                    path: out.to_path_buf(),
                    source,
                }
            })?;
            progress(records.len() as u64);
        }
    }
    writer.flush().map_err(write_err(out))?;
    let truth = Truth::of(scenario, source);
    let mut text = serde_json::to_vec_pretty(&truth).unwrap_or_default();
    text.push(b'\n');
    std::fs::write(truth_path, text).map_err(write_err(truth_path))?;
    Ok(truth)
}
