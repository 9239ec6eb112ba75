//! Alert dedup: repeats of one (tool, recipe, parameter, rule) inside a window of event time
//! fold into the alert that opened the window.
//!
//! The first firing emits its alert at once (no added latency). Later firings of the same rule
//! on the same chart within `window_ms` of that first one are counted, not emitted. When the
//! window has passed (seen on the chart's next sample, on a watermark, or at the end of a
//! bounded input) and it folded at least one repeat, a closing alert is emitted with the **same
//! `alert_id`**, the last repeat's statistic, event time, lot and wafer, the worst severity
//! seen in the window, and `repeats` = the number folded.
//! A consumer that keys alerts by id therefore sees one alert whose count grows. A window of 0
//! disables dedup.
//!
//! # Storage
//!
//! A chart holds one window per rule that fired recently: none most of the time, several
//! during a sustained shift (rules 1, 2, 5 and 6, a spec limit and the critical threshold can
//! all be open at once). The windows live in one exact-size byte string, touched only when a
//! rule fires or a window expires: the owner keeps the earliest opening time that
//! [`Dedup::expire`] and [`Dedup::admit_all`] return, and checks it on each sample (see
//! [`crate::SpcState`]). Each window keeps exactly what its closing alert needs (rule, plot,
//! opening time and sample number, last time and statistic, the limits it was judged
//! against, worst severity, repeat count, last lot and wafer), in a compact encoding:
//! integers as deltas in variable-length form, and whatever equals an earlier window's (the
//! firing that several rules share on one sample, the chart's limits, the lot and wafer) as
//! a one-nibble reference to that window. A window typically takes 8 to 30 bytes instead of
//! 140. Snapshots (serde) see a plain list of windows, not the encoding.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use spcvm_schemas::Severity;

use crate::signal::{Plot, Rule, Signal};

/// One open dedup window, decoded: what the alert that closes it needs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Window<'a> {
    /// The rule the window folds.
    pub rule: Rule,
    /// The statistic it fired on (the alert's `chart`).
    pub plot: Plot,
    /// Event time of the alert that opened it.
    pub opened_at: i64,
    /// Chart sample number of the opening alert (part of its id).
    pub seq: u64,
    /// Event time of the last folded repeat (of the opening alert until one is folded).
    pub last_at: i64,
    /// Plotted value of the last firing.
    pub statistic: f64,
    /// Center line the last firing was judged against.
    pub center: f64,
    /// Upper limit the last firing was judged against, if any.
    pub ucl: Option<f64>,
    /// Lower limit the last firing was judged against, if any.
    pub lcl: Option<f64>,
    /// Repeats folded so far.
    pub repeats: u32,
    /// The worst severity of the opening alert and its repeats.
    pub severity: Severity,
    /// Lot of the last firing.
    pub lot_id: Option<&'a str>,
    /// Wafer of the last firing.
    pub wafer_id: Option<&'a str>,
    /// CUSUM sums (C+, C-) in σ units of the last firing, on CUSUM windows. (The σ of the
    /// last firing's statistic is not kept: it follows from the chart, see
    /// [`crate::spc::plot_sigma`].) Last, because snapshots serialize a window as a sequence
    /// (MessagePack), and one taken before this field existed ends where it begins.
    pub cusum: Option<[f64; 2]>,
}

impl<'a> Window<'a> {
    /// The window a signal opens at event time `now`, on chart sample `seq`.
    fn open(signal: &Signal, now: i64, seq: u64, (lot, wafer): Ids<'a>) -> Self {
        Window {
            rule: signal.rule,
            plot: signal.plot,
            opened_at: now,
            seq,
            last_at: now,
            statistic: signal.statistic,
            center: signal.center,
            ucl: signal.ucl,
            lcl: signal.lcl,
            cusum: signal.cusum,
            repeats: 0,
            severity: signal.severity(),
            lot_id: lot,
            wafer_id: wafer,
        }
    }

