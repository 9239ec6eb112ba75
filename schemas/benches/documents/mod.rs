//! Telemetry JSON documents for the decoding bench and `examples/decode_load.rs`: the shape
//! the end-to-end bench produces (an implanter sample with lot, wafer and five
//! measurements, about 300 bytes), values varying from one document to the next.

use std::collections::BTreeMap;

use spcvm_schemas::{Telemetry, ToolType, encode_telemetry_json};

/// How measured values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Full `f64` precision, 16 or 17 significant digits (what a gateway that forwards
    /// computed doubles sends).
    Full,
    /// Five significant digits (a sensor's resolution, what most gateways send).
    Short,
}

/// `n` documents.
pub fn documents(n: u32, values: Values) -> Vec<Vec<u8>> {
    let round = |v: f64| match values {
        Values::Full => v,
        Values::Short => format!("{v:.4e}").parse().unwrap_or(v),
    };
    (0..n)
        .map(|i| {
            let x = f64::from(i);
            let t = Telemetry {
                tool_id: format!("IMP-{:03}", i % 50),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11-5E15-40KEV".into(),
                lot_id: Some(format!("LOT-{:06}", i / 25)),
                wafer_id: Some(format!("W-{:02}", i % 25)),
                event_time: 1_732_617_000_000 + i64::from(i) * 60_000,
                measurements: BTreeMap::from([
                    (
                        "beam_current_mA".into(),
                        round(4.25 + (x * 0.37).sin() * 0.02),
                    ),
                    (
                        "dose_uniformity_pct".into(),
                        round(98.5 + (x * 0.11).cos() * 0.3),
                    ),
                    ("energy_keV".into(), round(40.0 + (x * 0.05).sin() * 0.01)),
                    ("tilt_deg".into(), round(7.0 + (x * 0.7).cos() * 0.003)),
                    (
                        "vacuum_torr".into(),
                        round(1.2e-6 * (1.0 + (x * 0.3).sin() * 0.05)),
                    ),
                ]),
            };
            encode_telemetry_json(&t)
        })
        .collect()
}
