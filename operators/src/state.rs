//! `KeyedState`: the map from (tool, recipe, parameter) to operator state that a runtime holds.
//!
//! Keys are stored as one length-prefixed byte string, so a lookup builds the key in a reused
//! buffer and allocates only when a key is seen for the first time.

use std::collections::HashMap;

/// A borrowed chart key: one parameter of one recipe on one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChartKeyRef<'a> {
    /// Tool id.
    pub tool_id: &'a str,
    /// Recipe id.
    pub recipe_id: &'a str,
    /// Parameter (measurement) name.
    pub parameter: &'a str,
}

impl ChartKeyRef<'_> {
    /// An owned copy.
    pub fn to_owned_key(&self) -> ChartKey {
        ChartKey {
            tool_id: self.tool_id.to_string(),
            recipe_id: self.recipe_id.to_string(),
            parameter: self.parameter.to_string(),
        }
    }
}

/// An owned chart key.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ChartKey {
    /// Tool id.
    pub tool_id: String,
    /// Recipe id.
    pub recipe_id: String,
    /// Parameter (measurement) name.
    pub parameter: String,
}

impl ChartKey {
    /// A borrowed view.
    pub fn as_ref(&self) -> ChartKeyRef<'_> {
        ChartKeyRef {
            tool_id: &self.tool_id,
            recipe_id: &self.recipe_id,
            parameter: &self.parameter,
        }
    }
}

fn encode_into(buf: &mut Vec<u8>, key: ChartKeyRef<'_>) {
    buf.clear();
    for part in [key.tool_id, key.recipe_id] {
        buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    buf.extend_from_slice(key.parameter.as_bytes());
}

/// Decodes a key written by `encode_into`. Keys only come from `encode_into`, so the layout
/// is trusted; a malformed key yields `None`.
fn decode(bytes: &[u8]) -> Option<ChartKeyRef<'_>> {
    let mut rest = bytes;
    let mut next = || -> Option<&str> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
        rest = &rest[4 + len..];
        Some(s)
    };
    let tool_id = next()?;
    let recipe_id = next()?;
    let parameter = std::str::from_utf8(rest).ok()?;
    Some(ChartKeyRef {
        tool_id,
        recipe_id,
        parameter,
    })
}

/// Per-key operator state.
#[derive(Debug, Clone)]
pub struct KeyedState<S> {
    map: HashMap<Box<[u8]>, S, foldhash::fast::FixedState>,
    buf: Vec<u8>,
}

impl<S> Default for KeyedState<S> {
    fn default() -> Self {
        KeyedState {
            map: HashMap::with_hasher(foldhash::fast::FixedState::default()),
            buf: Vec::with_capacity(64),
        }
    }
}

impl<S> KeyedState<S> {
    /// The state of `key`, created by `init` if absent.
    pub fn get_or_insert_with(&mut self, key: ChartKeyRef<'_>, init: impl FnOnce() -> S) -> &mut S {
        encode_into(&mut self.buf, key);
        if !self.map.contains_key(self.buf.as_slice()) {
            self.map.insert(self.buf.clone().into_boxed_slice(), init());
        }
        self.map
            .get_mut(self.buf.as_slice())
            .expect("the key was just inserted")
    }

    /// The state of `key`, if any.
    pub fn get(&mut self, key: ChartKeyRef<'_>) -> Option<&S> {
        encode_into(&mut self.buf, key);
        self.map.get(self.buf.as_slice())
    }

    /// Replaces the state of `key` (restore from a snapshot).
    pub fn insert(&mut self, key: ChartKeyRef<'_>, state: S) {
        encode_into(&mut self.buf, key);
        self.map.insert(self.buf.clone().into_boxed_slice(), state);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key and its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ChartKeyRef<'_>, &S)> {
        self.map
            .iter()
            .filter_map(|(k, s)| decode(k).map(|k| (k, s)))
    }

    /// Every key and its state, mutably, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ChartKeyRef<'_>, &mut S)> {
        self.map
            .iter_mut()
            .filter_map(|(k, s)| decode(k).map(|k| (k, s)))
    }

    /// Every key and its state, sorted by key (deterministic order for reports and flushes).
    pub fn sorted(&self) -> Vec<(ChartKeyRef<'_>, &S)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_collide_and_round_trip() {
        let mut st = KeyedState::<u32>::default();
        let a = ChartKeyRef {
            tool_id: "a\u{1f}b",
            recipe_id: "c",
            parameter: "p",
        };
        let b = ChartKeyRef {
            tool_id: "a",
            recipe_id: "b\u{1f}c",
            parameter: "p",
        };
        *st.get_or_insert_with(a, || 0) += 1;
        *st.get_or_insert_with(b, || 10) += 1;
        *st.get_or_insert_with(a, || 0) += 1;
        assert_eq!(st.len(), 2);
        assert_eq!(st.get(a), Some(&2));
        assert_eq!(st.get(b), Some(&11));
        let keys: Vec<_> = st.sorted().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![b, a]);
    }
}
