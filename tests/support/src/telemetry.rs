//! The end-to-end tests' telemetry: ion-implant and RTP tools, some of them drifting.

use std::collections::BTreeMap;

use spcvm_schemas::{Telemetry, ToolType, encode_telemetry_json};

/// Round from which the drifting tools drift (after every chart's Phase I baseline).
pub const DRIFT_FROM: usize = 230;

/// Deterministic telemetry: `tools` ion-implant tools and as many RTP tools, `rounds`
/// wafers each (one minute apart), with a slow beam-current drift on every third implanter
/// and a ramp-tracking and lamp-power step on every third RTP tool from [`DRIFT_FROM`] on; so there are alerts
/// of several charts and rules, and open dedup windows.
pub fn telemetry(tools: usize, rounds: usize, seed: u64) -> Vec<Telemetry> {
    let mut state = seed;
    let mut noise = move || {
        // splitmix64 -> two uniforms -> one standard normal (Box-Muller)
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u1, u2) = (next().max(1e-12), next());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let start = 1_772_440_200_000i64;
    let mut out = Vec::with_capacity(tools * 2 * rounds);
    for round in 0..rounds {
        for t in 0..tools {
            // Phase I takes the first 200 points (EWMA, CUSUM) or 25 subgroups of 5.
            let late = round >= DRIFT_FROM;
            let drift = if t % 3 == 0 && late {
                0.002 * (round - DRIFT_FROM) as f64
            } else {
                0.0
            };
            let mut m = BTreeMap::new();
            m.insert("beam_current_mA".to_string(), 1.0 + drift + 0.01 * noise());
            m.insert("dose_uniformity_pct".to_string(), 95.5 + 0.3 * noise());
            m.insert("source_pressure_mtorr".to_string(), 2.3e-5 + 1e-7 * noise());
            m.insert("analyzer_field_gauss".to_string(), 1520.0 + 2.0 * noise());
            out.push(Telemetry {
                tool_id: format!("ION-{t:02}"),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11_30KEV".into(),
                lot_id: Some(format!("LOT-{:05}", round / 25)),
                wafer_id: Some(format!("W{round:05}")),
                event_time: start + round as i64 * 60_000 + t as i64 * 1000,
                measurements: m,
            });
            let step = if t % 3 == 1 && late { 2.5 } else { 0.0 };
            let mut m = BTreeMap::new();
            m.insert("ramp_tracking_error_C".to_string(), step + noise());
            m.insert("overshoot_pct".to_string(), 2.0 + 0.3 * noise());
            m.insert("lamp_power_pct".to_string(), 60.0 + step + 1.0 * noise());
            m.insert("emissivity".to_string(), 0.7 + 0.01 * noise());
            m.insert("gas_flow_deviation_sccm".to_string(), noise());
            out.push(Telemetry {
                tool_id: format!("RTP-{t:02}"),
                tool_type: ToolType::Rtp,
                recipe_id: "SPIKE_1050".into(),
                lot_id: Some(format!("LOT-{:05}", round / 25)),
                wafer_id: Some(format!("W{round:05}")),
                event_time: start + round as i64 * 60_000 + t as i64 * 1000 + 500,
                measurements: m,
            });
        }
    }
    out
}

/// `records` as JSON lines (each ending in `\n`), as `spcvm backtest` and the file runtime
/// read them.
pub fn jsonl_lines(records: &[Telemetry]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| {
            let mut line = encode_telemetry_json(r);
            line.push(b'\n');
            line
        })
        .collect()
}