    /// Folds a repeat of the window's rule.
    fn fold(&mut self, signal: &Signal, now: i64, (lot, wafer): Ids<'a>) {
        self.repeats += 1;
        self.last_at = self.last_at.max(now);
        self.plot = signal.plot;
        self.statistic = signal.statistic;
        self.center = signal.center;
        self.ucl = signal.ucl;
        self.lcl = signal.lcl;
        self.cusum = signal.cusum;
        self.severity = self.severity.max(signal.severity());
        self.lot_id = lot;
        self.wafer_id = wafer;
    }

    /// The last firing as a signal. Its zone score is not kept (only the severity it
    /// implied, in [`Window::severity`]), so it reads 0.
    pub fn last_signal(&self) -> Signal {
        Signal {
            rule: self.rule,
            plot: self.plot,
            statistic: self.statistic,
            center: self.center,
            ucl: self.ucl,
            lcl: self.lcl,
            zone: 0.0,
            sigma: None,
            cusum: self.cusum,
        }
    }

    /// Whether the last firing (time and statistic) is the same as `o`'s.
    fn same_firing(&self, o: &Window<'_>) -> bool {
        self.last_at == o.last_at && self.statistic.to_bits() == o.statistic.to_bits()
    }

    /// Whether the plot, the limits and the CUSUM sums of the last firing are the same as
    /// `o`'s.
    fn same_payload(&self, o: &Window<'_>) -> bool {
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        let sums = |v: Option<[f64; 2]>| v.map(|[a, b]| [a.to_bits(), b.to_bits()]);
        self.plot == o.plot
            && self.center.to_bits() == o.center.to_bits()
            && bits(self.ucl) == bits(o.ucl)
            && bits(self.lcl) == bits(o.lcl)
            && sums(self.cusum) == sums(o.cusum)
    }
}

/// Lot and wafer of a firing.
type Ids<'a> = (Option<&'a str>, Option<&'a str>);

/// The open windows of one chart (usually none or one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "DedupRepr")]
pub struct Dedup {
    /// The windows, encoded (see the module docs); `None` when there are none.
    windows: Option<Box<[u8]>>,
}

/// What to do with a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Emit a new alert.
    Emit,
    /// Folded into an open window; emit nothing now.
    Folded,
}

impl Dedup {
    /// The earliest opening time among the open windows; `i64::MAX` when there are none.
    /// Event time `now` expires a window once `now - oldest >= window_ms`.
    pub fn oldest(&self) -> i64 {
        oldest(&decode(self.windows.as_deref(), 0))
    }

