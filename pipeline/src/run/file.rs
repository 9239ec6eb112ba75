//! The file runtime: `spcvm run` with `source = "file"`, the embedded default that needs no
//! broker. Same decoder, same record path ([`Step`]), same [`PartitionChain`], same
//! checkpoint records as the Kafka runtime, with files in place of topics:
//!
//! ```text
//! input.jsonl ──line──> Decoder ──Telemetry──> Step ──> PartitionChain ──outputs──> one
//!                                                 │      JSON-lines file per stream
//!                                                 └─ rejected ──> dlq.jsonl {line, offset,
//!                                                    kind, error, payload}
//! every max_uncheckpointed lines / checkpoint_interval_ms:
//!   output files + dlq fsynced ──> checkpoint (input offset, output lengths, state) written
//!   atomically (temp file, fsync, rename)
//! restart: checkpoint read ──> outputs cut back to its lengths ──> input resumes at its offset
//! ```
//!
//! A crash at any point therefore leaves, after restart, exactly the output of an
//! uninterrupted run. With `follow = false` the end of the input ends the run: every chart's
//! open dedup window is closed (as `spcvm backtest` does) and the final checkpoint is marked
//! ended, so running again adds nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use spcvm_schemas::Alert;
use spcvm_sinks::AppendFile;

use super::changelog::{ChangelogKey, decode_value, encode_value};
use super::{Job, RunError};
use crate::stages::PartitionChain;
use crate::stages::commit::Participants;
use crate::stages::step::{Rejection, Step};

/// The pseudo-topic name file records are charted under (it prefixes the state keys).
pub const FILE_TOPIC: &str = "file";

/// Bytes of the input hashed to recognise it on restart.
const HEAD_BYTES: u64 = 64 * 1024;

/// FNV-1a of the first `min(HEAD_BYTES, limit)` bytes of `path`.
fn head_hash(path: &Path, limit: u64) -> std::io::Result<u64> {
    use std::io::Read;
    let mut buf = Vec::new();
    File::open(path)?
        .take(HEAD_BYTES.min(limit))
        .read_to_end(&mut buf)?;
    Ok(buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// Whether `a` and `b` name the same file (the same path, or both resolve to one file).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// How long a following run waits before looking at a grown input again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// What a file run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Input line the run started after (0 = from the beginning).
    pub resumed_after_line: u64,
    /// Records decoded and charted by this run.
    pub records: u64,
    /// Lines sent to the dead-letter file by this run.
    pub dead_letters: u64,
    /// Alert lines written by this run.
    pub alerts: u64,
    /// Whether the input was read to its end (and the run is complete).
    pub ended: bool,
}

/// The checkpoint file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileCheckpoint {
    /// Input file the checkpoint belongs to.
    input: PathBuf,
    /// Byte offset of the first unprocessed input line.
    input_offset: u64,
    /// Hash of the input's first [`HEAD_BYTES`] bytes (or all of them, if fewer) when the
    /// checkpoint was written: a replaced or rotated input is detected on restart.
    input_head: u64,
    /// Lines processed.
    input_line: u64,
    /// Committed length of the alerts file.
    alerts_len: u64,
    /// Committed length of the dead-letter file.
    dlq_len: u64,
    /// The input was read to its end and the charts were ended.
    ended: bool,
    /// The latest changelog record per key.
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Committed lengths of the output files of streams other than `alerts`, by stream.
    /// Absent in checkpoints written before stages.
    #[serde(default)]
    streams: BTreeMap<String, u64>,
}

impl FileCheckpoint {
    /// Re-keys state written before stages (`[topic, tool, recipe]`) as the SPC stage's, so
    /// that the next checkpoint holds one key per state.
    fn migrate_keys(&mut self) -> Result<(), super::changelog::ChangelogError> {
        let mut state = BTreeMap::new();
        for (key, value) in std::mem::take(&mut self.state) {
            let key = match ChangelogKey::decode(&key, FILE_TOPIC)? {
                Some(k) => k.encode(),
                None => key,
            };
            state.insert(key, value);
        }
        self.state = state;
        Ok(())
    }
}

