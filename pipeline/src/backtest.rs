//! `spcvm backtest`: replays recorded telemetry through the stages a live deployment runs
//! (the SPC stage, [`spcvm_operators::SpcMonitor`]) and writes the alerts it would have
//! raised, plus an optional JSON report.
//!
//! [`execute`] does the whole command (config, input, alerts file, report); [`run`] is the
//! loop itself, for callers that bring their own stages, source and sinks. Records take the
//! streaming runtimes' record path ([`crate::stages::step`]). Bad input records are handed
//! to an [`Observer`] and counted; they never stop the run.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use spcvm_operators::{KeyedState, SpcState};
use spcvm_schemas::{Alert, Telemetry};
use spcvm_sinks::{LineWriter, SinkError};

use crate::config::{self, ConfigFileError};
use crate::input::{Format, InputError, RecordSource};
use crate::report::{self, Report, SeverityCounts};
use crate::stages::step::Step;
use crate::stages::{Chain, ChainError, Emitted, PartitionChain, StreamId};
use crate::stdio;

/// The name a backtest's records are processed under (the partition's topic).
pub const BACKTEST_TOPIC: &str = "backtest";

/// How often (in records) [`Observer::progress`] is called.
pub const PROGRESS_EVERY: u64 = 1024;

/// Records a backtest hands the stages at a time (one source).
const BATCH_RECORDS: usize = 256;

/// What `spcvm backtest` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Chart configuration; `None` = the built-in seed monitors.
    pub config: Option<PathBuf>,
    /// Telemetry inputs (at least one); several are merged in event-time order, as the
    /// Kafka runtime merges co-partitioned topics ([`run`]).
    pub inputs: Vec<PathBuf>,
    /// Input format; `None` = from the input's extension.
    pub format: Option<Format>,
    /// Where to write the alerts (JSON lines); `-`: standard output.
    pub alerts: PathBuf,
    /// Where to write the JSON report, if anywhere; `-`: standard output.
    pub report: Option<PathBuf>,
}

impl Options {
    /// The inputs as given, comma-separated (the report's and the summary's name for them).
    pub fn input_names(&self) -> String {
        let names: Vec<String> = self
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        names.join(", ")
    }
}

/// Error that stops a backtest.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// No input was given.
    #[error("no input: give at least one --input")]
    NoInput,
    /// The chart configuration is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The input cannot be opened or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The stages do not fit together.
    #[error("stages: {0}")]
    Stages(#[from] ChainError),
    /// The alerts cannot be written.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// An output path names the input file (writing it would destroy the input).
    #[error("{option} `{}` is the input file; choose another output path", path.display())]
    OutputIsInput {
        /// The command-line option of the output (`--alerts` or `--report`).
        option: &'static str,
        /// The output path.
        path: PathBuf,
    },
    /// The report cannot be written.
    #[error("cannot write report `{}`", path.display())]
    Report {
        /// The report path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// Receives what happens during a run (the CLI prints it; tests collect it).
pub trait Observer {
    /// A record that could not be decoded was skipped.
    fn bad_record(&mut self, error: &InputError);

    /// `bytes` of the input have been read so far.
    fn progress(&mut self, _bytes: u64) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn bad_record(&mut self, _error: &InputError) {}
}

/// What happened to the input: records and their measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct InputCounts {
    /// Records decoded and processed.
    pub records: u64,
    /// Lines or records skipped because they did not decode.
    pub bad_records: u64,
    /// Measurements routed to a chart, non-finite ones included.
    pub measurements: u64,
    /// Of those, NaN or infinite values (counted, not plotted).
    pub non_finite: u64,
    /// Charted parameters absent from a record of their tool type.
    pub missing: u64,
    /// Measurements that no chart watches.
    pub unmonitored: u64,
}

/// Counts over a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Input counts.
    pub input: InputCounts,
    /// Distinct alerts (lines with `repeats` = 0) by severity.
    pub alerts: SeverityCounts,
    /// Closing lines of dedup windows (`repeats` > 0).
    pub closing_updates: u64,
    /// Repeats folded, summed over the closing lines.
    pub repeats_folded: u64,
    /// Lines written to the alerts file.
    pub alert_lines: u64,
}

