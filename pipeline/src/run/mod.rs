//! `spcvm run`: the streaming job.
//!
//! # Layout
//!
//! - [`config`]: `pipeline.toml`, layered with `SPCVM__*` environment variables.
//! - [`changelog`]: the state records written to the changelog topic / checkpoint file (the
//!   stores themselves are [`crate::stages::PartitionChain`]'s, shared by both runtimes).
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
//!   (Chain of the configured stages, their OutputStreams, Decoder, Metrics, Health)
//! Job ──kafka::run (source = "kafka")──> output stream / DLQ / changelog topics
//!     └─file::run  (source = "file") ──> output stream / DLQ / checkpoint files
//! Metrics + Health ──http::serve──> /metrics /healthz /readyz
//! ```
//!
//! # Keys, partitions and joins
//!
//! Every input is keyed by tool, and a partition task runs all the stages for the tools on
//! its partition: the stages are co-partitioned, and their state for input partition p
//! lives in changelog partition p. With `topics.co_partitioned` the input topics form one
//! partition group (Kafka Streams' term): a task takes partition p of every input, merged
//! in event-time order (`kafka::inputs`), the topics must have the same partition count and
//! the `range` assignor gives a member partition p of each. An input keyed otherwise
//! (metrology results keyed by wafer, say) does not join a task directly: it is first
//! written, keyed by tool, to a repartition topic `spcvm.repartition.<group_id>.<name>`
//! with the inputs' partition count, which the job creates as it creates the changelog, and
//! the tasks read that topic's partition p co-partitioned with their inputs, as Kafka
//! Streams does. No home-made shuffle; nothing reads a repartition topic yet.

pub mod changelog;
pub mod config;
pub mod file;
pub mod kafka;
pub mod queue;
pub mod topics;

use std::path::PathBuf;
use std::sync::Arc;

use spcvm_sinks::Encoding;

use crate::config::ConfigFileError;
use crate::decode::{DecodeSetupError, Decoder};
use crate::http::Health;
use crate::metrics::Metrics;
use crate::stages::commit::ParticipantFactory;
use crate::stages::{Chain, DynStage};
use config::{AlertFormat, PipelineConfig, SourceKind};

/// The stages built into the binary, by name.
pub const BUILTIN_STAGES: [&str; 2] = ["spc", "triage"];

/// What one `spcvm run` process works with.
#[derive(Debug)]
pub struct Job {
    /// The configuration.
    pub config: PipelineConfig,
    /// The stages, in order.
    pub chain: Arc<Chain>,
    /// Where each output stream of the chain goes, by [`crate::stages::StreamId`].
    pub outputs: Vec<OutputStream>,
    /// Sinks outside Kafka that take part in checkpoints (none is configured yet: the
    /// Parquet feature store will be the first; tests add theirs).
    pub participants: Vec<Arc<dyn ParticipantFactory>>,
    /// Payload decoder.
    pub decoder: Decoder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Health,
}

/// Where one output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStream {
    /// The stream's name.
    pub name: String,
    /// Its topic (source `kafka`).
    pub topic: String,
    /// Its encoding on the topic.
    pub encoding: Encoding,
    /// Its JSON-lines file (source `file`).
    pub file: PathBuf,
}

impl Job {
    /// Builds the configured stages (the SPC stage from `config.charts`, or the built-in
    /// charts), the output streams and the decoder.
    ///
    /// # Errors
    ///
    /// [`RunError`] naming the file, key or stage at fault.
    pub fn new(config: PipelineConfig) -> Result<Job, RunError> {
        Self::with_stages(config, |_| None)
    }

