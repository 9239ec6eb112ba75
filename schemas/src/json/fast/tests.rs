//! The fast telemetry JSON parser against serde_json: the same records, the same errors.

use proptest::prelude::*;

use super::{RECIPROCALS_OF_FIVE, eight_digits, parse, reciprocal_decimal, wide_decimal};
use crate::json::{decode_telemetry_json, decode_telemetry_json_ref};
use crate::telemetry::Telemetry;

/// serde_json on the derived type: the reference the fast path must agree with.
fn reference(doc: &[u8]) -> Result<Telemetry, String> {
    crate::json::decode_with_serde(doc).map_err(|e| e.to_string())
}

/// Equality that tells NaN payloads and the sign of zero apart.
fn same(a: &Telemetry, b: &Telemetry) -> bool {
    a.tool_id == b.tool_id
        && a.tool_type == b.tool_type
        && a.recipe_id == b.recipe_id
        && a.lot_id == b.lot_id
        && a.wafer_id == b.wafer_id
        && a.event_time == b.event_time
        && a.measurements.len() == b.measurements.len()
        && a.measurements
            .iter()
            .zip(&b.measurements)
            .all(|((n, v), (m, w))| n == m && v.to_bits() == w.to_bits())
}

/// The fast path may only answer where serde succeeds, with the same sample; the public
/// decoders always give serde's result or serde's error.
fn check(doc: &[u8]) -> Result<(), TestCaseError> {
    let expected = reference(doc);
    if let Some(fast) = parse(doc) {
        let fast = fast.into_owned();
        match &expected {
            Ok(r) => prop_assert!(same(&fast, r), "fast {fast:?} serde {r:?}"),
            Err(e) => prop_assert!(false, "fast accepted what serde rejects ({e}): {fast:?}"),
        }
    }
    match (decode_telemetry_json(doc), &expected) {
        (Ok(got), Ok(r)) => prop_assert!(same(&got, r), "{got:?} vs {r:?}"),
        (Err(got), Err(r)) => prop_assert_eq!(&got.to_string(), r),
        (got, r) => prop_assert!(false, "decoder {got:?} serde {r:?}"),
    }
    match (decode_telemetry_json_ref(doc), &expected) {
        (Ok(got), Ok(r)) => prop_assert!(same(&got.into_owned(), r)),
        (Err(got), Err(r)) => prop_assert_eq!(&got.to_string(), r),
        (got, r) => prop_assert!(false, "borrowing decoder {got:?} serde {r:?}"),
    }
    Ok(())
}

fn ws() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "\n  ", "\t", "\r\n"])
}

/// A JSON string literal, sometimes with escapes or characters that need them.
fn string_literal() -> impl Strategy<Value = String> {
    let plain = "[A-Za-z0-9_.-]{0,10}".prop_map(|s| format!("\"{s}\""));
    let odd = "[A-Za-z\"\\\\/\u{1}\u{e9}\u{1F600} -]{0,6}"
        .prop_map(|s| serde_json::to_string(&s).unwrap());
    let unicode_escape = "[A-Za-z]{0,4}".prop_map(|s| format!("\"\\u0041{s}\\/\""));
    prop_oneof![20 => plain, 2 => odd, 1 => unicode_escape]
}

