//! A commit participant that exists only in the tests, in the Flink FileSink shape: it
//! keeps the lines of a checkpoint in memory, writes them at `prepare` to a hidden
//! `.pending-<epoch>` file (fsynced), renames that to a visible `part-<epoch>.jsonl` at
//! `finalize`, and at `recover` finishes the prepared epoch the checkpoint names and deletes
//! any later pending file. Every call is logged, and a finalize can be made to fail once,
//! as a crash between the checkpoint and the finalize would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use spcvm::stages::commit::{CommitError, Participant, ParticipantFactory, Prepared};
use spcvm_operators::StageOutput;

/// Makes one [`StagedFiles`] per partition, all logging to one list.
#[derive(Debug, Clone)]
pub struct StagedFilesFactory {
    pub dir: PathBuf,
    pub streams: Vec<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Fail the finalize of this epoch (once).
    pub fail_finalize: Arc<Mutex<Option<u64>>>,
}

impl ParticipantFactory for StagedFilesFactory {
    fn open(&self, topic: &str, partition: i32) -> Box<dyn Participant> {
        let dir = self.dir.join(format!("{topic}-{partition}"));
        std::fs::create_dir_all(&dir).unwrap();
        self.log
            .lock()
            .unwrap()
            .push(format!("open {topic}-{partition}"));
        Box::new(StagedFiles {
            dir,
            streams: self.streams.clone(),
            lines: Vec::new(),
            log: self.log.clone(),
            fail_finalize: self.fail_finalize.clone(),
        })
    }
}

/// The participant of one partition.
pub struct StagedFiles {
    dir: PathBuf,
    streams: Vec<String>,
    lines: Vec<u8>,
    log: Arc<Mutex<Vec<String>>>,
    fail_finalize: Arc<Mutex<Option<u64>>>,
}

fn pending(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!(".pending-{epoch:06}"))
}

fn part(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("part-{epoch:06}.jsonl"))
}

fn error(e: std::io::Error) -> CommitError {
    CommitError {
        participant: "staged_files".into(),
        reason: e.to_string(),
    }
}

impl StagedFiles {
    fn note(&self, call: String) {
        self.log.lock().unwrap().push(call);
    }
}

impl Participant for StagedFiles {
    fn name(&self) -> &str {
        "staged_files"
    }

    fn streams(&self) -> &[String] {
        &self.streams
    }

    fn write(&mut self, stream: &str, output: &dyn StageOutput) -> Result<(), CommitError> {
        assert!(self.streams.iter().any(|s| s == stream));
        self.lines.extend_from_slice(&output.to_json());
        self.lines.push(b'\n');
        Ok(())
    }

    fn prepare(&mut self, epoch: u64) -> Result<Vec<u8>, CommitError> {
        let path = pending(&self.dir, epoch);
        let mut f = std::fs::File::create(&path).map_err(error)?;
        f.write_all(&self.lines).map_err(error)?;
        f.sync_all().map_err(error)?;
        self.note(format!("prepare {epoch} ({} bytes)", self.lines.len()));
        self.lines.clear();
        Ok(path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
            .into_bytes())
    }

    fn finalize(&mut self, prepared: &Prepared) -> Result<(), CommitError> {
        let mut fail = self.fail_finalize.lock().unwrap();
        if *fail == Some(prepared.epoch) {
            *fail = None;
            self.note(format!("finalize {} failed", prepared.epoch));
            return Err(CommitError {
                participant: "staged_files".into(),
                reason: format!("finalize {} made to fail", prepared.epoch),
            });
        }
        drop(fail);
        let name = String::from_utf8(prepared.data.clone()).unwrap();
        std::fs::rename(self.dir.join(name), part(&self.dir, prepared.epoch)).map_err(error)?;
        self.note(format!("finalize {}", prepared.epoch));
        Ok(())
    }

    fn recover(&mut self, prepared: Option<&Prepared>) -> Result<(), CommitError> {
        let last = prepared.map_or(0, |p| p.epoch);
        self.note(format!("recover {last}"));
        if let Some(p) = prepared
            && pending(&self.dir, p.epoch).exists()
        {
            self.finalize(p)?;
        }
        for entry in std::fs::read_dir(&self.dir).map_err(error)? {
            let name = entry
                .map_err(error)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(epoch) = name.strip_prefix(".pending-")
                && epoch.parse::<u64>().unwrap() > last
            {
                std::fs::remove_file(self.dir.join(&name)).map_err(error)?;
                self.note(format!("discard {name}"));
            }
        }
        self.lines.clear();
        Ok(())
    }
}

/// The visible output of a partition's participant: its parts, in epoch order.
pub fn visible(dir: &Path) -> Vec<u8> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}