    /// [`Job::new`], with stages of the caller's (`extra` gives one by name) besides the
    /// built-in ones: how a test or another binary adds a stage without touching the
    /// runtime.
    ///
    /// # Errors
    ///
    /// As [`Job::new`].
    pub fn with_stages(
        config: PipelineConfig,
        extra: impl Fn(&str) -> Option<Arc<dyn DynStage>>,
    ) -> Result<Job, RunError> {
        let mut stages = Vec::with_capacity(config.stages.len());
        for name in &config.stages {
            let stage = match name.as_str() {
                "spc" => Arc::new(crate::config::load_monitor(config.charts.as_deref())?)
                    as Arc<dyn DynStage>,
                "triage" => Arc::new(triage_stage(&config)?),
                other => extra(other).ok_or_else(|| {
                    RunError::Stages(format!(
                        "stages: unknown stage `{other}` (this build has {})",
                        BUILTIN_STAGES.join(", ")
                    ))
                })?,
            };
            stages.push(stage);
        }
        let inputs: Vec<&str> = match config.source {
            SourceKind::Kafka => config.topics.input.iter().map(String::as_str).collect(),
            SourceKind::File => vec![file::FILE_TOPIC],
        };
        let chain =
            Chain::new(stages, &inputs).map_err(|e| RunError::Stages(format!("stages: {e}")))?;
        let outputs = output_streams(&config, &chain)?;
        let decoder = Decoder::new(&config.decode)?;
        Ok(Job {
            config,
            chain: Arc::new(chain),
            outputs,
            participants: Vec::new(),
            decoder,
            metrics: Arc::new(Metrics::new()),
            health: Health::default(),
        })
    }
}

/// The `triage` stage of `config`: its playbooks checked against the parameters the
/// configured charts watch.
///
/// # Errors
///
/// [`RunError::Playbooks`] or [`RunError::Charts`] naming the file at fault.
pub fn triage_stage(
    config: &PipelineConfig,
) -> Result<spcvm_operators::triage::TriageStage, RunError> {
    let monitor = crate::config::load_monitor(config.charts.as_deref())?;
    let playbooks = crate::playbooks::load(&config.triage.playbooks, &monitor)?;
    Ok(spcvm_operators::triage::TriageStage::new(
        playbooks,
        config.triage.stage_config(),
    ))
}

/// The topic, encoding and file of every stream of `chain`.
fn output_streams(config: &PipelineConfig, chain: &Chain) -> Result<Vec<OutputStream>, RunError> {
    let encoding = |format, schema_id| match (format, schema_id) {
        (AlertFormat::Json, _) => Encoding::Json,
        (AlertFormat::Avro, Some(id)) => Encoding::AvroConfluent(id),
        (AlertFormat::Avro, None) => Encoding::Avro,
    };
    if let Some(unknown) = config
        .outputs
        .keys()
        .find(|name| chain.stream(name).is_none())
    {
        let known: Vec<&str> = chain.streams().iter().map(|s| s.spec.name).collect();
        return Err(RunError::Stages(format!(
            "outputs.{unknown}: no configured stage emits a stream of that name (the streams are {})",
            known.join(", ")
        )));
    }
    let dir = config
        .file
        .alerts
        .parent()
        .unwrap_or(std::path::Path::new(""));
    Ok(chain
        .streams()
        .iter()
        .map(|stream| {
            let name = stream.spec.name;
            if name == "alerts" {
                return OutputStream {
                    name: name.into(),
                    topic: config.topics.alerts.clone(),
                    encoding: encoding(config.topics.alert_format, config.topics.alert_schema_id),
                    file: config.file.alerts.clone(),
                };
            }
            let out = config.outputs.get(name).cloned().unwrap_or_default();
            OutputStream {
                name: name.into(),
                topic: out
                    .topic
                    .unwrap_or_else(|| stream.spec.default_topic.into()),
                encoding: encoding(out.format, out.schema_id),
                file: out
                    .file
                    .unwrap_or_else(|| dir.join(format!("{name}.jsonl"))),
            }
        })
        .collect())
}

/// Why `spcvm run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The chart configuration is invalid.
    #[error(transparent)]
    Charts(#[from] ConfigFileError),
    /// A playbook file is unreadable or invalid.
    #[error(transparent)]
    Playbooks(#[from] crate::playbooks::PlaybookFileError),
    /// The `[decode]` settings are invalid.
    #[error(transparent)]
    Decode(#[from] DecodeSetupError),
    /// A sink outside Kafka failed in a checkpoint's two-phase commit.
    #[error("commit participant {0}")]
    Commit(#[from] crate::stages::commit::CommitError),
    /// The stages or their output streams are misconfigured.
    #[error("{0}")]
    Stages(String),
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
