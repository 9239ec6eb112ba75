//! Where `spcvm simulate`'s records go: the [`RecordSink`]s (a JSON-lines file, an Avro
//! container file; a Kafka topic is [`super::kafka::TopicSink`]) and [`generate_into`], the
//! loop that feeds one from the [`Generator`], paced or not. The CLI and the simulator's
//! bench (`pipeline/benches/simulate.rs`) both go through [`generate_into`].
//!
//! No record allocates on the way: the generator lends each record from its tool's buffer
//! and the writers encode into buffers they reuse.

use std::io::Write;
use std::path::{Path, PathBuf};

use spcvm_schemas::{Telemetry, TelemetryContainerWriter, TelemetryJsonWriter};

use super::SimulateError;
use super::generate::Generator;
use super::pace::{Clock, Pacer};
use super::write_behind::WriteBehind;

/// A destination of generated records.
pub trait RecordSink {
    /// Takes one record of the scenario's tool `tool` (an index into
    /// [`Scenario::tools`](super::Scenario::tools), by which a sink may keep per-tool
    /// encodings); it may be buffered.
    ///
    /// # Errors
    ///
    /// [`SimulateError`] naming the file or topic.
    fn write(&mut self, tool: usize, record: &Telemetry) -> Result<(), SimulateError>;

    /// Writes out whatever is buffered and waits until it is stored (flushed, or
    /// acknowledged by the broker).
    ///
    /// # Errors
    ///
    /// [`SimulateError`] naming the file or topic.
    fn finish(&mut self) -> Result<(), SimulateError>;
}

/// JSON lines (one record a line, as `spcvm backtest` reads them), encoded straight into
/// the buffer of a [`WriteBehind`] (no copy on the way to the writer thread), each tool's
/// ids and names encoded once ([`TelemetryJsonWriter`]).
pub struct JsonLines {
    out: WriteBehind,
    /// Per tool, its ids and names encoded once.
    writers: Vec<TelemetryJsonWriter>,
    /// Named in errors.
    path: PathBuf,
}

impl JsonLines {
    /// Lines into `out`; `path` names it in errors.
    pub fn new(out: WriteBehind, path: &Path) -> JsonLines {
        JsonLines {
            out,
            writers: Vec::new(),
            path: path.to_path_buf(),
        }
    }

    fn error(&self, source: std::io::Error) -> SimulateError {
        SimulateError::Write {
            path: self.path.clone(),
            source,
        }
    }
}

impl RecordSink for JsonLines {
    fn write(&mut self, tool: usize, record: &Telemetry) -> Result<(), SimulateError> {
        if self.writers.len() <= tool {
            self.writers.resize_with(tool + 1, TelemetryJsonWriter::new);
        }
        let buffer = self.out.buffer();
        self.writers[tool].write(record, buffer);
        buffer.push(b'\n');
        self.out.commit().map_err(|e| self.error(e))
    }

    fn finish(&mut self) -> Result<(), SimulateError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}

/// An Avro object-container file (`schemas/avro/telemetry.avsc`) written record by record.
pub struct AvroFile<W: Write> {
    /// `None` once finished.
    container: Option<TelemetryContainerWriter<W>>,
    path: PathBuf,
}

impl<W: Write> AvroFile<W> {
    /// Writes the container's header to `out`; `path` names it in errors.
    ///
    /// # Errors
    ///
    /// [`SimulateError::Avro`] if the header cannot be written.
    pub fn new(out: W, path: &Path) -> Result<AvroFile<W>, SimulateError> {
        let container =
            TelemetryContainerWriter::new(out).map_err(|source| SimulateError::Avro {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AvroFile {
            container: Some(container),
            path: path.to_path_buf(),
        })
    }

    fn error(&self, source: spcvm_schemas::SchemaError) -> SimulateError {
        SimulateError::Avro {
            path: self.path.clone(),
            source,
        }
    }
}

impl<W: Write> RecordSink for AvroFile<W> {
    fn write(&mut self, _tool: usize, record: &Telemetry) -> Result<(), SimulateError> {
        match &mut self.container {
            Some(container) => container.append(record).map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), SimulateError> {
        match self.container.take() {
            Some(container) => container.finish().map(drop).map_err(|e| self.error(e)),
            None => Ok(()),
        }
    }
}

/// Pacing of [`generate_into`]: a [`Pacer`] and the clock it runs on.
pub struct Pacing<'c, C: Clock> {
    /// The schedule.
    pub pacer: Pacer,
    /// The clock it is kept on.
    pub clock: &'c mut C,
}

/// Records between calls of `progress` when not paced.
const PROGRESS_EVERY: u64 = 8192;

/// Feeds every record of `generator` to `sink` (paced by `pacing`, if any) and finishes
/// it; returns how many records went. `progress` is called now and then with the count so
/// far (about 20 times a second when paced) and once at the end.
///
/// # Errors
///
/// The sink's [`SimulateError`]; the records before it were written.
pub fn generate_into<C: Clock>(
    mut generator: Generator<'_>,
    sink: &mut dyn RecordSink,
    mut pacing: Option<Pacing<'_, C>>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, SimulateError> {
    let every = match &pacing {
        Some(p) => (p.pacer.burst() / 2).max(1),
        None => PROGRESS_EVERY,
    };
    let mut n = 0u64;
    while let Some((tool, record)) = generator.next_indexed() {
        if let Some(Pacing { pacer, clock }) = &mut pacing {
            pacer.wait(*clock);
        }
        sink.write(tool, record)?;
        n += 1;
        if n.is_multiple_of(every) {
            progress(n);
        }
    }
    sink.finish()?;
    progress(n);
    Ok(n)
}
