//! `KeyedState`: the map from (tool, recipe, parameter) to operator state that a runtime holds.
//!
//! States are grouped by (tool, recipe): the group key is one length-prefixed byte string,
//! and within a group the few parameters are found by a linear scan. A lookup allocates only
//! when a key is seen for the first time.

use indexmap::IndexMap;

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

/// Writes the (tool, recipe) group key: both parts length-prefixed, so no two pairs collide.
fn encode_group(buf: &mut Vec<u8>, tool_id: &str, recipe_id: &str) {
    buf.clear();
    for part in [tool_id, recipe_id] {
        buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
}

/// Splits a group key written by `encode_group` into (tool, recipe).
fn decode_group(bytes: &[u8]) -> Option<(&str, &str)> {
    let mut rest = bytes;
    let mut next = || -> Option<&str> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
        rest = &rest[4 + len..];
        Some(s)
    };
    Some((next()?, next()?))
}

/// Equality of two byte strings, tuned for ids of a few bytes: up to 16 bytes it compares two
/// overlapping words instead of calling `memcmp`, which costs more than the comparison.
#[inline]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let u64_at = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4]));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        8..=16 => u64_at(a, 0) == u64_at(b, 0) && u64_at(a, n - 8) == u64_at(b, n - 8),
        _ => a == b,
    }
}

/// Whether a stored group key is (tool, recipe), without building a key.
#[inline]
fn group_is(stored: &[u8], tool_id: &str, recipe_id: &str) -> bool {
    let t = tool_id.len();
    stored.len() == 8 + t + recipe_id.len()
        && stored[..4] == (t as u32).to_le_bytes()
        && short_eq(&stored[4..4 + t], tool_id.as_bytes())
        && stored[4 + t..8 + t] == (recipe_id.len() as u32).to_le_bytes()
        && short_eq(&stored[8 + t..], recipe_id.as_bytes())
}

/// One key's entry in its group: a caller-chosen tag (a function of the parameter, such as a
/// chart id, compared before the name), the parameter and the state.
#[derive(Debug, Clone)]
struct Entry<S> {
    tag: u32,
    parameter: Box<str>,
    state: S,
}

/// The tag of entries inserted by name, before a tagged lookup adopts them.
const UNTAGGED: u32 = u32::MAX;

/// The charts of one (tool, recipe): a handful of parameters, searched linearly.
type Group<S> = Vec<Entry<S>>;

/// The states of one (tool, recipe), borrowed from a [`KeyedState`].
pub struct GroupMut<'a, S> {
    group: &'a mut Group<S>,
    len: &'a mut usize,
}

impl<S> GroupMut<'_, S> {
    /// The state of `parameter`, created by `init` if absent. `tag` is a hint that should
    /// identify the parameter (such as a chart id): entries are matched on tag and name (a
    /// two-word comparison for short names), and an entry found by name under another tag
    /// (a restore, or a new monitor whose ids shifted) adopts this one.
    pub fn get_or_insert_with(
        &mut self,
        parameter: &str,
        tag: u32,
        init: impl FnOnce() -> S,
    ) -> &mut S {
        let found = self
            .group
            .iter()
            .position(|e| e.tag == tag && short_eq(e.parameter.as_bytes(), parameter.as_bytes()))
            .or_else(|| {
                // Inserted by name (a restore) or under another tag (a new monitor over the
                // same store): adopt this tag for the next lookups.
                let pos = self.group.iter().position(|e| &*e.parameter == parameter)?;
                self.group[pos].tag = tag;
                Some(pos)
            });
        let pos = match found {
            Some(pos) => pos,
            None => {
                self.group.push(Entry {
                    tag,
                    parameter: parameter.into(),
                    state: init(),
                });
                *self.len += 1;
                self.group.len() - 1
            }
        };
        &mut self.group[pos].state
    }
}

