//! Avro object-container files: round trips, interoperability, evolution, corruption.

mod common;

use std::io::{self, Write};

use apache_avro::types::Value;
use apache_avro::{Codec, DeflateSettings, Schema};
use proptest::prelude::*;
use spcvm_schemas::{
    Alert, AvroError, SchemaError, Telemetry, TelemetryContainerWriter, ToolType, alert_schema,
    encode_telemetry_avro, read_alert_container, read_telemetry_container, telemetry_schema,
    write_alert_container, write_telemetry_container,
};

fn many_telemetry(n: usize) -> Vec<Telemetry> {
    (0..n)
        .map(|i| {
            let mut t = common::telemetry();
            t.tool_id = format!("IMP-{:03}", i % 17);
            t.tool_type = if i % 3 == 0 {
                ToolType::Rtp
            } else {
                ToolType::IonImplant
            };
            t.wafer_id = (i % 5 != 0).then(|| format!("W{:02}", i % 25));
            t.event_time = 1_700_000_000_000 + i as i64 * 250;
            t.measurements
                .insert("beam_current_ma".into(), 4.0 + i as f64 / 1000.0);
            t
        })
        .collect()
}

fn write(records: &[Telemetry]) -> Vec<u8> {
    let mut file = Vec::new();
    write_telemetry_container(&mut file, records).unwrap();
    file
}

fn read_all(file: &[u8]) -> Vec<Result<Telemetry, SchemaError>> {
    read_telemetry_container(file).unwrap().collect()
}

/// Records appended one at a time make the file the collection writer makes, but for the
/// sync marker (16 random bytes after the header and after each block).
#[test]
fn record_by_record_writer_equals_the_collection_writer() {
    let records = many_telemetry(2_000);
    let whole = write(&records);
    let mut writer = TelemetryContainerWriter::new(Vec::new()).unwrap();
    for record in &records {
        writer.append(record).unwrap();
    }
    let streamed = writer.finish().unwrap();
    assert_eq!(streamed.len(), whole.len());
    let (marker_a, marker_b) = (&whole[whole.len() - 16..], &streamed[streamed.len() - 16..]);
    let unmarked = |file: &[u8], marker: &[u8]| {
        let mut out = file.to_vec();
        let mut i = 0;
        while i + 16 <= out.len() {
            if &out[i..i + 16] == marker {
                out[i..i + 16].fill(0);
                i += 16;
            } else {
                i += 1;
            }
        }
        out
    };
    assert_eq!(unmarked(&whole, marker_a), unmarked(&streamed, marker_b));
    let back: Vec<Telemetry> = read_all(&streamed)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Compared bit for bit (the records hold a NaN, which `==` never equals).
    assert_eq!(back.len(), records.len());
    for (a, b) in back.iter().zip(&records) {
        common::assert_same_telemetry(a, b);
    }
}

#[test]
fn round_trip_across_many_blocks() {
    let records = many_telemetry(2_000);
    let file = write(&records);
    assert_eq!(&file[..4], b"Obj\x01");
    // Large enough to span several 64 KiB blocks: the sync marker (the file's last 16
    // bytes) occurs once after the header and once after each block.
    assert!(file.len() > 200_000, "{}", file.len());
    let marker = &file[file.len() - 16..];
    let markers = file.windows(16).filter(|w| *w == marker).count();
    assert!(markers >= 4, "{markers} markers");
    let back: Vec<Telemetry> = read_all(&file).into_iter().map(Result::unwrap).collect();
    assert_eq!(back.len(), records.len());
    for (a, b) in back.iter().zip(&records) {
        common::assert_same_telemetry(a, b);
    }
    assert!(back[7].measurements["faraday_cup_na"].is_nan());
}

#[test]
fn empty_container_is_valid() {
    let file = write(&[]);
    assert_eq!(&file[..4], b"Obj\x01");
    assert_eq!(read_all(&file).len(), 0);
}

