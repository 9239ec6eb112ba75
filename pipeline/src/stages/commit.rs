//! Two-phase commit for sinks that are not Kafka (files, the Parquet feature store), the
//! model of Flink's FileSink and arroyo's filesystem sink:
//!
//! 1. at a checkpoint each [`Participant`] *prepares*: it writes and fsyncs what belongs to
//!    the checkpoint under names that are not yet visible, and says what it prepared;
//! 2. the runtime stores that, with the stages' state, in the checkpoint (the changelog, in
//!    the Kafka transaction; the checkpoint file): the prepared work is committed or not
//!    together with the state and the input offsets;
//! 3. once the checkpoint is committed, the participant *finalizes* (makes it visible);
//! 4. after a restart it *recovers*: the restored state says what was prepared last, and
//!    the participant finishes that (idempotently) and discards anything prepared after it.
//!
//! A participant of one input partition receives the outputs of the streams it names.

use serde::{Deserialize, Serialize};
use spcvm_operators::StageOutput;

use super::{Chain, Emitted, StateRecord, StreamId};
use crate::run::changelog::{ChangelogKey, encode_value};

/// The changelog key's first part under which participants' prepared work is stored
/// (stage names may not start with `@`).
pub const COMMIT_STAGE: &str = "@commit";

/// What a participant prepared at a checkpoint, as the checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The checkpoint (counted per partition from its assignment or start).
    pub epoch: u64,
    /// The participant's own description (file names, lengths, ...).
    pub data: Vec<u8>,
}

/// Why a participant failed: what and where, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{participant}: {reason}")]
pub struct CommitError {
    /// The participant's name.
    pub participant: String,
    /// What failed.
    pub reason: String,
}

/// A sink that takes part in checkpoints, for one input partition.
pub trait Participant: Send {
    /// Its name, unique in a job: the key of its prepared work in the checkpoint.
    fn name(&self) -> &str;

    /// The names of the streams whose outputs it receives.
    fn streams(&self) -> &[String];

    /// One output of one of its streams, in order.
    ///
    /// # Errors
    ///
    /// [`CommitError`]: the runtime stops (the work since the last checkpoint is redone
    /// after a restart).
    fn write(&mut self, stream: &str, output: &dyn StageOutput) -> Result<(), CommitError>;

    /// Checkpoint `epoch` is taken: write and fsync what was written since the last one,
    /// not yet visible, and describe it.
    ///
    /// # Errors
    ///
    /// [`CommitError`]: the checkpoint fails.
    fn prepare(&mut self, epoch: u64) -> Result<Vec<u8>, CommitError>;

    /// The checkpoint holding `prepared` is committed: make it visible.
    ///
    /// # Errors
    ///
    /// [`CommitError`]: the runtime stops; [`Participant::recover`] finishes it.
    fn finalize(&mut self, prepared: &Prepared) -> Result<(), CommitError>;

    /// Called once after the state is restored, before any output: finish `prepared` (the
    /// last prepared work a committed checkpoint holds, `None` for none) if it is not
    /// finished yet, and discard what was prepared or written after it.
    ///
    /// # Errors
    ///
    /// [`CommitError`]: the runtime does not start.
    fn recover(&mut self, prepared: Option<&Prepared>) -> Result<(), CommitError>;
}

/// Makes the participants of each input partition.
pub trait ParticipantFactory: Send + Sync + std::fmt::Debug {
    /// A participant for partition `partition` of `topic`.
    fn open(&self, topic: &str, partition: i32) -> Box<dyn Participant>;
}

/// The participants of one input partition, with the streams each receives and the work
/// prepared but not yet finalized.
pub struct Participants {
    topic: String,
    list: Vec<(Box<dyn Participant>, Vec<StreamId>)>,
    /// Checkpoints taken (the last prepared epoch).
    epoch: u64,
    /// Prepared at the last checkpoint, finalized once it is committed (by position).
    pending: Vec<(usize, Prepared)>,
}

impl std::fmt::Debug for Participants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participants")
            .field(
                "names",
                &self.list.iter().map(|(p, _)| p.name()).collect::<Vec<_>>(),
            )
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Participants {
    /// Opens every factory's participant for partition `partition` of `topic`.
    ///
    /// # Errors
    ///
    /// [`CommitError`] for a participant naming a stream `chain` does not have.
    pub fn open(
        factories: &[std::sync::Arc<dyn ParticipantFactory>],
        chain: &Chain,
        topic: &str,
        partition: i32,
    ) -> Result<Participants, CommitError> {
        let mut list = Vec::with_capacity(factories.len());
        for factory in factories {
            let participant = factory.open(topic, partition);
            let streams = participant
                .streams()
                .iter()
                .map(|name| {
                    chain.stream(name).ok_or_else(|| CommitError {
                        participant: participant.name().to_string(),
                        reason: format!("no configured stage emits stream `{name}`"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            list.push((participant, streams));
        }
        Ok(Participants {
            topic: topic.to_string(),
            list,
            epoch: 0,
            pending: Vec::new(),
        })
    }

    /// Whether there is no participant.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether prepared work waits for its checkpoint to commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands `emitted` to the participants that receive its stream.
    ///
    /// # Errors
    ///
    /// The first participant's [`CommitError`].
    pub fn write(&mut self, chain: &Chain, emitted: &Emitted) -> Result<(), CommitError> {
        for (participant, streams) in &mut self.list {
            if streams.contains(&emitted.stream) {
                let name = chain.streams()[usize::from(emitted.stream.0)].spec.name;
                participant.write(name, emitted.output.as_ref())?;
            }
        }
        Ok(())
    }

    /// A checkpoint: every participant prepares; returns the changelog records that hold
    /// what they prepared (to be stored with the stages' state), and keeps it to finalize.
    ///
    /// # Errors
    ///
    /// The first participant's [`CommitError`].
    pub fn prepare(&mut self) -> Result<Vec<StateRecord>, CommitError> {
        if self.list.is_empty() {
            return Ok(Vec::new());
        }
        self.epoch += 1;
        let mut records = Vec::with_capacity(self.list.len());
        for (i, (participant, _)) in self.list.iter_mut().enumerate() {
            let prepared = Prepared {
                epoch: self.epoch,
                data: participant.prepare(self.epoch)?,
            };
            records.push(StateRecord {
                key: ChangelogKey::encode_stage(COMMIT_STAGE, &self.topic, &[participant.name()]),
                value: encode_value(&prepared),
            });
            self.pending.push((i, prepared));
        }
        Ok(records)
    }

    /// The checkpoint of the last [`Participants::prepare`] is committed: each participant
    /// finalizes what it prepared.
    ///
    /// # Errors
    ///
    /// The first participant's [`CommitError`].
    pub fn finalize(&mut self) -> Result<(), CommitError> {
        for (i, prepared) in std::mem::take(&mut self.pending) {
            self.list[i].0.finalize(&prepared)?;
        }
        Ok(())
    }

    /// After a restore: each participant finishes what the restored state says it
    /// prepared last (`restored`, by name), and numbers its next checkpoints after it.
    ///
    /// # Errors
    ///
    /// The first participant's [`CommitError`].
    pub fn recover(
        &mut self,
        restored: &std::collections::BTreeMap<String, Prepared>,
    ) -> Result<(), CommitError> {
        for (participant, _) in &mut self.list {
            let prepared = restored.get(participant.name());
            self.epoch = self.epoch.max(prepared.map_or(0, |p| p.epoch));
            participant.recover(prepared)?;
        }
        Ok(())
    }
}
