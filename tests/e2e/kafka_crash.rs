//! Exactly-once under crashes and rebalances, on a broker that hides aborted transactions
//! from read_committed readers (noida-db, `KAFKA_BOOTSTRAP_TXN`).
//!
//! - `kill -9` of the job mid-stream, three times, then a restart: the committed alert
//!   stream equals the backtest's (no alert lost, none twice), which also shows every chart
//!   continued from its restored state (a chart that restarted would re-run Phase I and
//!   raise different alerts).
//! - A second instance joining the group and leaving again: the same alerts as one instance.
//! - A second instance started by mistake with the first one's instance id (so the same
//!   transactional id and static member id): the newer one fences the older, which stops
//!   with an error saying so instead of what failed after it; the newer one carries on and the alerts equal the
//!   backtest's.

use std::time::Duration;

use spcvm_testkit::*;

const ASSIGNED: &str = "partitions assigned";

#[test]
fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    let mut setup = Setup::new(bootstrap_txn(), "crash", 3);
    setup.static_membership = true;
    let records = telemetry(6, 360, 3);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let last_run = setup.kill_9_three_times(&records, "exactly_once");
    assert!(last_run.contains("state restored"), "{last_run}");
    assert_same_alerts(&setup.alerts(), &expected);
}

#[test]
fn a_second_instance_joining_and_leaving_changes_no_alert() {
    let setup = Setup::new(bootstrap_txn(), "rebalance", 4);
    let records = telemetry(6, 360, 5);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let (first, _) = setup.second_instance_joins_and_leaves(&records, "exactly_once");
    // Both instances held partitions at some point.
    assert!(first.matches(ASSIGNED).count() >= 2, "{first}");
    assert_same_alerts(&setup.alerts(), &expected);
}

#[test]
fn an_instance_fenced_by_a_namesake_stops_and_says_why() {
    let mut setup = Setup::new(bootstrap_txn(), "fenced", 2);
    setup.static_membership = true;
    let records = telemetry(4, 300, 9);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let producer = setup.produce_paced(records.clone(), 40, Duration::from_millis(200));
    let config = setup.write_config("job", "exactly_once", "same", "");
    let mut first = setup.start(&config, "first");
    first.wait_log(ASSIGNED, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = setup.start(&config, "second");
    let status = first.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{}", first.log_text());
    let log = first.log_text();
    let last = log.lines().last().unwrap_or_default();
    // The broker fences the older producer (same transactional id) or, first, the older
    // consumer (same static `group.instance.id`): either way the error says who won.
    assert!(
        last.starts_with("spcvm: error: kafka: another ")
            && last.contains("the newer one wins")
            && (last.contains("instance id `same`") || last.contains("`spcvm-same`"))
            && last.contains("kafka.instance_id"),
        "{log}"
    );
    producer.join().unwrap();
    setup.wait_caught_up(Duration::from_secs(120), &[&second]);
    assert!(
        second.terminate(Duration::from_secs(30)),
        "{}",
        second.log_text()
    );
    assert_same_alerts(&setup.alerts(), &expected);
}
