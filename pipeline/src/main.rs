//! `spcvm`: statistical process control on ion-implant and RTP tool telemetry.
//!
//! `spcvm backtest` replays recorded telemetry through the chart configuration and writes
//! the alerts it would have raised; see `spcvm backtest --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spcvm::backtest::{self, Finished, Observer, Options};
use spcvm::input::{Format, InputError};

/// Bad records printed individually before the rest are only counted.
const MAX_BAD_RECORDS_SHOWN: u64 = 20;

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
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
struct BacktestArgs {
    /// Chart configuration (TOML). Default: the built-in ion-implant and RTP monitors.
    #[arg(long, value_name = "CHARTS.toml")]
    config: Option<PathBuf>,
    /// Telemetry to replay: JSON lines, CSV or an Avro container file.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Where to write the alerts, one JSON object per line.
    #[arg(long, value_name = "OUT.jsonl")]
    alerts: PathBuf,
    /// Also write a JSON report: input counts, alerts by severity, every chart's limits.
    #[arg(long, value_name = "REPORT.json")]
    report: Option<PathBuf>,
    /// Input format. Default: from the extension (.jsonl/.json/.ndjson, .csv, .avro).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// No progress bar and no summary (bad records and errors are still reported).
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => backtest_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spcvm: error: {e:#}");
            ExitCode::FAILURE
        }
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

fn progress_bar(input: &std::path::Path) -> Option<ProgressBar> {
    let len = std::fs::metadata(input).ok()?.len();
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    )
    .ok()?;
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    Some(bar)
}

fn backtest_command(args: BacktestArgs) -> Result<()> {
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
        input: args.input,
        format: args.format,
        alerts: args.alerts,
        report: args.report,
    };
    let result = backtest::execute(&options, &mut console);
    if let Some(bar) = &console.bar {
        bar.finish_and_clear();
    }
    if console.bad > MAX_BAD_RECORDS_SHOWN {
        eprintln!("... and {} more", console.bad - MAX_BAD_RECORDS_SHOWN);
    }
    let finished = result?;
    if !args.quiet {
        eprint!("{}", summary(&options, &finished));
    }
    Ok(())
}

/// The end-of-run summary.
fn summary(options: &Options, finished: &Finished) -> String {
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
        .filter(|c| c.phase == spcvm::report::Phase::Monitoring)
        .count();
    let mut s = format!(
        "backtest of {} ({}) done in {secs:.3} s, {rate:.0} records/s\n",
        options.input.display(),
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
        format!("{} ({} lines)", options.alerts.display(), t.alert_lines),
    );
    if let Some(report) = &options.report {
        row("report", report.display().to_string());
    }
    s
}