impl Totals {
    fn count_alert(&mut self, alert: &Alert) {
        self.alert_lines += 1;
        if alert.repeats == 0 {
            self.alerts.add(alert.severity);
        } else {
            self.closing_updates += 1;
            self.repeats_folded += u64::from(alert.repeats);
        }
    }
}

/// The result of [`run`].
#[derive(Debug)]
pub struct Outcome {
    /// Counts.
    pub totals: Totals,
    /// Final state of every stage.
    pub partition: PartitionChain,
    /// Wall time of the loop.
    pub elapsed: Duration,
}

impl Outcome {
    /// The final state of every chart (empty without an SPC stage).
    pub fn charts(&self) -> Option<&KeyedState<SpcState>> {
        self.partition.store("spc")
    }
}

/// Where each stream of a chain is written, by [`crate::stages::StreamId`]; `None`: not
/// written.
pub type StreamWriters<W> = Vec<Option<LineWriter<W>>>;

/// The result of [`execute`].
#[derive(Debug)]
pub struct Finished {
    /// What the loop produced.
    pub outcome: Outcome,
    /// The report (also written to [`Options::report`] when set).
    pub report: Report,
    /// The input format used.
    pub format: Format,
}

/// Feeds every record of `sources` through the stages of `chain`, writes each stream's
/// outputs to its writer as they come, then ends the stages (closing open dedup windows)
/// and writes those outputs too. The writers are flushed before returning.
///
/// One source is read in file order. Several are merged as the Kafka runtime merges
/// co-partitioned topics: of the sources' next records, the one with the lowest event time
/// goes first, ties to the source listed first.
///
/// # Errors
///
/// A fatal input error or a write error; bad records go to `observer` instead.
pub fn run<W: Write>(
    chain: &Arc<Chain>,
    sources: &mut [RecordSource],
    writers: &mut StreamWriters<W>,
    observer: &mut impl Observer,
) -> Result<Outcome, BacktestError> {
    let started = Instant::now();
    let mut partition = PartitionChain::new(chain.clone(), BACKTEST_TOPIC, None);
    let mut totals = Totals::default();
    let mut step = Step::default();
    match &mut *sources {
        [source] => run_one(
            source,
            &mut partition,
            &mut totals,
            &mut step,
            writers,
            observer,
        )?,
        many => run_merged(
            many,
            &mut partition,
            &mut totals,
            &mut step,
            writers,
            observer,
        )?,
    }
    partition.end(&mut step.outputs);
    write_step(&mut step, &mut totals, writers)?;
    for writer in writers.iter_mut().filter_map(Option::as_mut) {
        writer.flush()?;
    }
    observer.progress(sources.iter().map(RecordSource::bytes_read).sum());
    Ok(Outcome {
        totals,
        partition,
        elapsed: started.elapsed(),
    })
}

