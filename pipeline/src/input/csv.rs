//! CSV telemetry: a header row, then one record per row.
//!
//! | column | required | value |
//! |---|---|---|
//! | `tool_id` | yes | non-empty text |
//! | `tool_type` | yes | `ion_implant` or `rtp` |
//! | `recipe_id` | yes | non-empty text |
//! | `event_time` | yes | integer epoch milliseconds, or RFC 3339 text such as `2026-03-01T08:00:00Z` |
//! | `lot_id`, `wafer_id` | no | text; empty = unknown |
//! | any other | no | a parameter: a number, `NaN`, `inf`, `-inf` (any case); empty = absent |
//!
//! Header names are trimmed of surrounding spaces; a missing required column, a duplicate
//! or an empty name is a fatal error. A row with the wrong number of fields or a value that
//! does not parse is yielded as [`InputError::BadRecord`] with the row's line number, and
//! reading goes on.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::PathBuf;

use spcvm_schemas::{Telemetry, ToolType};

use super::{InputError, Location};

/// Column positions resolved from the header.
#[derive(Debug, Clone)]
struct Columns {
    tool_id: usize,
    tool_type: usize,
    recipe_id: usize,
    event_time: usize,
    lot_id: Option<usize>,
    wafer_id: Option<usize>,
    /// Every other column: (position, parameter name).
    parameters: Vec<(usize, String)>,
}

/// Telemetry records from a CSV stream.
pub struct CsvRecords<R> {
    reader: csv::Reader<R>,
    path: PathBuf,
    columns: Columns,
    row: csv::StringRecord,
}

impl<R> std::fmt::Debug for CsvRecords<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRecords")
            .field("path", &self.path)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CsvRecords<R> {
    /// Reads the header row of `reader`; `path` names the input in errors.
    ///
    /// # Errors
    ///
    /// [`InputError::MissingColumn`] or [`InputError::BadHeader`] when the header is
    /// unusable, [`InputError::Read`] when reading fails.
    pub fn new(reader: R, path: PathBuf) -> Result<Self, InputError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::Headers)
            .buffer_capacity(256 * 1024)
            .from_reader(reader);
        let header = match reader.headers() {
            Ok(h) => h.clone(),
            Err(e) => return Err(fatal(e, &path)),
        };
        let columns = resolve(&header, &path)?;
        Ok(CsvRecords {
            reader,
            path,
            columns,
            row: csv::StringRecord::new(),
        })
    }

    fn bad(&self, line: u64, reason: String) -> InputError {
        InputError::BadRecord {
            path: self.path.clone(),
            at: Location::Line(line),
            reason,
        }
    }

    /// Turns the current row into a record.
    fn decode(&self) -> Result<Telemetry, String> {
        let row = &self.row;
        let c = &self.columns;
        let cell = |i: usize| row.get(i).unwrap_or("");
        let required = |i: usize, name: &str| {
            let v = cell(i);
            if v.is_empty() {
                Err(format!("missing value in required column `{name}`"))
            } else {
                Ok(v.to_string())
            }
        };
        let optional = |i: Option<usize>| i.map(cell).filter(|v| !v.is_empty()).map(str::to_string);
        let tool_id = required(c.tool_id, "tool_id")?;
        let tool_type: ToolType = required(c.tool_type, "tool_type")?
            .parse()
            .map_err(|e| format!("column `tool_type`: {e}"))?;
        let recipe_id = required(c.recipe_id, "recipe_id")?;
        let event_time = parse_event_time(&required(c.event_time, "event_time")?)?;
        let mut measurements = BTreeMap::new();
        for (i, name) in &c.parameters {
            let v = cell(*i).trim();
            if v.is_empty() {
                continue;
            }
            let x: f64 = v
                .parse()
                .map_err(|_| format!("column `{name}`: `{v}` is not a number"))?;
            measurements.insert(name.clone(), x);
        }
        Ok(Telemetry {
            tool_id,
            tool_type,
            recipe_id,
            lot_id: optional(c.lot_id),
            wafer_id: optional(c.wafer_id),
            event_time,
            measurements,
        })
    }
}