fn number_token() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "0",
        "-0",
        "-0.0",
        "1",
        "-1",
        "0.5",
        "1e3",
        "1E-7",
        "2.5e+2",
        "4.9e-324",
        "2.2250738585072011e-308",
        "1.7976931348623157e308",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "0.1000000000000000055511151231257827",
        "01",
        "1.",
        ".5",
        "+1",
        "-",
        "1e",
        "1e+",
        "0x10",
        "1.5.2",
        "--1",
    ])
    .prop_map(str::to_owned);
    let finite = || {
        use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
        POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
    };
    let float = finite().prop_map(|v| format!("{v}"));
    let sci = finite().prop_map(|v| format!("{v:e}"));
    let int = any::<i64>().prop_map(|v| v.to_string());
    // Sensor-style decimals: a few to twenty digits, a point anywhere, some exponent.
    let decimal = (
        "-?[0-9]{1,20}",
        any::<prop::sample::Index>(),
        prop::option::of(-30i32..30),
    )
        .prop_map(|(digits, point, exp)| {
            let (sign, digits) = digits.split_at(usize::from(digits.starts_with('-')));
            let digits = digits.trim_start_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            let at = point.index(digits.len() + 1);
            let mut text = format!("{sign}{}", &digits[..at.max(1)]);
            if at > 0 && at < digits.len() {
                text = format!("{text}.{}", &digits[at..]);
            }
            match exp {
                Some(e) => format!("{text}e{e}"),
                None => text,
            }
        });
    prop_oneof![1 => fixed, 3 => float, 1 => sci, 2 => int, 4 => decimal]
}

fn measurement_value() -> impl Strategy<Value = String> {
    let other = prop::sample::select(vec![
        "null",
        "\"NaN\"",
        "\"nan\"",
        "\"Infinity\"",
        "\"-inf\"",
        "\"+INF\"",
        "\"1.5\"",
        "\"\"",
        "true",
        "NaN",
        "-Infinity",
        "[1]",
        "{}",
        "\"N\\u0061N\"",
    ])
    .prop_map(str::to_owned);
    prop_oneof![12 => number_token(), 1 => other]
}

/// Any JSON-ish value for an unknown field, nested a little.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number_token(),
        string_literal(),
        prop::sample::select(vec!["true", "false", "null", "true", "null", "tru"])
            .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string_literal(), inner), 0..4).prop_map(|v| {
                let members: Vec<String> = v.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", members.join(", "))
            }),
        ]
    })
}

fn measurements() -> impl Strategy<Value = String> {
    const NAMES: [&str; 8] = [
        "beam_current_mA",
        "dose",
        "energy_keV",
        "tilt_deg",
        "a",
        "B",
        "b",
        "beam",
    ];
    let names = prop_oneof![
        // Mostly distinct names, in any order; now and then an odd or repeated one.
        8 => prop::sample::subsequence(NAMES.to_vec(), 0..7)
            .prop_shuffle()
            .prop_map(|v| v.into_iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>()),
        1 => prop::collection::vec(string_literal(), 0..4),
    ];
    (
        names,
        prop::collection::vec((ws(), measurement_value()), 7),
        ws(),
    )
        .prop_map(|(names, values, w)| {
            let members: Vec<String> = names
                .into_iter()
                .zip(values)
                .map(|(n, (w, v))| format!("{n}{w}:{w}{v}"))
                .collect();
            format!("{{{w}{}{w}}}", members.join(","))
        })
}

