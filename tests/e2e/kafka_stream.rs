//! `spcvm run` against a real broker (tansu, `KAFKA_BOOTSTRAP`): telemetry in, alerts out,
//! equal to `spcvm backtest` on the same records; metrics and health served while it runs.
//! The job's per-partition queues hold 5 messages, so the backlog it starts with is handed
//! to the tasks in pieces and the consumer waits on full queues (backpressure) throughout.

use std::time::Duration;

use spcvm_testkit::*;

#[test]
fn streamed_alerts_equal_the_backtest() {
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut setup = Setup::new(bootstrap(), "stream", 3);
    setup.queue_capacity = 5;
    let records = telemetry(6, 320, 7);
    let expected = backtest_alerts(setup.dir.path(), &records);
    setup.produce_telemetry(&records);
    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);

    let addr = job.http_addr(Duration::from_secs(10));
    let get = |path: &str| {
        let mut response = ureq::get(&format!("http://{addr}{path}")).call().unwrap();
        response.body_mut().read_to_string().unwrap()
    };
    let metrics = get("/metrics");
    assert!(get("/readyz").contains("ready"));
    assert!(get("/healthz").contains("ok"));
    let consumed = format!(
        "spcvm_messages_consumed_total{{topic=\"{}\"}} {}",
        setup.input,
        records.len()
    );
    assert!(metrics.contains(&consumed), "{consumed} not in\n{metrics}");
    assert!(metrics.contains("spcvm_transactions_total{outcome=\"committed\"}"));

    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let streamed = setup.alerts();
    assert_same_alerts(&streamed, &expected);
    // Alerts are keyed by tool, and a tool's alerts are in its partition in the order they
    // were raised: first firings by event time, each closing update after its first
    // firing.
    let mut raw = read_all(&setup.bootstrap, &setup.alerts);
    raw.sort_by_key(|m| (m.partition, m.offset));
    let mut last_first_firing: std::collections::HashMap<String, i64> = Default::default();
    let mut fired = std::collections::HashSet::new();
    for m in &raw {
        let alert = spcvm_schemas::decode_alert_json(&m.payload).unwrap();
        assert_eq!(m.key.as_deref(), Some(alert.tool_id.as_bytes()));
        // Stamped when sent, not with the (months old) event time, which time-based
        // retention would delete at the next segment roll.
        assert!(
            m.timestamp.is_some_and(|t| t >= started_ms),
            "alert record timestamp {:?} is before the test began ({started_ms}); event time {}",
            m.timestamp,
            alert.event_time
        );
        if alert.repeats == 0 {
            let last = last_first_firing
                .entry(alert.tool_id.clone())
                .or_insert(i64::MIN);
            assert!(
                alert.event_time >= *last,
                "alert of {} at {} after one at {} (offset {})",
                alert.tool_id,
                alert.event_time,
                last,
                m.offset
            );
            *last = alert.event_time;
            fired.insert(alert.alert_id);
        } else {
            assert!(
                fired.contains(&alert.alert_id),
                "closing update before its first firing: {alert:?}"
            );
        }
    }
    // The changelog holds one record per (tool, recipe) plus one per partition.
    let changelog = read_all(&setup.bootstrap, &setup.changelog());
    assert!(!changelog.is_empty());
}

/// More chart states in one partition than `PREFETCH_MIN_KEYS` (1,400 tools, about 6,300
/// charts): the partition task then decodes a few messages ahead of the one it processes
/// and loads their chart states in advance. The alerts still equal the backtest's.
#[test]
fn a_partition_holding_thousands_of_charts_gives_the_backtest_alerts() {
    let setup = Setup::new(bootstrap(), "manykeys", 1);
    // Each tool sends its three samples in a row, a second apart (event time rises through
    // the stream), so records that share charts sit next to each other: processed out of
    // order, their alerts would differ.
    let mut records = telemetry(700, 3, 11);
    records.sort_by(|a, b| a.tool_id.cmp(&b.tool_id));
    let start = records[0].event_time;
    for (i, r) in records.iter_mut().enumerate() {
        r.event_time = start + i as i64 * 1_000;
        // Phase I needs hundreds of points, so with three samples a chart only spec limits
        // fire: every other RTP tool's gas flow leaves its ±5 sccm specification on its
        // second and third samples (one alert, then a repeat folded into it).
        if let Some(v) = r.measurements.get_mut("gas_flow_deviation_sccm")
            && (i / 3) % 2 == 0
            && i % 3 > 0
        {
            *v = if i % 3 == 1 { 6.0 } else { -7.5 };
        }
    }
    let expected = backtest_alerts(setup.dir.path(), &records);
    assert!(expected.len() >= 20, "{} backtest alerts", expected.len());
    setup.produce_telemetry(&records);
    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    let keys = job.metric("spcvm_keys").unwrap_or(0.0);
    assert!(
        keys >= spcvm_operators::state::PREFETCH_MIN_KEYS as f64,
        "{keys} chart states"
    );
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert_same_alerts(&setup.alerts(), &expected);
}
