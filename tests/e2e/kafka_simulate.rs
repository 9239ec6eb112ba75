//! `spcvm simulate` to a real broker (tansu, `KAFKA_BOOTSTRAP`): the topic holds the file
//! output of the same seed, record for record.
//!
//! - JSON: as many messages as lines in the file, each keyed by its record's tool id, a
//!   tool's messages in one partition in the file's order, each payload byte for byte the
//!   file's line; the truth file equals the file run's.
//! - `avro_confluent`: each payload the Confluent header with the given schema id and a
//!   datum that decodes to the file's record; `spcvm run` with that id in its schema ids
//!   file charts the topic as `spcvm backtest` charts the file.
//! - A missing topic and an unreachable broker: the command fails and names the topic and
//!   the broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use spcvm_schemas::{Telemetry, decode_telemetry_avro, decode_telemetry_json};
use spcvm_testkit::*;

/// A fab of 2 implanters and 2 RTP tools, 12 lots of 25 wafers (1,200 records), a fault
/// on each type.
const SCENARIO: &str = r#"
seed = 4242
lots = 12
[implanters]
count = 2
recipes = ["B11_30KEV", "P31_80KEV"]
[rtp]
count = 2
[[fault]]
tool = "ION-02"
kind = "source_wear"
onset_sample = 120
ramp_samples = 60
[[fault]]
tool = "RTP-01"
kind = "mfc_failure"
onset_sample = 150
"#;

fn simulate(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(spcvm())
        .arg("simulate")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run spcvm simulate: {e}"))
}

