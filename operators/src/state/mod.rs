//! `KeyedState`: the map from (tool, recipe, parameter) to operator state that a runtime holds.
//!
//! States are grouped by (tool, recipe), the few parameters of a group side by side. The
//! layout is built for a lookup per record that touches as few cache lines as possible when
//! the states do not fit in cache:
//!
//! - an open-addressing index of 8-byte slots (32 bits of the key's hash and the group's
//!   position), small enough to stay in cache for tens of thousands of groups;
//! - a vector of 64-byte groups, each holding its tool and recipe ids inline (up to 30 bytes
//!   together) and its entries;
//! - the entries of a group in one allocation, each aligned to a cache line: the caller's
//!   8-byte tag, the state, then the parameter name (inline up to 23 bytes). A tagged lookup
//!   compares tags only, so the name stays out of the cache lines a lookup reads.
//!
//! Found the group, the lookup prefetches the first three cache lines of each of its entries,
//! so that the states of one record load in parallel. Ids longer than the inline room live in
//! a side table. A lookup allocates only when a key is seen for the first time.

use std::hash::BuildHasher;

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

/// Equality of two byte strings, tuned for ids of a few bytes: up to 24 bytes it compares
/// two or three overlapping words instead of calling `memcmp`, which costs more than the
/// comparison.
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
        17..=24 => {
            u64_at(a, 0) == u64_at(b, 0)
                && u64_at(a, 8) == u64_at(b, 8)
                && u64_at(a, n - 8) == u64_at(b, n - 8)
        }
        _ => a == b,
    }
}

/// Marks an id kept in a side table: the inline bytes then hold its index.
const LONG: u8 = 0xff;

/// A parameter name: inline up to 23 bytes (the last byte holds the length), otherwise
/// [`LONG`] there and the index of the name in [`KeyedState`]'s long names.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name([u8; 24]);

const NAME_INLINE: usize = 23;

impl Name {
    fn new(name: &str, long: &mut Vec<Box<str>>) -> Self {
        let mut bytes = [0u8; 24];
        if name.len() <= NAME_INLINE {
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            bytes[NAME_INLINE] = name.len() as u8;
        } else {
            let i = long.iter().position(|n| **n == *name).unwrap_or_else(|| {
                long.push(name.into());
                long.len() - 1
            });
            bytes[..4].copy_from_slice(&(i as u32).to_le_bytes());
            bytes[NAME_INLINE] = LONG;
        }
        Name(bytes)
    }

    #[inline]
    fn is(&self, name: &str, long: &[Box<str>]) -> bool {
        match self.0[NAME_INLINE] {
            LONG => name.len() > NAME_INLINE && self.get(long) == name,
            len => {
                usize::from(len) == name.len() && short_eq(&self.0[..name.len()], name.as_bytes())
            }
        }
    }

    fn get<'a>(&'a self, long: &'a [Box<str>]) -> &'a str {
        match self.0[NAME_INLINE] {
            LONG => {
                let i = u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
                long.get(i as usize).map_or("", |s| s)
            }
            len => std::str::from_utf8(&self.0[..usize::from(len)]).unwrap_or_default(),
        }
    }
}

/// A (tool, recipe) group key: both ids inline when they fit in 30 bytes together (the last
/// two bytes hold their lengths), otherwise [`LONG`] in the last byte and the index of the
/// pair in [`KeyedState`]'s long keys.
#[derive(Clone, Copy, PartialEq, Eq)]
struct GroupKey([u8; 32]);

const KEY_INLINE: usize = 30;

impl GroupKey {
    fn new(tool_id: &str, recipe_id: &str, long: &mut Vec<(Box<str>, Box<str>)>) -> Self {
        let mut bytes = [0u8; 32];
        let (t, r) = (tool_id.len(), recipe_id.len());
        if t + r <= KEY_INLINE {
            bytes[..t].copy_from_slice(tool_id.as_bytes());
            bytes[t..t + r].copy_from_slice(recipe_id.as_bytes());
            bytes[KEY_INLINE] = t as u8;
            bytes[KEY_INLINE + 1] = r as u8;
        } else {
            long.push((tool_id.into(), recipe_id.into()));
            bytes[..4].copy_from_slice(&((long.len() - 1) as u32).to_le_bytes());
            bytes[KEY_INLINE + 1] = LONG;
        }
        GroupKey(bytes)
    }

