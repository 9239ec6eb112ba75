//! Wire compatibility of `spcvm::decode` with the real Confluent Avro serializer, and the
//! schema registry path over HTTP.
//!
//! `real_confluent_serializer_payloads_decode` runs `scripts/confluent_payloads.py` with the
//! Python from `SPCVM_PYTHON`, or else `.venv/tools/bin/python` (made by
//! `scripts/pyenv.sh`); without either it fails, telling you to run `scripts/pyenv.sh`.
//! The other tests need no Python: they run a tiny schema registry on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use spcvm::decode::{DecodeConfig, DecodeError, Decoder, PayloadFormat};
use spcvm_schemas::apache_avro::types::Value;
use spcvm_schemas::apache_avro::{Schema, to_avro_datum};
use spcvm_schemas::{
    TELEMETRY_SCHEMA_JSON, Telemetry, ToolType, decode_telemetry_json, encode_telemetry_avro,
    parse_schema,
};
use spcvm_testkit::{python, workspace_root};

/// Compares two records, NaN equal to NaN and -0.0 different from 0.0.
fn assert_same(name: &str, got: &Telemetry, want: &Telemetry) {
    let ids = |t: &Telemetry| {
        (
            t.tool_id.clone(),
            t.tool_type,
            t.recipe_id.clone(),
            t.lot_id.clone(),
            t.wafer_id.clone(),
            t.event_time,
        )
    };
    assert_eq!(ids(got), ids(want), "{name}");
    let bits = |t: &Telemetry| -> BTreeMap<String, Option<u64>> {
        t.measurements
            .iter()
            .map(|(k, v)| (k.clone(), (!v.is_nan()).then_some(v.to_bits())))
            .collect()
    };
    assert_eq!(bits(got), bits(want), "{name}: measurements (None = NaN)");
}

/// Runs the payload script into a fresh directory.
fn confluent_payloads() -> tempfile::TempDir {
    let python = python();
    let out = tempfile::tempdir().unwrap();
    let script = workspace_root().join("scripts/confluent_payloads.py");
    let result = Command::new(&python)
        .arg(&script)
        .arg(out.path())
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
    out
}

/// (payload file name, payload bytes, expected record) for every line of `expected.jsonl`.
fn cases(dir: &Path) -> Vec<(String, Vec<u8>, Telemetry)> {
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let meta: serde_json::Value = serde_json::from_str(line).unwrap();
            let name = meta["payload"].as_str().unwrap().to_string();
            let expected = decode_telemetry_json(line.as_bytes())
                .unwrap_or_else(|e| panic!("expected.jsonl, {name}: {e}"));
            let payload = std::fs::read(dir.join(&name)).unwrap();
            (name, payload, expected)
        })
        .collect()
}

#[test]
fn real_confluent_serializer_payloads_decode() {
    let out = confluent_payloads();
    let cases = cases(out.path());
    assert_eq!(cases.len(), 5, "payload script wrote {} cases", cases.len());

    // From the ids file written by the script.
    let decoder = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_ids_file: Some(out.path().join("schemas.json")),
        ..DecodeConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut ids = Vec::new();
    for (name, payload, expected) in &cases {
        assert_eq!(payload[0], 0, "{name}: magic byte");
        ids.push(u32::from_be_bytes(payload[1..5].try_into().unwrap()));
        let got = decoder
            .decode(payload)
            .unwrap_or_else(|e| panic!("{name}: {e} (kind {})", e.kind()));
        assert_same(name, &got, expected);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "our schema and the evolved one: {ids:?}");
    let nan_case = cases
        .iter()
        .find(|(name, ..)| name == "evolved_nan_no_lot.bin")
        .expect("evolved_nan_no_lot case");
    assert!(nan_case.2.measurements.values().any(|v| v.is_nan()));
    assert_eq!(nan_case.2.lot_id, None);

    // The same payloads through the registry path, serving the script's schemas.
    let ids_file: HashMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("schemas.json")).unwrap())
            .unwrap();
    let mut routes = HashMap::new();
    for (id, file) in ids_file {
        let schema = std::fs::read_to_string(out.path().join(file)).unwrap();
        routes.insert(
            format!("/schemas/ids/{id}"),
            Route::Ok(serde_json::json!({ "schema": schema }).to_string()),
        );
    }
    let registry = Registry::start(routes);
    let decoder = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(registry.url.clone()),
        ..DecodeConfig::default()
    })
    .unwrap();
    for (name, payload, expected) in &cases {
        let got = decoder
            .decode(payload)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_same(name, &got, expected);
    }
    assert_eq!(registry.requests().len(), 2, "one request per schema id");
}

// ---------------------------------------------------------------- a tiny registry

/// What the fake registry answers on one path.
#[derive(Clone)]
enum Route {
    /// 200 with this JSON body.
    Ok(String),
    /// This status with a Confluent-style error body.
    Status(u16),
    /// The given status for the first `n` requests, then 200 with the body.
    FailFirst(usize, u16, String),
}

/// Requests seen by the fake registry: (path, Authorization header).
type RequestLog = Mutex<Vec<(String, Option<String>)>>;

