//! The state changelog: how operator state is written to, and read back from, the compacted
//! `spcvm.state.<group>` topic (and the file runtime's checkpoint).
//!
//! One record per (input topic, tool, recipe) group holds every chart of that group; one
//! record per input topic partition holds the partition's event-time watermark. Keys are
//! small JSON arrays, readable with any console consumer: `["tool.telemetry","ION-01","B11"]`
//! for a group, `["tool.telemetry"]` for the partition record. Values are MessagePack behind
//! a one-byte format version. Version 2 writes each struct as an array of its fields in
//! declaration order: less than half the bytes of version 1, which wrote maps with field
//! names (1,632 against 741 bytes for a group of four charts), and a checkpoint writes a
//! group for nearly every record when tools are many. Version 1 values are still read. A
//! field added later goes last, with a serde default, so that older values still read.
//! A changelog partition mirrors the input partition of the same number.

use serde::{Deserialize, Serialize};
use spcvm_operators::SpcState;

/// First byte of every value: the format version written.
pub const FORMAT_VERSION: u8 = 2;

/// The version that wrote structs as maps with field names (read, no longer written).
const FORMAT_VERSION_NAMED: u8 = 1;

/// What a changelog key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangelogKey {
    /// The charts of one (tool, recipe) read from `topic`.
    Group {
        /// Input topic.
        topic: String,
        /// Tool id.
        tool_id: String,
        /// Recipe id.
        recipe_id: String,
    },
    /// The event-time bookkeeping of one partition of `topic`.
    Partition {
        /// Input topic.
        topic: String,
    },
}

impl ChangelogKey {
    /// The key's bytes (a JSON array).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ChangelogKey::Group {
                topic,
                tool_id,
                recipe_id,
            } => Self::encode_group(topic, tool_id, recipe_id),
            ChangelogKey::Partition { topic } => {
                serde_json::to_vec(&[topic]).expect("a list of strings always serializes")
            }
        }
    }

    /// The bytes of the [`ChangelogKey::Group`] key of (topic, tool, recipe), from borrowed
    /// parts.
    pub fn encode_group(topic: &str, tool_id: &str, recipe_id: &str) -> Vec<u8> {
        serde_json::to_vec(&[topic, tool_id, recipe_id])
            .expect("a list of strings always serializes")
    }

    /// Parses a key written by [`ChangelogKey::encode`].
    ///
    /// # Errors
    ///
    /// [`ChangelogError::Key`] if the bytes are not a JSON array of one or three strings.
    pub fn decode(bytes: &[u8]) -> Result<ChangelogKey, ChangelogError> {
        let parts: Vec<String> = serde_json::from_slice(bytes)
            .map_err(|e| ChangelogError::Key(format!("not a JSON array of strings: {e}")))?;
        let mut it = parts.into_iter();
        match (it.next(), it.next(), it.next(), it.next()) {
            (Some(topic), None, None, None) => Ok(ChangelogKey::Partition { topic }),
            (Some(topic), Some(tool_id), Some(recipe_id), None) => Ok(ChangelogKey::Group {
                topic,
                tool_id,
                recipe_id,
            }),
            _ => Err(ChangelogError::Key(
                "expected [topic] or [topic, tool, recipe]".into(),
            )),
        }
    }

    /// The input topic the key belongs to.
    pub fn topic(&self) -> &str {
        match self {
            ChangelogKey::Group { topic, .. } | ChangelogKey::Partition { topic } => topic,
        }
    }
}

/// The charts of one (tool, recipe) group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot {
    /// (parameter, state) in the group's order.
    pub charts: Vec<(String, SpcState)>,
}

/// A [`GroupSnapshot`] that borrows the states it encodes, so that a checkpoint writes them
/// straight from the store: [`encode_value`] gives the same bytes for both.
#[derive(Debug, Serialize)]
pub struct GroupSnapshotRef<'a> {
    /// (parameter, state) in the group's order.
    pub charts: Vec<(&'a str, &'a SpcState)>,
}

/// A partition's event-time bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Newest event time seen (ms), if any record was.
    pub newest_event_ms: Option<i64>,
    /// Watermark of the last sweep that closed expired dedup windows (ms).
    pub swept_to_ms: Option<i64>,
    /// The input offset this state reaches: every record before it is charted in it, and
    /// (at_least_once) every output of those records was acknowledged before it was
    /// written. Absent in values written before 2026-11-28.
    #[serde(default)]
    pub next_offset: Option<i64>,
}

/// A changelog record that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// The key is not one spcvm writes.
    #[error("changelog key: {0}")]
    Key(String),
    /// The value's version byte is unknown.
    #[error(
        "changelog value: format version {found}, this build reads {FORMAT_VERSION_NAMED} and {FORMAT_VERSION}"
    )]
    Version {
        /// The version found.
        found: u8,
    },
    /// The value does not decode.
    #[error("changelog value: {0}")]
    Value(String),
}

/// Encodes a value: the version byte, then MessagePack with structs as arrays of fields.
pub fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value_into(value, &mut out);
    out
}

/// [`encode_value`] into `out`, replacing its contents and keeping its capacity: a caller
/// encoding many values reuses one buffer instead of growing a new one for each.
pub fn encode_value_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    out.clear();
    out.push(FORMAT_VERSION);
    rmp_serde::encode::write(out, value)
        .expect("in-memory MessagePack encoding of plain data cannot fail");
}