/// Per-key operator state, grouped by (tool, recipe).
///
/// The measurements of one record share their tool and recipe, so the group found for the
/// first measurement is remembered and the others only compare parameter names: one hash
/// lookup per record, not per measurement.
#[derive(Debug, Clone)]
pub struct KeyedState<S> {
    groups: IndexMap<Box<[u8]>, Group<S>, foldhash::fast::FixedState>,
    /// Index of the group looked up last.
    last: Option<usize>,
    buf: Vec<u8>,
    len: usize,
}

impl<S> Default for KeyedState<S> {
    fn default() -> Self {
        KeyedState {
            groups: IndexMap::with_hasher(foldhash::fast::FixedState::default()),
            last: None,
            buf: Vec::with_capacity(64),
            len: 0,
        }
    }
}

impl<S> KeyedState<S> {
    /// Index of the (tool, recipe) group, created if absent.
    fn group_index(&mut self, tool_id: &str, recipe_id: &str) -> usize {
        if let Some(i) = self.last
            && let Some((k, _)) = self.groups.get_index(i)
            && group_is(k, tool_id, recipe_id)
        {
            return i;
        }
        encode_group(&mut self.buf, tool_id, recipe_id);
        let i = match self.groups.get_index_of(self.buf.as_slice()) {
            Some(i) => i,
            None => {
                self.groups
                    .insert_full(self.buf.clone().into_boxed_slice(), Vec::new())
                    .0
            }
        };
        self.last = Some(i);
        i
    }

