//! `spcvm topics create` next to topics that exist. The state of input partition p is kept
//! in changelog partition p, so:
//!
//! - on a changelog made with fewer partitions than the input has (by hand, or before the
//!   input was made bigger elsewhere) the job refuses to start and says what to do;
//!   `topics create` grows it to the input's count, and the job then runs on it and raises
//!   the backtest's alerts;
//! - a new changelog gets the input's partition count when the input exists with more
//!   than `topics.partitions`;
//! - a second run changes nothing.
//!
//! On noida-db: tansu does not implement CreatePartitions.

use std::time::Duration;

use spcvm_testkit::*;

/// A config for `setup` whose `topics.partitions` is `partitions`.
fn config_with_partitions(setup: &mut Setup, name: &str, partitions: i32) -> std::path::PathBuf {
    let input_partitions = std::mem::replace(&mut setup.partitions, partitions);
    let config = setup.write_config(name, "exactly_once", "a", "");
    setup.partitions = input_partitions;
    config
}

#[test]
fn the_changelog_gets_and_keeps_as_many_partitions_as_the_input() {
    let mut setup = Setup::new(bootstrap_txn(), "topics", 5);
    // A group whose changelog has 2 partitions, with `topics.partitions = 2`.
    setup.group = unique("topics-short");
    setup.create_topic(&setup.changelog(), 2);
    let config = config_with_partitions(&mut setup, "short", 2);
    // The job refuses to start on it, and says what to do.
    let job_config = setup.write_config("job", "exactly_once", "a", "");
    let mut refused = setup.start(&job_config, "refused");
    assert!(!refused.wait_exit(Duration::from_secs(60)).success());
    let log = refused.log_text();
    assert!(
        log.contains(&format!(
            "changelog `{}` has 2 partitions but input `{}` has 5",
            setup.changelog(),
            setup.input
        )) && log.contains("`spcvm topics create` grows it"),
        "{log}"
    );
    let out = setup.topics_create(&config);
    assert!(
        out.contains(&format!("grown   {} (2 -> 5 partitions", setup.changelog())),
        "{out}"
    );
    assert!(
        out.contains(&format!("exists  {} (5 partitions", setup.input)),
        "{out}"
    );
    assert_eq!(setup.partitions_of(&setup.changelog()), 5);
    let again = setup.topics_create(&config);
    assert!(
        again.contains(&format!("exists  {} (5 partitions", setup.changelog())),
        "{again}"
    );
    assert!(!again.contains("grown"), "{again}");

    // The job runs on the grown changelog: every input partition's state has a home.
    let records = telemetry(4, 300, 13);
    let expected = backtest_alerts(setup.dir.path(), &records);
    setup.produce_telemetry(&records);
    let mut job = setup.start(&job_config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert_same_alerts(&setup.alerts(), &expected);

    // A new group's changelog is made with the input's 5 partitions, not 2.
    setup.group = unique("topics-new");
    let config = config_with_partitions(&mut setup, "new", 2);
    let out = setup.topics_create(&config);
    assert!(
        out.contains(&format!("created {} (5 partitions", setup.changelog())),
        "{out}"
    );
    assert_eq!(setup.partitions_of(&setup.changelog()), 5);
}
