//! `spcvm demo`: the whole pipeline on a simulated fab, with no broker. A scenario (the
//! embedded `deploy/scenarios/demo.toml` by default) is simulated into telemetry and its
//! ground truth, the real job (`spcvm run`'s file runtime, stages `spc` and `triage`) runs
//! over it, its alerts and triage are scored against the truth (`spcvm score`), and each
//! detected fault's chart is drawn (`spcvm chart`), all into one folder:
//!
//! ```text
//! scenario ──simulate──> telemetry.jsonl, truth.json
//! pipeline.toml (written) ──run::file::run──> alerts.jsonl, triage.jsonl, actions.jsonl, dlq.jsonl
//! truth + alerts + triage ──score::score──> score.json, score.md
//! per detected fault ──chart::data::load + render──> charts/TOOL_PARAMETER.png, .svg
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use spcvm_schemas::{Alert, Triage};

use crate::chart::{self, KeySpec, Mark, Sources, Style};
use crate::run::config::PipelineConfigError;
use crate::run::file::FileSummary;
use crate::run::{Job, RunError};
use crate::simulate::score::{self, Score, ScoreError};
use crate::simulate::{self, OutputFormat, SimulateError, Truth};

/// The embedded demo scenario.
pub const DEMO_SCENARIO: &str = include_str!("../../deploy/scenarios/demo.toml");

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// The scenario; `None`: [`DEMO_SCENARIO`].
    pub scenario: Option<PathBuf>,
    /// The seed, instead of the scenario's.
    pub seed: Option<u64>,
    /// The output folder (created; the demo's files in it are replaced).
    pub out: PathBuf,
}