    #[inline]
    fn is(&self, tool_id: &str, recipe_id: &str, long: &[(Box<str>, Box<str>)]) -> bool {
        let b = &self.0;
        match b[KEY_INLINE + 1] {
            LONG => {
                tool_id.len() + recipe_id.len() > KEY_INLINE
                    && self.get(long) == (tool_id, recipe_id)
            }
            r => {
                let t = usize::from(b[KEY_INLINE]);
                t == tool_id.len()
                    && usize::from(r) == recipe_id.len()
                    && short_eq(&b[..t], tool_id.as_bytes())
                    && short_eq(&b[t..t + recipe_id.len()], recipe_id.as_bytes())
            }
        }
    }

    fn get<'a>(&'a self, long: &'a [(Box<str>, Box<str>)]) -> (&'a str, &'a str) {
        let b = &self.0;
        match b[KEY_INLINE + 1] {
            LONG => {
                let i = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                long.get(i as usize).map_or(("", ""), |(t, r)| (t, r))
            }
            r => {
                let t = usize::from(b[KEY_INLINE]);
                let s = |range: std::ops::Range<usize>| {
                    std::str::from_utf8(&b[range]).unwrap_or_default()
                };
                (s(0..t), s(t..t + usize::from(r)))
            }
        }
    }
}

fn hash(tool_id: &str, recipe_id: &str) -> u64 {
    foldhash::fast::FixedState::default().hash_one((tool_id, recipe_id))
}

/// The tag of an entry that no tagged lookup has adopted yet (inserted by name).
pub const UNTAGGED: u64 = 0;

/// One key's entry in its group, starting on a cache line: a caller-chosen tag (what the
/// state was last checked against), the state, and the parameter.
#[derive(Clone)]
#[repr(C, align(64))]
struct Entry<S> {
    tag: u64,
    state: S,
    name: Name,
}

/// The charts of one (tool, recipe): 64 bytes.
#[derive(Clone)]
struct Group<S> {
    key: GroupKey,
    hash: u64,
    entries: Vec<Entry<S>>,
}

/// A (tool, recipe) group of a [`KeyedState`]: its position, stable for the life of the
/// store (groups are never removed), so a caller can keep per-group marks in a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(usize);

impl GroupId {
    /// The position, from 0 to [`KeyedState::group_count`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Prefetches the cache line at `p` (a hint; a no-op off x86-64).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch never faults and reads nothing into the program, whatever the
        // address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Cache lines of each entry prefetched when its group is found: the tag and the first 184
/// bytes of the state.
const PREFETCH_LINES: usize = 3;

/// Records between the steps of [`KeyedState::prefetch_ahead`]. On the shuffled
/// 100,000-key workload with decoded input (`examples/monitor_load.rs --shuffle --decoded
/// --batched`), 2 beat 4, the value before, in each of three alternated rounds (6.7–10.1
/// against 4.0–8.4 M measurements/s); 1 and 3 were not consistently ahead of 2.
pub const PREFETCH_DISTANCE: usize = 2;

/// Chart states below which [`KeyedState::prefetch_ahead`] does nothing: about 1.6 MB of
/// entries, which the caches hold.
pub const PREFETCH_MIN_KEYS: usize = 4_096;

/// How much of a lookup [`KeyedState::prefetch`] starts loading: each step reads what the
/// previous one loaded, so a caller that knows the keys of coming records issues them a few
/// records apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// The index slot of the key.
    Slot,
    /// The group the slot points to (reads the slot).
    Group,
    /// The group's entries (reads the slot and the group).
    Entries,
}

/// The states of one (tool, recipe), borrowed from a [`KeyedState`].
pub struct GroupMut<'a, S> {
    entries: &'a mut Vec<Entry<S>>,
    long_names: &'a mut Vec<Box<str>>,
    len: &'a mut usize,
    /// Where the next lookup starts: just after the entry found last (a record's parameters
    /// usually come in the order their entries were created).
    next: usize,
}

