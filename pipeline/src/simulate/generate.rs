//! The sample generator: [`Generator`] yields every tool's samples in event-time order
//! (at each time step the tools in scenario order), faults applied.
//!
//! Each tool has a random stream of its own, seeded from the scenario's seed and the
//! tool's index, and draws one standard normal per parameter and sample whatever happens,
//! so a tool's data does not depend on the other tools, and a fault changes only the
//! parameters it moves. A tool's level of each parameter is offset from the recipe's by a
//! draw of ±0.5 sd (tools differ a little, as real ones do); its charts estimate their
//! own center line.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use spcvm_schemas::Telemetry;

use super::model::{self, Parameter};
use super::scenario::{Fault, Scenario};

/// One tool's generator state.
#[derive(Debug)]
struct ToolState {
    rng: StdRng,
    parameters: Vec<Parameter>,
    /// The tool's level of each parameter.
    levels: Vec<f64>,
    /// `10^decimals` of each parameter (values are rounded to that many decimals).
    scales: Vec<f64>,
    fault: Option<Fault>,
    /// The fault's full effect on each parameter: (shift of the mean in sd, factor on the
    /// sd), `(0.0, 1.0)` without a fault (worked out once, not per sample).
    effects: Vec<(f64, f64)>,
    /// `ION-01` without the dash, for lot ids.
    short: String,
    /// The tool's last sample, rewritten in place for the next one: the ids stay, the lot
    /// and wafer ids are rewritten when they change, the values in place (the map's keys
    /// are the tool's parameters, so no sample allocates).
    record: Telemetry,
    /// For each entry of `record.measurements` in key order, its index in `parameters`.
    slots: Vec<usize>,
    /// The lot and wafer numbers `record`'s ids hold (0: none yet).
    lot: u64,
    wafer: u64,
}

/// Yields the scenario's samples in event-time order.
///
/// [`Generator::next_record`] lends each sample from a buffer of its tool (no allocation
/// per sample: the writers of `spcvm simulate` and its bench use it);
/// the [`Iterator`] hands out owned copies of the same samples.
#[derive(Debug)]
pub struct Generator<'s> {
    scenario: &'s Scenario,
    tools: Vec<ToolState>,
    /// The sample index of the next time step.
    k: u64,
    /// The tool of the next sample.
    tool: usize,
}

