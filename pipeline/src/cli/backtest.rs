//! `spcvm backtest`: the arguments, the stages it runs (`--stages`, with the build's
//! extensions), the progress bar and bad-record lines on stderr, and the summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{CliError, Extensions};
use crate::backtest::{self, BacktestError, Finished, Observer, Options};
use crate::input::{Format, InputError};
use crate::run::BUILTIN_STAGES;
use crate::stages::{Chain, DynStage, StreamId};
use crate::stdio;

/// Bad records printed individually before the rest are only counted.
const MAX_BAD_RECORDS_SHOWN: u64 = 20;

#[derive(Debug, Args)]
#[command(after_help = "Examples (from the repository root):
  spcvm backtest --input examples/ion_implant_drift.jsonl --alerts alerts.jsonl
  spcvm backtest --charts deploy/config/charts.toml --input examples/ion_implant_drift.jsonl --alerts alerts.jsonl --report report.json
  spcvm backtest --input examples/ion_implant_drift.jsonl --alerts alerts.jsonl --triage triage.jsonl --actions actions.jsonl
  spcvm backtest --input examples/ion_implant_drift.jsonl --alerts - --quiet
  spcvm backtest --input - --format jsonl --alerts alerts.jsonl --report - --quiet < examples/ion_implant_drift.jsonl

`-` is standard output for one of --alerts, --report, --triage, --actions, --output (one
at most), and standard input for --input (with --format).")]
pub(super) struct BacktestArgs {
    /// Chart configuration (TOML; `--config` is its old name). Default: the built-in
    /// ion-implant and RTP monitors.
    #[arg(long = "charts", alias = "config", value_name = "CHARTS.toml")]
    config: Option<PathBuf>,
    /// Telemetry to replay: JSON lines, CSV or an Avro container file; `-` reads standard
    /// input (then give --format). Repeated: the files are merged in event-time order as
    /// co-partitioned topics are (of the files' next records the earliest first, ties to the
    /// file given first).
    #[arg(long, value_name = "FILE", required = true)]
    input: Vec<PathBuf>,
    /// Where to write the alerts, one JSON object per line; `-`: standard output.
    #[arg(long, value_name = "OUT.jsonl")]
    alerts: PathBuf,
    /// Also write a JSON report: input counts, alerts by severity, every chart's limits
    /// (`-`: standard output).
    #[arg(long, value_name = "REPORT.json")]
    report: Option<PathBuf>,
    /// Input format. Default: from the extension (.jsonl/.json/.ndjson, .csv, .avro).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The stages to run, in order, as `stages` in pipeline.toml (`spc`: the charts, whose
    /// stream is the alerts).
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        default_value = "spc"
    )]
    stages: Vec<String>,
    /// RCA triage of the alerts (the `triage` stage) into FILE (JSON lines; `-`: standard
    /// output); its lot holds and tool inhibits go to --actions, or actions.jsonl beside
    /// the alerts (in the working directory when the alerts go to standard output).
    #[arg(long, value_name = "FILE")]
    triage: Option<PathBuf>,
    /// Where triage's OCAP steps (lot holds, tool inhibits) go (`-`: standard output);
    /// implies --triage (beside the alerts, triage.jsonl, when that is not given).
    #[arg(long, value_name = "FILE")]
    actions: Option<PathBuf>,
    /// Playbook files for triage (the format of deploy/playbooks/*.toml), replacing the
    /// built-in ones.
    #[arg(long, value_name = "FILE")]
    playbooks: Vec<PathBuf>,
    /// Where to write the stream STREAM of a stage other than the charts (JSON lines; FILE
    /// `-`: standard output). Default: STREAM.jsonl beside the alerts file.
    #[arg(long, value_name = "STREAM=FILE", value_parser = stream_file)]
    output: Vec<(String, PathBuf)>,
    /// No progress bar and no summary (bad records and errors are still reported).
    #[arg(long, short)]
    quiet: bool,
}