/// Parses `event_time`: integer epoch milliseconds, or RFC 3339 text.
fn parse_event_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|dt| dt.timestamp_millis())
        .map_err(|_| {
            format!(
                "column `event_time`: `{t}` is neither integer epoch milliseconds nor an RFC 3339 \
                 timestamp like 2026-03-01T08:00:00Z"
            )
        })
}

/// Maps a header to column positions.
fn resolve(header: &csv::StringRecord, path: &std::path::Path) -> Result<Columns, InputError> {
    let bad = |reason: String| InputError::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let mut seen = HashSet::new();
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(bad(format!("column {} has no name", i + 1)));
        }
        if !seen.insert(name) {
            return Err(bad(format!("column `{name}` appears more than once")));
        }
    }
    let find = |name: &str| header.iter().position(|h| h == name);
    let need = |name: &'static str| {
        find(name).ok_or_else(|| InputError::MissingColumn {
            path: path.to_path_buf(),
            column: name,
            found: header.iter().map(str::to_string).collect(),
        })
    };
    const IDENTITY: [&str; 6] = [
        "tool_id",
        "tool_type",
        "recipe_id",
        "event_time",
        "lot_id",
        "wafer_id",
    ];
    Ok(Columns {
        tool_id: need("tool_id")?,
        tool_type: need("tool_type")?,
        recipe_id: need("recipe_id")?,
        event_time: need("event_time")?,
        lot_id: find("lot_id"),
        wafer_id: find("wafer_id"),
        parameters: header
            .iter()
            .enumerate()
            .filter(|(_, h)| !IDENTITY.contains(h))
            .map(|(i, h)| (i, h.to_string()))
            .collect(),
    })
}

