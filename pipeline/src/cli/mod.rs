//! The `spcvm` command line, as a library: `spcvm backtest`, `spcvm run` and `spcvm topics
//! create`, with the stages and commit participants of the caller's build.
//!
//! The `spcvm` binary is [`main_with`]`(Extensions::default())`. Another binary (or a test
//! that runs itself as a job, `tests/e2e/kafka_stages.rs`) passes [`Extensions`]: stages by
//! name besides the built-in ones, and commit participants for `spcvm run`; every command
//! then works with them as with the built-in ones, with no change to a runtime.
//!
//! # Layout
//!
//! - this module: the argument parser, [`Extensions`], [`main_with`] (dispatch, the error
//!   line and the exit code), [`CliError`].
//! - `backtest.rs`: `spcvm backtest` (progress bar, bad-record lines, summary).
//! - `run.rs`: `spcvm run` (logging, signals, HTTP, the Kafka or file runtime) and
//!   `spcvm topics create`.
//! - `simulate.rs`: `spcvm simulate` (a scenario into telemetry and its ground truth).
//! - `score.rs`: `spcvm score` (alerts and triage against the ground truth).
//! - `chart.rs`: `spcvm chart` (one control chart as PNG and SVG).
//! - `demo.rs`: `spcvm demo` (simulate, run, score and chart a small fab; the summary).
//! - `config_check.rs`: `spcvm config check` (pipeline, chart and playbook files).

mod backtest;
mod chart;
mod config_check;
mod demo;
mod run;
mod score;
mod simulate;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::backtest::BacktestError;
use crate::http::HttpError;
use crate::run::RunError;
use crate::run::config::PipelineConfigError;
use crate::stages::DynStage;
use crate::stages::commit::ParticipantFactory;

/// Finds a stage of the caller's by name: `None` for a name it does not know.
pub type StageLookup = dyn Fn(&str) -> Option<Arc<dyn DynStage>> + Send + Sync;

/// What a build adds to the built-in stages (`spc`) and to `spcvm run`'s sinks.
#[derive(Clone, Default)]
pub struct Extensions {
    /// Stages by name, looked up for every name in `stages` (`spcvm run`, `spcvm topics
    /// create`) or `--stages` (`spcvm backtest`) that is not built in; `None`: none.
    pub stages: Option<Arc<StageLookup>>,
    /// Commit participants of every job `spcvm run` starts (sinks outside Kafka, in the
    /// checkpoints' two-phase commit).
    pub participants: Vec<Arc<dyn ParticipantFactory>>,
}

impl Extensions {
    /// The stage of the caller's named `name`, if any.
    pub fn stage(&self, name: &str) -> Option<Arc<dyn DynStage>> {
        self.stages.as_ref().and_then(|lookup| lookup(name))
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("stages", &self.stages.as_ref().map(|_| "fn(name)"))
            .field("participants", &self.participants)
            .finish()
    }
}