#[test]
fn alert_container_round_trip() {
    let mut alerts = vec![common::alert(); 3];
    alerts[1].ucl = None;
    alerts[1].repeats = 0;
    alerts[2].severity = spcvm_schemas::Severity::Minor;
    let mut file = Vec::new();
    write_alert_container(&mut file, &alerts).unwrap();
    let back: Vec<Alert> = read_alert_container(&file[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, alerts);
}

/// A writer that accepts at most 3 bytes per call, like a slow pipe.
struct Trickle(Vec<u8>);

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(3);
        self.0.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn short_writes_do_not_corrupt_the_file() {
    let records = many_telemetry(50);
    let mut trickle = Trickle(Vec::new());
    write_telemetry_container(&mut trickle, &records).unwrap();
    let back: Vec<Telemetry> = read_all(&trickle.0)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back.len(), 50);
    common::assert_same_telemetry(&back[49], &records[49]);
}

struct Failing;

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk full"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_error_is_reported() {
    let err = write_telemetry_container(Failing, &many_telemetry(1)).unwrap_err();
    assert!(
        matches!(err, SchemaError::AvroContainer(AvroError::Io(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "avro container: I/O error: disk full");
}

#[test]
fn our_files_are_readable_by_apache_avro() {
    let records = many_telemetry(10);
    let file = write(&records);
    let reader = apache_avro::Reader::new(&file[..]).unwrap();
    assert_eq!(reader.writer_schema(), telemetry_schema());
    let values: Vec<Value> = reader.map(Result::unwrap).collect();
    assert_eq!(values.len(), 10);
    let Value::Record(fields) = &values[3] else {
        panic!()
    };
    assert_eq!(
        fields[0],
        ("tool_id".into(), Value::String("IMP-003".into()))
    );
    assert_eq!(
        fields[5],
        (
            "event_time".into(),
            Value::TimestampMillis(1_700_000_000_750)
        )
    );
}

#[test]
fn deflate_files_written_by_apache_avro_are_readable() {
    let records = many_telemetry(300);
    let schema = telemetry_schema();
    let mut writer = apache_avro::Writer::with_codec(
        schema,
        Vec::new(),
        Codec::Deflate(DeflateSettings::default()),
    );
    for t in &records {
        // (Not `append_ser`: our serde form writes non-finite measurements as strings,
        // and a failed `append_ser` leaves a partial record in apache-avro's block.)
        let bytes = encode_telemetry_avro(t).unwrap();
        let value = apache_avro::from_avro_datum(schema, &mut &bytes[..], None).unwrap();
        writer.append(value).unwrap();
    }
    let file = writer.into_inner().unwrap();
    let back: Vec<Telemetry> = read_all(&file).into_iter().map(Result::unwrap).collect();
    assert_eq!(back.len(), 300);
    for (a, b) in back.iter().zip(&records) {
        common::assert_same_telemetry(a, b);
    }
}

#[test]
fn file_with_older_writer_schema_is_resolved() {
    let writer_schema = Schema::parse_str(
        r#"{"type": "record", "name": "Telemetry", "namespace": "io.spcvm", "fields": [
          {"name": "tool_id", "type": "string"},
          {"name": "tool_type", "type": {"type": "enum", "name": "ToolType", "symbols": ["ion_implant", "rtp"]}},
          {"name": "recipe_id", "type": "string"},
          {"name": "event_time", "type": "long"},
          {"name": "measurements", "type": {"type": "map", "values": "double"}},
          {"name": "site", "type": "string"}
        ]}"#,
    )
    .unwrap();
    let mut writer = apache_avro::Writer::new(&writer_schema, Vec::new());
    for i in 0..3 {
        let mut record = apache_avro::types::Record::new(&writer_schema).unwrap();
        record.put("tool_id", format!("T{i}"));
        record.put("tool_type", Value::Enum(1, "rtp".into()));
        record.put("recipe_id", "R");
        record.put("event_time", Value::Long(i));
        record.put(
            "measurements",
            Value::Map([("x".to_owned(), Value::Double(i as f64))].into()),
        );
        record.put("site", "fab-2");
        writer.append(record).unwrap();
    }
    let file = writer.into_inner().unwrap();
    let back: Vec<Telemetry> = read_all(&file).into_iter().map(Result::unwrap).collect();
    assert_eq!(back.len(), 3);
    assert_eq!(back[2].tool_id, "T2");
    assert_eq!(back[2].tool_type, ToolType::Rtp);
    assert_eq!(back[2].lot_id, None);
    assert_eq!(back[2].event_time, 2);
    assert_eq!(back[2].measurements["x"], 2.0);
}

