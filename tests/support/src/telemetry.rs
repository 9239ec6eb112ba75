//! The telemetry generator of the end-to-end tests and the e2e bench: one deterministic
//! stream of ion-implant and RTP records with drifts that raise alerts of several charts
//! and rules.
//!
//! Tools alternate in each round (one wafer per tool, a minute of event time apart):
//! implanter 0 (`ION-00`), RTP chamber 0 (`RTP-00`), implanter 1, and so on. Implanters
//! report four measurements, RTP chambers five, each a level plus normal noise (splitmix64
//! uniforms, Box-Muller) drawn from one sequence in record order. From round
//! [`GenOptions::drift_from`] on, every third implanter's beam current drifts up (0.002 mA a
//! round, 0.2 of its noise's standard deviation) and every third RTP chamber's ramp
//! tracking and lamp power step up by 2.5 (its noise's σ is 1): the drifting implanters are
//! `ION-00`, `ION-03`, ..., the stepping chambers `RTP-01`, `RTP-04`, .... Every chart's
//! Phase I (200 points, or 25 subgroups of 5) is over by then. With
//! [`GenOptions::episodes`] a drifting tool is out of control only for [`EPISODE_ON`] of
//! every [`EPISODE_LEN`] rounds (then maintenance brings it back), tools staggered, so that
//! alerts fire all along a long stream.

use std::collections::BTreeMap;

use spcvm_schemas::{Telemetry, ToolType, encode_telemetry_json};

/// Round from which the drifting tools drift (after every chart's Phase I baseline).
pub const DRIFT_FROM: usize = 230;
/// Event time of the first round: 2026-03-02 08:30 UTC.
pub const START_MS: i64 = 1_772_440_200_000;
/// Event time from one round to the next: a wafer per tool and minute.
pub const ROUND_MS: i64 = 60_000;
/// Length of a drift episode's cycle, in rounds (see [`GenOptions::episodes`]).
pub const EPISODE_LEN: usize = 300;
/// Rounds of each [`EPISODE_LEN`] a drifting tool is out of control.
pub const EPISODE_ON: usize = 120;
/// How far apart (in rounds of the cycle) consecutive tools' episodes start.
const EPISODE_STAGGER: usize = 37;

/// Where in its round a record's event time falls, and how its wafer is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Implanter `t` reports `t` seconds into the round and RTP chamber `t` half a second
    /// after it; wafers are numbered through the run (`W00000`, `W00001`, ...). The
    /// end-to-end tests' records ([`telemetry`]).
    #[default]
    Compact,
    /// The tools report evenly spread over the round's minute, in order; wafers are
    /// numbered within their lot of 25 (`W00` to `W24`). The e2e bench's records (327
    /// bytes of JSON each with 50 tools).
    Spread,
}

/// What a [`TelemetryGen`] generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenOptions {
    /// Tools in all, implanters and RTP chambers alternating (an odd count has one
    /// implanter more).
    pub tools: usize,
    /// Seed of the noise.
    pub seed: u64,
    /// Round from which the drifting tools drift ([`DRIFT_FROM`] by default).
    pub drift_from: usize,
    /// Whether the drifts come in episodes of [`EPISODE_ON`] rounds in every
    /// [`EPISODE_LEN`] (the e2e bench's long streams) rather than going on for good (off
    /// by default).
    pub episodes: bool,
    /// Event times and wafer names ([`Layout::Compact`] by default).
    pub layout: Layout,
}

impl GenOptions {
    /// `tools` tools, noise seeded with `seed`, the defaults otherwise.
    pub fn new(tools: usize, seed: u64) -> GenOptions {
        GenOptions {
            tools,
            seed,
            drift_from: DRIFT_FROM,
            episodes: false,
            layout: Layout::Compact,
        }
    }

    /// These options with the drifts starting at round `round`.
    pub fn drift_from(self, round: usize) -> GenOptions {
        GenOptions {
            drift_from: round,
            ..self
        }
    }

    /// These options with drift episodes on or off.
    pub fn episodes(self, episodes: bool) -> GenOptions {
        GenOptions { episodes, ..self }
    }

    /// These options with `layout`.
    pub fn layout(self, layout: Layout) -> GenOptions {
        GenOptions { layout, ..self }
    }
}

/// The generator: an endless iterator over the records in order (round by round, the
/// tools in turn within a round). Deterministic: the same options give the same records.
#[derive(Debug, Clone)]
pub struct TelemetryGen {
    options: GenOptions,
    noise: Noise,
    next: usize,
}