/// Error of a demo step.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The scenario is invalid, or the telemetry could not be written.
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    /// The job's configuration is invalid.
    #[error(transparent)]
    Config(#[from] PipelineConfigError),
    /// The job failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The outputs could not be scored.
    #[error(transparent)]
    Score(#[from] ScoreError),
    /// A chart could not be drawn.
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    /// A file or folder could not be written.
    #[error("cannot write `{}`", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One fault's chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultChart {
    /// Index of the fault in the truth and the score.
    pub fault: usize,
    /// The PNG.
    pub png: PathBuf,
    /// The SVG.
    pub svg: PathBuf,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The output folder.
    pub out: PathBuf,
    /// Records simulated.
    pub records: u64,
    /// What was injected.
    pub truth: Truth,
    /// What the job did.
    pub run: FileSummary,
    /// The job's alerts.
    pub alerts: Vec<Alert>,
    /// The job's triage versions.
    pub triage: Vec<Triage>,
    /// Lot holds and tool inhibits.
    pub actions: u64,
    /// The score.
    pub score: Score,
    /// One chart per detected fault.
    pub charts: Vec<FaultChart>,
    /// Wall time of the job alone.
    pub run_time: Duration,
    /// Wall time of the whole demo.
    pub elapsed: Duration,
}

/// The files of the demo folder.
pub mod files {
    /// Simulated telemetry.
    pub const TELEMETRY: &str = "telemetry.jsonl";
    /// Ground truth.
    pub const TRUTH: &str = "truth.json";
    /// The job's configuration.
    pub const PIPELINE: &str = "pipeline.toml";
    /// Alerts.
    pub const ALERTS: &str = "alerts.jsonl";
    /// Triage versions.
    pub const TRIAGE: &str = "triage.jsonl";
    /// Lot holds and tool inhibits.
    pub const ACTIONS: &str = "actions.jsonl";
    /// Dead letters.
    pub const DLQ: &str = "dlq.jsonl";
    /// The job's checkpoint.
    pub const CHECKPOINT: &str = "checkpoint.bin";
    /// The score as JSON.
    pub const SCORE_JSON: &str = "score.json";
    /// The score as a Markdown table.
    pub const SCORE_TABLE: &str = "score.md";
    /// The charts' folder.
    pub const CHARTS: &str = "charts";
}

/// The job the demo runs, as `spcvm run --config` reads it (paths relative to its folder).
const PIPELINE_TOML: &str =
    "# Written by `spcvm demo`: the job it ran. `spcvm run --config THIS_FILE` runs it
# again (it resumes from checkpoint.bin, so a finished run adds nothing; delete it to redo).
source = \"file\"
stages = [\"spc\", \"triage\"]

[file]
input = \"telemetry.jsonl\"
alerts = \"alerts.jsonl\"
dlq = \"dlq.jsonl\"
checkpoint = \"checkpoint.bin\"
follow = false

[http]
enabled = false
";

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    std::fs::write(path, bytes).map_err(|source| DemoError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs the demo into `options.out`.
///
/// # Errors
///
/// [`DemoError`] of the step that failed, naming its file.
pub fn run(options: &DemoOptions) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    let out = &options.out;
    let p = |name: &str| out.join(name);
    std::fs::create_dir_all(out.join(files::CHARTS)).map_err(|source| DemoError::Write {
        path: out.clone(),
        source,
    })?;
    // A fresh run: the job would resume from an old checkpoint, old charts would linger.
    for name in [files::CHECKPOINT, files::TRIAGE, files::ACTIONS] {
        let _ = std::fs::remove_file(p(name));
    }
    if let Ok(entries) = std::fs::read_dir(p(files::CHARTS)) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }

    // 1. The fab.
    let (mut scenario, source) = match &options.scenario {
        Some(path) => (
            simulate::scenario::load(path).map_err(SimulateError::from)?,
            path.display().to_string(),
        ),
        None => (
            simulate::scenario::parse(DEMO_SCENARIO, Path::new("deploy/scenarios/demo.toml"))
                .map_err(SimulateError::from)?,
            "deploy/scenarios/demo.toml (embedded)".to_string(),
        ),
    };
    if let Some(seed) = options.seed {
        scenario.seed = seed;
    }
    let mut records = 0;
    let destination = simulate::Destination::File {
        path: p(files::TELEMETRY),
        format: OutputFormat::Jsonl,
    };
    let (truth, written) = simulate::simulate(
        &scenario,
        &source,
        &destination,
        &p(files::TRUTH),
        None,
        &mut |n| records = n,
    )?;
    records = records.max(written);

    // 2. The job, as `spcvm run --config pipeline.toml` runs it.
    write(&p(files::PIPELINE), PIPELINE_TOML.as_bytes())?;
    let config = crate::run::config::load(Some(&p(files::PIPELINE)), std::iter::empty())?;
    let job = Job::new(config)?;
    let run_started = Instant::now();
    let summary = crate::run::file::run(&job, &AtomicBool::new(false))?;
    let run_time = run_started.elapsed();

    // 3. The score.
    let alerts = score::load_alerts(&p(files::ALERTS))?;
    let triage = score::load_triage(&p(files::TRIAGE))?;
    let actions = std::fs::read_to_string(p(files::ACTIONS)).map_or(0, |t| {
        t.lines().filter(|l| !l.trim().is_empty()).count() as u64
    });
    let result = score::score(&truth, &alerts, Some(&triage));
    let mut json = serde_json::to_vec_pretty(&result).unwrap_or_default();
    json.push(b'\n');
    write(&p(files::SCORE_JSON), &json)?;
    write(&p(files::SCORE_TABLE), score::table(&result).as_bytes())?;

    // 4. A chart per detected fault: its own parameter's chart when that alerted, else the
    // chart of the first alert.
    let mut charts = Vec::new();
    for (i, (fault, scored)) in truth.faults.iter().zip(&result.faults).enumerate() {
        let parameter = match (&scored.primary_detection, &scored.detection) {
            (Some(_), _) => fault.primary_parameter.clone(),
            (None, Some(d)) => d.parameter.clone(),
            (None, None) => continue,
        };
        let recipe = truth
            .tools
            .iter()
            .find(|t| t.tool_id == fault.tool_id)
            .map(|t| t.recipe_id.clone());
        let key = KeySpec {
            tool_id: fault.tool_id.clone(),
            recipe_id: recipe,
            parameter: parameter.clone(),
        };
        let sources = Sources {
            inputs: vec![p(files::TELEMETRY)],
            alerts: Some(p(files::ALERTS)),
            ..Sources::default()
        };
        let data = chart::data::load(&key, &sources)?;
        let style = Style {
            marks: vec![Mark {
                event_time: fault.onset_event_time,
                label: format!("{} starts", fault.kind),
            }],
            ..Style::default()
        };
        let base = p(files::CHARTS).join(format!("{}_{parameter}", fault.tool_id));
        let png = chart::with_ext(&base, "png");
        let svg = chart::with_ext(&base, "svg");
        chart::render::png(&data, &style, &png)?;
        chart::render::svg(&data, &style, &svg)?;
        charts.push(FaultChart { fault: i, png, svg });
    }

    Ok(DemoOutcome {
        out: out.clone(),
        records,
        truth,
        run: summary,
        alerts,
        triage,
        actions,
        score: result,
        charts,
        run_time,
        elapsed: started.elapsed(),
    })
}
