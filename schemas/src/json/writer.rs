//! [`TelemetryJsonWriter`]: [`write_telemetry_json`](super::write_telemetry_json) for a
//! source whose records repeat their ids and parameter names (one tool's samples): the
//! escaped bytes of the ids up to the lot and of the measurement names are kept from the
//! last record and copied while they stay the same, so a record costs its wafer id, its
//! event time and its values.

use super::{write_measurement, write_str};
use crate::telemetry::{Telemetry, ToolType};

/// Writes telemetry JSON exactly as [`write_telemetry_json`](super::write_telemetry_json)
/// does, remembering the encoding of the last record's tool, type, recipe and lot ids and
/// of its measurement names. Keep one per source of similar records (per tool); any
/// record is written right, a record unlike the last one just costs a re-encoding.
#[derive(Debug, Clone, Default)]
pub struct TelemetryJsonWriter {
    /// The ids `head` encodes (`None` before the first record).
    ids: Option<Ids>,
    /// `{"tool_id":...,"lot_id":...,"wafer_id":`.
    head: Vec<u8>,
    /// The measurement names `names` encodes, in order.
    names: Vec<String>,
    /// Each name's bytes, `"name":` (with the comma before all but the first).
    encoded_names: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Ids {
    tool_id: String,
    tool_type: ToolType,
    recipe_id: String,
    lot_id: Option<String>,
}

impl Ids {
    fn matches(&self, t: &Telemetry) -> bool {
        self.tool_type == t.tool_type
            && self.tool_id == t.tool_id
            && self.recipe_id == t.recipe_id
            && self.lot_id == t.lot_id
    }
}

impl TelemetryJsonWriter {
    /// A writer that remembers nothing yet.
    pub fn new() -> TelemetryJsonWriter {
        TelemetryJsonWriter::default()
    }

    /// Appends the JSON document of `telemetry` to `out` (the bytes of
    /// [`encode_telemetry_json`](super::encode_telemetry_json)).
    pub fn write(&mut self, telemetry: &Telemetry, out: &mut Vec<u8>) {
        if !self.ids.as_ref().is_some_and(|ids| ids.matches(telemetry)) {
            self.encode_head(telemetry);
        }
        out.extend_from_slice(&self.head);
        match telemetry.wafer_id.as_deref() {
            Some(wafer) => write_str(out, wafer),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"event_time\":");
        out.extend_from_slice(itoa::Buffer::new().format(telemetry.event_time).as_bytes());
        out.extend_from_slice(b",\"measurements\":{");
        if self.names.len() != telemetry.measurements.len()
            || !self
                .names
                .iter()
                .zip(telemetry.measurements.keys())
                .all(|(a, b)| a == b)
        {
            self.encode_names(telemetry);
        }
        for (name, &value) in self
            .encoded_names
            .iter()
            .zip(telemetry.measurements.values())
        {
            out.extend_from_slice(name);
            write_measurement(out, value);
        }
        out.extend_from_slice(b"}}");
    }

    fn encode_head(&mut self, t: &Telemetry) {
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(b"{\"tool_id\":");
        write_str(head, &t.tool_id);
        head.extend_from_slice(b",\"tool_type\":");
        write_str(head, t.tool_type.as_str());
        head.extend_from_slice(b",\"recipe_id\":");
        write_str(head, &t.recipe_id);
        head.extend_from_slice(b",\"lot_id\":");
        match t.lot_id.as_deref() {
            Some(lot) => write_str(head, lot),
            None => head.extend_from_slice(b"null"),
        }
        head.extend_from_slice(b",\"wafer_id\":");
        self.ids = Some(Ids {
            tool_id: t.tool_id.clone(),
            tool_type: t.tool_type,
            recipe_id: t.recipe_id.clone(),
            lot_id: t.lot_id.clone(),
        });
    }

    fn encode_names(&mut self, t: &Telemetry) {
        self.names = t.measurements.keys().cloned().collect();
        self.encoded_names = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut bytes = Vec::with_capacity(name.len() + 4);
                if i > 0 {
                    bytes.push(b',');
                }
                write_str(&mut bytes, name);
                bytes.push(b':');
                bytes
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::json::encode_telemetry_json;

    /// Records drawn from a few tools, lots and name sets, so that consecutive records
    /// share some parts and differ in others.
    fn record() -> impl Strategy<Value = Telemetry> {
        let names = prop_oneof![
            Just(vec!["a", "b\"q"]),
            Just(vec!["a", "b\"q", "c"]),
            Just(vec!["x"]),
            Just(vec![]),
        ];
        (
            prop_oneof![Just("ION-01"), Just("RTP\\02"), Just("")],
            any::<bool>(),
            prop_oneof![Just("R1"), Just("R\n2")],
            proptest::option::of(prop_oneof![Just("LOT-1"), Just("LOT-2")]),
            proptest::option::of(prop_oneof![Just("W01"), Just("W\u{1}02")]),
            any::<i64>(),
            names,
            proptest::collection::vec(any::<f64>(), 3),
        )
            .prop_map(
                |(tool, rtp, recipe, lot, wafer, time, names, values)| Telemetry {
                    tool_id: tool.into(),
                    tool_type: if rtp {
                        ToolType::Rtp
                    } else {
                        ToolType::IonImplant
                    },
                    recipe_id: recipe.into(),
                    lot_id: lot.map(Into::into),
                    wafer_id: wafer.map(Into::into),
                    event_time: time,
                    measurements: names
                        .iter()
                        .zip(values)
                        .map(|(n, v)| (n.to_string(), v))
                        .collect::<BTreeMap<_, _>>(),
                },
            )
    }

    proptest! {
        /// Whatever the sequence, every record is written as `encode_telemetry_json`
        /// writes it alone.
        #[test]
        fn a_sequence_is_written_as_each_record_alone(
            records in proptest::collection::vec(record(), 1..40)
        ) {
            let mut writer = TelemetryJsonWriter::new();
            for r in &records {
                let mut out = b"[".to_vec();
                writer.write(r, &mut out);
                prop_assert_eq!(&out[1..], &encode_telemetry_json(r)[..]);
            }
        }
    }

    #[test]
    fn one_tools_samples_are_serde_jsons_bytes() {
        let mut writer = TelemetryJsonWriter::new();
        let mut t = Telemetry {
            tool_id: "ION-01".into(),
            tool_type: ToolType::IonImplant,
            recipe_id: "B11_30KEV".into(),
            lot_id: Some("LOT-ION01-0001".into()),
            wafer_id: Some("LOT-ION01-0001-W01".into()),
            event_time: 1_796_623_200_000,
            measurements: BTreeMap::from([
                ("beam_current_mA".into(), 1.000_213),
                ("emissivity".into(), f64::NAN),
            ]),
        };
        for k in 0..60 {
            t.event_time += 60_000;
            t.wafer_id = Some(format!("LOT-ION01-{:04}-W{:02}", k / 25 + 1, k % 25 + 1));
            t.lot_id = Some(format!("LOT-ION01-{:04}", k / 25 + 1));
            if let Some(v) = t.measurements.get_mut("beam_current_mA") {
                *v += 0.001;
            }
            let mut out = Vec::new();
            writer.write(&t, &mut out);
            assert_eq!(out, serde_json::to_vec(&t).unwrap_or_default(), "{k}");
        }
    }
}
