//! Poison messages on a real broker (tansu, `KAFKA_BOOTSTRAP`): every message that cannot be
//! decoded or validated lands on the dead-letter topic unchanged, with the reason and its
//! source in headers, while the good messages around it are charted exactly as
//! `spcvm backtest` charts them.

use std::time::Duration;

use spcvm_schemas::encode_telemetry_json;
use spcvm_testkit::*;

#[test]
fn poison_messages_go_to_the_dlq_and_good_ones_are_charted() {
    let setup = Setup::new(bootstrap(), "poison", 2);
    let mut records = telemetry(2, 300, 11);
    // A NaN reading: charted without that parameter, and a copy dead-lettered.
    records[401]
        .measurements
        .insert("beam_current_mA".into(), f64::NAN);
    let expected = backtest_alerts(setup.dir.path(), &records);

    let good: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|r| (r.tool_id.clone().into_bytes(), encode_telemetry_json(r)))
        .collect();
    let huge = {
        let mut v = b"{\"tool_id\": \"ION-00\", \"pad\": \"".to_vec();
        v.resize(10 * 1024 * 1024, b'x');
        v.extend_from_slice(b"\"}");
        v
    };
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("json", b"{\"tool_id\": \"ION-00\", \"tool_type\": ".to_vec()),
        ("json", b"\xff\xfe not even text".to_vec()),
        (
            "json",
            br#"{"tool_id":"ION-00","tool_type":"ion_implant","event_time":1,"measurements":{}}"#
                .to_vec(),
        ),
        (
            "json",
            br#"{"tool_id":"ION-00","tool_type":"cvd","recipe_id":"R","event_time":1,"measurements":{"x":1.0}}"#
                .to_vec(),
        ),
        (
            "invalid",
            br#"{"tool_id":"","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"x":1.0}}"#
                .to_vec(),
        ),
        ("empty", Vec::new()),
        ("too_large", huge),
    ];
    // Interleave: poison message i goes after good message 50 * (i + 1), same key as it.
    let mut messages = Vec::new();
    let mut poison_at = Vec::new();
    for (i, m) in good.iter().enumerate() {
        messages.push(m.clone());
        if i % 50 == 49 && poison_at.len() < poison.len() {
            let (_, payload) = &poison[poison_at.len()];
            poison_at.push(m.0.clone());
            messages.push((m.0.clone(), payload.clone()));
        }
    }
    assert_eq!(poison_at.len(), poison.len());
    produce(
        &setup.bootstrap,
        &setup.input,
        &messages,
        &[("origin", "gateway-7")],
    );

    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());

    assert_same_alerts(&setup.alerts(), &expected);

    let letters = read_all(&setup.bootstrap, &setup.dlq);
    // The poison messages, plus the copy of the NaN record.
    assert_eq!(
        letters.len(),
        poison.len() + 1,
        "{:?}",
        letters.iter().map(|l| &l.headers).collect::<Vec<_>>()
    );
    for (kind, payload) in &poison {
        let letter = letters
            .iter()
            .find(|l| &l.payload == payload)
            .unwrap_or_else(|| {
                panic!("{kind} message ({} bytes) not dead-lettered", payload.len())
            });
        assert_eq!(
            letter.headers["spcvm.error.kind"], *kind,
            "{:?}",
            letter.headers
        );
        assert!(!letter.headers["spcvm.error"].is_empty());
        assert_eq!(letter.headers["spcvm.source.topic"], setup.input);
        assert!(letter.headers["spcvm.source.offset"].parse::<i64>().is_ok());
        assert!(
            letter.headers["spcvm.source.partition"]
                .parse::<i32>()
                .is_ok()
        );
        // The original headers travel with it.
        assert_eq!(letter.headers["origin"], "gateway-7");
        assert!(letter.key.is_some());
    }
    let nan = letters
        .iter()
        .find(|l| l.headers["spcvm.error.kind"] == "non_finite")
        .expect("NaN record copied to the DLQ");
    assert!(nan.headers["spcvm.error"].contains("beam_current_mA"));
    assert_eq!(nan.payload, encode_telemetry_json(&records[401]));
    // Nothing crashed: the job exited cleanly above and said what it dead-lettered.
    let metrics_free_log = job.log_text();
    assert!(!metrics_free_log.contains("panicked"), "{metrics_free_log}");
}
