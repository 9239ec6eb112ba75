//! Unit tests of the dedup (beside it, to keep the file to one job).

use super::*;

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
        sigma: None,
        cusum: None,
    }
}

/// The closed windows, owned.
fn close(d: &mut Dedup, now: i64, window_ms: i64) -> Vec<(Rule, u32, u64, i64, f64)> {
    let mut closed = vec![];
    d.expire(now, window_ms, |w| {
        closed.push((w.rule, w.repeats, w.seq, w.last_at, w.statistic))
    });
    closed
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
    assert!(close(&mut d, 999, w).is_empty());
    // Rule 1's window folded nothing, so it closes silently.
    assert_eq!(close(&mut d, 1000, w), vec![(Rule::Rule2, 2, 9, 200, 1.2)]);
    assert_eq!(d.open_windows(), 1);
    d.expire(1200, w, |_| panic!("rule 1 folded nothing"));
    assert_eq!(d.open_windows(), 0);
    assert_eq!(d, Dedup::default());
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
    d.flush(|w| {
        let owned = |id: Option<&str>| id.map(String::from);
        closed.push((
            w.severity,
            w.last_signal().severity(),
            owned(w.lot_id),
            owned(w.wafer_id),
            w.repeats,
        ))
    });
    assert_eq!(
        closed,
        vec![(
            Severity::Critical,
            Severity::Major,
            Some("L2".to_string()),
            None,
            2
        )]
    );
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

#[test]
fn admitting_a_sample_at_once_decides_as_one_at_a_time() {
    let signals: Vec<Signal> = [Rule::SpecHigh, Rule::Rule1, Rule::Rule2, Rule::Rule1]
        .iter()
        .map(|&r| sig(r, 2.0))
        .collect();
    let (mut one, mut all) = (Dedup::default(), Dedup::default());
    one.admit(&sig(Rule::Rule2, 1.0), 0, 1, 100, NO_IDS);
    all.admit(&sig(Rule::Rule2, 1.0), 0, 1, 100, NO_IDS);
    let singly: Vec<Admission> = signals
        .iter()
        .map(|s| one.admit(s, 5, 2, 100, (Some("L"), None)))
        .collect();
    let mut emitted = vec![];
    all.admit_all(&signals, 5, 2, 100, (Some("L"), None), |s| {
        emitted.push(s.rule)
    });
    assert_eq!(
        singly,
        vec![
            Admission::Emit,
            Admission::Emit,
            Admission::Folded,
            Admission::Folded
        ]
    );
    assert_eq!(emitted, vec![Rule::SpecHigh, Rule::Rule1]);
    assert_eq!(one, all);
}

/// Every field survives the encoding, whatever is shared between windows, and the
/// serialized form is the plain list.
#[test]
fn windows_round_trip_through_the_encoding_and_serde() {
    let mut ws = vec![];
    let base = Window {
        rule: Rule::Rule1,
        plot: Plot::Xbar,
        opened_at: 1_770_000_000_000,
        seq: 1_000_000,
        last_at: 1_770_000_060_000,
        statistic: 1.25,
        center: 1.0,
        ucl: Some(1.2),
        lcl: Some(0.8),
        cusum: None,
        repeats: 7,
        severity: Severity::Critical,
        lot_id: Some("LOT-00042"),
        wafer_id: Some("W07"),
    };
    ws.push(base);
    // Same firing and payload, other ids.
    ws.push(Window {
        rule: Rule::Rule2,
        severity: Severity::Minor,
        repeats: 0,
        wafer_id: None,
        ..base
    });
    // Same ids, its own firing and one-sided limits; opened earlier, extreme values.
    ws.push(Window {
        rule: Rule::SpecHigh,
        plot: Plot::Spec,
        opened_at: i64::MIN,
        seq: u64::MAX,
        last_at: i64::MAX,
        statistic: -0.0,
        center: f64::MIN_POSITIVE,
        ucl: None,
        lcl: Some(-3.0),
        cusum: Some([5.25, -0.0]),
        repeats: u32::MAX,
        ..base
    });
    ws.push(Window {
        rule: Rule::CriticalLow,
        lot_id: Some(""),
        wafer_id: Some("Wafer ünïcode"),
        ..base
    });
    let blob = encode(&ws).unwrap();
    assert_eq!(decode(Some(&blob), 0), ws);
    let mut d = Dedup::default();
    assert_eq!(d.store(&ws), i64::MIN);
    assert_eq!(d.oldest(), i64::MIN);
    assert_eq!(d.open_windows(), 4);
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        json.starts_with(r#"{"windows":[{"rule":"Rule1","plot":"Xbar""#),
        "{json}"
    );
    let back: Dedup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.windows(), ws);
    assert!(
        serde_json::from_str::<Dedup>(&json.replace("CriticalLow", "Rule1")).is_err(),
        "one window per rule"
    );
    // A snapshot taken before windows kept the CUSUM sums restores without them.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    for w in old["windows"].as_array_mut().unwrap() {
        assert!(w.as_object_mut().unwrap().remove("cusum").is_some());
    }
    let back: Dedup = serde_json::from_value(old).unwrap();
    let restored = back.windows();
    assert_eq!(restored.len(), 4);
    assert!(restored.iter().all(|w| w.cusum.is_none()));
    assert_eq!(restored[2].repeats, u32::MAX);
}

#[test]
fn windows_sharing_a_firing_take_a_few_bytes() {
    let mut d = Dedup::default();
    let ids = (Some("LOT-00042"), Some("W07"));
    let mut s = sig(Rule::Rule1, 4.0);
    (s.ucl, s.lcl) = (Some(3.0), Some(-3.0));
    let rules = [Rule::Rule1, Rule::Rule2, Rule::Rule5, Rule::Rule6];
    let signals: Vec<Signal> = rules.iter().map(|&rule| Signal { rule, ..s }).collect();
    d.admit_all(&signals, 0, 100, 1000, ids, |_| {});
    let first = d.heap_bytes();
    d.admit_all(&signals, 60, 101, 1000, ids, |_| {});
    assert_eq!(d.open_windows(), 4);
    // The first window holds the firing, limits and ids; the others refer to it.
    assert!(
        d.heap_bytes() <= first + 4,
        "{} -> {}",
        first,
        d.heap_bytes()
    );
    assert!(d.heap_bytes() < 90, "{} bytes", d.heap_bytes());
}