    /// Closes every window that `now` has passed, handing those that folded repeats to
    /// `closed`. Returns [`Dedup::oldest`] of the windows left open.
    pub fn expire(&mut self, now: i64, window_ms: i64, mut closed: impl FnMut(&Window<'_>)) -> i64 {
        let blob = self.windows.take();
        let mut open = decode(blob.as_deref(), 0);
        let count = open.len();
        open.retain(|w| {
            let keep = now.saturating_sub(w.opened_at) < window_ms;
            if !keep && w.repeats > 0 {
                closed(w);
            }
            keep
        });
        if open.len() == count {
            let oldest = oldest(&open);
            drop(open);
            self.windows = blob;
            return oldest;
        }
        self.store(&open)
    }

    /// Closes every window, handing those that folded repeats to `closed`.
    pub fn flush(&mut self, closed: impl FnMut(&Window<'_>)) {
        self.expire(i64::MAX, 0, closed);
    }

    /// Decides whether `signal` at event time `now` (chart sample `seq`, on `lot`/`wafer`)
    /// is new or a repeat.
    pub fn admit(
        &mut self,
        signal: &Signal,
        now: i64,
        seq: u64,
        window_ms: i64,
        ids: (Option<&str>, Option<&str>),
    ) -> Admission {
        let mut admission = Admission::Folded;
        self.admit_all(
            std::slice::from_ref(signal),
            now,
            seq,
            window_ms,
            ids,
            |_| {
                admission = Admission::Emit;
            },
        );
        admission
    }

    /// Admits, in order, the signals one sample raised (event time `now`, chart sample `seq`,
    /// on `lot`/`wafer`), calling `emit` with each that opens a window (or with every one when
    /// dedup is off). Same decisions as [`Dedup::admit`] on each in turn, with the windows
    /// decoded and re-encoded once. Returns [`Dedup::oldest`] afterwards.
    pub fn admit_all(
        &mut self,
        signals: &[Signal],
        now: i64,
        seq: u64,
        window_ms: i64,
        ids: (Option<&str>, Option<&str>),
        mut emit: impl FnMut(&Signal),
    ) -> i64 {
        if window_ms <= 0 {
            signals.iter().for_each(emit);
            return i64::MAX;
        }
        let blob = self.windows.take();
        let mut open = decode(blob.as_deref(), signals.len());
        for signal in signals {
            match open.iter_mut().find(|w| w.rule == signal.rule) {
                Some(w) => w.fold(signal, now, ids),
                None => {
                    open.push(Window::open(signal, now, seq, ids));
                    emit(signal);
                }
            }
        }
        self.store(&open)
    }

    /// Replaces the windows with `open`; returns their [`Dedup::oldest`].
    fn store(&mut self, open: &[Window<'_>]) -> i64 {
        self.windows = encode(open);
        oldest(open)
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.windows.as_deref().map_or(0, |b| usize::from(b[0]))
    }

    /// The open windows, in the order they opened.
    pub fn windows(&self) -> Vec<Window<'_>> {
        decode(self.windows.as_deref(), 0)
    }

    /// Heap bytes held by the open windows (their encoding, lot and wafer ids included).
    pub fn heap_bytes(&self) -> usize {
        self.windows.as_deref().map_or(0, <[u8]>::len)
    }
}

impl Serialize for Dedup {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("Dedup", 1)?;
        st.serialize_field("windows", &self.windows())?;
        st.end()
    }
}

/// The serialized form of [`Dedup`]: the windows as plain records.
#[derive(Deserialize)]
struct DedupRepr {
    windows: Vec<WindowRepr>,
}

/// An owned [`Window`], as deserialized.
#[derive(Deserialize)]
struct WindowRepr {
    rule: Rule,
    plot: Plot,
    opened_at: i64,
    seq: u64,
    last_at: i64,
    statistic: f64,
    center: f64,
    ucl: Option<f64>,
    lcl: Option<f64>,
    repeats: u32,
    severity: Severity,
    lot_id: Option<String>,
    wafer_id: Option<String>,
    /// Absent from snapshots taken before alerts carried the CUSUM sums (last, so that a
    /// snapshot that serialized windows as sequences still reads).
    #[serde(default)]
    cusum: Option<[f64; 2]>,
}

impl TryFrom<DedupRepr> for Dedup {
    type Error = String;

    fn try_from(repr: DedupRepr) -> Result<Self, String> {
        let mut open = Vec::with_capacity(repr.windows.len());
        for w in &repr.windows {
            if open.iter().any(|o: &Window<'_>| o.rule == w.rule) {
                return Err(format!("two dedup windows for {}", w.rule.as_str()));
            }
            open.push(Window {
                rule: w.rule,
                plot: w.plot,
                opened_at: w.opened_at,
                seq: w.seq,
                last_at: w.last_at,
                statistic: w.statistic,
                center: w.center,
                ucl: w.ucl,
                lcl: w.lcl,
                cusum: w.cusum,
                repeats: w.repeats,
                severity: w.severity,
                lot_id: w.lot_id.as_deref(),
                wafer_id: w.wafer_id.as_deref(),
            });
        }
        let mut dedup = Dedup::default();
        dedup.store(&open);
        Ok(dedup)
    }
}

/// The earliest opening time among `windows`; `i64::MAX` when there are none.
fn oldest(windows: &[Window<'_>]) -> i64 {
    windows
        .iter()
        .map(|w| w.opened_at)
        .min()
        .unwrap_or(i64::MAX)
}

/// At most one window per rule.
const MAX_WINDOWS: usize = Rule::COUNT;

const EMPTY: Window<'static> = Window {
    rule: Rule::Rule1,
    plot: Plot::I,
    opened_at: 0,
    seq: 0,
    last_at: 0,
    statistic: 0.0,
    center: 0.0,
    ucl: None,
    lcl: None,
    repeats: 0,
    severity: Severity::Minor,
    lot_id: None,
    wafer_id: None,
    cusum: None,
};

// The encoding. Blob = count (u8), then per window, in opening order:
//   head: rule index (bits 0-3) | severity (bits 4-5: minor 0, major 1, critical 2)
//   refs: firing ref (bits 0-3) | payload ref (bits 4-7), then lot ref | wafer ref. A ref is
//         the index of an earlier window whose value this one repeats, or EXPLICIT.
//   seq, opened_at: zigzag varints of the difference from the previous window's (0 first)
//   repeats: varint
//   firing, if explicit: zigzag varint last_at - opened_at; statistic (8 bytes, LE)
//   payload, if explicit: plot (bits 0-2) | has ucl (bit 3) | has lcl (bit 4) | has CUSUM
//         sums (bit 5); center, ucl, lcl, C+, C- (8 bytes each, LE, when present)
//   lot, wafer, each if explicit: varint 0 for none, else length + 1 and the UTF-8 bytes

/// The ref value meaning "stored here".
const EXPLICIT: u8 = 0x0f;

const PLOTS: [Plot; 8] = [
    Plot::Xbar,
    Plot::R,
    Plot::S,
    Plot::I,
    Plot::Mr,
    Plot::Ewma,
    Plot::Cusum,
    Plot::Spec,
];

fn plot_code(p: Plot) -> u8 {
    PLOTS.iter().position(|&q| q == p).unwrap_or(0) as u8
}

fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Minor => 0,
        Severity::Major => 1,
        Severity::Critical => 2,
    }
}