/// Why a command failed: the error of the part that failed, printed as it is.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// `spcvm backtest` failed.
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    /// The pipeline configuration is invalid.
    #[error(transparent)]
    Config(#[from] PipelineConfigError),
    /// The job failed, or could not be built.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The HTTP server could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The async runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// `spcvm simulate` failed.
    #[error(transparent)]
    Simulate(#[from] crate::simulate::SimulateError),
    /// `spcvm score` failed.
    #[error(transparent)]
    Score(#[from] crate::simulate::score::ScoreError),
    /// `spcvm demo` failed.
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    /// `spcvm chart` failed.
    #[error(transparent)]
    Chart(#[from] crate::chart::ChartError),
    /// An argument names something this build does not have.
    #[error("{0}")]
    Usage(String),
}

#[derive(Debug, Parser)]
#[command(
    name = "spcvm",
    version,
    about = "SPC on ion-implant and RTP tool telemetry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay recorded telemetry through the charts and write the alerts they raise.
    ///
    /// Use it to tune chart settings on history before going live. Records that do not
    /// decode are reported on stderr (FILE:LINE: reason), skipped and counted; the run
    /// still succeeds.
    Backtest(backtest::BacktestArgs),
    /// Run the streaming job: telemetry in, alerts out, state checkpointed.
    ///
    /// With `source = "kafka"` it joins a consumer group and publishes alerts with
    /// exactly-once (default) or at-least-once delivery; with `source = "file"` (the default
    /// when no config is given) it reads a JSON-lines file and writes alert and dead-letter
    /// files, resuming from its checkpoint after a crash. Stops cleanly on SIGTERM/SIGINT.
    #[command(after_help = "Examples (from the repository root):
  spcvm config check deploy/config/pipeline.example.toml
  spcvm run --config deploy/config/pipeline.example.toml
  SPCVM__KAFKA__BOOTSTRAP_SERVERS=broker-1:9092 spcvm run --config deploy/config/pipeline.example.toml
  SPCVM__HTTP__ENABLED=false spcvm run

The first checks the file; the second and third need Kafka (the first at localhost:9092).
Without --config the job reads examples/ion_implant_drift.jsonl and writes out/alerts.jsonl.")]
    Run(run::RunArgs),
    /// Simulate a fab: telemetry of implanters and RTP tools with injected faults, and
    /// the ground truth beside it.
    ///
    /// Reproducible from the scenario's seed (or --seed): the same seed writes the same
    /// bytes (JSON lines; an Avro container the same records with a random sync marker).
    Simulate(simulate::SimulateArgs),
    /// Score alerts (and triage) against a simulation's ground truth: detection delay,
    /// false alarms, triage top-1 / top-3.
    Score(score::ScoreArgs),
    /// Draw one control chart (tool, recipe, parameter) of a run's input as PNG and SVG:
    /// the chart's statistic, center line, limits, spec limits, firings and alert rules.
    Chart(chart::ChartArgs),
    /// The whole pipeline on a simulated fab, no broker needed: simulate a few hours of a
    /// small fab with faults, run the job (file source, stages spc + triage), score it and
    /// chart each detected fault into one folder, then print what was found.
    Demo(demo::DemoArgs),
    /// Manage the job's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate pipeline, chart and playbook files (the kind is told from the keys, or
    /// --kind): prints `ok: FILE (...)` or the error with file, line and key; exit code 2
    /// when any is invalid.
    Check(config_check::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the input, alert, dead-letter and changelog topics (existing ones are kept).
    #[command(
        after_help = "Example (from the repository root; needs Kafka at localhost:9092):
  spcvm topics create --config deploy/config/pipeline.example.toml"
    )]
    Create(run::RunArgs),
}

/// Runs the command line of the process (`std::env::args`) with `extensions`, prints a
/// failure as `spcvm: error: ...` on stderr, and returns the exit code.
///
/// Call it first thing in `main`, before any thread starts: it tunes the allocator
/// (`tune_malloc`).
pub fn main_with(extensions: Extensions) -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => backtest::command(args, &extensions),
        Command::Run(args) => run::run_command(args, &extensions),
        Command::Simulate(args) => simulate::command(args),
        Command::Score(args) => score::command(args),
        Command::Chart(args) => chart::command(args),
        Command::Demo(args) => demo::command(args),
        Command::Topics(TopicsCommand::Create(args)) => {
            run::topics_create_command(args, &extensions)
        }
        Command::Config(ConfigCommand::Check(args)) => {
            return config_check::command(&args, &extensions);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spcvm: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: cause: root`, each cause's text once.
///
/// Most error types print their cause inside their own message and also return it as
/// their `source` (ours with `{source}`, and librdkafka's transaction errors twice over), so
/// printing every cause would repeat it: "transaction init failed: Transaction error: Timed
/// out ...: Transaction error: Timed out ...: Timed out ...". A cause whose text is already
/// on the line is left out.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

/// Keeps glibc's allocator from handing memory back to the kernel after every burst.
///
/// librdkafka allocates a buffer for each fetch response and frees it once its messages
/// are consumed; with glibc's defaults freed memory at the top of a heap is trimmed (and
/// blocks past a moving threshold are mapped and unmapped), so the next responses fault
/// fresh pages in: 2-3 % of the job's CPU in a profile at 900,000 records/s. Blocks below
/// 32 MiB now come from the heaps and up to 128 MiB of free memory stays in each, which
/// bounds what the job keeps beyond its peak use. A `GLIBC_TUNABLES` setting of the
/// allocator's own wins. Public so that benchmarks that run the commands' library calls
/// run them under the same allocator settings; call it before starting any thread.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        // SAFETY: mallopt only sets allocator parameters (it takes the allocator's own
        // lock); callers call it before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// An error that prints `message`, and its cause's text too when `repeats` is set.
    #[derive(Debug)]
    struct Layer {
        message: &'static str,
        repeats: bool,
        cause: Option<Box<Layer>>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)?;
            match &self.cause {
                Some(cause) if self.repeats => write!(f, ": {cause}"),
                _ => Ok(()),
            }
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.cause.as_deref().map(|c| c as _)
        }
    }

    fn layer(message: &'static str, repeats: bool, cause: Option<Layer>) -> Layer {
        Layer {
            message,
            repeats,
            cause: cause.map(Box::new),
        }
    }

    #[test]
    fn describe_names_each_cause_once() {
        // Causes printed inside the message (as thiserror's `{source}` and rdkafka do).
        let root = layer("Timed out", false, None);
        let middle = layer("Transaction error", true, Some(root));
        let e = layer("transaction init failed", true, Some(middle));
        assert_eq!(
            describe(&e),
            "transaction init failed: Transaction error: Timed out"
        );
        // Causes only in the chain are appended.
        let quiet = layer(
            "cannot start",
            false,
            Some(layer("outer", false, Some(layer("inner", false, None)))),
        );
        assert_eq!(describe(&quiet), "cannot start: outer: inner");
    }

    #[test]
    fn a_transparent_cli_error_prints_as_its_cause() {
        let io = std::io::Error::other(layer("bind", true, Some(layer("in use", false, None))));
        let e = super::CliError::from(io);
        assert_eq!(describe(&e), "bind: in use");
    }
}