fn read_checkpoint(path: &Path) -> Result<Option<FileCheckpoint>, RunError> {
    match std::fs::read(path) {
        Ok(bytes) => decode_value(&bytes)
            .map(Some)
            .map_err(|e| RunError::Checkpoint {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RunError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn write_checkpoint(path: &Path, checkpoint: &FileCheckpoint) -> Result<(), RunError> {
    let err = |e: std::io::Error| RunError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".writing");
    let tmp = path.with_file_name(tmp_name);
    let mut file = File::create(&tmp).map_err(err)?;
    file.write_all(&encode_value(checkpoint)).map_err(err)?;
    file.sync_data().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

/// Runs the file job until the input ends (or, when following, until `stop` is set).
///
/// # Errors
///
/// [`RunError`] when a file cannot be read or written, or the checkpoint does not match
/// the files; bad input lines go to the dead-letter file instead.
pub fn run(job: &Job, stop: &AtomicBool) -> Result<FileSummary, RunError> {
    let cfg = &job.config.file;
    let delivery = &job.config.delivery;
    if let Some(dir) = cfg
        .checkpoint
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| RunError::Checkpoint {
            path: cfg.checkpoint.clone(),
            reason: e.to_string(),
        })?;
    }
    let previous = read_checkpoint(&cfg.checkpoint)?;
    if let Some(cp) = &previous
        && !same_path(&cp.input, &cfg.input)
    {
        return Err(RunError::Checkpoint {
            path: cfg.checkpoint.clone(),
            reason: format!(
                "it belongs to input `{}`, not `{}`; delete it to start over",
                cp.input.display(),
                cfg.input.display()
            ),
        });
    }
    if let Some(cp) = &previous {
        let len = std::fs::metadata(&cfg.input)
            .map_err(|e| RunError::Input {
                path: cfg.input.clone(),
                reason: e.to_string(),
            })?
            .len();
        let head = head_hash(&cfg.input, cp.input_offset).map_err(|e| RunError::Input {
            path: cfg.input.clone(),
            reason: e.to_string(),
        })?;
        if len < cp.input_offset || head != cp.input_head {
            return Err(RunError::Checkpoint {
                path: cfg.checkpoint.clone(),
                reason: format!(
                    "input `{}` is not the file the checkpoint was taken on (it was replaced, \
                     rotated or truncated: {len} bytes now, {} read then); delete the \
                     checkpoint to start over",
                    cfg.input.display(),
                    cp.input_offset
                ),
            });
        }
    }
    let mut cp = previous.clone().unwrap_or_else(|| FileCheckpoint {
        input: cfg.input.clone(),
        ..FileCheckpoint::default()
    });
    let checkpoint_error = |reason: String| RunError::Checkpoint {
        path: cfg.checkpoint.clone(),
        reason,
    };
    cp.migrate_keys()
        .map_err(|e| checkpoint_error(e.to_string()))?;
    let mut summary = FileSummary {
        resumed_after_line: cp.input_line,
        ..FileSummary::default()
    };
    let resume = previous.is_some();
    let mut outputs = Vec::with_capacity(job.outputs.len());
    for stream in &job.outputs {
        let committed = if stream.name == "alerts" {
            cp.alerts_len
        } else {
            cp.streams.get(&stream.name).copied().unwrap_or(0)
        };
        outputs.push(AppendFile::open(&stream.file, resume.then_some(committed))?);
    }
    let dlq_out = AppendFile::open(&cfg.dlq, resume.then_some(cp.dlq_len))?;
    let mut partition = PartitionChain::new(
        job.chain.clone(),
        FILE_TOPIC,
        // A followed file never ends, so quiet charts' windows close by watermark; a
        // bounded file closes them at its end, as the backtest does.
        cfg.follow.then_some(delivery.watermark_lateness_ms),
    );
    for (key, value) in &cp.state {
        partition
            .restore(key, value)
            .map_err(|e| checkpoint_error(e.to_string()))?;
    }
    for (stage, keys) in partition.dropped() {
        tracing::warn!(
            stage,
            keys,
            "the checkpoint holds state of a stage this job does not run: dropped"
        );
    }
    let mut participants = Participants::open(&job.participants, &job.chain, FILE_TOPIC, 0)?;
    participants.recover(partition.prepared())?;
    job.metrics.keys.set(partition.keys() as i64);
    job.metrics.partitions_assigned.set(1);
    job.health.set_ready(true);
    if cp.ended {
        summary.ended = true;
        return Ok(summary);
    }
    let input_err = |e: std::io::Error| RunError::Input {
        path: cfg.input.clone(),
        reason: e.to_string(),
    };
    let mut input =
        BufReader::with_capacity(256 * 1024, File::open(&cfg.input).map_err(input_err)?);
    input
        .seek(SeekFrom::Start(cp.input_offset))
        .map_err(input_err)?;
    let mut files = Files {
        job,
        partition,
        cp,
        outputs,
        dlq: dlq_out,
        participants,
        step: Step::default(),
        line: Vec::new(),
    };
    let mut offset = files.cp.input_offset;
    let mut line_no = files.cp.input_line;
    let mut line = Vec::with_capacity(4096);
    let mut since_checkpoint = 0u64;
    let mut last_checkpoint = Instant::now();
    let interval = Duration::from_millis(delivery.checkpoint_interval_ms);
    let consumed = job
        .metrics
        .messages_consumed
        .with_label_values(&[FILE_TOPIC]);

    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).map_err(input_err)?;
        let complete = line.last() == Some(&b'\n');
        if n == 0 || (!complete && cfg.follow) {
            if n > 0 {
                // A partial last line: rewind and wait for the writer to finish it.
                input.seek(SeekFrom::Start(offset)).map_err(input_err)?;
            }
            if !cfg.follow {
                break;
            }
            if since_checkpoint > 0 {
                files.checkpoint(offset, line_no, false)?;
                since_checkpoint = 0;
                last_checkpoint = Instant::now();
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(summary);
            }
            std::thread::sleep(FOLLOW_POLL);
            continue;
        }
        let start_offset = offset;
        offset += n as u64;
        line_no += 1;
        let text = trim_line_end(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        consumed.inc();
        since_checkpoint += 1;
        let decoded = job.decoder.decode_ref(text).map_err(Rejection::from);
        files.step.one(&mut files.partition, 0, decoded);
        files.dead_letters(&mut summary, |letter| {
            serde_json::json!({
                "input": cfg.input,
                "line": line_no,
                "offset": start_offset,
                "kind": letter.kind(),
                "error": letter.reason(),
                "payload": String::from_utf8_lossy(text),
            })
        })?;
        files.write_outputs(&mut summary)?;
        if since_checkpoint >= delivery.max_uncheckpointed || last_checkpoint.elapsed() >= interval
        {
            files.checkpoint(offset, line_no, false)?;
            since_checkpoint = 0;
            last_checkpoint = Instant::now();
            if stop.load(Ordering::Relaxed) {
                return Ok(summary);
            }
        }
    }
    files.partition.end(&mut files.step.outputs);
    files.write_outputs(&mut summary)?;
    files.checkpoint(offset, line_no, true)?;
    summary.ended = true;
    Ok(summary)
}

/// A file job's outputs, stage stores and checkpoint.
struct Files<'j> {
    job: &'j Job,
    partition: PartitionChain,
    cp: FileCheckpoint,
    /// One file per output stream, by stream id.
    outputs: Vec<AppendFile>,
    dlq: AppendFile,
    /// Sinks outside these files, in the checkpoint's two-phase commit.
    participants: Participants,
    step: Step,
    /// The output line being written, reused.
    line: Vec<u8>,
}