impl<'s> Generator<'s> {
    /// The generator of `scenario` (validated, so every recipe is known).
    pub fn new(scenario: &'s Scenario) -> Generator<'s> {
        let tools = scenario
            .tools
            .iter()
            .enumerate()
            .map(|(i, plan)| {
                let seed = scenario
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(i as u64 + 1);
                let mut rng = StdRng::seed_from_u64(seed);
                let parameters =
                    model::parameters(plan.tool_type, &plan.recipe_id).unwrap_or_default();
                let levels = parameters
                    .iter()
                    .map(|p| {
                        let u: f64 = StandardNormal.sample(&mut rng);
                        p.level + 0.5 * u.clamp(-1.0, 1.0) * p.sd
                    })
                    .collect();
                let fault = scenario.faults.iter().find(|f| f.tool == i).cloned();
                let effects = parameters
                    .iter()
                    .map(|p| {
                        fault
                            .as_ref()
                            .map_or((0.0, 1.0), |f| f.kind.effect(p.name, f.magnitude))
                    })
                    .collect();
                let measurements: BTreeMap<String, f64> = parameters
                    .iter()
                    .map(|p| (p.name.to_string(), 0.0))
                    .collect();
                let slots = measurements
                    .keys()
                    .map(|name| {
                        parameters
                            .iter()
                            .position(|p| p.name == name)
                            .unwrap_or_default()
                    })
                    .collect();
                ToolState {
                    rng,
                    scales: parameters.iter().map(|p| 10f64.powi(p.decimals)).collect(),
                    parameters,
                    levels,
                    fault,
                    effects,
                    short: plan.tool_id.replace('-', ""),
                    record: Telemetry {
                        tool_id: plan.tool_id.clone(),
                        tool_type: plan.tool_type,
                        recipe_id: plan.recipe_id.clone(),
                        lot_id: Some(String::new()),
                        wafer_id: Some(String::new()),
                        event_time: 0,
                        measurements,
                    },
                    slots,
                    lot: 0,
                    wafer: 0,
                }
            })
            .collect();
        Generator {
            scenario,
            tools,
            k: 0,
            tool: 0,
        }
    }

    /// How many samples the generator yields in all.
    pub fn len(&self) -> u64 {
        self.scenario.samples_per_tool * self.scenario.tools.len() as u64
    }

    /// Whether it yields nothing (never for a validated scenario).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The event time of a tool's sample `k`.
    pub fn event_time(scenario: &Scenario, k: u64) -> i64 {
        scenario.start_ms + k as i64 * scenario.interval_ms
    }

    /// The next sample, lent until the next call; `None` after the last.
    pub fn next_record(&mut self) -> Option<&Telemetry> {
        self.next_indexed().map(|(_, record)| record)
    }

    /// The next sample with the index of its tool in [`Scenario::tools`] (writers keep
    /// per-tool encodings by it).
    pub fn next_indexed(&mut self) -> Option<(usize, &Telemetry)> {
        if self.k >= self.scenario.samples_per_tool || self.tools.is_empty() {
            return None;
        }
        let (i, k) = (self.tool, self.k);
        self.tool += 1;
        if self.tool == self.tools.len() {
            self.tool = 0;
            self.k += 1;
        }
        let scenario = self.scenario;
        let state = &mut self.tools[i];
        let per_lot = scenario.wafers_per_lot * scenario.samples_per_wafer;
        let lot = k / per_lot + 1;
        let wafer = (k % per_lot) / scenario.samples_per_wafer + 1;
        let record = &mut state.record;
        if lot != state.lot {
            let lot_id = record.lot_id.get_or_insert_default();
            lot_id.clear();
            let _ = write!(lot_id, "LOT-{}-{lot:04}", state.short);
            state.lot = lot;
            state.wafer = 0;
        }
        if wafer != state.wafer {
            // `{lot_id}-W{wafer:02}`, without the formatting machinery (a wafer a sample).
            let wafer_id = record.wafer_id.get_or_insert_default();
            wafer_id.clear();
            wafer_id.push_str(record.lot_id.as_deref().unwrap_or_default());
            wafer_id.push_str(if wafer < 10 { "-W0" } else { "-W" });
            wafer_id.push_str(itoa::Buffer::new().format(wafer));
            state.wafer = wafer;
        }
        record.event_time = Generator::event_time(scenario, k);
        // One draw per parameter in the model's order whatever happens (the stream of a
        // tool does not depend on its fault).
        let progress = state.fault.as_ref().map_or(0.0, |f| f.progress(k));
        let mut values = [0.0f64; MAX_PARAMETERS];
        for (j, (p, level)) in state.parameters.iter().zip(&state.levels).enumerate() {
            let z: f64 = StandardNormal.sample(&mut state.rng);
            let (shift, sd_factor) = if progress > 0.0 {
                let (shift, factor) = state.effects[j];
                (shift * progress, 1.0 + (factor - 1.0) * progress)
            } else {
                (0.0, 1.0)
            };
            let value = level + shift * p.sd + z * p.sd * sd_factor;
            if let Some(v) = values.get_mut(j) {
                // `(value * 10^decimals).round() / 10^decimals`, the power worked out once.
                let scale = state.scales[j];
                *v = (value * scale).round() / scale;
            }
        }
        for (value, &slot) in record.measurements.values_mut().zip(&state.slots) {
            *value = values.get(slot).copied().unwrap_or_default();
        }
        Some((i, record))
    }
}

/// Most parameters a tool type has (the model's RTP has five).
const MAX_PARAMETERS: usize = 8;

impl Iterator for Generator<'_> {
    type Item = Telemetry;

    fn next(&mut self) -> Option<Telemetry> {
        self.next_record().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::scenario;

    fn mixed_fab() -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/scenarios/mixed_fab.toml");
        scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The samples lent from the tools' buffers are those the iterator hands out, and a
    /// tool's buffer holds the model's parameters only.
    #[test]
    fn lent_samples_equal_owned_ones() {
        let mut s = mixed_fab();
        s.samples_per_tool = 120;
        let owned: Vec<Telemetry> = Generator::new(&s).collect();
        let mut generator = Generator::new(&s);
        let mut n = 0;
        while let Some(record) = generator.next_record() {
            assert_eq!(record, &owned[n]);
            n += 1;
        }
        assert_eq!(n as u64, Generator::new(&s).len());
        let first = &owned[0];
        assert_eq!(first.lot_id.as_deref(), Some("LOT-ION01-0001"));
        assert_eq!(first.wafer_id.as_deref(), Some("LOT-ION01-0001-W01"));
        // Sample 25 of a tool (25 wafers a lot, one sample each) opens its second lot.
        let tools = s.tools.len();
        let second_lot = &owned[25 * tools];
        assert_eq!(second_lot.lot_id.as_deref(), Some("LOT-ION01-0002"));
        assert_eq!(second_lot.wafer_id.as_deref(), Some("LOT-ION01-0002-W01"));
        assert!(owned.iter().all(|r| r.measurements.len() <= MAX_PARAMETERS));
    }
}
