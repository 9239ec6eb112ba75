//! Telemetry samples as the gateways send them: [`Telemetry`] and [`ToolType`].
//!
//! The Avro form is `schemas/avro/telemetry.avsc`; the JSON form is produced by the
//! serde derives here (see [`crate::json`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Kind of process tool that produced a sample.
///
/// Serialized (JSON and Avro) as `"ion_implant"` or `"rtp"`. The derived order is the
/// declaration order, which makes the type usable as a sorted map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolType {
    /// Ion implanter.
    IonImplant,
    /// Rapid thermal processing chamber.
    Rtp,
}

impl ToolType {
    /// Every tool type, in Avro symbol order.
    pub const ALL: [ToolType; 2] = [ToolType::IonImplant, ToolType::Rtp];

    /// The wire name: `"ion_implant"` or `"rtp"` (also the Avro enum symbol).
    pub fn as_str(self) -> &'static str {
        match self {
            ToolType::IonImplant => "ion_implant",
            ToolType::Rtp => "rtp",
        }
    }
}

impl fmt::Display for ToolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ToolType {
    type Err = ParseEnumError;

    /// Parses the wire name exactly (`"ion_implant"` or `"rtp"`, case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ToolType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "tool type",
                value: s.to_owned(),
                expected: &["ion_implant", "rtp"],
            })
    }
}

/// Error from parsing a [`ToolType`] or [`crate::Severity`] from its wire name.
///
/// Its message names the rejected value and the accepted ones, e.g.
/// ``unknown tool type `furnace` (expected one of: ion_implant, rtp)``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {})", expected.join(", "))]
pub struct ParseEnumError {
    /// What was being parsed, e.g. `"tool type"`.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted wire names.
    pub expected: &'static [&'static str],
}

/// One telemetry sample: the measured parameters of one tool at one instant.
///
/// In JSON, `lot_id` and `wafer_id` may be absent or `null`, unknown fields are ignored,
/// and measurement values may be numbers, `null` or the strings `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (see [`crate::json`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Identifier of the tool, e.g. `"IMP-07"`.
    pub tool_id: String,
    /// Kind of tool.
    pub tool_type: ToolType,
    /// Recipe running when the sample was taken.
    pub recipe_id: String,
    /// Lot being processed, if known.
    #[serde(default)]
    pub lot_id: Option<String>,
    /// Wafer being processed, if known.
    #[serde(default)]
    pub wafer_id: Option<String>,
    /// Time the sample was taken, in milliseconds since the Unix epoch (UTC).
    pub event_time: i64,
    /// Parameter name to measured value. Values may be NaN or infinite when the tool
    /// reported a bad reading; consumers count such values and never plot them.
    #[serde(with = "measurement_values")]
    pub measurements: BTreeMap<String, f64>,
}

/// Read access to one telemetry sample, whichever form holds it: the owned [`Telemetry`] or
/// the [`TelemetryRef`] that the JSON decoder borrows from a message payload. The operators
/// take any view, so a sample decoded from a Kafka message reaches the charts without copying
/// its strings.
pub trait TelemetryView {
    /// Identifier of the tool.
    fn tool_id(&self) -> &str;
    /// Kind of tool.
    fn tool_type(&self) -> ToolType;
    /// Recipe running when the sample was taken.
    fn recipe_id(&self) -> &str;
    /// Lot being processed, if known.
    fn lot_id(&self) -> Option<&str>;
    /// Wafer being processed, if known.
    fn wafer_id(&self) -> Option<&str>;
    /// Time the sample was taken, in milliseconds since the Unix epoch (UTC).
    fn event_time(&self) -> i64;
    /// The measurements in ascending byte order of parameter name, each name once.
    fn measurements(&self) -> impl Iterator<Item = (&str, f64)>;
    /// The value of one parameter, if the sample has it.
    fn measurement(&self, parameter: &str) -> Option<f64>;
    /// How many parameters the sample has.
    fn measurement_count(&self) -> usize;
}

/// The [`TelemetryView`] accessors that read a field of the same name.
macro_rules! field_accessors {
    () => {
        fn tool_id(&self) -> &str {
            &self.tool_id
        }
        fn tool_type(&self) -> ToolType {
            self.tool_type
        }
        fn recipe_id(&self) -> &str {
            &self.recipe_id
        }
        fn lot_id(&self) -> Option<&str> {
            self.lot_id.as_deref()
        }
        fn wafer_id(&self) -> Option<&str> {
            self.wafer_id.as_deref()
        }
        fn event_time(&self) -> i64 {
            self.event_time
        }
    };
}