impl<S> GroupMut<'_, S> {
    /// The state of `parameter`, created by `init` if absent.
    ///
    /// `tag` (not [`UNTAGGED`]) stands for the parameter and for what the caller has checked
    /// its state against, such as a chart of one configuration: the caller must never use
    /// one tag for two parameters. An entry carrying the tag is returned without comparing
    /// names. One found by name under another tag (restored by [`KeyedState::insert`], or
    /// last used by another configuration) is first handed to `adopt`, which may reset it,
    /// and then carries `tag`.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        parameter: &str,
        tag: u64,
        init: impl FnOnce() -> S,
        adopt: impl FnOnce(&mut S),
    ) -> &mut S {
        let n = self.entries.len();
        let tagged = match self.entries.get(self.next) {
            Some(e) if e.tag == tag && tag != UNTAGGED => Some(self.next),
            _ if tag == UNTAGGED => None,
            _ => self.entries.iter().position(|e| e.tag == tag),
        };
        if let Some(i) = tagged {
            self.next = i + 1;
            return &mut self.entries[i].state;
        }
        let long = &self.long_names[..];
        let found = self.entries.iter().position(|e| e.name.is(parameter, long));
        let pos = match found {
            Some(i) => {
                let e = &mut self.entries[i];
                adopt(&mut e.state);
                e.tag = tag;
                i
            }
            None => {
                if n < 16 {
                    // A handful of parameters per group: grow one at a time.
                    self.entries.reserve_exact(1);
                }
                self.entries.push(Entry {
                    tag,
                    state: init(),
                    name: Name::new(parameter, self.long_names),
                });
                *self.len += 1;
                n
            }
        };
        self.next = pos + 1;
        &mut self.entries[pos].state
    }
}

/// Per-key operator state, grouped by (tool, recipe).
///
/// The measurements of one record share their tool and recipe, so the group found for the
/// first measurement is remembered and the others only compare parameter names: one hash
/// lookup per record, not per measurement.
#[derive(Clone)]
pub struct KeyedState<S> {
    /// Open addressing, linear probing: 0 is empty, otherwise the high 32 bits of the hash
    /// and the group's position + 1.
    index: Vec<u64>,
    groups: Vec<Group<S>>,
    long_names: Vec<Box<str>>,
    long_keys: Vec<(Box<str>, Box<str>)>,
    /// Position of the group looked up last.
    last: usize,
    len: usize,
    /// Groups changed since the last [`KeyedState::take_changed`], in first-change order.
    changed: Vec<GroupId>,
    /// Whether each group (by position) is in `changed`.
    is_changed: Vec<bool>,
}

