//! JSON-lines output of a stage's stream: one output per line, encoded by its
//! [`StageOutput::to_json`] (for alerts, [`spcvm_schemas::encode_alert_json`]), each line
//! ended by `\n`.
//!
//! Writes are buffered; [`LineWriter::finish`] flushes and hands the inner writer back.
//! Every error names the output (a file path, or whatever name the caller gave) and the
//! operation that failed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use spcvm_operators::StageOutput;

/// Error from writing output lines.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output file could not be created.
    #[error("cannot create output file `{}`", path.display())]
    Create {
        /// The path that was to be created.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Writing a line failed.
    #[error("cannot write line {index} to `{}`", path.display())]
    Write {
        /// The output the line was written to.
        path: PathBuf,
        /// One-based number of the line that failed.
        index: u64,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Flushing buffered lines at the end failed.
    #[error("cannot flush lines to `{}`", path.display())]
    Flush {
        /// The output being flushed.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// Writes a stream's outputs as JSON lines to a buffered writer and counts them.
#[derive(Debug)]
pub struct LineWriter<W: Write> {
    out: BufWriter<W>,
    path: PathBuf,
    written: u64,
    /// The line being written, reused.
    line: Vec<u8>,
}

impl LineWriter<File> {
    /// Creates (or truncates) the file at `path` and writes lines to it.
    ///
    /// # Errors
    ///
    /// [`SinkError::Create`] naming the path when the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(LineWriter::new(file, path))
    }
}

impl<W: Write> LineWriter<W> {
    /// Writes lines to `writer`; `name` is what error messages call it (usually its path).
    pub fn new(writer: W, name: impl Into<PathBuf>) -> Self {
        LineWriter {
            out: BufWriter::with_capacity(64 * 1024, writer),
            path: name.into(),
            written: 0,
            line: Vec::new(),
        }
    }

    /// Writes one output as a line of JSON.
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] naming the output and the line's number when writing fails.
    pub fn write(&mut self, output: &dyn StageOutput) -> Result<(), SinkError> {
        let index = self.written + 1;
        self.line.clear();
        output.write_json(&mut self.line);
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|source| SinkError::Write {
                path: self.path.clone(),
                index,
                source,
            })?;
        self.written = index;
        Ok(())
    }

    /// Writes every output of `outputs`, in order.
    ///
    /// # Errors
    ///
    /// As [`LineWriter::write`]; outputs after the failing one are not written.
    pub fn write_all<'a, O: StageOutput>(
        &mut self,
        outputs: impl IntoIterator<Item = &'a O>,
    ) -> Result<(), SinkError> {
        outputs.into_iter().try_for_each(|o| self.write(o))
    }

    /// Number of lines written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The name of the output, as used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes buffered lines to the inner writer.
    ///
    /// # Errors
    ///
    /// [`SinkError::Flush`] naming the output when the buffered data cannot be written.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Flush {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes buffered lines and returns the inner writer.
    ///
    /// # Errors
    ///
    /// [`SinkError::Flush`] naming the output when the buffered data cannot be written.
    pub fn finish(self) -> Result<W, SinkError> {
        let path = self.path;
        self.out.into_inner().map_err(|e| SinkError::Flush {
            path,
            source: e.into_error(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use spcvm_schemas::{Alert, Severity, ToolType, decode_alert_json, encode_alert_json};

    use super::*;

    fn alert(n: u32) -> Alert {
        Alert {
            alert_id: format!("id-{n}"),
            tool_id: "ION-02".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: "B11_30KEV".into(),
            lot_id: Some("L01".into()),
            wafer_id: None,
            parameter: "beam_current_mA".into(),
            chart: "ewma".into(),
            rule: "rule_1".into(),
            severity: Severity::Major,
            statistic: 1.0 + f64::from(n) / 100.0,
            center_line: 1.0,
            ucl: Some(1.01),
            lcl: Some(0.99),
            event_time: 1_772_431_200_000 + i64::from(n) * 60_000,
            message: "line\nbreak inside a message".into(),
            repeats: n,
            distance_sigma: None,
            status: spcvm_schemas::AlertStatus::from_repeats(n),
            window_start: None,
            cusum_upper_sigma: None,
            cusum_lower_sigma: None,
        }
    }

    #[test]
    fn writes_one_alert_per_line_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut w = LineWriter::create(&path).unwrap();
        let alerts: Vec<Alert> = (0..3).map(alert).collect();
        w.write(&alerts[0]).unwrap();
        w.write_all(&alerts[1..]).unwrap();
        assert_eq!(w.written(), 3);
        assert_eq!(w.path(), path.as_path());
        w.finish().unwrap();

        let lines: Vec<String> = BufReader::new(File::open(&path).unwrap())
            .lines()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lines.len(), 3);
        for (line, expected) in lines.iter().zip(&alerts) {
            assert_eq!(line.as_bytes(), encode_alert_json(expected).as_slice());
            assert_eq!(&decode_alert_json(line.as_bytes()).unwrap(), expected);
        }
    }

    #[test]
    fn finish_returns_the_inner_writer_with_everything_flushed() {
        let mut w = LineWriter::new(Vec::new(), "memory");
        w.write(&alert(7)).unwrap();
        let bytes = w.finish().unwrap();
        let mut expected = encode_alert_json(&alert(7));
        expected.push(b'\n');
        assert_eq!(bytes, expected);
    }

    #[test]
    fn create_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("alerts.jsonl");
        let err = LineWriter::create(&path).unwrap_err();
        assert!(matches!(err, SinkError::Create { .. }));
        assert_eq!(
            err.to_string(),
            format!("cannot create output file `{}`", path.display())
        );
    }

    /// A writer that accepts `limit` bytes and then fails.
    #[derive(Debug)]
    struct Full {
        limit: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.limit == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.limit);
            self.limit -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_error_names_the_output() {
        let mut w = LineWriter::new(Full { limit: 10 }, "/mnt/full/alerts.jsonl");
        w.write(&alert(1)).unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot flush lines to `/mnt/full/alerts.jsonl`"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "disk full");
    }
}