/// Parses `--output STREAM=FILE`.
fn stream_file(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((stream, file)) if !stream.is_empty() && !file.is_empty() => {
            Ok((stream.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected STREAM=FILE, got `{arg}`")),
    }
}

/// Prints bad records (the first [`MAX_BAD_RECORDS_SHOWN`]) and drives the progress bar.
struct Console {
    bar: Option<ProgressBar>,
    bad: u64,
}

impl Console {
    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Console {
    fn bad_record(&mut self, error: &InputError) {
        self.bad += 1;
        if self.bad <= MAX_BAD_RECORDS_SHOWN {
            self.print(&error.to_string());
        }
    }

    fn progress(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }
}

fn progress_bar(inputs: &[PathBuf]) -> Option<ProgressBar> {
    let mut len = 0;
    for input in inputs {
        len += std::fs::metadata(input).ok()?.len();
    }
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    )
    .ok()?;
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    Some(bar)
}

/// The stages `--stages` names: `spc` from `--config`, `triage` with `--playbooks`, the
/// others from `extensions`.
fn stages(
    args: &BacktestArgs,
    extensions: &Extensions,
) -> Result<Vec<Arc<dyn DynStage>>, CliError> {
    if !args.stages.iter().any(|s| s == "spc") {
        return Err(CliError::Usage(
            "--stages: name `spc` (the charts, whose stream --alerts writes)".into(),
        ));
    }
    let mut stages = Vec::with_capacity(args.stages.len());
    for name in &args.stages {
        let stage = match name.as_str() {
            "spc" => Arc::new(
                crate::config::load_monitor(args.config.as_deref()).map_err(BacktestError::from)?,
            ) as Arc<dyn DynStage>,
            "triage" => {
                let monitor = crate::config::load_monitor(args.config.as_deref())
                    .map_err(BacktestError::from)?;
                let playbooks = crate::playbooks::load(&args.playbooks, &monitor)
                    .map_err(crate::run::RunError::from)?;
                let config = crate::run::config::TriageSettings::default().stage_config();
                Arc::new(spcvm_operators::triage::TriageStage::new(playbooks, config))
            }
            other => extensions.stage(other).ok_or_else(|| {
                CliError::Usage(format!(
                    "--stages: unknown stage `{other}` (this build has {})",
                    BUILTIN_STAGES.join(", ")
                ))
            })?,
        };
        stages.push(stage);
    }
    Ok(stages)
}

/// A stream written besides the alerts: its name, id and file.
type StreamFile = (String, StreamId, PathBuf);

/// Where each stream of `chain` but the alerts goes: `--output`, else STREAM.jsonl beside
/// the alerts file.
fn stream_files(args: &BacktestArgs, chain: &Chain) -> Result<Vec<StreamFile>, CliError> {
    let names: Vec<&str> = chain.streams().iter().map(|s| s.spec.name).collect();
    if let Some((name, _)) = args
        .output
        .iter()
        .find(|(name, _)| name == "alerts" || chain.stream(name).is_none())
    {
        return Err(CliError::Usage(format!(
            "--output {name}=...: no stage but the charts emits a stream of that name (the \
             streams are {}; --alerts writes the alerts)",
            names.join(", ")
        )));
    }
    let dir = args.alerts.parent().unwrap_or(Path::new(""));
    Ok(chain
        .streams()
        .iter()
        .enumerate()
        .filter(|(_, stream)| stream.spec.name != "alerts")
        .map(|(i, stream)| {
            let name = stream.spec.name;
            let file = args
                .output
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or_else(|| dir.join(format!("{name}.jsonl")), |(_, f)| f.clone());
            let id = u16::try_from(i).expect("a chain has fewer than 65,536 streams");
            (name.to_string(), StreamId(id), file)
        })
        .collect())
}

/// Checks that at most one output and at most one input is `-`: standard output holds one
/// file's lines, and standard input can be read once.
fn check_dashes(args: &BacktestArgs) -> Result<(), CliError> {
    let mut outputs: Vec<String> = Vec::new();
    let mut note = |option: &str, path: Option<&PathBuf>| {
        if path.is_some_and(|p| stdio::is_dash(p)) {
            outputs.push(option.to_string());
        }
    };
    note("--alerts", Some(&args.alerts));
    note("--report", args.report.as_ref());
    note("--triage", args.triage.as_ref());
    note("--actions", args.actions.as_ref());
    for (stream, file) in &args.output {
        note(&format!("--output {stream}=-"), Some(file));
    }
    if outputs.len() > 1 {
        return Err(CliError::Usage(format!(
            "only one output may be `-` (standard output), but {} are",
            outputs.join(" and ")
        )));
    }
    if args.input.iter().filter(|p| stdio::is_dash(p)).count() > 1 {
        return Err(CliError::Usage(
            "--input -: standard input can be read once; give `-` at most once".into(),
        ));
    }
    Ok(())
}

pub(super) fn command(mut args: BacktestArgs, extensions: &Extensions) -> Result<(), CliError> {
    check_dashes(&args)?;
    // --triage and --actions are the triage stage's two streams.
    if args.triage.is_some() || args.actions.is_some() {
        if !args.stages.iter().any(|s| s == "triage") {
            args.stages.push("triage".into());
        }
        if let Some(file) = args.triage.take() {
            args.output.push(("triage".into(), file));
        }
        if let Some(file) = args.actions.take() {
            args.output.push(("actions".into(), file));
        }
    }
    // The plain backtest, or the caller's stages: built (config loaded, streams checked)
    // before the progress bar exists, so that an error leaves no bar drawn.
    let chain = if args.stages == ["spc"] && args.output.is_empty() {
        None
    } else {
        let chain = Chain::new(stages(&args, extensions)?, &[]).map_err(BacktestError::from)?;
        let streams = stream_files(&args, &chain)?;
        Some((Arc::new(chain), streams))
    };
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut console = Console {
        bar: if show_progress {
            progress_bar(&args.input)
        } else {
            None
        },
        bad: 0,
    };
    let options = Options {
        config: args.config,
        inputs: args.input,
        format: args.format,
        alerts: args.alerts,
        report: args.report,
    };
    let result = match &chain {
        None => backtest::execute(&options, &mut console),
        Some((chain, streams)) => {
            let files: Vec<(StreamId, PathBuf)> = streams
                .iter()
                .map(|(_, id, file)| (*id, file.clone()))
                .collect();
            backtest::execute_chain(&options, chain, &files, &mut console)
        }
    };
    if let Some(bar) = &console.bar {
        bar.finish_and_clear();
    }
    if console.bad > MAX_BAD_RECORDS_SHOWN {
        eprintln!("... and {} more", console.bad - MAX_BAD_RECORDS_SHOWN);
    }
    let finished = result?;
    if !args.quiet {
        let streams = chain.as_ref().map_or(&[][..], |(_, s)| s);
        eprint!("{}", summary(&options, &finished, streams));
    }
    Ok(())
}

/// The end-of-run summary (with the file of each stream besides the alerts).
fn summary(options: &Options, finished: &Finished, streams: &[StreamFile]) -> String {
    let t = &finished.outcome.totals;
    let secs = finished.outcome.elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        t.input.records as f64 / secs
    } else {
        0.0
    };
    let plotted = t.input.measurements - t.input.non_finite;
    let monitoring = finished
        .report
        .charts
        .iter()
        .filter(|c| c.phase == crate::report::Phase::Monitoring)
        .count();
    let mut s = format!(
        "backtest of {} ({}) done in {secs:.3} s, {rate:.0} records/s\n",
        options.input_names(),
        finished.format
    );
    let mut row = |label: &str, value: String| s.push_str(&format!("  {label:<26}{value}\n"));
    row("records read", t.input.records.to_string());
    row("bad records skipped", t.input.bad_records.to_string());
    row("measurements plotted", plotted.to_string());
    row(
        "non-finite values",
        format!("{} (counted, not plotted)", t.input.non_finite),
    );
    row("missing parameters", t.input.missing.to_string());
    row("unmonitored measurements", t.input.unmonitored.to_string());
    row(
        "charts",
        format!(
            "{} ({monitoring} monitoring, {} still in baseline)",
            finished.report.charts.len(),
            finished.report.charts.len() - monitoring
        ),
    );
    row(
        "alerts",
        format!(
            "{} (critical {}, major {}, minor {})",
            t.alerts.total(),
            t.alerts.critical,
            t.alerts.major,
            t.alerts.minor
        ),
    );
    row(
        "dedup closing updates",
        format!(
            "{} ({} repeats folded)",
            t.closing_updates, t.repeats_folded
        ),
    );
    row(
        "alerts file",
        format!(
            "{} ({} lines)",
            stdio::display(&options.alerts),
            t.alert_lines
        ),
    );
    for (name, _, file) in streams {
        row(&format!("{name} file"), stdio::display(file));
    }
    if let Some(report) = &options.report {
        row("report", stdio::display(report));
    }
    s
}