impl<S> Default for KeyedState<S> {
    fn default() -> Self {
        KeyedState {
            index: Vec::new(),
            groups: Vec::new(),
            long_names: Vec::new(),
            long_keys: Vec::new(),
            last: usize::MAX,
            len: 0,
            changed: Vec::new(),
            is_changed: Vec::new(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for KeyedState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<S> KeyedState<S> {
    /// Position of the (tool, recipe) group, if present.
    fn find(&self, tool_id: &str, recipe_id: &str) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let h = hash(tool_id, recipe_id);
        let mask = self.index.len() - 1;
        let mut pos = h as usize & mask;
        loop {
            let slot = self.index[pos];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == h >> 32 {
                let g = (slot as u32 - 1) as usize;
                if self.groups[g].key.is(tool_id, recipe_id, &self.long_keys) {
                    return Some(g);
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Starts loading part of what a lookup of (tool, recipe) will read, without waiting for
    /// it: a hint that changes no state. Issue [`Prefetch::Slot`] for a record some way
    /// ahead, [`Prefetch::Group`] nearer and [`Prefetch::Entries`] nearer still, so that
    /// each step finds in cache what the previous one loaded.
    pub fn prefetch(&self, tool_id: &str, recipe_id: &str, depth: Prefetch) {
        if self.index.is_empty() {
            return;
        }
        let h = hash(tool_id, recipe_id);
        let mask = self.index.len() - 1;
        let mut pos = h as usize & mask;
        if depth == Prefetch::Slot {
            prefetch(&self.index[pos]);
            return;
        }
        // The first slot with the key's hash bits (keys are compared by the lookup itself).
        let g = loop {
            match self.index[pos] {
                0 => return,
                slot if slot >> 32 == h >> 32 => break (slot as u32 - 1) as usize,
                _ => pos = (pos + 1) & mask,
            }
        };
        let group = &self.groups[g];
        if depth == Prefetch::Group {
            prefetch(group);
            return;
        }
        let lines = std::mem::size_of::<Entry<S>>()
            .div_ceil(64)
            .min(PREFETCH_LINES);
        for e in &group.entries {
            let p = (e as *const Entry<S>).cast::<u8>();
            for line in 0..lines {
                prefetch(p.wrapping_add(64 * line));
            }
        }
    }

    /// How many records ahead of the one being processed [`KeyedState::prefetch_ahead`]
    /// reads keys: `3 * PREFETCH_DISTANCE`, or 0 while it does nothing (a caller that decodes
    /// records just before processing them need not decode further ahead than this).
    pub fn prefetch_lookahead(&self) -> usize {
        if self.len < PREFETCH_MIN_KEYS {
            0
        } else {
            3 * PREFETCH_DISTANCE
        }
    }

    /// Called before processing record `i` of a sequence whose (tool, recipe) keys `key(j)`
    /// gives (`None` past its end or for a record without one): issues the three steps of
    /// [`KeyedState::prefetch`] for the records [`PREFETCH_DISTANCE`], twice and three times
    /// that far ahead, so that the lookups of several records wait for memory together
    /// instead of one after another. A no-op while the store holds fewer than
    /// [`PREFETCH_MIN_KEYS`] states: they stay in cache, and the extra hashing would be the
    /// only effect.
    #[inline]
    pub fn prefetch_ahead<'k>(&self, i: usize, key: impl Fn(usize) -> Option<(&'k str, &'k str)>) {
        if self.prefetch_lookahead() == 0 {
            return;
        }
        for (steps, depth) in [
            (3, Prefetch::Slot),
            (2, Prefetch::Group),
            (1, Prefetch::Entries),
        ] {
            if let Some((tool_id, recipe_id)) = key(i + steps * PREFETCH_DISTANCE) {
                self.prefetch(tool_id, recipe_id, depth);
            }
        }
    }

    /// Puts group `g` (with hash `h`) into the index.
    fn index_group(index: &mut [u64], h: u64, g: usize) {
        let mask = index.len() - 1;
        let mut pos = h as usize & mask;
        while index[pos] != 0 {
            pos = (pos + 1) & mask;
        }
        index[pos] = (h >> 32) << 32 | (g as u64 + 1);
    }

    /// Position of the (tool, recipe) group, created if absent.
    fn group_index(&mut self, tool_id: &str, recipe_id: &str) -> usize {
        if let Some(g) = self.groups.get(self.last)
            && g.key.is(tool_id, recipe_id, &self.long_keys)
        {
            return self.last;
        }
        let g = match self.find(tool_id, recipe_id) {
            Some(g) => g,
            None => {
                // At most 3/4 full: probes mostly stay within one cache line of slots.
                if (self.groups.len() + 1) * 4 > self.index.len() * 3 {
                    let mut index = vec![0u64; (self.index.len() * 2).max(16)];
                    for (g, group) in self.groups.iter().enumerate() {
                        Self::index_group(&mut index, group.hash, g);
                    }
                    self.index = index;
                }
                let h = hash(tool_id, recipe_id);
                let g = self.groups.len();
                Self::index_group(&mut self.index, h, g);
                self.groups.push(Group {
                    key: GroupKey::new(tool_id, recipe_id, &mut self.long_keys),
                    hash: h,
                    entries: Vec::new(),
                });
                self.is_changed.push(false);
                g
            }
        };
        self.last = g;
        g
    }

    /// Notes that group `g` changed, unless it is noted already.
    #[inline]
    fn mark(&mut self, g: usize) {
        if !self.is_changed[g] {
            self.is_changed[g] = true;
            self.changed.push(GroupId(g));
        }
    }

    /// The groups changed since the last call (lent mutably: by [`KeyedState::group`],
    /// [`KeyedState::get_or_insert_with`], [`KeyedState::iter_mut`] or
    /// [`KeyedState::collect_mut_where`]; not by [`KeyedState::insert`], which restores), in
    /// first-change order; forgets them.
    pub fn take_changed(&mut self) -> Vec<GroupId> {
        for id in &self.changed {
            self.is_changed[id.0] = false;
        }
        std::mem::take(&mut self.changed)
    }

    /// The states of one (tool, recipe), created empty if absent and counted as changed.
    /// Their first cache lines are prefetched.
    pub fn group(&mut self, tool_id: &str, recipe_id: &str) -> GroupMut<'_, S> {
        let g = self.group_index(tool_id, recipe_id);
        self.mark(g);
        let entries = &mut self.groups[g].entries;
        let lines = std::mem::size_of::<Entry<S>>()
            .div_ceil(64)
            .min(PREFETCH_LINES);
        for e in entries.iter() {
            let p = (e as *const Entry<S>).cast::<u8>();
            for line in 0..lines {
                prefetch(p.wrapping_add(64 * line));
            }
        }
        GroupMut {
            entries,
            long_names: &mut self.long_names,
            len: &mut self.len,
            next: 0,
        }
    }

    /// The state of `key`, created by `init` if absent (untagged: see
    /// [`GroupMut::get_or_insert_with`]); its group counts as changed.
    pub fn get_or_insert_with(&mut self, key: ChartKeyRef<'_>, init: impl FnOnce() -> S) -> &mut S {
        let g = self.group_index(key.tool_id, key.recipe_id);
        self.mark(g);
        self.entry_in(g, key.parameter, init)
    }

    /// The state of `parameter` in group `g`, created by `init` if absent.
    fn entry_in(&mut self, g: usize, parameter: &str, init: impl FnOnce() -> S) -> &mut S {
        let long = &self.long_names[..];
        let entries = &mut self.groups[g].entries;
        let pos = match entries.iter().position(|e| e.name.is(parameter, long)) {
            Some(pos) => pos,
            None => {
                entries.reserve_exact(1);
                entries.push(Entry {
                    tag: UNTAGGED,
                    state: init(),
                    name: Name::new(parameter, &mut self.long_names),
                });
                self.len += 1;
                entries.len() - 1
            }
        };
        &mut entries[pos].state
    }

    /// The state of `key`, if any.
    pub fn get(&self, key: ChartKeyRef<'_>) -> Option<&S> {
        let g = self.find(key.tool_id, key.recipe_id)?;
        self.groups[g]
            .entries
            .iter()
            .find(|e| e.name.is(key.parameter, &self.long_names))
            .map(|e| &e.state)
    }

    /// Replaces the state of `key` (restore from a snapshot; not counted as a change). The
    /// entry loses its tag, so the next tagged lookup checks the state again.
    pub fn insert(&mut self, key: ChartKeyRef<'_>, state: S) {
        let g = self.group_index(key.tool_id, key.recipe_id);
        let mut state = Some(state);
        let slot = self.entry_in(g, key.parameter, || state.take().expect("taken once"));
        if let Some(s) = state {
            *slot = s;
        }
        let long = &self.long_names[..];
        if let Some(e) = self.groups[g]
            .entries
            .iter_mut()
            .find(|e| e.name.is(key.parameter, long))
        {
            e.tag = UNTAGGED;
        }
    }

    /// The parameters and states of one (tool, recipe) group, in insertion order; `None` if
    /// the group has never been seen. The runtime snapshots state a group at a time.
    pub fn group_entries(
        &self,
        tool_id: &str,
        recipe_id: &str,
    ) -> Option<impl Iterator<Item = (&str, &S)>> {
        let g = self.find(tool_id, recipe_id)?;
        let long = &self.long_names;
        Some(
            self.groups[g]
                .entries
                .iter()
                .map(move |e| (e.name.get(long), &e.state)),
        )
    }

    /// The id of the (tool, recipe) group, if it has ever been seen: the group looked up
    /// last is answered without hashing.
    pub fn group_id(&self, tool_id: &str, recipe_id: &str) -> Option<GroupId> {
        let g = match self.groups.get(self.last) {
            Some(g) if g.key.is(tool_id, recipe_id, &self.long_keys) => self.last,
            _ => self.find(tool_id, recipe_id)?,
        };
        Some(GroupId(g))
    }

    /// The tool, the recipe and the (parameter, state) entries of a group, in insertion
    /// order; `None` for an id this store did not hand out.
    #[allow(clippy::type_complexity)]
    pub fn group_at(
        &self,
        id: GroupId,
    ) -> Option<((&str, &str), impl Iterator<Item = (&str, &S)>)> {
        let group = self.groups.get(id.0)?;
        let long = &self.long_names;
        Some((
            group.key.get(&self.long_keys),
            group
                .entries
                .iter()
                .map(move |e| (e.name.get(long), &e.state)),
        ))
    }

    /// Groups held (ids run from 0 to this, exclusive).
    pub fn group_count(&self) -> usize {
        self.groups.len()
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
        let (names, keys) = (&self.long_names, &self.long_keys);
        self.groups.iter().flat_map(move |group| {
            let (tool_id, recipe_id) = group.key.get(keys);
            group.entries.iter().map(move |e| {
                (
                    ChartKeyRef {
                        tool_id,
                        recipe_id,
                        parameter: e.name.get(names),
                    },
                    &e.state,
                )
            })
        })
    }

    /// Every key and its state, mutably, in no particular order; every group counts as
    /// changed.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ChartKeyRef<'_>, &mut S)> {
        for g in 0..self.groups.len() {
            self.mark(g);
        }
        let (names, keys) = (&self.long_names, &self.long_keys);
        self.groups.iter_mut().flat_map(move |group| {
            let (tool_id, recipe_id) = group.key.get(keys);
            group.entries.iter_mut().map(move |e| {
                (
                    ChartKeyRef {
                        tool_id,
                        recipe_id,
                        parameter: e.name.get(names),
                    },
                    &mut e.state,
                )
            })
        })
    }

    /// The keys whose state `keep` accepts, with their states, mutably, in no particular
    /// order; their groups count as changed. Unlike filtering [`iter_mut`](Self::iter_mut),
    /// a key is spelled out only for the states kept (a sweep that keeps few pays for few
    /// keys).
    pub fn collect_mut_where(
        &mut self,
        mut keep: impl FnMut(&S) -> bool,
    ) -> Vec<(ChartKeyRef<'_>, &mut S)> {
        let (names, keys) = (&self.long_names, &self.long_keys);
        let (changed, is_changed) = (&mut self.changed, &mut self.is_changed);
        let mut out = Vec::new();
        for (g, Group { key, entries, .. }) in self.groups.iter_mut().enumerate() {
            let mut ids = None;
            for e in entries.iter_mut().filter(|e| keep(&e.state)) {
                if !is_changed[g] {
                    is_changed[g] = true;
                    changed.push(GroupId(g));
                }
                let (tool_id, recipe_id) = *ids.get_or_insert_with(|| key.get(keys));
                let chart = ChartKeyRef {
                    tool_id,
                    recipe_id,
                    parameter: e.name.get(names),
                };
                out.push((chart, &mut e.state));
            }
        }
        out
    }

    /// Every key and its state, sorted by key (deterministic order for reports and flushes).
    pub fn sorted(&self) -> Vec<(ChartKeyRef<'_>, &S)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Bytes the store holds beyond its states' own: the index, the groups, each entry's
    /// header and alignment padding, spare capacity, and the side tables of long ids.
    pub fn overhead_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry<S>>() - std::mem::size_of::<S>();
        self.index.capacity() * 8
            + self.groups.capacity() * std::mem::size_of::<Group<S>>()
            + self
                .groups
                .iter()
                .map(|g| {
                    g.entries.len() * entry
                        + (g.entries.capacity() - g.entries.len()) * std::mem::size_of::<Entry<S>>()
                })
                .sum::<usize>()
            + self.long_names.iter().map(|n| n.len() + 16).sum::<usize>()
            + self
                .long_keys
                .iter()
                .map(|(t, r)| t.len() + r.len() + 32)
                .sum::<usize>()
    }
}

mod snapshot;
#[cfg(test)]
mod tests;

pub use snapshot::{GroupSnapshot, GroupSnapshotRef};
