//! The state changelog: how stage state is written to, and read back from, the compacted
//! `spcvm.state.<group>` topic (and the file runtime's checkpoint).
//!
//! One record per (stage, input topic, key) holds that key's state (the SPC stage's key is a
//! (tool, recipe) group, its record every chart of the group); one record per input topic
//! partition holds the partition's event-time watermark and input offset. Keys are small
//! JSON arrays, readable with any console consumer: `["spc","tool.telemetry","ION-01","B11"]`
//! for a stage's key, `["tool.telemetry"]` for the partition record. Builds before stages
//! wrote `["tool.telemetry","ION-01","B11"]` for the SPC stage's groups: read as such
//! ([`ChangelogKey::decode`]). Values are MessagePack behind
//! a one-byte format version. Version 2 writes each struct as an array of its fields in
//! declaration order: less than half the bytes of version 1, which wrote maps with field
//! names (1,632 against 741 bytes for a group of four charts), and a checkpoint writes a
//! group for nearly every record when tools are many. Version 1 values are still read. A
//! field added later goes last, with a serde default, so that older values still read.
//! A changelog partition mirrors the input partition of the same number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// First byte of every value: the format version written.
pub const FORMAT_VERSION: u8 = 2;

/// The version that wrote structs as maps with field names (read, no longer written).
const FORMAT_VERSION_NAMED: u8 = 1;

/// What a changelog key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangelogKey {
    /// The state of one key of one stage, for the partition of `topic`.
    Stage {
        /// The stage's name.
        stage: String,
        /// Input topic.
        topic: String,
        /// The key's parts within the stage (the SPC stage: tool and recipe).
        key: Vec<String>,
    },
    /// The event-time bookkeeping of one partition of `topic`.
    Partition {
        /// Input topic.
        topic: String,
    },
}

/// The stage whose state the keys of builds before stages had (`[topic, tool, recipe]`).
pub const LEGACY_STAGE: &str = "spc";

impl ChangelogKey {
    /// The key's bytes (a JSON array).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ChangelogKey::Stage { stage, topic, key } => {
                let key: Vec<&str> = key.iter().map(String::as_str).collect();
                Self::encode_stage(stage, topic, &key)
            }
            ChangelogKey::Partition { topic } => {
                serde_json::to_vec(&[topic]).expect("a list of strings always serializes")
            }
        }
    }

    /// The bytes of the [`ChangelogKey::Stage`] key of (stage, topic, key), from borrowed
    /// parts.
    pub fn encode_stage(stage: &str, topic: &str, key: &[&str]) -> Vec<u8> {
        let mut parts = Vec::with_capacity(2 + key.len());
        parts.extend([stage, topic]);
        parts.extend_from_slice(key);
        serde_json::to_vec(&parts).expect("a list of strings always serializes")
    }

    /// Parses a key of the changelog partition that `topic`'s partition shares with the
    /// other input topics: `None` for a key of another topic. A key written before stages
    /// (`[topic, tool, recipe]`) reads as the [`LEGACY_STAGE`]'s: stage names differ from
    /// input topic names (the job refuses a stage named like an input), so the first part
    /// tells the two apart.
    ///
    /// # Errors
    ///
    /// [`ChangelogError::Key`] if the bytes are not a JSON array of strings of a shape spcvm
    /// writes.
    pub fn decode(bytes: &[u8], topic: &str) -> Result<Option<ChangelogKey>, ChangelogError> {
        let mut parts: Vec<String> = serde_json::from_slice(bytes)
            .map_err(|e| ChangelogError::Key(format!("not a JSON array of strings: {e}")))?;
        match parts.len() {
            0 => Err(ChangelogError::Key(
                "expected [topic] or [stage, topic, key...]".into(),
            )),
            1 => Ok((parts[0] == topic).then(|| ChangelogKey::Partition {
                topic: parts.remove(0),
            })),
            3 if parts[0] == topic => {
                let key = parts.split_off(1);
                Ok(Some(ChangelogKey::Stage {
                    stage: LEGACY_STAGE.to_string(),
                    topic: parts.remove(0),
                    key,
                }))
            }
            2 => Err(ChangelogError::Key(
                "a stage key needs at least one part after the stage and the topic".into(),
            )),
            _ if parts[1] == topic => {
                let key = parts.split_off(2);
                let topic = parts.remove(1);
                Ok(Some(ChangelogKey::Stage {
                    stage: parts.remove(0),
                    topic,
                    key,
                }))
            }
            _ => Ok(None),
        }
    }
}

