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
//! - [`output`]: the [`RecordSink`]s of files (JSON lines, Avro container) and
//!   [`generate_into`], the loop from the generator to a sink (the CLI's and the bench's).
//! - [`kafka`]: [`TopicSink`], the records to a Kafka topic as the job reads them.
//! - [`pace`]: `--rate`, the [`Pacer`] (a token bucket kept as a schedule, no drift).
//! - [`write_behind`]: [`WriteBehind`], the output file written from a thread of its own.
//! - this module: [`simulate`], the whole run to a file or a topic, and the truth.
//!
//! # Data flow
//!
//! ```text
//! scenario.toml ──scenario::load──> Scenario ──Generator──> &Telemetry ──(Pacer)──> RecordSink
//!                                       │        FILE.jsonl | FILE.avro | Kafka topic <──┘
//!                                       └──Truth::of──> FILE.truth.json
//! truth + alerts.jsonl (+ triage.jsonl) ──score::score──> Score ──> table / score.json
//! ```

pub mod generate;
pub mod kafka;
pub mod model;
pub mod output;
pub mod pace;
pub mod scenario;
pub mod score;
pub mod truth;
pub mod write_behind;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use generate::Generator;
pub use kafka::{KafkaTarget, TopicSink};
pub use model::FaultKind;
pub use output::{AvroFile, JsonLines, Pacing, RecordSink, generate_into};
pub use pace::{Clock, Pacer, SystemClock};
pub use scenario::{Scenario, ScenarioError};
pub use truth::Truth;
pub use write_behind::WriteBehind;

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
    /// Producing to Kafka failed.
    #[error("Kafka topic `{topic}` on {bootstrap}: {message}")]
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// The topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}

/// Where the telemetry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A file in a format.
    File {
        /// The file.
        path: PathBuf,
        /// JSON lines or an Avro container.
        format: OutputFormat,
    },
    /// A Kafka topic.
    Kafka(KafkaTarget),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File { path, .. } => write!(f, "{}", path.display()),
            Destination::Kafka(t) => {
                write!(f, "topic {} on {} ({})", t.topic, t.bootstrap, t.format)
            }
        }
    }
}

/// The pieces output files are written in, from a thread of their own ([`WriteBehind`]):
/// small enough that the three buffers in use may stay in the caches (the first writes
/// into the buffer show in profiles), large enough that `write` calls are few.
pub const FILE_BUFFER_BYTES: usize = 256 * 1024;

/// The default truth file of telemetry file `out`: `NAME.truth.json` beside it
/// (`fab.jsonl` → `fab.truth.json`).
pub fn default_truth_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or_else(|| "telemetry".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}.truth.json"))
}

/// Generates `scenario`'s telemetry into `destination` (at `rate` records a second of wall
/// clock if given, positive; else as fast as it goes) and then its ground truth into
/// `truth_path`; `source` names the scenario in the truth. `progress` is called now and
/// then with the records written so far. Returns the truth and the records written.
///
/// # Errors
///
/// [`SimulateError`] naming the file or the topic and broker that could not be written.
pub fn simulate(
    scenario: &Scenario,
    source: &str,
    destination: &Destination,
    truth_path: &Path,
    rate: Option<f64>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Truth, u64), SimulateError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SimulateError::Write { path, source }
    };
    let mut sink: Box<dyn RecordSink> = match destination {
        Destination::File { path, format } => {
            let file = File::create(path).map_err(write_err(path))?;
            let file = WriteBehind::new(file, FILE_BUFFER_BYTES).map_err(write_err(path))?;
            match format {
                OutputFormat::Jsonl => Box::new(JsonLines::new(file, path)),
                OutputFormat::Avro => Box::new(AvroFile::new(file, path)?),
            }
        }
        Destination::Kafka(target) => Box::new(TopicSink::connect(target)?),
    };
    let mut clock = SystemClock::new();
    let pacing = rate.map(|rate| Pacing {
        pacer: Pacer::new(rate, clock.now()),
        clock: &mut clock,
    });
    let n = generate_into(Generator::new(scenario), sink.as_mut(), pacing, progress)?;
    let truth = Truth::of(scenario, source);
    let mut text = serde_json::to_vec_pretty(&truth).unwrap_or_default();
    text.push(b'\n');
    std::fs::write(truth_path, text).map_err(write_err(truth_path))?;
    Ok((truth, n))
}
