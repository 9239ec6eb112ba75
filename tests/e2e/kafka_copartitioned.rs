//! Co-partitioned inputs (`topics.co_partitioned`) on a real broker (tansu,
//! `KAFKA_BOOTSTRAP`): each tool's telemetry is split over two topics with the same
//! partition count, and one task per partition number reads partition p of both, merged in
//! event-time order, into one chart state per tool.
//!
//! The expected alerts are the backtest's on the records put back in the documented merge
//! order (the lowest event time first, ties to the topic listed first), computed here from
//! that rule, not by spcvm. A job that read the topics one after the other, or kept a state
//! per topic (as without `co_partitioned`), would chart each tool's records in another
//! order or on two charts, and raise other alerts.

use std::collections::HashMap;
use std::time::Duration;

use spcvm_schemas::Telemetry;
use spcvm_testkit::*;

/// Splits `records` over two topics: every third record of each tool goes to the second,
/// so each tool's stream is interleaved across both.
fn split(records: &[Telemetry]) -> (Vec<Telemetry>, Vec<Telemetry>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for r in records {
        let n = seen.entry(&r.tool_id).or_default();
        if *n % 3 == 1 {
            second.push(r.clone());
        } else {
            first.push(r.clone());
        }
        *n += 1;
    }
    (first, second)
}

/// The merge rule, written out: of the two topics' next records, the one with the lower
/// event time first, the first topic's on a tie.
fn merged(first: &[Telemetry], second: &[Telemetry]) -> Vec<Telemetry> {
    let (mut a, mut b) = (first.iter().peekable(), second.iter().peekable());
    let mut out = Vec::with_capacity(first.len() + second.len());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.event_time < x.event_time => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(r) => out.push(r.clone()),
            None => return out,
        }
    }
}

#[test]
fn co_partitioned_inputs_are_merged_by_event_time_into_one_state_per_tool() {
    let mut setup = Setup::new(bootstrap(), "copart", 3);
    // Small takes: many merge rounds, each ending where one topic's messages run out.
    setup.queue_capacity = 7;
    let second_topic = setup.add_co_input("second");
    let records = telemetry(6, 400, 17);
    let half = records.len() / 2;
    let (first_a, first_b) = split(&records[..half]);
    let (rest_a, rest_b) = split(&records[half..]);
    let order: Vec<Telemetry> = merged(&first_a, &first_b)
        .into_iter()
        .chain(merged(&rest_a, &rest_b))
        .collect();
    let expected = backtest_alerts(setup.dir.path(), &order);
    // Reading the topics one after the other charts other alerts: the order matters here.
    let one_after_the_other: Vec<Telemetry> = [first_a.clone(), first_b.clone()].concat();
    let dir = tempfile::tempdir().unwrap();
    assert_ne!(
        backtest_alerts(dir.path(), &one_after_the_other),
        backtest_alerts(dir.path(), &merged(&first_a, &first_b)),
    );

    // Half the records, a clean stop, the other half, a restart: the state of every tool
    // and the offsets of both topics carry over.
    setup.produce_telemetry(&first_a);
    setup.produce_telemetry_to(&second_topic, &first_b);
    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "first");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    let consumed = job.metric(&format!(
        "spcvm_messages_consumed_total{{topic=\"{second_topic}\"}}"
    ));
    assert_eq!(consumed, Some(first_b.len() as f64), "{}", job.log_text());
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    setup.produce_telemetry(&rest_a);
    setup.produce_telemetry_to(&second_topic, &rest_b);
    let mut job = setup.start(&config, "second");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert!(
        job.log_text().contains("state restored"),
        "{}",
        job.log_text()
    );
    assert_same_alerts(&setup.alerts(), &expected);

    // One state per tool, kept under the first topic's name.
    let changelog = read_all(&setup.bootstrap, &setup.changelog());
    assert!(!changelog.is_empty());
    for record in &changelog {
        let key: Vec<String> = serde_json::from_slice(record.key.as_deref().unwrap()).unwrap();
        let topic = if key.len() == 1 { &key[0] } else { &key[1] };
        assert_eq!(topic, &setup.input, "{key:?}");
    }
}

#[test]
fn co_partitioned_inputs_with_different_partition_counts_are_refused() {
    let mut setup = Setup::new(bootstrap(), "copart-counts", 3);
    let other = format!("{}.other", setup.input);
    setup.create_topic(&other, 2);
    setup.co_inputs.push(other.clone());
    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "job");
    let status = job.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = job.log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("co-partitioned inputs need the same partition count")
            && last.contains(&format!("`{}` has 3", setup.input))
            && last.contains(&format!("`{other}` has 2")),
        "{log}"
    );
}