impl Files<'_> {
    /// Writes the step's dead letters, each as `letter` describes it.
    fn dead_letters(
        &mut self,
        summary: &mut FileSummary,
        letter: impl Fn(&Rejection) -> serde_json::Value,
    ) -> Result<(), RunError> {
        for (_, rejection) in &self.step.rejected {
            summary.dead_letters += 1;
            self.dlq
                .write_line(letter(rejection).to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Writes the step's outputs, counts the whole step, and clears it.
    fn write_outputs(&mut self, summary: &mut FileSummary) -> Result<(), RunError> {
        let step = &mut self.step;
        step.count(&self.job.metrics);
        summary.records += step.records;
        for emitted in &step.outputs {
            self.line.clear();
            emitted.output.write_json(&mut self.line);
            self.outputs[usize::from(emitted.stream.0)].write_line(&self.line)?;
            self.participants.write(&self.job.chain, emitted)?;
            if emitted.output.value().is::<Alert>() {
                summary.alerts += 1;
            }
        }
        step.clear();
        Ok(())
    }

    /// Fsyncs the outputs and has the participants prepare, then writes the checkpoint (the
    /// input position, the outputs' lengths, the state changed since the last one and what
    /// the participants prepared), then has the participants finalize.
    fn checkpoint(&mut self, offset: u64, line_no: u64, ended: bool) -> Result<(), RunError> {
        let started = Instant::now();
        let cfg = &self.job.config.file;
        let cp = &mut self.cp;
        for (stream, file) in self.job.outputs.iter().zip(&mut self.outputs) {
            let len = file.commit()?;
            if stream.name == "alerts" {
                cp.alerts_len = len;
            } else {
                cp.streams.insert(stream.name.clone(), len);
            }
        }
        cp.dlq_len = self.dlq.commit()?;
        let prepared = self.participants.prepare()?;
        for record in self.partition.checkpoint(&[], prepared) {
            cp.state.insert(record.key, record.value);
        }
        if cp.input_offset < HEAD_BYTES || cp.input_head == 0 {
            cp.input_head = head_hash(&cfg.input, offset).map_err(|e| RunError::Input {
                path: cfg.input.clone(),
                reason: e.to_string(),
            })?;
        }
        cp.input_offset = offset;
        cp.input_line = line_no;
        cp.ended = ended;
        write_checkpoint(&cfg.checkpoint, cp)?;
        self.participants.finalize()?;
        let metrics = &self.job.metrics;
        metrics
            .checkpoint_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.keys.set(self.partition.keys() as i64);
        Ok(())
    }
}

/// `line` without its `\n` / `\r\n`.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
