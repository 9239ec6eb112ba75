//! `spcvm run`: the streaming job.
//!
//! # Layout
//!
//! - [`config`]: `pipeline.toml`, layered with `SPCVM__*` environment variables.
//! - [`processor`]: [`processor::PartitionProcessor`], one input partition's chart state and
//!   the pure logic that feeds it (shared by both runtimes).
//! - [`changelog`]: the state records written to the changelog topic / checkpoint file.
//! - [`kafka`]: the Kafka runtime (consumer group, partition tasks, transactions,
//!   changelog restore).
//! - [`queue`]: [`queue::PartitionQueue`], an assigned partition's own librdkafka queue, from
//!   which its task takes messages in batches (no copy).
//! - [`file`](mod@file): the file runtime, the embedded default that needs no broker.
//! - [`topics`]: `spcvm topics create`.
//!
//! # Data flow
//!
//! ```text
//! pipeline.toml + SPCVM__* ──config::load──> PipelineConfig ──Job::new──> Job
//!   (SpcMonitor from the charts file, Decoder, Metrics, Health)
//! Job ──kafka::run (source = "kafka")──> alerts / DLQ / changelog topics
//!     └─file::run  (source = "file") ──> alerts / DLQ / checkpoint files
//! Metrics + Health ──http::serve──> /metrics /healthz /readyz
//! ```

pub mod changelog;
pub mod config;
pub mod file;
pub mod kafka;
pub mod processor;
pub mod queue;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use spcvm_operators::SpcMonitor;

use crate::config::ConfigFileError;
use crate::decode::{DecodeSetupError, Decoder};
use crate::http::Health;
use crate::metrics::Metrics;
use config::PipelineConfig;

/// What one `spcvm run` process works with.
#[derive(Debug)]
pub struct Job {
    /// The configuration.
    pub config: PipelineConfig,
    /// The SPC operator.
    pub monitor: Arc<SpcMonitor>,
    /// Payload decoder.
    pub decoder: Decoder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Health,
}

impl Job {
    /// Builds the monitor (from `config.charts` or the built-in defaults) and the decoder.
    ///
    /// # Errors
    ///
    /// [`RunError::Charts`] or [`RunError::Decode`] naming the file or key at fault.
    pub fn new(config: PipelineConfig) -> Result<Job, RunError> {
        let monitor = crate::config::load_monitor(config.charts.as_deref())?;
        let decoder = Decoder::new(&config.decode)?;
        Ok(Job {
            config,
            monitor: Arc::new(monitor),
            decoder,
            metrics: Arc::new(Metrics::new()),
            health: Health::default(),
        })
    }
}

/// Why `spcvm run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The chart configuration is invalid.
    #[error(transparent)]
    Charts(#[from] ConfigFileError),
    /// The `[decode]` settings are invalid.
    #[error(transparent)]
    Decode(#[from] DecodeSetupError),
    /// A Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The consumer could not commit offsets (at_least_once).
    #[error("kafka: offset commit failed: {0}")]
    OffsetCommit(rdkafka::error::KafkaError),
    /// The producer failed.
    #[error(transparent)]
    Sink(spcvm_sinks::KafkaSinkError),
    /// An output file failed.
    #[error(transparent)]
    Output(#[from] spcvm_sinks::AppendError),
    /// The input file failed.
    #[error("cannot read input `{}`: {reason}", path.display())]
    Input {
        /// The input.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The checkpoint file cannot be read, written, or does not match the files.
    #[error("checkpoint `{}`: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Adds one record's measurement counts to the metrics.
fn record_stats(metrics: &crate::metrics::Metrics, stats: &spcvm_operators::RecordStats) {
    if stats.non_finite > 0 {
        metrics
            .non_finite_values
            .inc_by(u64::from(stats.non_finite));
    }
    if stats.missing > 0 {
        metrics.missing_parameters.inc_by(u64::from(stats.missing));
    }
}

/// The reason text when `record` has NaN or infinite measurements.
pub(crate) fn non_finite(record: &impl spcvm_schemas::TelemetryView) -> Option<String> {
    let bad: Vec<String> = record
        .measurements()
        .filter(|(_, v)| !v.is_finite())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "non-finite measurement(s) {}: not charted (the finite measurements of this record were charted)",
            bad.join(", ")
        )
    })
}
