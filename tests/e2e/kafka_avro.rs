//! Confluent Avro on a real broker (tansu, `KAFKA_BOOTSTRAP`), with payloads made by the real
//! Confluent serializer (`scripts/confluent_stream.py`, confluent-kafka's `AvroSerializer`
//! with a mock registry; Python from `SPCVM_PYTHON` or `.venv/tools/bin/python`, made by
//! `scripts/pyenv.sh`).
//!
//! - `[decode] format = "avro_confluent"` with the script's schema ids file: the records,
//!   half written with our schema and half with an evolved one, are charted exactly as
//!   `spcvm backtest` charts them; poison (unknown schema id, truncated datum, wrong magic
//!   byte, plain JSON) lands on the dead-letter topic unchanged with the right kind.
//! - `[topics] alert_format = "avro"` with `alert_schema_id`: every alert is the Confluent
//!   header with that id and an `alert.avsc` datum, and they are the backtest's alerts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spcvm_schemas::{Telemetry, decode_alert_avro, encode_telemetry_json};
use spcvm_testkit::*;

/// Schema id the Avro alerts are framed with (four different bytes, so a byte-order
/// mistake shows).
const ALERT_SCHEMA_ID: u32 = 0x0001_0203;

/// `records` serialized by the real Confluent serializer: the payloads (in record order)
/// and the schema ids file to decode them with.
fn confluent_payloads(dir: &Path, records: &[Telemetry]) -> (Vec<Vec<u8>>, PathBuf) {
    let input = dir.join("confluent-input.jsonl");
    std::fs::write(&input, jsonl_lines(records).concat()).unwrap();
    let out = dir.join("confluent");
    let python = python();
    let script = workspace_root().join("scripts/confluent_stream.py");
    let result = Command::new(&python)
        .arg(&script)
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        result.status.success(),
        "{} {} failed ({}); run `bash scripts/pyenv.sh` if imports fail:\n{}{}",
        python.display(),
        script.display(),
        result.status,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let bytes = std::fs::read(out.join("payloads.bin")).unwrap();
    let mut payloads = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().expect("length prefix");
        let (payload, tail) = tail.split_at(u32::from_be_bytes(*len) as usize);
        payloads.push(payload.to_vec());
        rest = tail;
    }
    assert_eq!(payloads.len(), records.len(), "one payload per record");
    let mut ids: Vec<u32> = payloads
        .iter()
        .map(|p| {
            assert_eq!(p[0], 0, "magic byte");
            u32::from_be_bytes(p[1..5].try_into().unwrap())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "our schema and the evolved one: {ids:?}");
    (payloads, out.join("schemas.json"))
}

fn decode_table(ids_file: &Path) -> String {
    format!(
        "[decode]\nformat = \"avro_confluent\"\nschema_ids_file = \"{}\"\n",
        ids_file.display()
    )
}

#[test]
fn confluent_avro_is_charted_like_the_backtest_and_poison_is_dead_lettered() {
    let setup = Setup::new(bootstrap(), "avro", 2);
    let records = telemetry(2, 300, 13);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let (payloads, ids_file) = confluent_payloads(setup.dir.path(), &records);

    let good = &payloads[10];
    let mut unknown_id = good.clone();
    unknown_id[1..5].copy_from_slice(&999u32.to_be_bytes());
    let truncated = good[..good.len() - 3].to_vec();
    let mut wrong_magic = good.clone();
    wrong_magic[0] = 1;
    let poison: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown_schema_id", unknown_id, "999"),
        ("avro", truncated, "schema id"),
        ("magic_byte", wrong_magic, "0x01"),
        ("magic_byte", encode_telemetry_json(&records[10]), "JSON"),
    ];
    // Poison message i goes after good message 200 * (i + 1), with the same key.
    let mut messages = Vec::new();
    let mut placed = 0;
    for (i, (record, payload)) in records.iter().zip(&payloads).enumerate() {
        let key = record.tool_id.clone().into_bytes();
        messages.push((key.clone(), payload.clone()));
        if i % 200 == 199 && placed < poison.len() {
            messages.push((key, poison[placed].1.clone()));
            placed += 1;
        }
    }
    assert_eq!(placed, poison.len());
    produce(
        &setup.bootstrap,
        &setup.input,
        &messages,
        &[("origin", "gateway-2")],
    );

    let config = setup.write_config("job", "exactly_once", "a", &decode_table(&ids_file));
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());

    assert_same_alerts(&setup.alerts(), &expected);

    let letters = read_all(&setup.bootstrap, &setup.dlq);
    assert_eq!(
        letters.len(),
        poison.len(),
        "{:?}",
        letters.iter().map(|l| &l.headers).collect::<Vec<_>>()
    );
    for (kind, payload, text) in &poison {
        let letter = letters
            .iter()
            .find(|l| &l.payload == payload)
            .unwrap_or_else(|| panic!("{kind} message ({text}) not dead-lettered unchanged"));
        assert_eq!(
            letter.headers["spcvm.error.kind"], *kind,
            "{:?}",
            letter.headers
        );
        assert!(
            letter.headers["spcvm.error"].contains(text),
            "{text:?} not in the error: {:?}",
            letter.headers
        );
        assert_eq!(letter.headers["spcvm.source.topic"], setup.input);
        assert_eq!(letter.headers["origin"], "gateway-2");
        assert!(letter.key.is_some());
    }
}

#[test]
fn avro_alerts_carry_the_confluent_header_and_decode_to_the_backtest_alerts() {
    let setup = Setup::new(bootstrap(), "avro-alerts", 2);
    let records = telemetry(2, 300, 17);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let (payloads, ids_file) = confluent_payloads(setup.dir.path(), &records);
    let messages: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .zip(payloads)
        .map(|(r, p)| (r.tool_id.clone().into_bytes(), p))
        .collect();
    produce(&setup.bootstrap, &setup.input, &messages, &[]);

    let config = setup.write_config("job", "exactly_once", "a", &decode_table(&ids_file));
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "[topics]\n",
        &format!("[topics]\nalert_format = \"avro\"\nalert_schema_id = {ALERT_SCHEMA_ID}\n"),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());

    let raw = read_all(&setup.bootstrap, &setup.alerts);
    assert!(!raw.is_empty(), "no alerts:\n{}", job.log_text());
    let alerts: Vec<_> = raw
        .iter()
        .map(|m| {
            let (header, datum) = m.payload.split_at(5);
            assert_eq!(
                header,
                [0, 0, 1, 2, 3],
                "Confluent header with id {ALERT_SCHEMA_ID}"
            );
            let alert = decode_alert_avro(datum)
                .unwrap_or_else(|e| panic!("alert at offset {}: {e}", m.offset));
            assert_eq!(m.key.as_deref(), Some(alert.tool_id.as_bytes()));
            alert
        })
        .collect();
    assert_same_alerts(&alerts, &expected);
}