const SEVERITIES: [Severity; 3] = [Severity::Minor, Severity::Major, Severity::Critical];

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Where an encoding goes: a byte count (to size the allocation) or the bytes.
trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }

    fn varint(&mut self, mut v: u64) {
        let mut buf = [0u8; 10];
        let mut n = 0;
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                buf[n] = low;
                n += 1;
                break;
            }
            buf[n] = low | 0x80;
            n += 1;
        }
        self.put(&buf[..n]);
    }

    fn f64(&mut self, v: f64) {
        self.put(&v.to_bits().to_le_bytes());
    }

    fn id(&mut self, id: Option<&str>) {
        match id {
            None => self.byte(0),
            Some(s) => {
                self.varint(s.len() as u64 + 1);
                self.put(s.as_bytes());
            }
        }
    }
}

struct Count(usize);

impl Sink for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// For each window, the earlier windows whose firing, payload, lot and wafer it repeats (or
/// [`EXPLICIT`]).
fn refs(ws: &[Window<'_>]) -> [[u8; 4]; MAX_WINDOWS] {
    let mut refs = [[EXPLICIT; 4]; MAX_WINDOWS];
    for (j, w) in ws.iter().enumerate() {
        let find = |same: &dyn Fn(&Window<'_>) -> bool| {
            ws[..j].iter().position(same).map_or(EXPLICIT, |k| k as u8)
        };
        refs[j] = [
            find(&|o| w.same_firing(o)),
            find(&|o| w.same_payload(o)),
            find(&|o| w.lot_id == o.lot_id),
            find(&|o| w.wafer_id == o.wafer_id),
        ];
    }
    refs
}

fn write(ws: &[Window<'_>], refs: &[[u8; 4]], out: &mut impl Sink) {
    out.byte(ws.len() as u8);
    let (mut seq, mut opened_at) = (0u64, 0i64);
    for (w, &[firing, payload, lot, wafer]) in ws.iter().zip(refs) {
        out.byte(w.rule.index() as u8 | severity_code(w.severity) << 4);
        out.byte(firing | payload << 4);
        out.byte(lot | wafer << 4);
        out.varint(zigzag(w.seq.wrapping_sub(seq) as i64));
        out.varint(zigzag(w.opened_at.wrapping_sub(opened_at)));
        (seq, opened_at) = (w.seq, w.opened_at);
        out.varint(u64::from(w.repeats));
        if firing == EXPLICIT {
            out.varint(zigzag(w.last_at.wrapping_sub(w.opened_at)));
            out.f64(w.statistic);
        }
        if payload == EXPLICIT {
            out.byte(
                plot_code(w.plot)
                    | u8::from(w.ucl.is_some()) << 3
                    | u8::from(w.lcl.is_some()) << 4
                    | u8::from(w.cusum.is_some()) << 5,
            );
            out.f64(w.center);
            w.ucl.into_iter().chain(w.lcl).for_each(|v| out.f64(v));
            w.cusum.into_iter().flatten().for_each(|v| out.f64(v));
        }
        if lot == EXPLICIT {
            out.id(w.lot_id);
        }
        if wafer == EXPLICIT {
            out.id(w.wafer_id);
        }
    }
}

/// Encodes windows into an exact-size byte string; `None` when there are none.
fn encode(ws: &[Window<'_>]) -> Option<Box<[u8]>> {
    if ws.is_empty() {
        return None;
    }
    let refs = refs(ws);
    let mut count = Count(0);
    write(ws, &refs, &mut count);
    let mut bytes = Vec::with_capacity(count.0);
    write(ws, &refs, &mut bytes);
    Some(bytes.into_boxed_slice())
}

/// Reads what [`write`](fn@write) wrote.
struct Reader<'a> {
    bytes: &'a [u8],
}

/// The encoding is produced only by [`encode`] (deserialization goes through the plain
/// form), so a short read is a bug, not bad input.
const CORRUPT: &str = "dedup windows are written by `encode`";

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.bytes.split_at_checked(n).expect(CORRUPT);
        self.bytes = rest;
        head
    }

    fn byte(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte();
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    }

    fn f64(&mut self) -> f64 {
        f64::from_bits(u64::from_le_bytes(self.take(8).try_into().expect(CORRUPT)))
    }

    fn id(&mut self) -> Option<&'a str> {
        let n = (self.varint() as usize).checked_sub(1)?;
        Some(std::str::from_utf8(self.take(n)).expect(CORRUPT))
    }
}