/// A schema registry on 127.0.0.1: one thread per connection, `Connection: close`, every
/// request recorded as (path, Authorization header). Unknown paths answer 404.
struct Registry {
    url: String,
    log: Arc<RequestLog>,
}

impl Registry {
    fn start(routes: HashMap<String, Route>) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(Mutex::new(routes));
        let server_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&server_log);
                let routes = Arc::clone(&routes);
                std::thread::spawn(move || serve(stream, &log, &routes));
            }
        });
        Registry { url, log }
    }

    fn requests(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|(p, _)| p == path).count()
    }
}

fn serve(stream: TcpStream, log: &RequestLog, routes: &Mutex<HashMap<String, Route>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorization = Some(value.trim().to_string());
                }
            }
        }
    }
    log.lock().unwrap().push((path.clone(), authorization));
    let (status, body) = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(Route::Ok(body)) => (200, body.clone()),
            Some(Route::Status(status)) => (*status, error_body(*status)),
            Some(Route::FailFirst(n, status, body)) => {
                if *n > 0 {
                    *n -= 1;
                    (*status, error_body(*status))
                } else {
                    (200, body.clone())
                }
            }
            None => (404, error_body(404)),
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        401 => "Unauthorized",
        _ => "Other",
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn error_body(status: u16) -> String {
    let (code, message) = match status {
        404 => (40403, "Schema not found"),
        401 => (401, "Unauthorized"),
        _ => (50001, "Error in the backend data store"),
    };
    serde_json::json!({ "error_code": code, "message": message }).to_string()
}

/// A producer's evolved schema: extra field with a default, no `wafer_id`.
const EVOLVED: &str = r#"{"type":"record","name":"Telemetry","namespace":"io.spcvm","fields":[
  {"name":"tool_id","type":"string"},
  {"name":"gateway_version","type":"string","default":"2.0.0"},
  {"name":"tool_type","type":{"type":"enum","name":"ToolType","symbols":["ion_implant","rtp"]}},
  {"name":"recipe_id","type":"string"},
  {"name":"lot_id","type":["null","string"],"default":null},
  {"name":"event_time","type":"long"},
  {"name":"measurements","type":{"type":"map","values":"double"}}]}"#;

fn frame(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// A datum of `schema` from a JSON description of the record.
fn datum(schema: &Schema, record: serde_json::Value) -> Vec<u8> {
    let value = Value::from(record).resolve(schema).unwrap();
    to_avro_datum(schema, value).unwrap()
}

fn sample() -> Telemetry {
    Telemetry {
        tool_id: "ION-01".into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11-5E15".into(),
        lot_id: Some("LOT-1".into()),
        wafer_id: Some("W01".into()),
        event_time: 1_732_617_000_000,
        measurements: BTreeMap::from([("beam_current_mA".to_owned(), 4.2)]),
    }
}

fn registry_with_cases() -> Registry {
    let without_tool_id = {
        let mut v: serde_json::Value = serde_json::from_str(TELEMETRY_SCHEMA_JSON).unwrap();
        v["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "tool_id");
        v.to_string()
    };
    Registry::start(HashMap::from([
        (
            "/schemas/ids/1".to_string(),
            Route::Ok(serde_json::json!({ "schema": TELEMETRY_SCHEMA_JSON }).to_string()),
        ),
        (
            "/schemas/ids/2".to_string(),
            Route::Ok(
                serde_json::json!({ "schema": EVOLVED, "schemaType": "AVRO", "maxId": 7 })
                    .to_string(),
            ),
        ),
        ("/schemas/ids/3".to_string(), Route::Status(500)),
        (
            "/schemas/ids/4".to_string(),
            Route::Ok(
                serde_json::json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" })
                    .to_string(),
            ),
        ),
        (
            "/schemas/ids/5".to_string(),
            Route::Ok(serde_json::json!({ "schema": without_tool_id }).to_string()),
        ),
        (
            "/schemas/ids/6".to_string(),
            Route::FailFirst(
                1,
                503,
                serde_json::json!({ "schema": TELEMETRY_SCHEMA_JSON }).to_string(),
            ),
        ),
    ]))
}

fn registry_decoder(url: &str, credentials: Option<(&str, &str)>) -> Decoder {
    Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        // A trailing slash is fine.
        schema_registry_url: Some(format!("{url}/")),
        schema_registry_username: credentials.map(|c| c.0.to_string()),
        schema_registry_password: credentials.map(|c| c.1.to_string()),
        ..DecodeConfig::default()
    })
    .unwrap()
}

fn expect_err(decoder: &Decoder, payload: &[u8], kind: &str, text: &str) -> DecodeError {
    let err = decoder.decode(payload).unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(err.to_string().contains(text), "{text:?} not in: {err}");
    err
}