/// A csv error that ends the input: I/O, or a header that is not UTF-8.
fn fatal(error: csv::Error, path: &std::path::Path) -> InputError {
    match error.into_kind() {
        csv::ErrorKind::Io(source) => InputError::Read {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::Utf8 { err, .. } => InputError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("field {} is not valid UTF-8", err.field() + 1),
        },
        other => InputError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("{other:?}"),
        },
    }
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = Result<Telemetry, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_record(&mut self.row) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.row.position().map_or(0, |p| p.line());
                Some(self.decode().map_err(|reason| self.bad(line, reason)))
            }
            Err(e) => {
                let line = e.position().map(|p| p.line());
                Some(Err(match (e.into_kind(), line) {
                    (csv::ErrorKind::Io(source), _) => InputError::Read {
                        path: self.path.clone(),
                        source,
                    },
                    (
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        },
                        Some(line),
                    ) => self.bad(
                        line,
                        format!("{len} field(s), but the header has {expected_len}"),
                    ),
                    (csv::ErrorKind::Utf8 { err, .. }, Some(line)) => self.bad(
                        line,
                        format!("field {} is not valid UTF-8", err.field() + 1),
                    ),
                    (other, line) => self.bad(line.unwrap_or(0), format!("{other:?}")),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn open(text: &str) -> Result<CsvRecords<Cursor<Vec<u8>>>, InputError> {
        CsvRecords::new(
            Cursor::new(text.as_bytes().to_vec()),
            PathBuf::from("t.csv"),
        )
    }

    fn read(text: &str) -> Vec<Result<Telemetry, String>> {
        open(text)
            .unwrap()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn reads_identity_columns_parameters_and_both_time_forms() {
        let text = "tool_id, tool_type ,recipe_id,lot_id,wafer_id,event_time,beam,dose\n\
                    ION-01,ion_implant,B11,L1,W01,1772431200000,1.01,95.2\n\
                    ION-02,ion_implant,B11,,,2026-03-02T06:01:00Z,,NaN\n\
                    ION-02,ion_implant,B11,L2,,2026-03-02T07:01:00.250+01:00, -inf ,INF\n";
        let out = read(text);
        assert_eq!(out.len(), 3);
        let a = out[0].as_ref().unwrap();
        assert_eq!(a.tool_id, "ION-01");
        assert_eq!(a.tool_type, ToolType::IonImplant);
        assert_eq!(a.recipe_id, "B11");
        assert_eq!(a.lot_id.as_deref(), Some("L1"));
        assert_eq!(a.wafer_id.as_deref(), Some("W01"));
        assert_eq!(a.event_time, 1_772_431_200_000);
        assert_eq!(
            a.measurements,
            BTreeMap::from([("beam".into(), 1.01), ("dose".into(), 95.2)])
        );
        let b = out[1].as_ref().unwrap();
        assert_eq!(b.lot_id, None);
        assert_eq!(b.wafer_id, None);
        assert_eq!(b.event_time, 1_772_431_260_000);
        assert_eq!(b.measurements.len(), 1);
        assert!(b.measurements["dose"].is_nan());
        let c = out[2].as_ref().unwrap();
        assert_eq!(c.event_time, 1_772_431_260_250);
        assert_eq!(c.measurements["beam"], f64::NEG_INFINITY);
        assert_eq!(c.measurements["dose"], f64::INFINITY);
    }

    #[test]
    fn optional_columns_may_be_absent() {
        let out = read("event_time,recipe_id,tool_type,tool_id,p\n5,R,rtp,T,2\n");
        let t = out[0].as_ref().unwrap();
        assert_eq!(
            (t.tool_id.as_str(), t.event_time, t.lot_id.as_ref()),
            ("T", 5, None)
        );
        assert_eq!(t.measurements["p"], 2.0);
    }

    #[test]
    fn bad_rows_are_reported_with_line_numbers_and_reading_goes_on() {
        let text = "tool_id,tool_type,recipe_id,event_time,p\n\
                    T,rtp,R,1,1.0\n\
                    T,cvd,R,2,1.0\n\
                    T,rtp,R,yesterday,1.0\n\
                    T,rtp,R,4,1.0.0\n\
                    ,rtp,R,5,1\n\
                    T,rtp,R,6\n\
                    T,rtp,R,7,7\n";
        let out = read(text);
        let errors: Vec<&str> = out
            .iter()
            .filter_map(|r| r.as_ref().err().map(String::as_str))
            .collect();
        assert_eq!(
            errors,
            vec![
                "t.csv:3: column `tool_type`: unknown tool type `cvd` (expected one of: ion_implant, rtp)",
                "t.csv:4: column `event_time`: `yesterday` is neither integer epoch milliseconds nor an RFC 3339 timestamp like 2026-03-01T08:00:00Z",
                "t.csv:5: column `p`: `1.0.0` is not a number",
                "t.csv:6: missing value in required column `tool_id`",
                "t.csv:7: 4 field(s), but the header has 5",
            ]
        );
        let times: Vec<i64> = out
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|t| t.event_time))
            .collect();
        assert_eq!(times, vec![1, 7]);
    }

    #[test]
    fn a_utf8_byte_order_mark_is_ignored() {
        let out = read("\u{feff}tool_id,tool_type,recipe_id,event_time\nT,rtp,R,3\n");
        assert_eq!(out[0].as_ref().unwrap().tool_id, "T");
    }

    #[test]
    fn header_problems_are_fatal_and_named() {
        let err = open("tool_id,tool_type,event_time,p\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:1: CSV header has no `recipe_id` column (required: tool_id, tool_type, \
             recipe_id, event_time; found: tool_id, tool_type, event_time, p)"
        );
        let err = open("tool_id,tool_type,recipe_id,event_time,p,p\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:1: invalid CSV header: column `p` appears more than once"
        );
        let err = open("tool_id,tool_type,recipe_id,event_time,\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:1: invalid CSV header: column 5 has no name"
        );
        let err = open("").unwrap_err();
        assert!(
            matches!(
                err,
                InputError::MissingColumn {
                    column: "tool_id",
                    ..
                }
            ),
            "{err}"
        );
    }
}
