//! Decodes the bench's telemetry documents in a loop, for instruction counts under
//! callgrind (see docs/BENCHMARKS.md):
//!
//! ```sh
//! cargo build --release -p spcvm-schemas --example decode_load
//! valgrind --tool=callgrind target/release/examples/decode_load borrowed full 100
//! ```
//!
//! Arguments: the decoder (`borrowed`, `owned` or `serde_json`), the values (`full` or
//! `short`) and how many passes over 1,000 documents. Prints the number of measurements
//! decoded.

use spcvm_schemas::{Telemetry, TelemetryView, decode_telemetry_json, decode_telemetry_json_ref};

#[path = "../benches/documents/mod.rs"]
mod documents;
use documents::{Values, documents};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: decode_load borrowed|owned|serde_json full|short PASSES";
    let [decoder, values, passes] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let values = match values.as_str() {
        "full" => Values::Full,
        "short" => Values::Short,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let Ok(passes) = passes.parse::<u32>() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let docs = documents(1000, values);
    let mut measurements = 0usize;
    for _ in 0..passes {
        for d in &docs {
            measurements += match decoder.as_str() {
                "borrowed" => decode_telemetry_json_ref(d).map(|t| t.measurement_count()),
                "owned" => decode_telemetry_json(d).map(|t| t.measurements.len()),
                "serde_json" => serde_json::from_slice::<Telemetry>(d)
                    .map(|t| t.measurements.len())
                    .map_err(spcvm_schemas::SchemaError::TelemetryJson),
                _ => {
                    eprintln!("{usage}");
                    std::process::exit(2);
                }
            }
            .unwrap_or_else(|e| panic!("bench document does not decode: {e}"));
        }
    }
    println!("{measurements}");
}