/// Decodes the windows, with room for `extra` more.
fn decode(blob: Option<&[u8]>, extra: usize) -> Vec<Window<'_>> {
    let Some(bytes) = blob else {
        return Vec::with_capacity(extra);
    };
    let mut r = Reader { bytes };
    let count = usize::from(r.byte());
    let mut ws: Vec<Window<'_>> = Vec::with_capacity(count + extra);
    let (mut seq, mut opened_at) = (0u64, 0i64);
    for _ in 0..count {
        let head = r.byte();
        let refs = r.byte();
        let ids = r.byte();
        let (firing, payload) = (refs & 0x0f, refs >> 4);
        seq = seq.wrapping_add(unzigzag(r.varint()) as u64);
        opened_at = opened_at.wrapping_add(unzigzag(r.varint()));
        let mut w = Window {
            rule: Rule::ALL[usize::from(head & 0x0f)],
            severity: SEVERITIES[usize::from(head >> 4 & 0x03).min(2)],
            seq,
            opened_at,
            repeats: r.varint() as u32,
            ..EMPTY
        };
        let earlier = |k: u8| *ws.get(usize::from(k)).expect(CORRUPT);
        if firing == EXPLICIT {
            w.last_at = opened_at.wrapping_add(unzigzag(r.varint()));
            w.statistic = r.f64();
        } else {
            let o = earlier(firing);
            (w.last_at, w.statistic) = (o.last_at, o.statistic);
        }
        if payload == EXPLICIT {
            let flags = r.byte();
            w.plot = PLOTS[usize::from(flags & 0x07)];
            w.center = r.f64();
            w.ucl = (flags & 0x08 != 0).then(|| r.f64());
            w.lcl = (flags & 0x10 != 0).then(|| r.f64());
            w.cusum = (flags & 0x20 != 0).then(|| [r.f64(), r.f64()]);
        } else {
            let o = earlier(payload);
            (w.plot, w.center, w.ucl, w.lcl) = (o.plot, o.center, o.ucl, o.lcl);
            w.cusum = o.cusum;
        }
        let (lot, wafer) = (ids & 0x0f, ids >> 4);
        w.lot_id = match lot {
            EXPLICIT => r.id(),
            k => earlier(k).lot_id,
        };
        w.wafer_id = match wafer {
            EXPLICIT => r.id(),
            k => earlier(k).wafer_id,
        };
        ws.push(w);
    }
    ws
}

#[cfg(test)]
mod tests;