/// One source's records, lent from its buffer, in file order.
fn run_one<W: Write>(
    source: &mut RecordSource,
    partition: &mut PartitionChain,
    totals: &mut Totals,
    step: &mut Step,
    writers: &mut StreamWriters<W>,
    observer: &mut impl Observer,
) -> Result<(), BacktestError> {
    loop {
        observer.progress(source.bytes_read());
        // A batch at a time: the stages take it whole (the SPC stage loads the chart states
        // of coming records while it works on the current one), as the streaming runtimes
        // hand them their batches.
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        if !source.next_batch(BATCH_RECORDS, &mut batch) {
            return Ok(());
        }
        let mut good = Vec::with_capacity(batch.len());
        let mut fatal = None;
        for item in batch {
            match item {
                // A non-finite value is counted (the report's `non_finite`), not reported.
                Ok(record) => good.push((0, Ok(record))),
                Err(e) if e.is_bad_record() => {
                    totals.input.bad_records += 1;
                    observer.bad_record(&e);
                }
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        step.batch(partition, good);
        totals.input.records += step.records;
        write_step(step, totals, writers)?;
        if let Some(e) = fatal {
            return Err(e.into());
        }
    }
}

/// Several sources' records merged by event time (owned: each source's next record waits
/// while the others' go first).
fn run_merged<W: Write>(
    sources: &mut [RecordSource],
    partition: &mut PartitionChain,
    totals: &mut Totals,
    step: &mut Step,
    writers: &mut StreamWriters<W>,
    observer: &mut impl Observer,
) -> Result<(), BacktestError> {
    let mut merged = Merged::new(sources, &mut |e| {
        totals.input.bad_records += 1;
        observer.bad_record(e);
    })?;
    let mut since_progress = 0u64;
    while let Some(record) = merged.next(&mut |e| {
        totals.input.bad_records += 1;
        observer.bad_record(e);
    })? {
        step.one(partition, 0, Ok(record.into()));
        totals.input.records += step.records;
        write_step(step, totals, writers)?;
        since_progress += 1;
        if since_progress >= PROGRESS_EVERY {
            since_progress = 0;
            observer.progress(merged.bytes_read());
        }
    }
    Ok(())
}

/// The records of several sources merged by event time, as [`run`] takes them: of the
/// sources' next records the one with the lowest event time first, ties to the source
/// listed first. Bad records are handed to the caller's `bad` and skipped.
pub struct Merged<'s> {
    sources: &'s mut [RecordSource],
    /// Each source's next good record (`None`: read to its end).
    heads: Vec<Option<Telemetry>>,
}

impl<'s> Merged<'s> {
    /// Reads each source's first good record.
    ///
    /// # Errors
    ///
    /// A fatal input error (bad records go to `bad`).
    pub fn new(
        sources: &'s mut [RecordSource],
        bad: &mut dyn FnMut(&InputError),
    ) -> Result<Self, InputError> {
        let mut heads = Vec::with_capacity(sources.len());
        for source in sources.iter_mut() {
            heads.push(next_good(source, bad)?);
        }
        Ok(Merged { sources, heads })
    }

    /// The next record in merge order, `None` at the end of every source.
    ///
    /// # Errors
    ///
    /// A fatal input error (bad records go to `bad`).
    pub fn next(
        &mut self,
        bad: &mut dyn FnMut(&InputError),
    ) -> Result<Option<Telemetry>, InputError> {
        let Some(k) = (0..self.heads.len())
            .filter(|&k| self.heads[k].is_some())
            .min_by_key(|&k| self.heads[k].as_ref().map(|r| (r.event_time, k)))
        else {
            return Ok(None);
        };
        let record = self.heads[k].take();
        self.heads[k] = next_good(&mut self.sources[k], bad)?;
        Ok(record)
    }

    /// Bytes read from the sources so far.
    pub fn bytes_read(&self) -> u64 {
        self.sources.iter().map(RecordSource::bytes_read).sum()
    }
}

/// The next good record of `source`; bad ones go to `bad` on the way.
fn next_good(
    source: &mut RecordSource,
    bad: &mut dyn FnMut(&InputError),
) -> Result<Option<Telemetry>, InputError> {
    for item in source.by_ref() {
        match item {
            Ok(record) => return Ok(Some(record)),
            Err(e) if e.is_bad_record() => bad(&e),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Counts and writes a step's outputs, and clears it.
fn write_step<W: Write>(
    step: &mut Step,
    totals: &mut Totals,
    writers: &mut StreamWriters<W>,
) -> Result<(), BacktestError> {
    let stats = step.stats;
    totals.input.measurements += u64::from(stats.routed);
    totals.input.non_finite += u64::from(stats.non_finite);
    totals.input.missing += u64::from(stats.missing);
    totals.input.unmonitored += u64::from(stats.unmonitored);
    for Emitted { stream, output } in step.outputs.drain(..) {
        if let Some(alert) = output.value().downcast_ref::<Alert>() {
            totals.count_alert(alert);
        }
        if let Some(Some(writer)) = writers.get_mut(usize::from(stream.0)) {
            writer.write(output.as_ref())?;
        }
    }
    step.clear();
    Ok(())
}

/// Loads the configuration, validates it, then opens the input, runs the backtest into the
/// alerts file and writes the report.
///
/// The configuration is checked and the input opened before the alerts file is created, so
/// a mistake in either leaves no output behind.
///
/// # Errors
///
/// [`BacktestError`] naming the file (and line, for configuration errors) that failed.
pub fn execute(options: &Options, observer: &mut impl Observer) -> Result<Finished, BacktestError> {
    let monitor = config::load_monitor(options.config.as_deref())?;
    let chain = Arc::new(Chain::new(vec![Arc::new(monitor)], &[])?);
    execute_chain(options, &chain, &[], observer)
}

/// [`execute`] with the caller's stages: `chain` (which has the SPC stage, built from
/// [`Options::config`], and whose `alerts` go to [`Options::alerts`]) instead of the SPC
/// stage alone, and each stream of `streams` written to its file too.
///
/// # Errors
///
/// As [`execute`]; `--output` in [`BacktestError::OutputIsInput`] names a path of `streams`.
///
/// # Panics
///
/// If `chain` has no `alerts` stream (no SPC stage).
pub fn execute_chain(
    options: &Options,
    chain: &Arc<Chain>,
    streams: &[(StreamId, PathBuf)],
    observer: &mut impl Observer,
) -> Result<Finished, BacktestError> {
    if options.inputs.is_empty() {
        return Err(BacktestError::NoInput);
    }
    let mut sources = options
        .inputs
        .iter()
        .map(|input| open_input(input, options.format))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = [
        ("--alerts", Some(&options.alerts)),
        ("--report", options.report.as_ref()),
    ]
    .into_iter()
    .chain(streams.iter().map(|(_, path)| ("--output", Some(path))));
    for (option, path) in outputs {
        if let Some(path) = path
            && options.inputs.iter().any(|input| same_file(path, input))
        {
            return Err(BacktestError::OutputIsInput {
                option,
                path: path.clone(),
            });
        }
    }
    let format = sources[0].format();
    let alerts = chain.stream("alerts").expect("the SPC stage emits alerts");
    let mut writers: StreamWriters<stdio::Output> =
        (0..chain.streams().len()).map(|_| None).collect();
    writers[usize::from(alerts.0)] = Some(stdio::line_writer(&options.alerts)?);
    for (stream, path) in streams {
        writers[usize::from(stream.0)] = Some(stdio::line_writer(path)?);
    }
    let outcome = run(chain, &mut sources, &mut writers, observer)?;
    let empty = KeyedState::default();
    let report = report::build(
        &options.input_names(),
        format,
        &outcome.totals,
        outcome.charts().unwrap_or(&empty),
    );
    if let Some(path) = &options.report {
        write_report(path, &report)?;
    }
    Ok(Finished {
        outcome,
        report,
        format,
    })
}

/// Opens an input: the file at `path`, or standard input for `-` (whose format `format`
/// must give: there is no extension to tell it).
fn open_input(path: &Path, format: Option<Format>) -> Result<RecordSource, InputError> {
    if !stdio::is_dash(path) {
        return RecordSource::open(path, format);
    }
    let format = format.ok_or_else(|| InputError::UnknownFormat {
        path: path.to_path_buf(),
    })?;
    RecordSource::from_reader(Box::new(io::stdin()), Path::new("<stdin>"), format)
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes `report` as pretty-printed JSON followed by a newline (to standard output for
/// `-`).
///
/// # Errors
///
/// [`BacktestError::Report`] naming the path.
pub fn write_report(path: &Path, report: &Report) -> Result<(), BacktestError> {
    let err = |source| BacktestError::Report {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(stdio::create(path).map_err(err)?);
    serde_json::to_writer_pretty(&mut out, report).map_err(|e| err(e.into()))?;
    out.write_all(b"\n").map_err(err)?;
    out.into_inner().map_err(|e| err(e.into_error()))?;
    Ok(())
}