/// A partition's event-time bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
    /// Co-partitioned inputs: the offsets the state reaches in the other input topics of
    /// the partition group (as [`next_offset`](Self::next_offset), which is the first
    /// topic's), by topic.
    #[serde(default)]
    pub offsets: BTreeMap<String, i64>,
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
        let key = ChangelogKey::Stage {
            stage: "spc".into(),
            topic: "tool.telemetry".into(),
            key: vec!["ION-01".into(), "B11\"x".into()],
        };
        let bytes = key.encode();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"["spc","tool.telemetry","ION-01","B11\"x"]"#
        );
        assert_eq!(
            ChangelogKey::decode(&bytes, "tool.telemetry").unwrap(),
            Some(key.clone())
        );
        // Another input topic's keys share the changelog partition: not this topic's.
        assert_eq!(ChangelogKey::decode(&bytes, "other").unwrap(), None);
        let tool_key = ChangelogKey::Stage {
            stage: "triage".into(),
            topic: "t".into(),
            key: vec!["ION-01".into()],
        };
        assert_eq!(
            ChangelogKey::decode(&tool_key.encode(), "t").unwrap(),
            Some(tool_key)
        );
        let part = ChangelogKey::Partition { topic: "t".into() };
        assert_eq!(
            ChangelogKey::decode(&part.encode(), "t").unwrap(),
            Some(part)
        );
        assert_eq!(ChangelogKey::decode(b"[\"u\"]", "t").unwrap(), None);
        for bad in [&b"[]"[..], b"[\"a\",\"t\"]", b"\xff", b"[1,2]"] {
            assert!(ChangelogKey::decode(bad, "t").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_written_before_stages_reads_as_the_spc_stages() {
        let legacy = br#"["tool.telemetry","ION-01","B11"]"#;
        assert_eq!(
            ChangelogKey::decode(legacy, "tool.telemetry").unwrap(),
            Some(ChangelogKey::Stage {
                stage: LEGACY_STAGE.into(),
                topic: "tool.telemetry".into(),
                key: vec!["ION-01".into(), "B11".into()],
            })
        );
        assert_eq!(ChangelogKey::decode(legacy, "other").unwrap(), None);
    }

    #[test]
    fn a_borrowed_snapshot_encodes_as_the_owned_one() {
        use spcvm_operators::{
            GroupSnapshot, GroupSnapshotRef, KeyedState, MonitorConfig, SpcMonitor, SpcState,
        };
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
        assert_eq!(
            decode_value::<GroupSnapshot<SpcState>>(&buffer).unwrap(),
            owned
        );

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
        assert_eq!(
            decode_value::<GroupSnapshot<SpcState>>(&named).unwrap(),
            owned
        );
    }

    #[test]
    fn values_carry_a_version() {
        let meta = PartitionMeta {
            newest_event_ms: Some(42),
            swept_to_ms: None,
            next_offset: Some(7),
            offsets: [("context".to_string(), 3)].into(),
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
                offsets: BTreeMap::new(),
            }
        );
        // And one of the build before co-partitioned inputs (no `offsets`).
        #[derive(Serialize)]
        struct BeforeOffsets {
            newest_event_ms: Option<i64>,
            swept_to_ms: Option<i64>,
            next_offset: Option<i64>,
        }
        let bytes = encode_value(&BeforeOffsets {
            newest_event_ms: Some(42),
            swept_to_ms: None,
            next_offset: Some(9),
        });
        let meta = decode_value::<PartitionMeta>(&bytes).unwrap();
        assert_eq!((meta.next_offset, meta.offsets.len()), (Some(9), 0));
    }
}