    /// The states of one (tool, recipe), created empty if absent.
    pub fn group(&mut self, tool_id: &str, recipe_id: &str) -> GroupMut<'_, S> {
        let g = self.group_index(tool_id, recipe_id);
        GroupMut {
            group: &mut self.groups[g],
            len: &mut self.len,
        }
    }

    /// The state of `key`, created by `init` if absent.
    pub fn get_or_insert_with(&mut self, key: ChartKeyRef<'_>, init: impl FnOnce() -> S) -> &mut S {
        let g = self.group_index(key.tool_id, key.recipe_id);
        let group = &mut self.groups[g];
        let pos = match group.iter().position(|e| &*e.parameter == key.parameter) {
            Some(pos) => pos,
            None => {
                group.push(Entry {
                    tag: UNTAGGED,
                    parameter: key.parameter.into(),
                    state: init(),
                });
                self.len += 1;
                group.len() - 1
            }
        };
        &mut group[pos].state
    }

    /// The state of `key`, if any.
    pub fn get(&self, key: ChartKeyRef<'_>) -> Option<&S> {
        let mut buf = Vec::with_capacity(8 + key.tool_id.len() + key.recipe_id.len());
        encode_group(&mut buf, key.tool_id, key.recipe_id);
        self.groups
            .get(buf.as_slice())?
            .iter()
            .find(|e| &*e.parameter == key.parameter)
            .map(|e| &e.state)
    }

    /// Replaces the state of `key` (restore from a snapshot).
    pub fn insert(&mut self, key: ChartKeyRef<'_>, state: S) {
        let mut state = Some(state);
        let slot = self.get_or_insert_with(key, || state.take().expect("taken once"));
        if let Some(s) = state {
            *slot = s;
        }
    }

    /// The parameters and states of one (tool, recipe) group, in insertion order; `None` if
    /// the group has never been seen. The runtime snapshots state a group at a time.
    pub fn group_entries(
        &self,
        tool_id: &str,
        recipe_id: &str,
    ) -> Option<impl Iterator<Item = (&str, &S)>> {
        let mut buf = Vec::with_capacity(8 + tool_id.len() + recipe_id.len());
        encode_group(&mut buf, tool_id, recipe_id);
        let group = self.groups.get(buf.as_slice())?;
        Some(group.iter().map(|e| (&*e.parameter, &e.state)))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every key and its state, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (ChartKeyRef<'_>, &S)> {
        self.groups.iter().flat_map(|(k, group)| {
            let (tool_id, recipe_id) = decode_group(k).unwrap_or_default();
            group.iter().map(move |e| {
                (
                    ChartKeyRef {
                        tool_id,
                        recipe_id,
                        parameter: &e.parameter,
                    },
                    &e.state,
                )
            })
        })
    }

    /// Every key and its state, mutably, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ChartKeyRef<'_>, &mut S)> {
        self.groups.iter_mut().flat_map(|(k, group)| {
            let (tool_id, recipe_id) = decode_group(k).unwrap_or_default();
            group.iter_mut().map(move |e| {
                (
                    ChartKeyRef {
                        tool_id,
                        recipe_id,
                        parameter: &e.parameter,
                    },
                    &mut e.state,
                )
            })
        })
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
    fn group_entries_lists_one_group_in_insertion_order() {
        let mut store = KeyedState::<u32>::default();
        let key = |tool_id, recipe_id, parameter| ChartKeyRef {
            tool_id,
            recipe_id,
            parameter,
        };
        store.insert(key("T1", "R1", "b"), 1);
        store.insert(key("T1", "R2", "a"), 2);
        store.insert(key("T1", "R1", "a"), 3);
        let entries: Vec<_> = store.group_entries("T1", "R1").unwrap().collect();
        assert_eq!(entries, vec![("b", &1), ("a", &3)]);
        assert!(store.group_entries("T2", "R1").is_none());
        assert!(store.group_entries("T1", "R3").is_none());
    }

    #[test]
    fn short_eq_matches_slice_equality() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "acc",
            "abb",
            "abcd",
            "abce",
            "p_imr",
            "p_xbr",
            "p_ewma",
            "p_xbar",
            "TOOL-000",
            "TOOL-001",
            "TOOL-0001",
            "TOOL-0002",
            "1OOL-0001",
            "ION-01/B11_30KEV",
            "ION-01/B11_30KEW",
            "JON-01/B11_30KEV",
            "ION-01/B11_30KEV+",
            "ION-01/B11_30KEV-",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    short_eq(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn entries_restored_by_name_are_found_by_tag_without_duplicates() {
        let key = ChartKeyRef {
            tool_id: "ION-01",
            recipe_id: "R1",
            parameter: "beam_current_mA",
        };
        let mut st = KeyedState::<u32>::default();
        st.insert(key, 7);
        let mut group = st.group("ION-01", "R1");
        assert_eq!(*group.get_or_insert_with("beam_current_mA", 3, || 0), 7);
        *group.get_or_insert_with("dose_uniformity_pct", 4, || 1) += 1;
        // A different tag for a known name (another monitor over the same store) adopts it.
        assert_eq!(*group.get_or_insert_with("beam_current_mA", 9, || 0), 7);
        assert_eq!(st.len(), 2);
        assert_eq!(st.get(key), Some(&7));
    }

    #[test]
    fn a_stale_tag_never_returns_another_parameters_state() {
        let mut st = KeyedState::<&str>::default();
        let mut group = st.group("T", "R");
        *group.get_or_insert_with("beam", 0, || "beam") = "beam";
        *group.get_or_insert_with("dose", 1, || "dose") = "dose";
        // A new monitor numbers the charts the other way round.
        assert_eq!(*group.get_or_insert_with("dose", 0, || "new"), "dose");
        assert_eq!(*group.get_or_insert_with("beam", 1, || "new"), "beam");
        assert_eq!(*group.get_or_insert_with("beam", 1, || "new"), "beam");
        assert_eq!(st.len(), 2);
    }

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

#[cfg(test)]
mod group_key_tests {
    use super::*;

    #[test]
    fn group_is_recognises_its_own_encoding() {
        let mut buf = Vec::new();
        encode_group(&mut buf, "TOOL-000000", "RCP");
        assert!(group_is(&buf, "TOOL-000000", "RCP"));
        assert!(!group_is(&buf, "TOOL-000001", "RCP"));
        assert!(!group_is(&buf, "TOOL-000000", "RCQ"));
        assert!(!group_is(&buf, "TOOL-00000", "0RCP"));
    }
}