/// A document: each field present or not (rarely twice), unknown fields, any order.
fn document() -> impl Strategy<Value = String> {
    let tool_type = prop_oneof![
        12 => prop::sample::select(vec!["\"ion_implant\"", "\"rtp\""]),
        1 => prop::sample::select(vec!["\"RTP\"", "\"furnace\"", "null", "1", "\"rt\\u0070\""]),
    ]
    .prop_map(str::to_owned);
    let id_or_null = prop_oneof![
        8 => string_literal(),
        4 => Just("null".to_owned()),
        1 => number_token(),
    ];
    let event_time = prop_oneof![
        12 => any::<i64>().prop_map(|v| v.to_string()),
        1 => number_token(),
        1 => Just("\"5\"".to_owned()),
    ];
    let fields = (
        (string_literal(), tool_type, string_literal()),
        (id_or_null.clone(), id_or_null),
        event_time,
        measurements(),
        prop::collection::vec(("[a-z_]{1,12}", any_value()), 0..3),
    );
    (
        fields,
        prop::collection::vec(0u8..20, 12),
        any::<u64>(),
        ws(),
    )
        .prop_map(
            |(((tool, tt, recipe), (lot, wafer), time, meas, unknown), presence, order, w)| {
                let mut members = Vec::new();
                let named = [
                    ("tool_id", tool),
                    ("tool_type", tt),
                    ("recipe_id", recipe),
                    ("lot_id", lot),
                    ("wafer_id", wafer),
                    ("event_time", time),
                    ("measurements", meas),
                ];
                for (i, (k, v)) in named.into_iter().enumerate() {
                    // Required fields are nearly always there, optional ones half the time;
                    // now and then a field comes twice.
                    let p = presence[i];
                    let times = match (i, p) {
                        (_, 19) => 2,
                        (3 | 4, 0..=9) => 0,
                        (_, 0) => 0,
                        _ => 1,
                    };
                    for _ in 0..times {
                        members.push(format!("\"{k}\"{w}:{w}{v}"));
                    }
                }
                for (k, v) in unknown {
                    members.push(format!("\"{k}\":{v}"));
                }
                // A deterministic shuffle from `order`.
                let mut seed = order;
                for i in (1..members.len()).rev() {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    members.swap(i, (seed >> 33) as usize % (i + 1));
                }
                format!("{w}{{{w}{}{w}}}{w}", members.join(&format!(",{w}")))
            },
        )
}