impl TelemetryGen {
    /// A generator at the first record.
    ///
    /// # Panics
    /// When `options.tools` is 0.
    pub fn new(options: GenOptions) -> TelemetryGen {
        assert!(options.tools > 0, "the generator needs at least one tool");
        TelemetryGen {
            noise: Noise(options.seed),
            options,
            next: 0,
        }
    }

    /// The options it generates with.
    pub fn options(&self) -> &GenOptions {
        &self.options
    }

    /// How many records it has yielded.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Record number `i`; called in order, as the noise is one sequence.
    fn record(&mut self, i: usize) -> Telemetry {
        let o = &self.options;
        let round = i / o.tools;
        let slot = i % o.tools;
        let t = slot / 2;
        // Which third of its kind the tool is in: 0 and 1 drift (implanter / RTP).
        let third = t % 3;
        let implanter = slot & 1 == 0;
        let offset_ms = match o.layout {
            Layout::Compact => t as i64 * 1000 + if implanter { 0 } else { 500 },
            Layout::Spread => slot as i64 * ROUND_MS / o.tools as i64,
        };
        let event_time = START_MS + round as i64 * ROUND_MS + offset_ms;
        let wafer_id = Some(match o.layout {
            Layout::Compact => format!("W{round:05}"),
            Layout::Spread => format!("W{:02}", round % 25),
        });
        let lot_id = Some(format!("LOT-{:05}", round / 25));
        let phase = self.drift_phase(round, t);
        let n = &mut self.noise;
        let mut m = BTreeMap::new();
        if implanter {
            let drift = match phase {
                Some(phase) if third == 0 => 0.002 * phase as f64,
                _ => 0.0,
            };
            m.insert(
                "beam_current_mA".to_string(),
                1.0 + drift + 0.01 * n.normal(),
            );
            m.insert("dose_uniformity_pct".to_string(), 95.5 + 0.3 * n.normal());
            m.insert(
                "source_pressure_mtorr".to_string(),
                2.3e-5 + 1e-7 * n.normal(),
            );
            m.insert(
                "analyzer_field_gauss".to_string(),
                1520.0 + 2.0 * n.normal(),
            );
            Telemetry {
                tool_id: format!("ION-{t:02}"),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11_30KEV".into(),
                lot_id,
                wafer_id,
                event_time,
                measurements: m,
            }
        } else {
            let step = match phase {
                Some(_) if third == 1 => 2.5,
                _ => 0.0,
            };
            m.insert("ramp_tracking_error_C".to_string(), step + n.normal());
            m.insert("overshoot_pct".to_string(), 2.0 + 0.3 * n.normal());
            m.insert("lamp_power_pct".to_string(), 60.0 + step + n.normal());
            m.insert("emissivity".to_string(), 0.7 + 0.01 * n.normal());
            m.insert("gas_flow_deviation_sccm".to_string(), n.normal());
            Telemetry {
                tool_id: format!("RTP-{t:02}"),
                tool_type: ToolType::Rtp,
                recipe_id: "SPIKE_1050".into(),
                lot_id,
                wafer_id,
                event_time,
                measurements: m,
            }
        }
    }

    /// Rounds into its drift the `t`-th tool of each kind is at `round`, if a drifting tool
    /// would be drifting then.
    fn drift_phase(&self, round: usize, t: usize) -> Option<usize> {
        let since = round.checked_sub(self.options.drift_from)?;
        if !self.options.episodes {
            return Some(since);
        }
        let phase = (since + t * EPISODE_STAGGER) % EPISODE_LEN;
        (phase < EPISODE_ON).then_some(phase)
    }
}

impl Iterator for TelemetryGen {
    type Item = Telemetry;

