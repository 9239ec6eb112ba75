//! `spcvm`: statistical process control on ion-implant and RTP tool telemetry.
//!
//! `spcvm backtest` replays recorded telemetry through the chart configuration and writes
//! the alerts it would have raised; `spcvm run` is the streaming job (Kafka, or files as
//! the embedded default); `spcvm topics create` creates its topics. See `spcvm --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spcvm::backtest::{self, Finished, Observer, Options};
use spcvm::http;
use spcvm::input::{Format, InputError};
use spcvm::run::config::{self as run_config, PipelineConfig, SourceKind};
use spcvm::run::{Job, file, kafka, topics};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Run the streaming job: telemetry in, alerts out, state checkpointed.
    ///
    /// With `source = "kafka"` it joins a consumer group and publishes alerts with
    /// exactly-once (default) or at-least-once delivery; with `source = "file"` (the default
    /// when no config is given) it reads a JSON-lines file and writes alert and dead-letter
    /// files, resuming from its checkpoint after a crash. Stops cleanly on SIGTERM/SIGINT.
    Run(RunArgs),
    /// Manage the job's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Pipeline configuration (TOML); `SPCVM__SECTION__KEY` variables override it. See
    /// deploy/config/pipeline.example.toml.
    #[arg(long, value_name = "pipeline.toml")]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the input, alert, dead-letter and changelog topics (existing ones are kept).
    Create(RunArgs),
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
    tune_malloc();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => backtest_command(args),
        Command::Run(args) => run_command(args),
        Command::Topics(TopicsCommand::Create(args)) => topics_create_command(args),
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
/// `{:#}` would repeat it: "transaction init failed: Transaction error: Timed out ...:
/// Transaction error: Timed out ...: Timed out ...". A cause whose text is already on the
/// line is left out.
fn describe(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
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
/// allocator's own wins.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        // SAFETY: mallopt only sets allocator parameters (it takes the allocator's own
        // lock); it is called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
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

fn load_pipeline_config(args: &RunArgs) -> Result<PipelineConfig> {
    Ok(run_config::load(args.config.as_deref(), std::env::vars())?)
}

fn init_logging(log: &run_config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match log.format {
        run_config::LogFormat::Json => builder.json().try_init(),
        run_config::LogFormat::Text => builder.try_init(),
    };
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spcvm-worker")
        .build()?)
}

fn run_command(args: RunArgs) -> Result<()> {
    let config = load_pipeline_config(&args)?;
    init_logging(&config.log);
    let rt = runtime()?;
    let job = Arc::new(Job::new(config)?);
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    {
        let stop = stop.clone();
        rt.spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: finishing in-flight work");
            stop.store(true, Ordering::Relaxed);
            let _ = stop_tx.send(true);
        });
    }
    if job.config.http.enabled {
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        let (_, serve) = rt.block_on(http::bind(
            &job.config.http.listen,
            job.metrics.clone(),
            job.health.clone(),
            shutdown,
        ))?;
        rt.spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }
    match job.config.source {
        SourceKind::Kafka => {
            let result = kafka::run(job.clone(), &stop, rt.handle().clone());
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            result?;
            tracing::info!("stopped");
        }
        SourceKind::File => {
            let summary = file::run(&job, &stop)?;
            rt.shutdown_timeout(std::time::Duration::from_secs(1));
            let f = &job.config.file;
            eprintln!(
                "run of {} {}: {} records after line {}, {} alerts -> {}, {} dead letters -> {}",
                f.input.display(),
                if summary.ended { "complete" } else { "stopped" },
                summary.records,
                summary.resumed_after_line,
                summary.alerts,
                f.alerts.display(),
                summary.dead_letters,
                f.dlq.display(),
            );
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn topics_create_command(args: RunArgs) -> Result<()> {
    let config = load_pipeline_config(&args)?;
    init_logging(&config.log);
    let job = Job::new(config)?;
    let rt = runtime()?;
    let results = rt.block_on(topics::create(&job))?;
    for (spec, created) in results {
        let (what, partitions) = match created {
            topics::Created::Created => ("created", spec.partitions.to_string()),
            topics::Created::Exists => ("exists ", spec.partitions.to_string()),
            topics::Created::Grown { from } => {
                ("grown  ", format!("{from} -> {}", spec.partitions))
            }
        };
        let configs: Vec<String> = spec
            .configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "{what} {} ({partitions} partitions; {})",
            spec.name,
            configs.join(", ")
        );
    }
    Ok(())
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
        let e = anyhow::Error::new(layer("transaction init failed", true, Some(middle)));
        assert_eq!(
            describe(&e),
            "transaction init failed: Transaction error: Timed out"
        );
        assert_eq!(
            format!("{e:#}"),
            "transaction init failed: Transaction error: Timed out: Transaction error: \
             Timed out: Timed out",
            "the repetition describe() removes"
        );
        // Causes only in the chain are appended, and context added by anyhow too.
        let quiet = layer("outer", false, Some(layer("inner", false, None)));
        let e = anyhow::Error::new(quiet).context("cannot start");
        assert_eq!(describe(&e), "cannot start: outer: inner");
    }
}