/// An alert file whose record 2 has `repeats` = -1 (written with our own schema).
fn alert_file_with_bad_repeats() -> Vec<u8> {
    let schema = alert_schema();
    let mut writer = apache_avro::Writer::new(schema, Vec::new());
    for i in 0..5i64 {
        let a = common::alert();
        let mut record = apache_avro::types::Record::new(schema).unwrap();
        record.put("alert_id", format!("a{i}"));
        record.put("tool_id", a.tool_id.as_str());
        record.put("tool_type", Value::Enum(1, "rtp".into()));
        record.put("recipe_id", a.recipe_id.as_str());
        record.put("lot_id", Value::Union(0, Box::new(Value::Null)));
        record.put("wafer_id", Value::Union(0, Box::new(Value::Null)));
        record.put("parameter", a.parameter.as_str());
        record.put("chart", a.chart.as_str());
        record.put("rule", a.rule.as_str());
        record.put("severity", Value::Enum(1, "major".into()));
        record.put("statistic", 1.0);
        record.put("center_line", 0.0);
        record.put("ucl", Value::Union(1, Box::new(Value::Double(2.0))));
        record.put("lcl", Value::Union(0, Box::new(Value::Null)));
        record.put("event_time", Value::TimestampMillis(i));
        record.put("message", "m");
        record.put("repeats", Value::Long(if i == 2 { -1 } else { i }));
        writer.append(record).unwrap();
    }
    writer.into_inner().unwrap()
}

#[test]
fn bad_record_is_reported_with_its_index_and_reading_goes_on() {
    let file = alert_file_with_bad_repeats();
    let results: Vec<_> = read_alert_container(&file[..]).unwrap().collect();
    assert_eq!(results.len(), 5);
    assert_eq!(results[1].as_ref().unwrap().alert_id, "a1");
    let err = results[2].as_ref().unwrap_err();
    assert!(matches!(
        err,
        SchemaError::AvroContainerRecord {
            index: 2,
            error: AvroError::Field {
                field: "repeats",
                ..
            }
        }
    ));
    assert_eq!(
        err.to_string(),
        "avro container record 2: Alert.repeats: -1 does not fit in a u32"
    );
    assert_eq!(results[3].as_ref().unwrap().alert_id, "a3");
    assert_eq!(results[4].as_ref().unwrap().repeats, 4);
}

#[test]
fn malformed_record_is_reported_with_its_index_and_reading_stops() {
    let records = many_telemetry(30);
    let mut file = write(&records);
    // Null codec: record 17's datum appears verbatim in the file. Corrupt its enum byte.
    let datum = encode_telemetry_avro(&records[17]).unwrap();
    let at = file
        .windows(datum.len())
        .position(|w| w == datum.as_slice())
        .unwrap();
    let enum_at = 1 + records[17].tool_id.len();
    file[at + enum_at] = 0x7e; // enum index 63
    let results = read_all(&file);
    assert_eq!(results.len(), 18);
    assert!(results[..17].iter().all(Result::is_ok));
    assert_eq!(
        results[17].as_ref().unwrap_err().to_string(),
        format!(
            "avro container record 17: malformed data at byte {enum_at}: enum index 63 is out \
             of range for ToolType (2 symbols)"
        )
    );
}

#[test]
fn corrupt_sync_marker_is_reported() {
    let mut file = write(&many_telemetry(3));
    let last = file.len() - 1;
    file[last] ^= 0xff;
    let results = read_all(&file);
    assert_eq!(results.len(), 1);
    let err = results[0].as_ref().unwrap_err();
    assert!(matches!(
        err,
        SchemaError::AvroContainer(AvroError::Malformed { .. })
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "avro container: malformed data at byte {}: sync marker does not match the \
             header's (corrupt or concatenated file?)",
            file.len() - 16
        )
    );
}

