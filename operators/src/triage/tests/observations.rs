//! An incident's observations: the oldest leave, the rows stay with their observations
//! across the one-move compaction, and only the live ones are compared and serialized.

use super::super::*;
use super::alert;

fn observation(parameter: &str, minute: i64) -> Observation {
    Observation::of(&alert("ION-01", parameter, "xbar", "rule_1", true, minute))
}

/// The live observations' minutes, and each row's event time and parameter, from the rows.
fn rows(o: &Observations) -> Vec<(i64, String)> {
    o.rows()
        .iter()
        .map(|r| (r.event_time, o.params()[r.param as usize].clone()))
        .collect()
}

#[test]
fn the_oldest_leave_and_rows_follow_their_observations() {
    let names = [
        "beam_current_mA",
        "source_pressure_mtorr",
        "dose_uniformity_pct",
    ];
    let all: Vec<Observation> = (0..40)
        .map(|m| observation(names[m as usize % 3], m))
        .collect();
    let mut kept: Observations = Observations::default();
    for (i, o) in all.iter().enumerate() {
        kept.push(o.clone());
        // Keep at most 8: the compaction runs every few pushes.
        if kept.len() > 8 {
            kept.drop_oldest(1);
        }
        let from = (i + 1).saturating_sub(8);
        assert_eq!(&*kept, &all[from..=i], "after push {i}");
        let expected: Vec<(i64, String)> = all[from..=i]
            .iter()
            .map(|o| (o.event_time, o.parameter.to_string()))
            .collect();
        assert_eq!(rows(&kept), expected, "rows after push {i}");
    }
    // Dropping more than there are leaves none.
    kept.drop_oldest(100);
    assert!(kept.is_empty() && kept.rows().is_empty());
    kept.push(observation("beam_current_mA", 50));
    assert_eq!(kept.len(), 1);
    assert_eq!(rows(&kept), [(50 * 60_000, "beam_current_mA".to_string())]);
}

#[test]
fn only_the_live_observations_are_compared_and_serialized() {
    let mut a: Observations = (0..6).map(|m| observation("beam_current_mA", m)).collect();
    a.drop_oldest(2);
    let b: Observations = (2..6).map(|m| observation("beam_current_mA", m)).collect();
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, serde_json::to_string(&b.to_vec()).unwrap());
    let restored: Observations = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, a);
    assert_eq!(rows(&restored), rows(&a));
}

#[test]
fn contains_finds_the_same_alert_only() {
    let o = observation("beam_current_mA", 3);
    let kept: Observations = [o.clone()].into_iter().collect();
    assert!(kept.contains(&o.alert_id, o.event_time, 0));
    // The closing update of the same alert is another witness.
    assert!(!kept.contains(&o.alert_id, o.event_time, 4));
    assert!(!kept.contains("other", o.event_time, 0));
    assert!(!kept.contains(&o.alert_id, o.event_time + 1, 0));
}

#[test]
fn a_row_is_a_quarter_cache_line() {
    // The layout the module's documentation describes.
    assert_eq!(std::mem::size_of::<super::super::observations::Row>(), 16);
    assert_eq!(std::mem::size_of::<Observation>(), 112);
}