/// Byte edits that turn a document into a near miss.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        document(),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                0u8..3,
                prop::sample::select(b"\"{}[],:\\ 0a-.eE\x00\xff".to_vec()),
            ),
            1..3,
        ),
    )
        .prop_map(|(doc, edits)| {
            let mut bytes = doc.into_bytes();
            for (at, kind, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => {
                        bytes.remove(i);
                    }
                    1 => bytes.insert(i, byte),
                    _ => bytes[i] = byte,
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn agrees_with_serde_on_documents(doc in document()) {
        check(doc.as_bytes())?;
    }

    #[test]
    fn agrees_with_serde_on_near_misses(doc in mutated()) {
        check(&doc)?;
    }
}

/// The generated documents exercise both outcomes of the fast path, and serde's
/// acceptance and rejection, so the properties above compare something.
#[test]
fn generated_documents_cover_both_paths() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = document();
    let (mut fast, mut serde_only, mut rejected) = (0, 0, 0);
    for _ in 0..2000 {
        let doc = strategy.new_tree(&mut runner).unwrap().current();
        match (
            parse(doc.as_bytes()).is_some(),
            reference(doc.as_bytes()).is_ok(),
        ) {
            (true, _) => fast += 1,
            (false, true) => serde_only += 1,
            (false, false) => rejected += 1,
        }
    }
    assert!(
        fast > 300 && serde_only > 100 && rejected > 300,
        "fast {fast}, serde only {serde_only}, rejected {rejected}"
    );
}

/// `eight_digits` reads exactly the all-digit chunks, with their decimal value: every
/// byte value in every position, next to digits, and a spread of eight-digit numbers.
#[test]
fn eight_digits_matches_a_plain_parse() {
    let plain = |chunk: &[u8]| -> Option<u64> {
        chunk.iter().try_fold(0u64, |v, &b| {
            b.is_ascii_digit().then(|| v * 10 + u64::from(b - b'0'))
        })
    };
    for position in 0..8 {
        for byte in 0..=255u8 {
            let mut chunk = *b"31415926";
            chunk[position] = byte;
            assert_eq!(eight_digits(&chunk), plain(&chunk), "{chunk:?}");
        }
    }
    for n in (0..100_000_000u64)
        .step_by(999_983)
        .chain([0, 9, 99_999_999, 10_000_000])
    {
        let text = format!("{n:08}");
        assert_eq!(eight_digits(text.as_bytes()), Some(n), "{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// Any mantissa past 2^53 (of 54 to 64 bits, each length as likely) and any scale
    /// it takes: the standard library's parse of the same decimal is the reference
    /// (correctly rounded).
    #[test]
    fn wide_decimal_rounds_like_the_standard_library(
        (bits, low) in (54u32..=64, any::<u64>()),
        scale in -22i32..=22,
    ) {
        let top = 1u64 << (bits - 1);
        let mantissa = (top | (low & (top - 1))).max((1 << 53) + 1);
        let expected: f64 = format!("{mantissa}e{scale}").parse().unwrap();
        match wide_decimal(mantissa, scale) {
            Some(got) => prop_assert_eq!(got.to_bits(), expected.to_bits()),
            None => prop_assert!(u128::from(mantissa).checked_mul(10u128.pow(scale as u32)).is_none()),
        }
    }

    /// Decimals that are exact binary fractions `j / 2^k` of 54 or 55 bits: every
    /// halfway case (ties go to the even neighbour) and exact values next to them.
    #[test]
    fn wide_decimal_breaks_ties_to_even(j in (1u64 << 53)..(1u64 << 55), k in 1u32..=3) {
        let mantissa = j * 5u64.pow(k);
        prop_assume!(mantissa > 1 << 53);
        let scale = -(k as i32);
        let expected: f64 = format!("{mantissa}e{scale}").parse().unwrap();
        prop_assert_eq!(wide_decimal(mantissa, scale).map(f64::to_bits), Some(expected.to_bits()));
    }
}

/// Each reciprocal over-estimates `2^(127 + z) / 5^k` by less than one:
/// `(t - 1) * 5^k < 2^(127 + z) < t * 5^k`, in 192-bit arithmetic.
#[test]
fn reciprocals_of_five_bracket_the_exact_quotient() {
    // `t * d` as (the bits from 64 up, the low 64 bits).
    let product = |t: u128, d: u64| {
        let low = (t & u128::from(u64::MAX)) * u128::from(d);
        ((t >> 64) * u128::from(d) + (low >> 64), low as u64)
    };
    let mut five = 1u64;
    for (k, &(t, z)) in RECIPROCALS_OF_FIVE.iter().enumerate().skip(1) {
        five *= 5;
        assert_eq!(z, 64 - five.leading_zeros(), "k = {k}");
        let power = (1u128 << (63 + z), 0u64);
        assert!(product(t - 1, five) < power, "k = {k}");
        assert!(product(t, five) > power, "k = {k}");
        assert!(t > 1 << 127, "k = {k}");
    }
}

/// The multiplication path alone, on the inputs `wide_decimal` gives it: where it
/// answers, the standard library's parse agrees; it stands aside almost never.
#[test]
fn reciprocal_decimal_rounds_like_the_standard_library() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut answered = 0;
    let total = 200_000;
    for i in 0..total {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bits = 54 + (i % 11) as u32;
        let top = 1u64 << (bits - 1);
        let mantissa = (top | (state & (top - 1))).max((1 << 53) + 1);
        let k = 1 + (state >> 59) as u32 % 22;
        let expected: f64 = format!("{mantissa}e-{k}").parse().unwrap();
        match reciprocal_decimal(mantissa, k) {
            Some(got) => {
                answered += 1;
                assert_eq!(got.to_bits(), expected.to_bits(), "{mantissa}e-{k}");
            }
            // Only exact ties are left to the division (in this sample).
            None => assert!(
                mantissa.is_multiple_of(5u64.pow(k)),
                "{mantissa}e-{k} not answered"
            ),
        }
    }
    assert!(
        answered > total * 99 / 100,
        "answered {answered} of {total}"
    );
}

/// Full-precision values as gateways print them (shortest round trip, 16-17 digits)
/// decode to the very `f64` that was printed.
#[test]
fn full_precision_values_round_trip() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Magnitudes of process values: 1e-6 to 1e6.
        let value = f64::from_bits(state >> 12 | 0x3ff0_0000_0000_0000) - 1.0;
        let value = value * 10f64.powi((state % 13) as i32 - 6);
        let doc = format!(
            r#"{{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{{"x":{value}}}}}"#
        );
        let parsed = parse(doc.as_bytes()).expect("a plain document takes the fast path");
        let got = parsed.into_owned().measurements["x"];
        assert_eq!(got.to_bits(), value.to_bits(), "{value}");
    }
}

