//! JSON-lines telemetry: one [`Telemetry`] JSON document per line, decoded by
//! [`decode_telemetry_json_ref`].
//!
//! Blank (whitespace-only) lines are skipped; a line may end in `\n` or `\r\n`. A line that
//! does not decode, or is longer than [`MAX_LINE_BYTES`], is yielded as
//! [`InputError::BadRecord`] with its one-based line number, and reading goes on.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use spcvm_schemas::{SchemaError, Telemetry, TelemetryRef, decode_telemetry_json_ref};

use super::{InputError, Location};

/// Longest line accepted (16 MiB); a longer line is skipped as a bad record without being
/// held in memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Telemetry records from a JSON-lines stream.
#[derive(Debug)]
pub struct JsonlRecords<R> {
    reader: BufReader<R>,
    path: PathBuf,
    line_no: u64,
    line: Vec<u8>,
    /// Lines read ahead by [`JsonlRecords::read_batch`].
    batch: Batch,
    /// A read failed: nothing more is read.
    failed: bool,
}

/// Lines read ahead for [`JsonlRecords::decode_batch`]: their bytes one after another,
/// and per line where it is, or the error it gave.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
enum Entry {
    /// A line: its range in `bytes` and its one-based number in the file.
    Line(usize, usize, u64),
    /// A line that was not read (too long), or a failed read (the batch's last entry).
    Error(Option<InputError>),
}

/// One line read from the stream.
enum Line {
    /// The line is in the buffer (without its line ending).
    Complete,
    /// The line was longer than [`MAX_LINE_BYTES`] and was dropped.
    TooLong,
    /// End of input.
    Eof,
}

impl<R: Read> JsonlRecords<R> {
    /// Reads lines from `reader`; `path` names the input in errors.
    pub fn new(reader: R, path: PathBuf) -> Self {
        JsonlRecords {
            reader: BufReader::with_capacity(256 * 1024, reader),
            path,
            line_no: 0,
            line: Vec::new(),
            batch: Batch::default(),
            failed: false,
        }
    }

    /// Reads the next line into `self.line`, keeping at most [`MAX_LINE_BYTES`] of it.
    fn read_line(&mut self) -> io::Result<Line> {
        self.line.clear();
        let mut seen_any = false;
        let mut too_long = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match (seen_any, too_long) {
                    (false, _) => Line::Eof,
                    (true, false) => Line::Complete,
                    (true, true) => Line::TooLong,
                });
            }
            seen_any = true;
            let newline = memchr::memchr(b'\n', available);
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !too_long {
                if self.line.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let used = chunk.len() + usize::from(newline.is_some());
            self.reader.consume(used);
            if newline.is_some() {
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }

    fn bad(&self, reason: String) -> InputError {
        InputError::BadRecord {
            path: self.path.clone(),
            at: Location::Line(self.line_no),
            reason,
        }
    }
}

/// The message of a JSON decoding error, with serde_json's "at line 1 column N" (always
/// line 1 of a one-line document) turned into "(column N)".
fn json_reason(error: &SchemaError) -> String {
    let text = error.to_string();
    if let SchemaError::TelemetryJson(e) = error
        && e.line() > 0
    {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            return format!("{stripped} (column {})", e.column());
        }
    }
    text
}