#[test]
fn truncated_files_give_errors() {
    let file = write(&many_telemetry(20));
    let header_end = {
        // The first block starts right after the 16-byte marker that ends the header; the
        // marker also ends the file.
        let marker = &file[file.len() - 16..];
        file.windows(16).position(|w| w == marker).unwrap() + 16
    };
    for len in 0..file.len() {
        let truncated = &file[..len];
        match read_telemetry_container(truncated) {
            Err(err) => {
                assert!(len < header_end, "header error at {len}: {err}");
                assert!(err.to_string().starts_with("avro container: "), "{err}");
            }
            Ok(iter) => {
                assert!(len >= header_end, "header accepted at {len}");
                let results: Vec<_> = iter.collect();
                if len == header_end {
                    assert!(results.is_empty());
                } else {
                    let last = results.last().unwrap();
                    assert!(last.is_err(), "truncated at {len} but no error");
                    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
                }
            }
        }
    }
}

#[test]
fn header_errors() {
    let err = |bytes: &[u8]| match read_telemetry_container(bytes) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted {bytes:?}"),
    };
    assert_eq!(
        err(b""),
        "avro container: malformed data at byte 0: the file header needs 4 byte(s) but the file ends after 0"
    );
    assert_eq!(
        err(b"{\"tool_id\":1}"),
        "avro container: malformed data at byte 0: not an Avro container file: starts with \
         [7b, 22, 74, 6f], expected \"Obj\\x01\""
    );
    assert_eq!(
        err(b"Obj\x01\x00"),
        "avro container: malformed data at byte 5: header has no avro.schema entry"
    );
    let mut huge = b"Obj\x01".to_vec();
    huge.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0x0f]); // ~2^31 entries announced
    huge.extend_from_slice(&[0x08, b'a']);
    assert_eq!(
        err(&huge),
        "avro container: malformed data at byte 10: header metadata key needs 4 byte(s) but the file ends after 1"
    );
    let mut snappy = Vec::new();
    {
        // Rewrite our header's codec entry ("avro.codec" -> "null") to name snappy.
        let file = write(&[]);
        let entry = b"\x14avro.codec\x08null";
        let pos = file.windows(entry.len()).position(|w| w == entry).unwrap();
        snappy.extend_from_slice(&file[..pos]);
        snappy.extend_from_slice(b"\x14avro.codec\x0csnappy");
        snappy.extend_from_slice(&file[pos + entry.len()..]);
    }
    assert!(
        err(&snappy).contains("unsupported codec \"snappy\""),
        "{}",
        err(&snappy)
    );
}

#[test]
fn readers_and_errors_can_cross_threads() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    let file = write(&many_telemetry(2));
    let reader = read_telemetry_container(std::io::Cursor::new(file)).unwrap();
    assert_send(&reader);
    let handle = std::thread::spawn(move || reader.map(Result::unwrap).count());
    assert_eq!(handle.join().unwrap(), 2);
    assert_send_sync_static::<SchemaError>();
}

/// A deflate-compressed file of 40 records written by apache-avro.
fn deflate_file() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let schema = telemetry_schema();
        let mut writer = apache_avro::Writer::with_codec(
            schema,
            Vec::new(),
            Codec::Deflate(DeflateSettings::default()),
        );
        for t in many_telemetry(40) {
            let bytes = encode_telemetry_avro(&t).unwrap();
            writer
                .append(apache_avro::from_avro_datum(schema, &mut &bytes[..], None).unwrap())
                .unwrap();
        }
        writer.into_inner().unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn corrupted_deflate_files_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut file = deflate_file().to_vec();
        for (at, byte) in flips {
            let i = at % file.len();
            file[i] = byte;
        }
        if let Ok(iter) = read_telemetry_container(&file[..]) {
            prop_assert!(iter.count() <= 41);
        }
    }

    #[test]
    fn random_bytes_after_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut file = b"Obj\x01".to_vec();
        file.extend_from_slice(&tail);
        if let Ok(iter) = read_telemetry_container(&file[..]) {
            for _ in iter {}
        }
    }

    #[test]
    fn corrupted_files_never_panic(
        n in 0usize..20,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut file = write(&many_telemetry(n));
        for (at, byte) in flips {
            let i = at % file.len();
            file[i] = byte;
        }
        if let Ok(iter) = read_telemetry_container(&file[..]) {
            let results: Vec<_> = iter.collect();
            prop_assert!(results.len() <= n.max(1) + 1);
        }
    }
}
