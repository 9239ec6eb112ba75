//! Robustness: random and truncated bytes never panic; the registry's answers are cached
//! (not found for a while, unreachable as transient); error kinds stay stable.

use super::*;

#[test]
fn random_and_truncated_bytes_never_panic() {
    let dir = evolved_dir();
    let decoders = [
        decoder(PayloadFormat::Json),
        decoder(PayloadFormat::Avro),
        Decoder::new(&DecodeConfig {
            format: PayloadFormat::Avro,
            avro_schema_file: Some(dir.path().join("evolved.avsc")),
            ..DecodeConfig::default()
        })
        .unwrap(),
        confluent_decoder(dir.path(), "schemas.json"),
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let valid_ours = encode_telemetry_avro(&sample()).unwrap();
    let valid_evolved = evolved_datum((0, "rtp"), &[("a", 1.0), ("b", 2.0)]);
    let json = encode_telemetry_json(&sample());

    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for _ in 0..3000 {
        inputs.push(rng.bytes(64));
        // Arbitrary bytes after a valid header, for each known id and an unknown one.
        let id = [1, 2, 3][(rng.next() % 3) as usize];
        inputs.push(frame(id, &rng.bytes(48)));
        // A valid datum with one byte flipped.
        let mut flipped = valid_ours.clone();
        let i = (rng.next() as usize) % flipped.len();
        flipped[i] ^= 1 << (rng.next() % 8);
        inputs.push(flipped.clone());
        inputs.push(frame(1, &flipped));
        let mut text = json.clone();
        let i = (rng.next() as usize) % text.len();
        text[i] = rng.next() as u8;
        inputs.push(text);
    }
    for valid in [&valid_ours, &valid_evolved, &json] {
        for end in 0..valid.len() {
            inputs.push(valid[..end].to_vec());
            inputs.push(frame(1, &valid[..end]));
            inputs.push(frame(2, &valid[..end]));
        }
    }
    // Huge announced lengths and counts: a string, then a map block.
    for huge in [i64::MAX, i64::MIN, 1 << 40, -(1 << 40), u32::MAX as i64, -1] {
        let mut s = Vec::new();
        put_long(&mut s, huge);
        s.extend_from_slice(b"abc");
        inputs.push(s.clone());
        inputs.push(frame(1, &s));
        let mut m = Vec::new();
        for text in ["T", "", "R"] {
            if text.is_empty() {
                put_long(&mut m, 0); // tool_type index
            } else {
                put_long(&mut m, 1);
                m.extend_from_slice(text.as_bytes());
            }
        }
        m.extend_from_slice(&[0, 0, 2]); // lot null, wafer null, event_time 1
        put_long(&mut m, huge); // map block count
        put_long(&mut m, 8); // or a byte size, for a negative count
        m.extend_from_slice(&[2, b'x', 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        inputs.push(m.clone());
        inputs.push(frame(1, &m));
        inputs.push(frame(2, &m));
    }

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &decoders {
        for input in &inputs {
            match d.decode(input) {
                Ok(_) => *kinds.entry("ok").or_default() += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    assert!(!e.is_transient());
                    *kinds.entry(e.kind()).or_default() += 1;
                }
            }
        }
    }
    for kind in [
        "ok",
        "json",
        "avro",
        "magic_byte",
        "unknown_schema_id",
        "empty",
    ] {
        assert!(kinds.contains_key(kind), "{kind} never seen: {kinds:?}");
    }
}

// ---------------------------------------------------------------- registry caching

/// A registry answering 404 to everything, counting requests.
fn not_found_registry() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"error_code":40403,"message":"Schema not found"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

#[test]
fn registry_not_found_is_remembered_for_a_while() {
    let (url, hits) = not_found_registry();
    let mut d = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(url.clone()),
        ..DecodeConfig::default()
    })
    .unwrap();
    let Format::AvroConfluent(store) = &mut d.format else {
        unreachable!()
    };
    store.not_found_ttl = Duration::from_millis(300);
    let payload = frame(77, &[0; 4]);
    let err = d.decode(&payload).unwrap_err();
    assert_eq!(err.kind(), "unknown_schema_id");
    assert!(
        err.to_string().contains(&format!("{url}/schemas/ids/77")),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    for _ in 0..50 {
        let err = d.decode(&payload).unwrap_err();
        assert_eq!(err.kind(), "unknown_schema_id");
        assert!(err.to_string().contains("remembered for 0.3 s"), "{err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(d.decode(&payload).unwrap_err().kind(), "unknown_schema_id");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[test]
fn unreachable_registry_is_transient() {
    // A port nothing listens on, below the kernel's ephemeral range: a port the kernel
    // picked for `bind(":0")` and released may be handed to the next `bind(":0")` (this
    // module's stub registries run concurrently), ports below it only to whoever asks.
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let start = low - 4000 + (std::process::id() % 3000) as u16;
    let port = (start..low)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port below the ephemeral range");
    let d = Decoder::new(&DecodeConfig {
        format: PayloadFormat::AvroConfluent,
        schema_registry_url: Some(format!("http://127.0.0.1:{port}")),
        ..DecodeConfig::default()
    })
    .unwrap();
    let err = d.decode(&frame(5, &[0; 4])).unwrap_err();
    assert_eq!(err.kind(), "registry");
    assert!(err.is_transient());
    assert_eq!(err.schema_id(), Some(5));
    assert!(
        err.to_string()
            .starts_with("schema registry, fetching schema id 5: GET http://127.0.0.1:"),
        "{err}"
    );
}

#[test]
fn kinds_are_stable() {
    let all = [
        (DecodeError::TooLarge { size: 2, max: 1 }, "too_large"),
        (DecodeError::Empty, "empty"),
        (
            DecodeError::Json {
                reason: String::new(),
            },
            "json",
        ),
        (
            DecodeError::Avro {
                schema: String::new(),
                reason: String::new(),
                schema_id: None,
            },
            "avro",
        ),
        (
            DecodeError::Framing {
                reason: String::new(),
            },
            "magic_byte",
        ),
        (
            DecodeError::UnknownSchemaId {
                id: 1,
                reason: String::new(),
            },
            "unknown_schema_id",
        ),
        (
            DecodeError::Registry {
                id: 1,
                reason: String::new(),
            },
            "registry",
        ),
        (
            DecodeError::Invalid {
                field: "tool_id",
                reason: String::new(),
            },
            "invalid",
        ),
    ];
    for (error, kind) in all {
        assert_eq!(error.kind(), kind);
        assert_eq!(error.is_transient(), kind == "registry");
    }
    let long = "é".repeat(1000);
    let clipped = error::clip(long);
    assert!(clipped.len() <= 603 && clipped.ends_with('…'));
}