impl<R: Read> JsonlRecords<R> {
    /// Reads up to the next line that is not blank, leaving it in the line buffer for
    /// [`JsonlRecords::decode_line`]. `None` at the end of the input; an error for a line
    /// that is too long (a bad record) or a failed read (fatal).
    pub fn advance(&mut self) -> Option<Result<(), InputError>> {
        loop {
            let line = match self.read_line() {
                Ok(line) => line,
                Err(source) => {
                    return Some(Err(InputError::Read {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            self.line_no += 1;
            match line {
                Line::Eof => return None,
                Line::TooLong => {
                    return Some(Err(self.bad(format!(
                        "line longer than {} MiB, skipped",
                        MAX_LINE_BYTES >> 20
                    ))));
                }
                Line::Complete => {}
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                return Some(Ok(()));
            }
        }
    }

    /// Decodes the line [`JsonlRecords::advance`] stopped at, borrowing its strings.
    ///
    /// # Errors
    ///
    /// [`InputError::BadRecord`] naming the line and what is wrong with it.
    pub fn decode_line(&self) -> Result<TelemetryRef<'_>, InputError> {
        decode_telemetry_json_ref(&self.line).map_err(|e| self.bad(json_reason(&e)))
    }
}

impl<R: Read> JsonlRecords<R> {
    /// Reads up to `max` lines that are not blank ahead, for
    /// [`JsonlRecords::decode_batch`]; false at the end of the input (nothing read).
    pub fn read_batch(&mut self, max: usize) -> bool {
        self.batch.bytes.clear();
        self.batch.entries.clear();
        while !self.failed && self.batch.entries.len() < max {
            match self.advance() {
                None => break,
                Some(Ok(())) => {
                    let start = self.batch.bytes.len();
                    self.batch.bytes.extend_from_slice(&self.line);
                    let end = self.batch.bytes.len();
                    self.batch
                        .entries
                        .push(Entry::Line(start, end, self.line_no));
                }
                Some(Err(e)) => {
                    self.failed = !e.is_bad_record();
                    self.batch.entries.push(Entry::Error(Some(e)));
                }
            }
        }
        !self.batch.entries.is_empty()
    }

    /// The lines [`JsonlRecords::read_batch`] read, decoded in order into `out`, borrowing
    /// their strings (a bad line is an [`InputError::BadRecord`] in its place).
    pub fn decode_batch<'a>(&'a mut self, out: &mut Vec<Result<TelemetryRef<'a>, InputError>>) {
        let Batch { bytes, entries } = &mut self.batch;
        let (path, bytes) = (&self.path, &*bytes);
        for entry in entries.iter_mut() {
            out.push(match entry {
                Entry::Line(start, end, line_no) => decode_telemetry_json_ref(&bytes[*start..*end])
                    .map_err(|e| InputError::BadRecord {
                        path: path.clone(),
                        at: Location::Line(*line_no),
                        reason: json_reason(&e),
                    }),
                Entry::Error(e) => Err(e.take().expect("a batch is decoded once")),
            });
        }
    }
}

impl<R: Read> Iterator for JsonlRecords<R> {
    type Item = Result<Telemetry, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance()? {
            Ok(()) => Some(self.decode_line().map(TelemetryRef::into_owned)),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn read(text: &[u8]) -> Vec<Result<Telemetry, String>> {
        JsonlRecords::new(Cursor::new(text.to_vec()), PathBuf::from("t.jsonl"))
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    const GOOD: &str = r#"{"tool_id":"ION-01","tool_type":"ion_implant","recipe_id":"R","event_time":1,"measurements":{"a":1.5}}"#;

    /// A reader that fails after its text, as a disk error would.
    struct Failing(Cursor<Vec<u8>>);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn batches_give_what_lines_one_by_one_give() {
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(MAX_LINE_BYTES + 1));
        let text = format!(
            "{GOOD}\n\n{}\n{long}\r\n{GOOD}\r\nnot json\n{}\n{GOOD}",
            GOOD.replace("ION-01", "ION-02"),
            GOOD.replace("1.5", "2.5")
        );
        let one_by_one = read(text.as_bytes());
        for max in [1, 2, 3, 64] {
            let mut records =
                JsonlRecords::new(Cursor::new(text.clone().into_bytes()), "t.jsonl".into());
            let mut batched = Vec::new();
            while records.read_batch(max) {
                let mut out = Vec::new();
                records.decode_batch(&mut out);
                assert!(out.len() <= max);
                batched.extend(
                    out.into_iter()
                        .map(|r| r.map(TelemetryRef::into_owned).map_err(|e| e.to_string())),
                );
            }
            assert_eq!(batched.len(), one_by_one.len(), "max {max}");
            for (b, o) in batched.iter().zip(&one_by_one) {
                match (b, o) {
                    (Ok(b), Ok(o)) => assert_eq!(
                        (&b.tool_id, b.measurements["a"]),
                        (&o.tool_id, o.measurements["a"])
                    ),
                    (b, o) => assert_eq!(b.as_ref().err(), o.as_ref().err()),
                }
            }
        }
        // A failed read ends the batch, and nothing is read after it.
        let mut records = JsonlRecords::new(
            Failing(Cursor::new(format!("{GOOD}\n").into_bytes())),
            "t.jsonl".into(),
        );
        assert!(records.read_batch(8));
        let mut out = Vec::new();
        records.decode_batch(&mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok());
        let error = out[1].as_ref().unwrap_err();
        assert!(
            !error.is_bad_record() && error.to_string().contains("t.jsonl"),
            "{error}"
        );
        drop(out);
        assert!(!records.read_batch(8));
    }

    #[test]
    fn skips_blank_lines_and_handles_crlf_and_missing_final_newline() {
        let text = format!("\n{GOOD}\r\n   \t\r\n{GOOD}");
        let out = read(text.as_bytes());
        assert_eq!(out.len(), 2);
        for r in out {
            let t = r.unwrap();
            assert_eq!(t.tool_id, "ION-01");
            assert_eq!(t.measurements["a"], 1.5);
        }
        assert!(read(b"").is_empty());
        assert!(read(b"\n\n").is_empty());
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers_and_reading_goes_on() {
        let cvd = GOOD.replace("ion_implant", "cvd");
        let text = format!("{GOOD}\n{{not json\n\n{cvd}\n{GOOD}\n");
        let out = read(text.as_bytes());
        assert_eq!(out.len(), 4);
        assert!(out[0].is_ok());
        assert_eq!(
            out[1].as_ref().unwrap_err(),
            "t.jsonl:2: telemetry JSON: key must be a string (column 2)"
        );
        assert_eq!(
            out[2].as_ref().unwrap_err(),
            "t.jsonl:4: telemetry JSON: unknown variant `cvd`, expected `ion_implant` or `rtp` (column 37)"
        );
        assert!(out[3].is_ok());
    }

    #[test]
    fn non_finite_strings_decode() {
        let line = GOOD.replace("1.5", "\"NaN\"");
        let out = read(line.as_bytes());
        assert!(out[0].as_ref().unwrap().measurements["a"].is_nan());
    }

    #[test]
    fn overlong_line_is_skipped_without_buffering_it() {
        let mut text = Vec::new();
        text.extend_from_slice(b"[");
        text.resize(MAX_LINE_BYTES + 10, b' ');
        text.extend_from_slice(b"]\n");
        text.extend_from_slice(GOOD.as_bytes());
        let out = read(&text);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].as_ref().unwrap_err(),
            "t.jsonl:1: line longer than 16 MiB, skipped"
        );
        assert!(out[1].is_ok());
    }
}
