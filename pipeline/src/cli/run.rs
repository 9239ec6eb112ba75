//! `spcvm run` and `spcvm topics create`: the pipeline configuration, logging, signals, the
//! HTTP endpoint, and the Kafka or file runtime.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::{CliError, Extensions};
use crate::http;
use crate::run::config::{self as run_config, PipelineConfig, SourceKind};
use crate::run::{Job, file, kafka, topics};

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// Pipeline configuration (TOML); `SPCVM__SECTION__KEY` variables override it. See
    /// deploy/config/pipeline.example.toml.
    #[arg(long, value_name = "pipeline.toml")]
    config: Option<PathBuf>,
}

fn load_pipeline_config(args: &RunArgs) -> Result<PipelineConfig, CliError> {
    Ok(run_config::load(args.config.as_deref(), std::env::vars())?)
}

/// The job of `config`, with the stages and participants of `extensions`.
fn job(config: PipelineConfig, extensions: &Extensions) -> Result<Job, CliError> {
    let mut job = Job::with_stages(config, |name| extensions.stage(name))?;
    job.participants
        .extend(extensions.participants.iter().cloned());
    Ok(job)
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

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("spcvm-worker")
        .build()?)
}

pub(super) fn run_command(args: RunArgs, extensions: &Extensions) -> Result<(), CliError> {
    let config = load_pipeline_config(&args)?;
    init_logging(&config.log);
    let rt = runtime()?;
    let job = Arc::new(job(config, extensions)?);
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

pub(super) fn topics_create_command(
    args: RunArgs,
    extensions: &Extensions,
) -> Result<(), CliError> {
    let config = load_pipeline_config(&args)?;
    init_logging(&config.log);
    let job = job(config, extensions)?;
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
