//! The stages a job runs, in order, and the one record path every runtime shares.
//!
//! # Layout
//!
//! - this module: [`Chain`], a job's configured stages (each a [`spcvm_operators::Stage`])
//!   with their output streams, checked when it is built: unique names, an upstream stream
//!   that an earlier stage emits with the type the reader expects, no stage named like an
//!   input topic (changelog keys tell the two apart by it).
//! - [`erased`]: a stage without its types ([`DynStage`]) and its store in one partition
//!   ([`StageTask`]).
//! - [`partition`]: [`PartitionChain`], one input partition's stores: runs records through
//!   the stages, advances event time, checkpoints what changed and restores it.
//! - [`step`]: the record path (validate, dead letter, stages, outputs, statistics) that
//!   `spcvm backtest`, the file runtime and the Kafka runtime all take.
//! - [`commit`]: [`commit::Participant`], a sink outside Kafka in the checkpoint's
//!   two-phase commit (prepare at the checkpoint, finalize once it is committed, recover
//!   after a restart).
//! - [`golden`]: the broker-free harness every chain gets: straight = checkpointed =
//!   restored, byte for byte on every stream.
//!
//! # Data flow
//!
//! ```text
//! record ──step──> invalid ──> dead letter (reason)
//!             └──> PartitionChain ──> stage 1 (records) ──> outputs on its streams
//!                                  └> stage 2 (records and/or stage 1's stream) ──> outputs
//! outputs (Emitted: stream id + value) ──runtime──> topic / file of the stream, encoded
//! ```
//!
//! Stages share the input key (the tool), so one partition's stages see every record of
//! their tools: they are co-partitioned. An input keyed otherwise (metrology results keyed
//! by wafer, say) joins through a repartition topic keyed by tool, as Kafka Streams does.

pub mod commit;
pub mod erased;
pub mod golden;
pub mod partition;
pub mod step;

use std::sync::Arc;

use spcvm_operators::{StageOutput, StreamSpec};

pub use erased::{DynStage, StageTask};
pub use partition::{PartitionChain, SWEEP_EVERY_MS, StateRecord};

/// A stream's position among all the streams of a [`Chain`], in stage order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u16);

/// An output of a stage, tagged with the stream it goes to.
pub struct Emitted {
    /// The stream.
    pub stream: StreamId,
    /// The value, with its key and encodings.
    pub output: Box<dyn StageOutput>,
}

impl std::fmt::Debug for Emitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitted")
            .field("stream", &self.stream)
            .field("key", &self.output.key())
            .finish_non_exhaustive()
    }
}

/// A stream of a [`Chain`].
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    /// Position of the stage that emits it.
    pub stage: usize,
    /// Its declaration.
    pub spec: StreamSpec,
}

/// Why a chain cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No stage configured.
    #[error("no stage configured")]
    Empty,
    /// Two stages share a name.
    #[error("two stages are named `{0}`")]
    DuplicateStage(String),
    /// Two streams share a name.
    #[error("two streams are named `{0}` (stages `{1}` and `{2}`)")]
    DuplicateStream(String, String, String),
    /// A stage name starts with `@` (reserved for the runtime's own changelog records).
    #[error("stage `{0}`: names starting with `@` are reserved")]
    ReservedName(String),
    /// A stage is named like an input topic.
    #[error(
        "stage `{0}` is named like an input topic: changelog keys start with the stage name \
         or (written before stages) with the topic, so the two must differ"
    )]
    NamedLikeTopic(String),
    /// A stage reads a stream no earlier stage emits.
    #[error("stage `{stage}` reads stream `{stream}`, which no stage before it emits")]
    UnknownUpstream {
        /// The reader.
        stage: String,
        /// The stream it names.
        stream: String,
    },
    /// A stage reads a stream of values of another type.
    #[error("stage `{stage}` cannot read stream `{stream}`: its values are of another type")]
    UpstreamType {
        /// The reader.
        stage: String,
        /// The stream it names.
        stream: String,
    },
    /// A stage reads nothing.
    #[error("stage `{0}` reads neither the records nor a stream")]
    NoInput(String),
}