/// Decodes a value written by [`encode_value`], or by a build that wrote format version 1.
///
/// # Errors
///
/// [`ChangelogError`] for an empty value, an unknown version or bad MessagePack.
pub fn decode_value<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ChangelogError> {
    match bytes.split_first() {
        None => Err(ChangelogError::Value("empty".into())),
        // rmp_serde reads a struct from an array or from a map with field names.
        Some((&(FORMAT_VERSION | FORMAT_VERSION_NAMED), rest)) => {
            rmp_serde::from_slice(rest).map_err(|e| ChangelogError::Value(e.to_string()))
        }
        Some((&found, _)) => Err(ChangelogError::Version { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_read_as_json() {
        let group = ChangelogKey::Group {
            topic: "tool.telemetry".into(),
            tool_id: "ION-01".into(),
            recipe_id: "B11\"x".into(),
        };
        let bytes = group.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"["tool.telemetry","ION-01","B11\"x"]"#
        );
        assert_eq!(ChangelogKey::decode(&bytes).unwrap(), group);
        let part = ChangelogKey::Partition { topic: "t".into() };
        assert_eq!(ChangelogKey::decode(&part.encode()).unwrap(), part);
        assert!(ChangelogKey::decode(b"[]").is_err());
        assert!(ChangelogKey::decode(b"[\"a\",\"b\"]").is_err());
        assert!(ChangelogKey::decode(b"\xff").is_err());
    }

    #[test]
    fn a_borrowed_snapshot_encodes_as_the_owned_one() {
        use spcvm_operators::{KeyedState, MonitorConfig, SpcMonitor};
        use spcvm_schemas::{Telemetry, ToolType};
        let monitor = SpcMonitor::new(&MonitorConfig::default()).unwrap();
        let mut store = KeyedState::default();
        let mut alerts = Vec::new();
        for i in 0..260i64 {
            // In control through Phase I, then shifted: rules fire and dedup windows open.
            let shift = if i >= 230 { 0.05 } else { 0.0 };
            let noise = ((i * 7_919) % 13 - 6) as f64 * 0.001;
            let record = Telemetry {
                tool_id: "ION-01".into(),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11".into(),
                lot_id: Some(format!("LOT-{}", i / 25)),
                wafer_id: Some(format!("W{i}")),
                event_time: 1_772_440_200_000 + i * 60_000,
                measurements: [
                    ("beam_current_mA".to_string(), 1.0 + shift + noise),
                    ("dose_uniformity_pct".to_string(), 95.5 + noise * 100.0),
                ]
                .into(),
            };
            monitor.process_record(&mut store, &record, &mut alerts);
        }
        assert!(!alerts.is_empty());
        let entries: Vec<(&str, &SpcState)> =
            store.group_entries("ION-01", "B11").unwrap().collect();
        assert!(entries.len() >= 2, "{} charts", entries.len());
        let owned = GroupSnapshot {
            charts: entries
                .iter()
                .map(|&(p, s)| (p.to_string(), s.clone()))
                .collect(),
        };
        // Whatever the buffer held before is replaced.
        let mut buffer = vec![7u8; 3];
        encode_value_into(&GroupSnapshotRef { charts: entries }, &mut buffer);
        assert_eq!(buffer, encode_value(&owned));
        assert_eq!(decode_value::<GroupSnapshot>(&buffer).unwrap(), owned);

        // Version 1 (maps with field names), as earlier builds wrote it, still reads.
        let mut named = vec![FORMAT_VERSION_NAMED];
        rmp_serde::encode::write_named(&mut named, &owned).unwrap();
        // Version 2 takes well under two thirds of the bytes.
        assert!(
            buffer.len() * 10 < named.len() * 6,
            "{} against {} bytes",
            buffer.len(),
            named.len()
        );
        assert_eq!(decode_value::<GroupSnapshot>(&named).unwrap(), owned);
    }

    #[test]
    fn values_carry_a_version() {
        let meta = PartitionMeta {
            newest_event_ms: Some(42),
            swept_to_ms: None,
            next_offset: Some(7),
        };
        let bytes = encode_value(&meta);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode_value::<PartitionMeta>(&bytes).unwrap(), meta);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode_value::<PartitionMeta>(&future),
            Err(ChangelogError::Version { found: 9 })
        ));
        assert!(decode_value::<PartitionMeta>(&[]).is_err());
        assert!(decode_value::<PartitionMeta>(&[FORMAT_VERSION, 0xc1]).is_err());
    }

    #[test]
    fn a_partition_record_written_before_next_offset_still_reads() {
        // Version 2 of a build without `next_offset`: a MessagePack array of two fields.
        #[derive(Serialize)]
        struct Before {
            newest_event_ms: Option<i64>,
            swept_to_ms: Option<i64>,
        }
        let bytes = encode_value(&Before {
            newest_event_ms: Some(42),
            swept_to_ms: Some(40),
        });
        assert_eq!(
            decode_value::<PartitionMeta>(&bytes).unwrap(),
            PartitionMeta {
                newest_event_ms: Some(42),
                swept_to_ms: Some(40),
                next_offset: None,
            }
        );
    }
}
