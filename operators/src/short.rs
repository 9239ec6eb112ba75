//! [`ShortStr`]: a string kept inline when it is short (tool and recipe ids are), so that
//! comparing it with another reads no memory behind a pointer. Stages that look an id up
//! at every record keep it this way; the SPC state packs its ids the same way for the same
//! reason ([`crate::state`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::state::short_eq;

/// Bytes a [`ShortStr`] holds inline (a longer string is boxed).
const INLINE: usize = 22;

/// A string, inline up to 22 bytes, boxed beyond; 24 bytes either way. Serialized as a
/// string.
#[derive(Clone, PartialEq, Eq)]
pub struct ShortStr(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<str>),
}

impl ShortStr {
    /// `s`, inline when it fits.
    pub fn new(s: &str) -> ShortStr {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            ShortStr(Repr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            ShortStr(Repr::Boxed(s.into()))
        }
    }

    /// Its bytes.
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Boxed(s) => s.as_bytes(),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from a `&str` cut at its length: always UTF-8.
            Repr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Repr::Boxed(s) => s,
        }
    }

    /// Whether it is `s` (an inline one compares without following a pointer).
    #[inline(always)]
    pub fn is(&self, s: &str) -> bool {
        short_eq(self.as_bytes(), s.as_bytes())
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ShortStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ShortStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(ShortStr::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::ShortStr;

    #[test]
    fn inline_and_boxed_strings_read_back_compare_and_serialize_as_strings() {
        for s in [
            "",
            "R1",
            "SPIKE_1050C",
            "exactly_twenty_two_by",
            "twenty_three_bytes_long",
            "é-ü",
        ] {
            let short = ShortStr::new(s);
            assert_eq!(short.as_str(), s);
            assert!(short.is(s));
            assert!(!short.is("other"));
            assert_eq!(format!("{short:?}"), format!("{s:?}"));
            let json = serde_json::to_string(&short).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            assert_eq!(serde_json::from_str::<ShortStr>(&json).unwrap(), short);
        }
        assert_eq!(std::mem::size_of::<ShortStr>(), 24);
        assert_ne!(ShortStr::new("R1"), ShortStr::new("R2"));
    }
}
