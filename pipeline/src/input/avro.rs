//! Avro telemetry: an object-container file read by
//! [`spcvm_schemas::read_telemetry_container`].
//!
//! A record that does not decode is yielded as [`InputError::BadRecord`] with its one-based
//! record number. When the container's framing is broken (a bad block, a record whose extent
//! cannot be found), the schemas reader stops; that is reported the same way, naming the
//! record where reading stopped. I/O errors are fatal.

use std::io::Read;
use std::path::PathBuf;

use spcvm_schemas::{AvroError, SchemaError, Telemetry, read_telemetry_container};

use super::{InputError, Location};

/// Telemetry records from an Avro object-container file.
pub struct AvroRecords {
    records: Box<dyn Iterator<Item = Result<Telemetry, SchemaError>>>,
    path: PathBuf,
    /// Records yielded so far (good or bad).
    seen: u64,
}

impl std::fmt::Debug for AvroRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroRecords")
            .field("path", &self.path)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl AvroRecords {
    /// Reads the container header from `reader`; `path` names the input in errors.
    ///
    /// # Errors
    ///
    /// [`InputError::Read`] when reading fails, [`InputError::AvroHeader`] when the header
    /// is not a telemetry container header.
    pub fn new<R: Read + 'static>(reader: R, path: PathBuf) -> Result<Self, InputError> {
        match read_telemetry_container(reader) {
            Ok(records) => Ok(AvroRecords {
                records: Box::new(records),
                path,
                seen: 0,
            }),
            Err(SchemaError::AvroContainer(AvroError::Io(source))) => {
                Err(InputError::Read { path, source })
            }
            Err(source) => Err(InputError::AvroHeader { path, source }),
        }
    }
}

impl Iterator for AvroRecords {
    type Item = Result<Telemetry, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.records.next()?;
        self.seen += 1;
        let bad = |number: u64, reason: String| InputError::BadRecord {
            path: self.path.clone(),
            at: Location::Record(number),
            reason,
        };
        Some(item.map_err(|e| match e {
            SchemaError::AvroContainer(AvroError::Io(source))
            | SchemaError::AvroContainerRecord {
                error: AvroError::Io(source),
                ..
            } => InputError::Read {
                path: self.path.clone(),
                source,
            },
            SchemaError::AvroContainerRecord { index, error } => bad(index + 1, error.to_string()),
            other => bad(
                self.seen,
                format!("{other}; the rest of the file cannot be read"),
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Cursor;

    use spcvm_schemas::{ToolType, write_telemetry_container};

    use super::*;

    fn rec(i: i64) -> Telemetry {
        Telemetry {
            tool_id: "RTP-1".into(),
            tool_type: ToolType::Rtp,
            recipe_id: "SPIKE".into(),
            lot_id: None,
            wafer_id: Some(format!("W{i}")),
            event_time: i,
            measurements: BTreeMap::from([("emissivity".into(), 0.7), ("bad".into(), f64::NAN)]),
        }
    }

    #[test]
    fn reads_records_back() {
        let recs: Vec<Telemetry> = (0..3).map(rec).collect();
        let mut bytes = Vec::new();
        write_telemetry_container(&mut bytes, &recs).unwrap();
        let out: Vec<Telemetry> = AvroRecords::new(Cursor::new(bytes), "t.avro".into())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].wafer_id.as_deref(), Some("W2"));
        assert_eq!(out[1].measurements["emissivity"], 0.7);
        assert!(out[0].measurements["bad"].is_nan());
    }

    #[test]
    fn not_a_container_is_a_fatal_error_naming_the_file() {
        let err = AvroRecords::new(Cursor::new(b"{\"tool_id\": 1}\n".to_vec()), "x.avro".into())
            .unwrap_err();
        assert!(matches!(err, InputError::AvroHeader { .. }));
        assert!(
            err.to_string()
                .starts_with("`x.avro` is not a readable Avro container file: "),
            "{err}"
        );
    }

    #[test]
    fn truncated_file_reports_where_reading_stopped() {
        let recs: Vec<Telemetry> = (0..3).map(rec).collect();
        let mut bytes = Vec::new();
        write_telemetry_container(&mut bytes, &recs).unwrap();
        bytes.truncate(bytes.len() - 20);
        let out: Vec<Result<Telemetry, InputError>> =
            AvroRecords::new(Cursor::new(bytes), "t.avro".into())
                .unwrap()
                .collect();
        let err = out.last().unwrap().as_ref().unwrap_err();
        assert!(err.is_bad_record(), "{err}");
        assert!(err.to_string().starts_with("t.avro: record "), "{err}");
    }
}
