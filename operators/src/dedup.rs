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

use serde::{Deserialize, Serialize};

use spcvm_schemas::Severity;

use crate::signal::Signal;

/// One open dedup window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Event time of the alert that opened it.
    pub opened_at: i64,
    /// Chart sample number of the opening alert (part of its id).
    pub seq: u64,
    /// Event time of the last folded repeat.
    pub last_at: i64,
    /// The signal of the opening alert, replaced by each folded repeat.
    pub last: Signal,
    /// Repeats folded so far.
    pub repeats: u32,
    /// The worst severity of the opening alert and its repeats.
    pub severity: Severity,
    /// Lot of the last firing.
    pub lot_id: Option<Box<str>>,
    /// Wafer of the last firing.
    pub wafer_id: Option<Box<str>>,
}

/// Replaces `slot` with `value` unless it already holds it (no allocation when unchanged).
fn set_id(slot: &mut Option<Box<str>>, value: Option<&str>) {
    if slot.as_deref() != value {
        *slot = value.map(Into::into);
    }
}

/// The open windows of one chart (usually none or one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    open: Vec<Window>,
    /// Earliest `opened_at` among the open windows (i64::MAX when none): the per-sample
    /// expiry check reads only this, not the windows.
    oldest: i64,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            open: Vec::new(),
            oldest: i64::MAX,
        }
    }
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
    /// Closes every window that `now` has passed, handing those that folded repeats to `closed`.
    pub fn expire(&mut self, now: i64, window_ms: i64, mut closed: impl FnMut(&Window)) {
        if now.saturating_sub(self.oldest) < window_ms {
            return;
        }
        self.open.retain(|w| {
            let keep = now.saturating_sub(w.opened_at) < window_ms;
            if !keep && w.repeats > 0 {
                closed(w);
            }
            keep
        });
        self.oldest = self
            .open
            .iter()
            .map(|w| w.opened_at)
            .min()
            .unwrap_or(i64::MAX);
    }

    /// Closes every window, handing those that folded repeats to `closed`.
    pub fn flush(&mut self, closed: impl FnMut(&Window)) {
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
        (lot, wafer): (Option<&str>, Option<&str>),
    ) -> Admission {
        if window_ms <= 0 {
            return Admission::Emit;
        }
        if let Some(w) = self.open.iter_mut().find(|w| w.last.rule == signal.rule) {
            w.repeats += 1;
            w.last_at = w.last_at.max(now);
            w.last = *signal;
            w.severity = w.severity.max(signal.severity());
            set_id(&mut w.lot_id, lot);
            set_id(&mut w.wafer_id, wafer);
            return Admission::Folded;
        }
        self.oldest = self.oldest.min(now);
        // One window at a time: the default growth would reserve four.
        self.open.reserve_exact(1);
        self.open.push(Window {
            opened_at: now,
            seq,
            last_at: now,
            last: *signal,
            repeats: 0,
            severity: signal.severity(),
            lot_id: lot.map(Into::into),
            wafer_id: wafer.map(Into::into),
        });
        Admission::Emit
    }

    /// Number of open windows.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Heap bytes held by the open windows (their vector and lot/wafer ids).
    pub fn heap_bytes(&self) -> usize {
        self.open.capacity() * std::mem::size_of::<Window>()
            + self
                .open
                .iter()
                .map(|w| {
                    w.lot_id.as_ref().map_or(0, |s| s.len())
                        + w.wafer_id.as_ref().map_or(0, |s| s.len())
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Plot, Rule};

    const NO_IDS: (Option<&str>, Option<&str>) = (None, None);

    fn sig(rule: Rule, statistic: f64) -> Signal {
        Signal {
            rule,
            plot: Plot::I,
            statistic,
            center: 0.0,
            ucl: None,
            lcl: None,
            zone: 0.0,
        }
    }

    #[test]
    fn repeats_fold_and_close_with_a_count() {
        let mut d = Dedup::default();
        let w = 1000;
        assert_eq!(
            d.admit(&sig(Rule::Rule2, 1.0), 0, 9, w, NO_IDS),
            Admission::Emit
        );
        assert_eq!(
            d.admit(&sig(Rule::Rule2, 1.1), 100, 10, w, NO_IDS),
            Admission::Folded
        );
        assert_eq!(
            d.admit(&sig(Rule::Rule2, 1.2), 200, 11, w, NO_IDS),
            Admission::Folded
        );
        // Another rule has its own window.
        assert_eq!(
            d.admit(&sig(Rule::Rule1, 1.2), 200, 11, w, NO_IDS),
            Admission::Emit
        );
        let mut closed = vec![];
        d.expire(999, w, |w| closed.push(w.clone()));
        assert!(closed.is_empty());
        d.expire(1000, w, |w| closed.push(w.clone()));
        // Rule 1's window folded nothing, so it closes silently.
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].last.rule, Rule::Rule2);
        assert_eq!(closed[0].repeats, 2);
        assert_eq!(closed[0].seq, 9);
        assert_eq!(closed[0].last_at, 200);
        assert_eq!(closed[0].last.statistic, 1.2);
        assert_eq!(d.open_windows(), 1);
        d.expire(1200, w, |_| panic!("rule 1 folded nothing"));
        assert_eq!(d.open_windows(), 0);
    }

    #[test]
    fn closing_window_keeps_last_ids_and_worst_severity() {
        let mut d = Dedup::default();
        let mut s = sig(Rule::Rule1, 3.5);
        s.zone = 3.5;
        d.admit(&s, 0, 1, 100, (Some("L1"), Some("W1")));
        s.zone = 5.0;
        d.admit(&s, 10, 2, 100, (Some("L1"), Some("W2")));
        s.zone = 3.2;
        d.admit(&s, 20, 3, 100, (Some("L2"), None));
        let mut closed = vec![];
        d.flush(|w| closed.push(w.clone()));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].severity, Severity::Critical);
        assert_eq!(closed[0].last.severity(), Severity::Major);
        assert_eq!(closed[0].lot_id.as_deref(), Some("L2"));
        assert_eq!(closed[0].wafer_id, None);
        assert_eq!(closed[0].repeats, 2);
    }

    #[test]
    fn zero_window_disables_dedup() {
        let mut d = Dedup::default();
        assert_eq!(
            d.admit(&sig(Rule::Rule1, 0.0), 0, 1, 0, NO_IDS),
            Admission::Emit
        );
        assert_eq!(
            d.admit(&sig(Rule::Rule1, 0.0), 0, 2, 0, NO_IDS),
            Admission::Emit
        );
        assert_eq!(d.open_windows(), 0);
    }

    #[test]
    fn flush_closes_everything() {
        let mut d = Dedup::default();
        d.admit(&sig(Rule::Rule5, 0.0), 0, 1, 10_000, NO_IDS);
        d.admit(&sig(Rule::Rule5, 0.0), 5, 2, 10_000, NO_IDS);
        let mut n = 0;
        d.flush(|w| n += w.repeats);
        assert_eq!(n, 1);
        assert_eq!(d.open_windows(), 0);
    }
}
