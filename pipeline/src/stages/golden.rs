//! The golden harness every chain of stages gets for free, with no broker: the same records
//! run straight, with checkpoints at given positions, and restored from each checkpoint
//! into fresh stores, must give byte-identical outputs on every stream. Checkpoints go
//! through the real changelog codec ([`PartitionChain::checkpoint`] and
//! [`PartitionChain::restore`]), and the records through the decoder's borrowed views, in
//! batches of varying size, so a stage whose batch entry point or state snapshot differs
//! from its one-at-a-time behaviour fails it.

use std::collections::BTreeMap;
use std::sync::Arc;

use spcvm_schemas::{Telemetry, TelemetryRef, decode_telemetry_json_ref, encode_telemetry_json};

use super::{Chain, Emitted, PartitionChain, StateRecord};

/// Each stream's outputs (by stream id), each as its JSON line.
pub type Lines = Vec<Vec<Vec<u8>>>;

/// How a golden run feeds and ends its partition.
#[derive(Debug, Clone)]
pub struct Run {
    /// Watermark lateness (`None`: a bounded input, ended at its end).
    pub lateness_ms: Option<i64>,
    /// Sizes of the batches the records are fed in, repeated (`[1]`: one at a time).
    pub batches: Vec<usize>,
}

impl Run {
    /// A bounded input fed one record at a time (the backtest's way).
    pub fn bounded() -> Run {
        Run {
            lateness_ms: None,
            batches: vec![1],
        }
    }
}

/// The records as JSON documents (decoded into borrowed views by [`views`]).
pub fn documents(records: &[Telemetry]) -> Vec<Vec<u8>> {
    records.iter().map(encode_telemetry_json).collect()
}

/// Borrowed views of `documents`, as the runtimes' decoder hands them to the stages.
///
/// # Panics
///
/// If a document does not decode (they come from [`documents`]).
pub fn views(documents: &[Vec<u8>]) -> Vec<TelemetryRef<'_>> {
    documents
        .iter()
        .map(|d| decode_telemetry_json_ref(d).expect("an encoded record decodes"))
        .collect()
}

/// A partition's outputs and changelog as a run goes.
struct Partition {
    partition: PartitionChain,
    lines: Lines,
    buffer: Vec<Emitted>,
    /// Every changelog record written, in order.
    changelog: Vec<StateRecord>,
}

impl Partition {
    fn new(chain: &Arc<Chain>, run: &Run) -> Partition {
        Partition {
            partition: PartitionChain::new(chain.clone(), "golden", run.lateness_ms),
            lines: vec![Vec::new(); chain.streams().len()],
            buffer: Vec::new(),
            changelog: Vec::new(),
        }
    }

    /// Feeds `records` in the run's batch sizes.
    fn feed(&mut self, records: &[TelemetryRef<'_>], run: &Run) {
        let mut at = 0;
        for &size in run.batches.iter().cycle() {
            if at >= records.len() {
                break;
            }
            let end = (at + size.max(1)).min(records.len());
            self.partition
                .process_batch(&records[at..end], &mut self.buffer);
            self.collect();
            at = end;
        }
    }

    fn end(&mut self, run: &Run) {
        if run.lateness_ms.is_none() {
            self.partition.end(&mut self.buffer);
            self.collect();
        }
    }

    fn collect(&mut self) {
        for emitted in self.buffer.drain(..) {
            self.lines[usize::from(emitted.stream.0)].push(emitted.output.to_json());
        }
    }

    fn checkpoint(&mut self, next_offset: usize) {
        self.changelog.extend(
            self.partition
                .checkpoint(&[("golden", next_offset as i64)], Vec::new()),
        );
    }
}

/// The outputs of `records` run straight through a fresh partition of `chain`.
pub fn straight(chain: &Arc<Chain>, records: &[TelemetryRef<'_>], run: &Run) -> Lines {
    let mut p = Partition::new(chain, run);
    p.feed(records, run);
    p.end(run);
    p.lines
}

/// What differs between the straight run and the checkpointed or restored ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Which run: `checkpointed`, or `restored at N` (records before N came from the
    /// checkpoint).
    pub run: String,
    /// The stream's name.
    pub stream: String,
    /// First line that differs (index), with both sides as text.
    pub first_difference: Option<(usize, String, String)>,
    /// Line counts of the straight run and of this one.
    pub lines: (usize, usize),
}

/// Runs `records` straight, with a checkpoint after each position of `cuts`, and restored
/// from each of those checkpoints (the changelog up to it, compacted to the latest value
/// per key as a compacted topic keeps it); returns the straight run's outputs, or what
/// differs.
///
/// # Errors
///
/// The first [`Mismatch`] found.
pub fn check(
    chain: &Arc<Chain>,
    records: &[TelemetryRef<'_>],
    cuts: &[usize],
    run: &Run,
) -> Result<Lines, Box<Mismatch>> {
    let expected = straight(chain, records, run);
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(records.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();

    // Checkpointed: the run goes on after each checkpoint. Each checkpoint's changelog so
    // far, and the outputs so far, are kept for the restored runs.
    let mut p = Partition::new(chain, run);
    let mut at = 0;
    let mut taken = Vec::with_capacity(cuts.len());
    for &cut in &cuts {
        p.feed(&records[at..cut], run);
        p.checkpoint(cut);
        taken.push((cut, p.changelog.clone(), p.lines.clone()));
        at = cut;
    }
    p.feed(&records[at..], run);
    p.end(run);
    compare(chain, "checkpointed", &expected, &p.lines)?;

    for (cut, changelog, before) in taken {
        let mut compacted = BTreeMap::new();
        for record in changelog {
            compacted.insert(record.key, record.value);
        }
        let mut restored = Partition::new(chain, run);
        for (key, value) in &compacted {
            restored
                .partition
                .restore(key, value)
                .expect("a changelog the chain wrote restores");
        }
        restored.lines = before;
        restored.feed(&records[cut..], run);
        restored.end(run);
        compare(
            chain,
            &format!("restored at {cut}"),
            &expected,
            &restored.lines,
        )?;
    }
    Ok(expected)
}

fn compare(
    chain: &Chain,
    run: &str,
    expected: &Lines,
    actual: &Lines,
) -> Result<(), Box<Mismatch>> {
    for (id, (e, a)) in expected.iter().zip(actual).enumerate() {
        if e != a {
            let text = |l: &Vec<u8>| String::from_utf8_lossy(l).into_owned();
            let first_difference = e
                .iter()
                .zip(a)
                .position(|(x, y)| x != y)
                .map(|i| (i, text(&e[i]), text(&a[i])));
            return Err(Box::new(Mismatch {
                run: run.to_string(),
                stream: chain.streams()[id].spec.name.to_string(),
                first_difference,
                lines: (e.len(), a.len()),
            }));
        }
    }
    Ok(())
}