impl TelemetryView for Telemetry {
    field_accessors!();
    fn measurements(&self) -> impl Iterator<Item = (&str, f64)> {
        self.measurements
            .iter()
            .map(|(name, &value)| (name.as_str(), value))
    }
    fn measurement(&self, parameter: &str) -> Option<f64> {
        self.measurements.get(parameter).copied()
    }
    fn measurement_count(&self) -> usize {
        self.measurements.len()
    }
}

/// One telemetry sample whose strings borrow from the bytes it was decoded from where they
/// can ([`crate::decode_telemetry_json_ref`]); the same content as a [`Telemetry`], without
/// an allocation per string and per map node.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRef<'a> {
    /// Identifier of the tool.
    pub tool_id: Cow<'a, str>,
    /// Kind of tool.
    pub tool_type: ToolType,
    /// Recipe running when the sample was taken.
    pub recipe_id: Cow<'a, str>,
    /// Lot being processed, if known.
    pub lot_id: Option<Cow<'a, str>>,
    /// Wafer being processed, if known.
    pub wafer_id: Option<Cow<'a, str>>,
    /// Time the sample was taken, in milliseconds since the Unix epoch (UTC).
    pub event_time: i64,
    /// Sorted by name, names unique (the invariant of [`TelemetryView::measurements`]).
    measurements: Vec<(Cow<'a, str>, f64)>,
}

impl<'a> TelemetryRef<'a> {
    /// A sample from its parts; `None` when two measurements share a name.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        tool_id: Cow<'a, str>,
        tool_type: ToolType,
        recipe_id: Cow<'a, str>,
        lot_id: Option<Cow<'a, str>>,
        wafer_id: Option<Cow<'a, str>>,
        event_time: i64,
        mut measurements: Vec<(Cow<'a, str>, f64)>,
    ) -> Option<Self> {
        // Gateways that serialize a map usually send the names in order already: strictly
        // increasing names are sorted and unique, and need no sort.
        // Names mostly differ in their first byte: that byte decides without a `memcmp`.
        let less = |a: &[u8], b: &[u8]| match (a.first(), b.first()) {
            (Some(x), Some(y)) if x != y => x < y,
            _ => a < b,
        };
        if !measurements.is_sorted_by(|a, b| less(a.0.as_bytes(), b.0.as_bytes())) {
            measurements.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if measurements.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
        }
        Some(TelemetryRef {
            tool_id,
            tool_type,
            recipe_id,
            lot_id,
            wafer_id,
            event_time,
            measurements,
        })
    }

    /// The owned form.
    pub fn into_owned(self) -> Telemetry {
        Telemetry {
            tool_id: self.tool_id.into_owned(),
            tool_type: self.tool_type,
            recipe_id: self.recipe_id.into_owned(),
            lot_id: self.lot_id.map(Cow::into_owned),
            wafer_id: self.wafer_id.map(Cow::into_owned),
            event_time: self.event_time,
            measurements: self
                .measurements
                .into_iter()
                .map(|(name, value)| (name.into_owned(), value))
                .collect(),
        }
    }
}

impl From<Telemetry> for TelemetryRef<'static> {
    fn from(t: Telemetry) -> Self {
        TelemetryRef {
            tool_id: Cow::Owned(t.tool_id),
            tool_type: t.tool_type,
            recipe_id: Cow::Owned(t.recipe_id),
            lot_id: t.lot_id.map(Cow::Owned),
            wafer_id: t.wafer_id.map(Cow::Owned),
            event_time: t.event_time,
            // A BTreeMap iterates in order with unique keys: the invariant holds.
            measurements: t
                .measurements
                .into_iter()
                .map(|(name, value)| (Cow::Owned(name), value))
                .collect(),
        }
    }
}

impl TelemetryView for TelemetryRef<'_> {
    field_accessors!();
    fn measurements(&self) -> impl Iterator<Item = (&str, f64)> {
        self.measurements
            .iter()
            .map(|(name, value)| (name.as_ref(), *value))
    }
    fn measurement(&self, parameter: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|(name, _)| name == parameter)
            .map(|&(_, value)| value)
    }
    fn measurement_count(&self) -> usize {
        self.measurements.len()
    }
}