/// A job's stages, in order, and their output streams.
pub struct Chain {
    stages: Vec<Arc<dyn DynStage>>,
    streams: Vec<Stream>,
    /// Per stage, the stream it reads, if any.
    upstream: Vec<Option<StreamId>>,
    /// Whether some stage reads both the records and a stream and needs each record's
    /// upstream outputs before the next record ([`spcvm_operators::Stage::upstream_after_each_record`]):
    /// then records go through the stages one at a time, however the input is batched.
    one_at_a_time: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("stages", &self.names().collect::<Vec<_>>())
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Checks and builds a chain of `stages`, in order, for a job reading `inputs`.
    ///
    /// # Errors
    ///
    /// [`ChainError`] naming the stage or stream at fault.
    pub fn new(stages: Vec<Arc<dyn DynStage>>, inputs: &[&str]) -> Result<Chain, ChainError> {
        if stages.is_empty() {
            return Err(ChainError::Empty);
        }
        let mut streams: Vec<Stream> = Vec::new();
        let mut upstream = Vec::with_capacity(stages.len());
        for (i, stage) in stages.iter().enumerate() {
            let name = stage.name();
            if stages[..i].iter().any(|s| s.name() == name) {
                return Err(ChainError::DuplicateStage(name.to_string()));
            }
            if name.starts_with('@') {
                return Err(ChainError::ReservedName(name.to_string()));
            }
            if inputs.contains(&name) {
                return Err(ChainError::NamedLikeTopic(name.to_string()));
            }
            let reads = match stage.upstream() {
                None => None,
                Some(wanted) => {
                    let (id, stream) = streams
                        .iter()
                        .enumerate()
                        .find(|(_, s)| s.spec.name == wanted)
                        .ok_or_else(|| ChainError::UnknownUpstream {
                            stage: name.to_string(),
                            stream: wanted.to_string(),
                        })?;
                    if (stream.spec.value_type)() != stage.upstream_type() {
                        return Err(ChainError::UpstreamType {
                            stage: name.to_string(),
                            stream: wanted.to_string(),
                        });
                    }
                    Some(StreamId(id as u16))
                }
            };
            if reads.is_none() && !stage.reads_records() {
                return Err(ChainError::NoInput(name.to_string()));
            }
            upstream.push(reads);
            for spec in stage.outputs() {
                if let Some(other) = streams.iter().find(|s| s.spec.name == spec.name) {
                    return Err(ChainError::DuplicateStream(
                        spec.name.to_string(),
                        stages[other.stage].name().to_string(),
                        name.to_string(),
                    ));
                }
                streams.push(Stream {
                    stage: i,
                    spec: *spec,
                });
            }
        }
        let one_at_a_time = stages
            .iter()
            .zip(&upstream)
            .any(|(s, u)| s.reads_records() && u.is_some() && s.upstream_after_each_record());
        Ok(Chain {
            stages,
            streams,
            upstream,
            one_at_a_time,
        })
    }

    /// The stages' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.stages.iter().map(|s| s.name())
    }

    /// Every output stream, by [`StreamId`].
    pub fn streams(&self) -> &[Stream] {
        &self.streams
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<StreamId> {
        self.streams
            .iter()
            .position(|s| s.spec.name == name)
            .map(|i| StreamId(i as u16))
    }

    /// Fresh stores of every stage for one partition, with each stage's first stream id.
    fn tasks(&self) -> Vec<Box<dyn StageTask>> {
        let mut first = 0u16;
        self.stages
            .iter()
            .map(|stage| {
                let task = stage.clone().task(StreamId(first));
                first += stage.outputs().len() as u16;
                task
            })
            .collect()
    }

    /// The position of the stage named `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name() == name)
    }
}

#[cfg(test)]
mod tests;
