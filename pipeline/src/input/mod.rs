//! Reading telemetry history for `spcvm backtest`: [`RecordSource`] opens a file in one of
//! three [`Format`]s and yields one `Result<Telemetry, InputError>` per record.
//!
//! - [`jsonl`]: one JSON document per line ([`spcvm_schemas::decode_telemetry_json_ref`];
//!   [`RecordSource::next_ref`] lends records whose strings stay in the line buffer).
//! - [`csv`]: a header row, identity columns and one column per parameter.
//! - [`avro`]: an Avro object-container file ([`spcvm_schemas::read_telemetry_container`]).
//!
//! A record that cannot be decoded is yielded as [`InputError::BadRecord`], which carries
//! its position ([`Location`]: a one-based line, or a one-based Avro record number); the
//! caller reports it, counts it and reads on. Every other [`InputError`] is fatal: the
//! iterator yields it once and then ends.
//!
//! The source counts the bytes it has pulled from the file ([`RecordSource::bytes_read`])
//! so that a caller can show progress against [`RecordSource::len`].

pub mod avro;
pub mod csv;
pub mod jsonl;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use spcvm_schemas::{SchemaError, Telemetry, TelemetryRef};

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON lines: one telemetry JSON document per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
    /// Avro object-container file of telemetry records.
    Avro,
}

impl Format {
    /// The format implied by a file name's extension (`.jsonl`, `.json`, `.ndjson`, `.csv`,
    /// `.avro`, in any letter case), if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            "avro" => Some(Format::Avro),
            _ => None,
        }
    }

    /// The name used on the command line and in reports: `jsonl`, `csv` or `avro`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Avro => "avro",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a bad record is in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A one-based line number (JSON lines, CSV).
    Line(u64),
    /// A one-based record number (Avro container files).
    Record(u64),
}

/// Error from reading the input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input file could not be opened.
    #[error("cannot open input file `{}`", path.display())]
    Open {
        /// The input path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Reading the input failed part-way.
    #[error("cannot read input file `{}`", path.display())]
    Read {
        /// The input path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// `--format` was not given and the extension does not tell.
    #[error(
        "cannot tell the format of `{}` from its extension (expected .jsonl, .json, .ndjson, \
         .csv or .avro); pass --format jsonl|csv|avro",
        path.display()
    )]
    UnknownFormat {
        /// The input path.
        path: PathBuf,
    },
    /// The CSV header lacks a required column.
    #[error(
        "{}:1: CSV header has no `{column}` column (required: tool_id, tool_type, recipe_id, \
         event_time; found: {})",
        path.display(),
        found.join(", ")
    )]
    MissingColumn {
        /// The input path.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The columns the header has.
        found: Vec<String>,
    },
    /// The CSV header is unusable (a duplicate or empty column name, or not UTF-8).
    #[error("{}:1: invalid CSV header: {reason}", path.display())]
    BadHeader {
        /// The input path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not a readable Avro object-container file.
    #[error("`{}` is not a readable Avro container file: {source}", path.display())]
    AvroHeader {
        /// The input path.
        path: PathBuf,
        /// What the container reader reported.
        source: SchemaError,
    },
    /// One record could not be decoded; it is skipped and reading goes on.
    #[error("{}{}: {reason}", path.display(), match at {
        Location::Line(n) => format!(":{n}"),
        Location::Record(n) => format!(": record {n}"),
    })]
    BadRecord {
        /// The input path.
        path: PathBuf,
        /// Where the record is.
        at: Location,
        /// Why it could not be decoded.
        reason: String,
    },
}

impl InputError {
    /// Whether this error concerns one record only (skip it and read on), as opposed to the
    /// whole input.
    pub fn is_bad_record(&self) -> bool {
        matches!(self, InputError::BadRecord { .. })
    }
}

/// A reader that counts the bytes read through it into a shared counter.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`; the counter starts at zero.
    pub fn new(inner: R) -> Self {
        CountingReader {
            inner,
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A handle on the counter, readable while the reader is elsewhere.
    pub fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.count)
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Reader = CountingReader<Box<dyn Read>>;

enum Records {
    Jsonl(jsonl::JsonlRecords<Reader>),
    Csv(Box<csv::CsvRecords<Reader>>),
    Avro(avro::AvroRecords),
    Done,
}

/// Telemetry records from one input, in file order.
pub struct RecordSource {
    path: PathBuf,
    format: Format,
    len: Option<u64>,
    bytes: Arc<AtomicU64>,
    records: Records,
}

impl fmt::Debug for RecordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("len", &self.len)
            .field("bytes_read", &self.bytes_read())
            .finish_non_exhaustive()
    }
}

impl RecordSource {
    /// Opens `path`, in `format` or else the format its extension implies. For CSV the header
    /// is read, for Avro the container header, before this returns.
    ///
    /// # Errors
    ///
    /// A fatal [`InputError`] naming the path: the file cannot be opened, the format is
    /// unknown, or the CSV or Avro header is unusable.
    pub fn open(path: &Path, format: Option<Format>) -> Result<Self, InputError> {
        let format = format.or_else(|| Format::from_path(path)).ok_or_else(|| {
            InputError::UnknownFormat {
                path: path.to_path_buf(),
            }
        })?;
        let open_err = |source| InputError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        let mut source = Self::from_reader(Box::new(file), path, format)?;
        source.len = Some(meta.len());
        Ok(source)
    }