/// The documents gateways send take the fast path (the scanner is not just bailing out).
#[test]
fn usual_documents_take_the_fast_path() {
    let docs: [&[u8]; 5] = [
        br#"{"tool_id":"IMP-017","tool_type":"ion_implant","recipe_id":"B11-5E15","lot_id":"LOT-1","wafer_id":"W-07","event_time":1732617000123,"measurements":{"beam_current_mA":4.25,"dose":5.0e15,"energy_keV":40,"tilt_deg":-0.1,"vacuum":1.2e-6}}"#,
        br#"{"tool_id":"RTP-02","tool_type":"rtp","recipe_id":"SPIKE","event_time":0,"measurements":{"peak_temp_c":1050.5,"ramp":null,"o2_ppm":"NaN","x":"-Infinity"}}"#,
        b" {\n  \"measurements\" : { \"b\" : 2, \"a\" : 1 },\n  \"event_time\" : 5,\n  \"recipe_id\" : \"R\",\n  \"gateway\" : {\"version\": [1, 2.5, true, null, \"x\"], \"site\": \"F1\"},\n  \"tool_type\" : \"rtp\",\n  \"lot_id\" : null,\n  \"tool_id\" : \"T\"\n}\n",
        "{\"tool_id\":\"IMP-\u{e9}\",\"tool_type\":\"rtp\",\"recipe_id\":\"R\",\"event_time\":-5,\"measurements\":{}}".as_bytes(),
        br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"a":-0,"b":18446744073709551615,"c":1e-400}}"#,
    ];
    for doc in docs {
        let fast =
            parse(doc).unwrap_or_else(|| panic!("slow path: {}", String::from_utf8_lossy(doc)));
        let fast = fast.into_owned();
        assert!(same(&fast, &reference(doc).unwrap()), "{fast:?}");
        // Strings borrow from the document.
        let r = decode_telemetry_json_ref(doc).unwrap();
        assert!(matches!(r.tool_id, std::borrow::Cow::Borrowed(_)));
    }
    let t = parse(docs[2]).unwrap();
    assert_eq!(t.tool_id, "T");
    assert_eq!(t.lot_id, None);
    let m: Vec<(&str, f64)> = crate::TelemetryView::measurements(&t).collect();
    assert_eq!(m, [("a", 1.0), ("b", 2.0)], "sorted by name");
}

/// What the fast path leaves to serde, and serde's verdict on it.
#[test]
fn unusual_documents_go_to_serde() {
    let slow_ok: [&[u8]; 3] = [
        // An escape in a string.
        br#"{"tool_id":"T\"1","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"a":1}}"#,
        // Python's bare NaN.
        br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"a":NaN}}"#,
        // The sequence form serde accepts for a struct.
        br#"["T","rtp","R",null,null,1,{"a":1}]"#,
    ];
    for doc in slow_ok {
        assert!(parse(doc).is_none());
        let t = decode_telemetry_json_ref(doc).unwrap();
        assert!(matches!(t.tool_id, std::borrow::Cow::Owned(_)));
        assert!(same(&t.into_owned(), &reference(doc).unwrap()));
    }
    let slow_err: [&[u8]; 4] = [
        br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"a":1,"a":2}}"#,
        br#"{"tool_id":"T","tool_id":"U","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{}}"#,
        br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1.5,"measurements":{}}"#,
        br#"{"tool_id":"T","tool_type":"rtp","recipe_id":"R","event_time":1,"measurements":{"a":1e999}}"#,
    ];
    for doc in slow_err {
        assert!(parse(doc).is_none());
        assert_eq!(
            decode_telemetry_json_ref(doc).unwrap_err().to_string(),
            reference(doc).unwrap_err()
        );
    }
}