#[test]
fn registry_over_http() {
    let registry = registry_with_cases();
    let decoder = registry_decoder(&registry.url, Some(("API_KEY", "s3cr:et")));
    let ours = encode_telemetry_avro(&sample()).unwrap();

    // Found id: decodes, with basic auth, then served from the cache.
    for _ in 0..3 {
        assert_eq!(decoder.decode(&frame(1, &ours)).unwrap(), sample());
    }
    assert_eq!(registry.count("/schemas/ids/1"), 1);
    let (_, auth) = &registry.requests()[0];
    // base64("API_KEY:s3cr:et")
    assert_eq!(auth.as_deref(), Some("Basic QVBJX0tFWTpzM2NyOmV0"));

    // An evolved schema (extra field with a default, no wafer_id).
    let evolved = parse_schema(EVOLVED).unwrap();
    let payload = frame(
        2,
        &datum(
            &evolved,
            serde_json::json!({
                "tool_id": "RTP-09", "gateway_version": "2.4.0", "tool_type": "rtp",
                "recipe_id": "SPIKE", "lot_id": null, "event_time": 1_700_000_000_000_i64,
                "measurements": {"emissivity": 0.71},
            }),
        ),
    );
    let t = decoder.decode(&payload).unwrap();
    assert_eq!(
        (t.tool_id.as_str(), t.tool_type, t.lot_id, t.wafer_id),
        ("RTP-09", ToolType::Rtp, None, None)
    );
    assert_eq!(t.measurements["emissivity"], 0.71);

    // 500: transient, not cached (each try asks again).
    for n in 1..=2 {
        let err = expect_err(&decoder, &frame(3, &ours), "registry", "HTTP 500");
        assert!(err.is_transient());
        assert_eq!(err.schema_id(), Some(3));
        assert!(
            err.to_string().contains("Error in the backend data store"),
            "{err}"
        );
        assert_eq!(registry.count("/schemas/ids/3"), n);
    }

    // A 503 that recovers: the retry the runtime makes succeeds.
    let err = expect_err(&decoder, &frame(6, &ours), "registry", "HTTP 503");
    assert!(err.is_transient());
    assert_eq!(decoder.decode(&frame(6, &ours)).unwrap(), sample());

    // Not an Avro schema, or one without tool_id: "avro", permanent and cached.
    for _ in 0..2 {
        let err = expect_err(
            &decoder,
            &frame(4, &ours),
            "avro",
            "PROTOBUF schema, not AVRO",
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("schema id 4"), "{err}");
        expect_err(&decoder, &frame(5, &ours), "avro", "no field `tool_id`");
    }
    assert_eq!(registry.count("/schemas/ids/4"), 1);
    assert_eq!(registry.count("/schemas/ids/5"), 1);

    // Unknown id: 404 → unknown_schema_id, not transient, remembered (one request).
    for _ in 0..5 {
        let err = expect_err(&decoder, &frame(99, &ours), "unknown_schema_id", "id 99");
        assert!(!err.is_transient());
    }
    assert_eq!(registry.count("/schemas/ids/99"), 1);

    // Every request carried the credentials, and the URL's trailing slash was dropped.
    for (path, auth) in registry.requests() {
        assert!(path.starts_with("/schemas/ids/"), "{path}");
        assert_eq!(
            auth.as_deref(),
            Some("Basic QVBJX0tFWTpzM2NyOmV0"),
            "{path}"
        );
    }

    // Without credentials, no Authorization header.
    let anonymous = registry_decoder(&registry.url, None);
    let before = registry.requests().len();
    assert_eq!(anonymous.decode(&frame(1, &ours)).unwrap(), sample());
    let requests = registry.requests();
    assert_eq!(requests.len(), before + 1);
    assert_eq!(requests[before], ("/schemas/ids/1".to_string(), None));
}

#[test]
fn concurrent_first_lookups_make_one_request() {
    let registry = registry_with_cases();
    let decoder = Arc::new(registry_decoder(&registry.url, None));
    let payload = frame(1, &encode_telemetry_avro(&sample()).unwrap());
    std::thread::scope(|s| {
        for _ in 0..8 {
            let decoder = Arc::clone(&decoder);
            let payload = &payload;
            s.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(decoder.decode(payload).unwrap().tool_id, "ION-01");
                }
            });
        }
    });
    assert_eq!(registry.count("/schemas/ids/1"), 1);
}

#[test]
fn ids_file_first_then_registry() {
    let registry = registry_with_cases();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ours.avsc"), TELEMETRY_SCHEMA_JSON).unwrap();
    std::fs::write(dir.path().join("ids.toml"), "41 = \"ours.avsc\"\n").unwrap();
    let decoder = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(registry.url.clone()),
        schema_ids_file: Some(dir.path().join("ids.toml")),
        ..DecodeConfig::default()
    })
    .unwrap();
    let ours = encode_telemetry_avro(&sample()).unwrap();
    assert_eq!(decoder.decode(&frame(41, &ours)).unwrap(), sample());
    assert_eq!(decoder.decode(&frame(1, &ours)).unwrap(), sample());
    let err = expect_err(&decoder, &frame(42, &ours), "unknown_schema_id", "ids.toml");
    assert!(err.to_string().contains(&registry.url), "{err}");
    let paths: Vec<String> = registry.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/schemas/ids/1", "/schemas/ids/42"]);
}