    /// Reads records in `format` from `reader`; `name` is what messages call the input.
    ///
    /// # Errors
    ///
    /// As [`RecordSource::open`], minus the open errors.
    pub fn from_reader(
        reader: Box<dyn Read>,
        name: &Path,
        format: Format,
    ) -> Result<Self, InputError> {
        let reader = CountingReader::new(reader);
        let bytes = reader.counter();
        let path = name.to_path_buf();
        let records = match format {
            Format::Jsonl => Records::Jsonl(jsonl::JsonlRecords::new(reader, path.clone())),
            Format::Csv => Records::Csv(Box::new(csv::CsvRecords::new(reader, path.clone())?)),
            Format::Avro => Records::Avro(avro::AvroRecords::new(reader, path.clone())?),
        };
        Ok(RecordSource {
            path,
            format,
            len: None,
            bytes,
            records,
        })
    }

    /// The input's name (its path when opened from a file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The input format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file's size in bytes, when read from a file.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the file is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Bytes read from the input so far (ahead of the records yielded by up to one buffer).
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The next record, borrowing from the source: a JSON-lines record keeps its strings in
    /// the line buffer (no allocation per string); CSV and Avro records are owned. The
    /// [`Iterator`] implementation yields the same records as owned [`Telemetry`].
    pub fn next_ref(&mut self) -> Option<Result<TelemetryRef<'_>, InputError>> {
        // `None` inside `Ok`: a JSON line is waiting in the reader's buffer to be decoded.
        let step: Option<Result<Option<Telemetry>, InputError>> = match &mut self.records {
            Records::Jsonl(r) => r.advance().map(|res| res.map(|()| None)),
            Records::Csv(r) => r.next().map(|res| res.map(Some)),
            Records::Avro(r) => r.next().map(|res| res.map(Some)),
            Records::Done => None,
        };
        match step {
            None => {
                self.records = Records::Done;
                None
            }
            Some(Err(e)) => {
                if !e.is_bad_record() {
                    self.records = Records::Done;
                }
                Some(Err(e))
            }
            Some(Ok(Some(owned))) => Some(Ok(owned.into())),
            Some(Ok(None)) => match &self.records {
                Records::Jsonl(r) => Some(r.decode_line()),
                // Only the JSON-lines reader leaves a line to decode.
                _ => None,
            },
        }
    }
}

impl RecordSource {
    /// Up to `max` next records into `out`, in file order, as
    /// [`RecordSource::next_ref`] would give them one by one (bad records in their place, a
    /// fatal error last); false at the end of the input (nothing added). JSON-lines records
    /// borrow from lines read ahead together, so a caller can hand them on as one batch.
    pub fn next_batch<'a>(
        &'a mut self,
        max: usize,
        out: &mut Vec<Result<TelemetryRef<'a>, InputError>>,
    ) -> bool {
        if let Records::Jsonl(r) = &mut self.records {
            if !r.read_batch(max) {
                self.records = Records::Done;
                return false;
            }
            let Records::Jsonl(r) = &mut self.records else {
                unreachable!("matched above")
            };
            r.decode_batch(out);
            return true;
        }
        let before = out.len();
        for item in self.by_ref().take(max) {
            out.push(item.map(TelemetryRef::from));
        }
        out.len() > before
    }
}

impl Iterator for RecordSource {
    type Item = Result<Telemetry, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(TelemetryRef::into_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_extension() {
        for (name, format) in [
            ("a.jsonl", Some(Format::Jsonl)),
            ("a.JSON", Some(Format::Jsonl)),
            ("dir.v2/a.ndjson", Some(Format::Jsonl)),
            ("a.csv", Some(Format::Csv)),
            ("a.avro", Some(Format::Avro)),
            ("a.txt", None),
            ("jsonl", None),
        ] {
            assert_eq!(Format::from_path(Path::new(name)), format, "{name}");
        }
    }

    #[test]
    fn error_messages_name_the_place() {
        let bad = InputError::BadRecord {
            path: "in.jsonl".into(),
            at: Location::Line(7),
            reason: "oops".into(),
        };
        assert_eq!(bad.to_string(), "in.jsonl:7: oops");
        assert!(bad.is_bad_record());
        let bad = InputError::BadRecord {
            path: "in.avro".into(),
            at: Location::Record(3),
            reason: "oops".into(),
        };
        assert_eq!(bad.to_string(), "in.avro: record 3: oops");
    }

    #[test]
    fn missing_file_and_unknown_format_are_fatal_and_named() {
        let err = RecordSource::open(Path::new("/nonexistent/x.jsonl"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot open input file `/nonexistent/x.jsonl`"
        );
        assert!(!err.is_bad_record());
        let err = RecordSource::open(Path::new("/nonexistent/x.txt"), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot tell the format of `/nonexistent/x.txt`")
        );
        let dir = std::env::temp_dir();
        let err = RecordSource::open(&dir, Some(Format::Jsonl)).unwrap_err();
        assert!(matches!(err, InputError::Open { .. }), "{err}");
    }

    #[test]
    fn counts_bytes_and_stops_after_a_fatal_error() {
        let text = b"\n{\"tool_id\":\"T\",\"tool_type\":\"rtp\",\"recipe_id\":\"R\",\"event_time\":5,\"measurements\":{}}\n".to_vec();
        let n = text.len() as u64;
        let mut src = RecordSource::from_reader(
            Box::new(io::Cursor::new(text)),
            Path::new("m.jsonl"),
            Format::Jsonl,
        )
        .unwrap();
        assert_eq!(src.format(), Format::Jsonl);
        assert_eq!(src.len(), None);
        let rec = src.next().unwrap().unwrap();
        assert_eq!(rec.event_time, 5);
        assert!(src.next().is_none());
        assert_eq!(src.bytes_read(), n);

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("device gone"))
            }
        }
        let mut src =
            RecordSource::from_reader(Box::new(Broken), Path::new("b.jsonl"), Format::Jsonl)
                .unwrap();
        let err = src.next().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "cannot read input file `b.jsonl`");
        assert!(src.next().is_none());
    }
}