    fn next(&mut self) -> Option<Telemetry> {
        let record = self.record(self.next);
        self.next += 1;
        Some(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

/// Standard normal noise: splitmix64 uniforms through Box-Muller.
#[derive(Debug, Clone)]
struct Noise(u64);

impl Noise {
    /// A uniform in [0, 1) (splitmix64, 53 bits).
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal (Box-Muller, the cosine half).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The end-to-end tests' records: `tools` ion-implant tools and as many RTP tools, `rounds`
/// wafers each, [`Layout::Compact`], drifting from [`DRIFT_FROM`] on for good; so there are
/// alerts of several charts and rules, and open dedup windows.
pub fn telemetry(tools: usize, rounds: usize, seed: u64) -> Vec<Telemetry> {
    TelemetryGen::new(GenOptions::new(2 * tools, seed))
        .take(2 * tools * rounds)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a over the JSON lines of `records`, and their count.
    fn digest(records: impl Iterator<Item = Telemetry>) -> (usize, u64) {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut n = 0;
        for r in records {
            let mut line = encode_telemetry_json(&r);
            line.push(b'\n');
            for b in line {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            n += 1;
        }
        (n, h)
    }

    /// The records of the two generators this one replaced (`tests/e2e/common/mod.rs`'s
    /// `telemetry` and `pipeline/benches/e2e.rs`'s `Gen`), digested at commit 920370b: the
    /// tests assert on them (which tools drift, from which round, wafer names) and the
    /// bench's figures are comparable only on the same records.
    #[test]
    fn the_records_are_those_of_the_generators_it_replaced() {
        let e2e = GOLDEN_E2E.map(|(tools, rounds, seed, want)| {
            let what = format!("telemetry({tools}, {rounds}, {seed})");
            (
                telemetry(tools, rounds, seed),
                2 * tools * rounds,
                want,
                what,
            )
        });
        let bench = GOLDEN_BENCH.map(|(tools, seed, n, want)| {
            let options = GenOptions::new(tools, seed)
                .episodes(true)
                .layout(Layout::Spread);
            let what = format!("the bench's {tools} tools, seed {seed}, {n} records");
            (
                TelemetryGen::new(options).take(n).collect::<Vec<_>>(),
                n,
                want,
                what,
            )
        });
        for (records, n, want, what) in e2e.into_iter().chain(bench) {
            assert_eq!(digest(records.into_iter()), (n, want), "{what}");
        }
    }

    /// (tools, rounds, seed, digest) of the end-to-end tests' `telemetry`.
    const GOLDEN_E2E: [(usize, usize, u64, u64); 6] = [
        (6, 360, 3, 0x5b2b_9020_ad52_9270),
        (3, 400, 21, 0x6098_ff4e_202d_c615),
        (2, 300, 11, 0x428c_df18_bbf1_5806),
        (700, 3, 11, 0x8a8f_9f70_a9b0_065b),
        (1, 30, 7, 0xe692_11c7_018c_10ee),
        (50, 3000, 5, 0xf1a0_2cfb_d968_af2e),
    ];
    /// (tools, seed, records, digest) of the bench's `Gen` (`Gen::new(tools, seed)`,
    /// records `0..records`).
    const GOLDEN_BENCH: [(usize, u64, usize, u64); 5] = [
        (50, 7, 20_000, 0x0f4c_446d_f623_05f3),
        (50, 7, 40_000, 0xee99_3098_365e_38dc),
        (7, 7, 5_000, 0x9c16_b215_a9ba_0788),
        (2, 3, 2_000, 0xbe64_b71d_6797_ce22),
        (20_000, 7, 200_000, 0x5844_1aec_6392_0fee),
    ];

    #[test]
    fn every_third_tool_of_each_kind_drifts_from_drift_from() {
        // Same seed, so the same noise: the records differ by the drifts only.
        let round = |options: GenOptions| -> Vec<Telemetry> {
            TelemetryGen::new(options).skip(8 * 10).take(8).collect()
        };
        let drifting = round(GenOptions::new(8, 1).drift_from(0));
        let steady = round(GenOptions::new(8, 1));
        for (d, s) in drifting.iter().zip(&steady) {
            let shift = |name: &str| d.measurements[name] - s.measurements[name];
            match d.tool_id.as_str() {
                // Ten rounds into the drift.
                "ION-00" | "ION-03" => assert!((shift("beam_current_mA") - 0.02).abs() < 1e-9),
                "RTP-01" => {
                    assert!((shift("lamp_power_pct") - 2.5).abs() < 1e-9);
                    assert!((shift("ramp_tracking_error_C") - 2.5).abs() < 1e-9);
                }
                _ => assert_eq!(d, s),
            }
        }
    }

    #[test]
    fn episodes_switch_a_drift_off_and_on() {
        let options = GenOptions::new(2, 3).episodes(true).drift_from(0);
        let g = TelemetryGen::new(options);
        // Tool 0: on for rounds 0..120 of every 300.
        assert_eq!(g.drift_phase(0, 0), Some(0));
        assert_eq!(g.drift_phase(119, 0), Some(119));
        assert_eq!(g.drift_phase(120, 0), None);
        assert_eq!(g.drift_phase(300, 0), Some(0));
        // Tool 3 starts 111 rounds into its cycle.
        assert_eq!(g.drift_phase(0, 3), Some(111));
        assert_eq!(g.drift_phase(9, 3), None);
    }
}
