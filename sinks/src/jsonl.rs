//! JSON-lines alert output: one [`Alert`] per line, encoded by
//! [`spcvm_schemas::encode_alert_json`], each line ended by `\n`.
//!
//! Writes are buffered; [`AlertWriter::finish`] flushes and hands the inner writer back.
//! Every error names the output (a file path, or whatever name the caller gave) and the
//! operation that failed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use spcvm_schemas::{Alert, encode_alert_json};

/// Error from writing alerts.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output file could not be created.
    #[error("cannot create alert file `{}`", path.display())]
    Create {
        /// The path that was to be created.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Writing an alert failed.
    #[error("cannot write alert {index} to `{}`", path.display())]
    Write {
        /// The output the alert was written to.
        path: PathBuf,
        /// One-based number of the alert that failed.
        index: u64,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Flushing buffered alerts at the end failed.
    #[error("cannot flush alerts to `{}`", path.display())]
    Flush {
        /// The output being flushed.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// Writes alerts as JSON lines to a buffered writer and counts them.
#[derive(Debug)]
pub struct AlertWriter<W: Write> {
    out: BufWriter<W>,
    path: PathBuf,
    written: u64,
}

impl AlertWriter<File> {
    /// Creates (or truncates) the file at `path` and writes alerts to it.
    ///
    /// # Errors
    ///
    /// [`SinkError::Create`] naming the path when the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let file = File::create(path).map_err(|source| SinkError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(AlertWriter::new(file, path))
    }
}

impl<W: Write> AlertWriter<W> {
    /// Writes alerts to `writer`; `name` is what error messages call it (usually its path).
    pub fn new(writer: W, name: impl Into<PathBuf>) -> Self {
        AlertWriter {
            out: BufWriter::with_capacity(64 * 1024, writer),
            path: name.into(),
            written: 0,
        }
    }

    /// Writes one alert as a line of JSON.
    ///
    /// # Errors
    ///
    /// [`SinkError::Write`] naming the output and the alert's number when writing fails.
    pub fn write(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let index = self.written + 1;
        let mut line = encode_alert_json(alert);
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|source| SinkError::Write {
                path: self.path.clone(),
                index,
                source,
            })?;
        self.written = index;
        Ok(())
    }

    /// Writes every alert of `alerts`, in order.
    ///
    /// # Errors
    ///
    /// As [`AlertWriter::write`]; alerts after the failing one are not written.
    pub fn write_all<'a>(
        &mut self,
        alerts: impl IntoIterator<Item = &'a Alert>,
    ) -> Result<(), SinkError> {
        alerts.into_iter().try_for_each(|a| self.write(a))
    }

    /// Number of alerts written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The name of the output, as used in error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes buffered alerts and returns the inner writer.
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

    use spcvm_schemas::{Severity, ToolType, decode_alert_json};

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
        }
    }

    #[test]
    fn writes_one_alert_per_line_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let mut w = AlertWriter::create(&path).unwrap();
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
        let mut w = AlertWriter::new(Vec::new(), "memory");
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
        let err = AlertWriter::create(&path).unwrap_err();
        assert!(matches!(err, SinkError::Create { .. }));
        assert_eq!(
            err.to_string(),
            format!("cannot create alert file `{}`", path.display())
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
        let mut w = AlertWriter::new(Full { limit: 10 }, "/mnt/full/alerts.jsonl");
        w.write(&alert(1)).unwrap();
        let err = w.finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot flush alerts to `/mnt/full/alerts.jsonl`"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(source.to_string(), "disk full");
    }
}