fn simulate_ok(args: &[&std::ffi::OsStr]) {
    let out = simulate(args);
    assert!(
        out.status.success(),
        "spcvm simulate {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The scenario file, and the file output of it (its lines and its records).
fn file_output(dir: &Path) -> (PathBuf, Vec<Vec<u8>>, Vec<Telemetry>) {
    let scenario = dir.join("fab.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = dir.join("fab.jsonl");
    simulate_ok(&[
        "--quiet".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let text = std::fs::read(&out).unwrap();
    let lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let records: Vec<Telemetry> = lines
        .iter()
        .map(|l| decode_telemetry_json(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4 * 12 * 25);
    (scenario, lines, records)
}

/// Groups `items` by tool id, keeping their order.
fn by_tool<T: Clone>(items: &[T], tool: impl Fn(&T) -> String) -> BTreeMap<String, Vec<T>> {
    let mut out: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for item in items {
        out.entry(tool(item)).or_default().push(item.clone());
    }
    out
}

/// Checks that `messages` are the file's records one for one: keyed by tool, each tool in
/// one partition in the file's order; returns each message's payload decoded by `decode`,
/// grouped by tool.
fn check_messages(
    messages: &[Read],
    records: &[Telemetry],
    decode: impl Fn(&[u8]) -> Telemetry,
) -> BTreeMap<String, Vec<Telemetry>> {
    assert_eq!(messages.len(), records.len(), "one message per record");
    let mut partitions: BTreeMap<String, i32> = BTreeMap::new();
    let mut sorted = messages.to_vec();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    let decoded: Vec<(String, Telemetry)> = sorted
        .iter()
        .map(|m| {
            let key = String::from_utf8(m.key.clone().expect("a key")).unwrap();
            let record = decode(&m.payload);
            assert_eq!(key, record.tool_id, "the key is the tool id");
            let partition = *partitions.entry(key.clone()).or_insert(m.partition);
            assert_eq!(partition, m.partition, "{key} in two partitions");
            (key, record)
        })
        .collect();
    let got = by_tool(&decoded, |(tool, _)| tool.clone())
        .into_iter()
        .map(|(tool, v)| (tool, v.into_iter().map(|(_, r)| r).collect::<Vec<_>>()))
        .collect::<BTreeMap<_, _>>();
    let want = by_tool(records, |r| r.tool_id.clone());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (tool, want) in &want {
        assert!(got[tool] == *want, "{tool}: other records or another order");
    }
    got
}

#[test]
fn json_on_the_topic_is_the_file_output_byte_for_byte() {
    let setup = Setup::new(bootstrap(), "sim-json", 3);
    let dir = setup.dir.path();
    let (scenario, lines, records) = file_output(dir);
    let truth = dir.join("kafka.truth.json");
    simulate_ok(&[
        "--quiet".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--kafka-bootstrap".as_ref(),
        setup.bootstrap.as_ref(),
        "--topic".as_ref(),
        setup.input.as_ref(),
        "--truth".as_ref(),
        truth.as_os_str(),
    ]);
    let messages = read_all(&setup.bootstrap, &setup.input);
    check_messages(&messages, &records, |p| decode_telemetry_json(p).unwrap());
    // Byte for byte: each tool's payloads are its lines of the file.
    let line_tool = |l: &Vec<u8>| decode_telemetry_json(l).unwrap().tool_id;
    let want = by_tool(&lines, line_tool);
    let mut sorted = messages.clone();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    let payloads: Vec<Vec<u8>> = sorted.iter().map(|m| m.payload.clone()).collect();
    let got = by_tool(&payloads, line_tool);
    assert!(got == want, "payloads differ from the file's lines");
    // The tools spread over more than one partition (4 keys, 3 partitions).
    let used: std::collections::BTreeSet<i32> = messages.iter().map(|m| m.partition).collect();
    assert!(used.len() > 1, "{used:?}");
    assert_eq!(
        std::fs::read(&truth).unwrap(),
        std::fs::read(dir.join("fab.truth.json")).unwrap(),
        "the truth of the Kafka run is the file run's"
    );
}

#[test]
fn confluent_avro_is_read_by_the_job_as_the_backtest_reads_the_file() {
    const SCHEMA_ID: u32 = 0x0102_0304;
    let setup = Setup::new(bootstrap(), "sim-avro", 2);
    let dir = setup.dir.path();
    let (scenario, _, records) = file_output(dir);
    simulate_ok(&[
        "--quiet".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--kafka-bootstrap".as_ref(),
        setup.bootstrap.as_ref(),
        "--topic".as_ref(),
        setup.input.as_ref(),
        "--kafka-format".as_ref(),
        "avro_confluent".as_ref(),
        "--schema-id".as_ref(),
        SCHEMA_ID.to_string().as_ref(),
        "--truth".as_ref(),
        dir.join("kafka.truth.json").as_os_str(),
    ]);
    let messages = read_all(&setup.bootstrap, &setup.input);
    check_messages(&messages, &records, |p| {
        let (header, datum) = p.split_at(5);
        assert_eq!(header, [0, 1, 2, 3, 4], "magic byte and schema id");
        decode_telemetry_avro(datum).unwrap()
    });

    // The job, told that id is telemetry.avsc, charts the topic as the backtest the file.
    let ids = dir.join("schemas.json");
    let avsc = workspace_root().join("schemas/avro/telemetry.avsc");
    std::fs::write(&ids, format!("{{\"{SCHEMA_ID}\": \"{}\"}}", avsc.display())).unwrap();
    let expected = backtest_alerts(dir, &records);
    assert!(!expected.is_empty(), "the faults raise alerts");
    let decode = format!(
        "[decode]\nformat = \"avro_confluent\"\nschema_ids_file = \"{}\"\n",
        ids.display()
    );
    let config = setup.write_config("job", "exactly_once", "a", &decode);
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    assert_same_alerts(&setup.alerts(), &expected);
}

#[test]
fn a_missing_topic_or_broker_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("fab.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let run = |bootstrap: &str, topic: &str| {
        let out = simulate(&[
            "--quiet".as_ref(),
            "--scenario".as_ref(),
            scenario.as_os_str(),
            "--kafka-bootstrap".as_ref(),
            bootstrap.as_ref(),
            "--topic".as_ref(),
            topic.as_ref(),
            "--truth".as_ref(),
            dir.path().join("t.json").as_os_str(),
        ]);
        assert!(!out.status.success(), "{bootstrap} {topic}: succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // No broker listens on a free port.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let stderr = run(&nowhere, "t");
    assert!(
        stderr.contains(&format!(
            "Kafka topic `t` on {nowhere}: no answer from the broker"
        )),
        "{stderr}"
    );
    // No truth is written for a run that sent nothing.
    assert!(!dir.path().join("t.json").exists());
}