/// Serde helpers for [`Telemetry::measurements`]: non-finite values travel as strings.
pub(crate) mod measurement_values {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    /// Writes finite values as numbers and NaN / +inf / -inf as `"NaN"`, `"Infinity"`,
    /// `"-Infinity"`, which [`deserialize`] reads back.
    pub(super) fn serialize<S: Serializer>(
        values: &BTreeMap<String, f64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(values.len()))?;
        for (name, &value) in values {
            if value.is_finite() {
                map.serialize_entry(name, &value)?;
            } else {
                map.serialize_entry(name, non_finite_name(value))?;
            }
        }
        map.end()
    }

    fn non_finite_name(value: f64) -> &'static str {
        if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
    }

    /// Reads a map whose values are numbers, `null` (NaN) or the special strings
    /// accepted by [`parse_special`]. A duplicate parameter name is an error.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, f64>, D::Error> {
        deserializer.deserialize_map(MeasurementsVisitor)
    }

    struct MeasurementsVisitor;

    impl<'de> Visitor<'de> for MeasurementsVisitor {
        type Value = BTreeMap<String, f64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map from parameter name to measured value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut values = BTreeMap::new();
            while let Some(name) = access.next_key::<String>()? {
                let value = access.next_value_seed(ValueSeed { name: &name })?;
                if values.contains_key(&name) {
                    return Err(de::Error::custom(format_args!(
                        "duplicate measurement `{name}`"
                    )));
                }
                values.insert(name, value);
            }
            Ok(values)
        }
    }

    /// Deserializes one measured value; knows the parameter name for error messages.
    struct ValueSeed<'a> {
        name: &'a str,
    }

    impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
        type Value = f64;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ValueSeed<'_> {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "a number, null, \"NaN\", \"Infinity\" or \"-Infinity\" for measurement `{}`",
                self.name
            )
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }

        fn visit_none<E: de::Error>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            parse_special(v).ok_or_else(|| de::Error::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    /// Parses the non-finite spellings Python gateways use, case-insensitively:
    /// `nan`, `inf`, `+inf`, `infinity`, `+infinity`, `-inf`, `-infinity`.
    /// Anything else, including numeric strings such as `"1.5"`, is `None`.
    pub(crate) fn parse_special(s: &str) -> Option<f64> {
        const SPELLINGS: [(&str, f64); 7] = [
            ("nan", f64::NAN),
            ("inf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("infinity", f64::INFINITY),
            ("+infinity", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("-infinity", f64::NEG_INFINITY),
        ];
        SPELLINGS
            .iter()
            .find(|(spelling, _)| s.eq_ignore_ascii_case(spelling))
            .map(|&(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::measurement_values::parse_special;
    use super::*;

    /// Names come out sorted as `str`s sort and a repeated name is refused, whether the
    /// names differ in their first byte or only later (or are empty).
    #[test]
    fn measurement_names_are_sorted_and_unique() {
        let sample = |names: &[&'static str]| {
            let measurements = names
                .iter()
                .enumerate()
                .map(|(i, n)| (Cow::Borrowed(*n), i as f64))
                .collect();
            TelemetryRef::new(
                "T".into(),
                ToolType::Rtp,
                "R".into(),
                None,
                None,
                0,
                measurements,
            )
        };
        let names = |names: &[&'static str]| {
            let t = sample(names).expect("unique names");
            t.measurements()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        };
        for input in [
            &["a", "b", "c"][..],
            &["b", "a", "c"],
            &["temp_b", "temp_a", "press"],
            &["temp", "temp_a", ""],
            &["é", "z", "e"],
            &["ab", "a"],
        ] {
            let mut expected: Vec<String> = input.iter().map(|n| n.to_string()).collect();
            expected.sort();
            assert_eq!(names(input), expected, "{input:?}");
        }
        for repeated in [
            &["a", "a"][..],
            &["temp_a", "press", "temp_a"],
            &["", "x", ""],
        ] {
            assert!(sample(repeated).is_none(), "{repeated:?}");
        }
    }

    #[test]
    fn tool_type_wire_names_round_trip() {
        for t in ToolType::ALL {
            assert_eq!(t.as_str().parse::<ToolType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(ToolType::IonImplant.as_str(), "ion_implant");
        assert_eq!(ToolType::Rtp.as_str(), "rtp");
        assert!(ToolType::IonImplant < ToolType::Rtp);
    }

    #[test]
    fn tool_type_parse_error_names_the_bad_value() {
        let err = "furnace".parse::<ToolType>().unwrap_err();
        assert_eq!(err.value, "furnace");
        assert_eq!(
            err.to_string(),
            "unknown tool type `furnace` (expected one of: ion_implant, rtp)"
        );
        // Wire names are case-sensitive.
        assert!("RTP".parse::<ToolType>().is_err());
    }

    #[test]
    fn special_spellings() {
        for s in ["nan", "NaN", "NAN"] {
            assert!(parse_special(s).unwrap().is_nan(), "{s}");
        }
        for s in ["inf", "Inf", "+inf", "Infinity", "INFINITY", "+Infinity"] {
            assert_eq!(parse_special(s), Some(f64::INFINITY), "{s}");
        }
        for s in ["-inf", "-Inf", "-Infinity", "-INFINITY"] {
            assert_eq!(parse_special(s), Some(f64::NEG_INFINITY), "{s}");
        }
        for s in ["1.5", "", " nan", "nan ", "-nan", "infinit", "null"] {
            assert_eq!(parse_special(s), None, "{s:?}");
        }
    }
}
