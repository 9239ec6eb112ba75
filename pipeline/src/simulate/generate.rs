//! The sample generator: [`Generator`] yields every tool's samples in event-time order
//! (at each time step the tools in scenario order), faults applied.
//!
//! Each tool has a random stream of its own, seeded from the scenario's seed and the
//! tool's index, and draws one standard normal per parameter and sample whatever happens,
//! so a tool's data does not depend on the other tools, and a fault changes only the
//! parameters it moves. A tool's level of each parameter is offset from the recipe's by a
//! draw of ±0.5 sd (tools differ a little, as real ones do); its charts estimate their
//! own center line.

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
    fault: Option<Fault>,
    /// `ION-01` without the dash, for lot ids.
    short: String,
}

/// Yields the scenario's samples in event-time order.
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
                ToolState {
                    rng,
                    parameters,
                    levels,
                    fault: scenario.faults.iter().find(|f| f.tool == i).cloned(),
                    short: plan.tool_id.replace('-', ""),
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
}

impl Iterator for Generator<'_> {
    type Item = Telemetry;

    fn next(&mut self) -> Option<Telemetry> {
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
        let plan = &scenario.tools[i];
        let state = &mut self.tools[i];
        let per_lot = scenario.wafers_per_lot * scenario.samples_per_wafer;
        let lot_id = format!("LOT-{}-{:04}", state.short, k / per_lot + 1);
        let wafer = (k % per_lot) / scenario.samples_per_wafer + 1;
        let wafer_id = format!("{lot_id}-W{wafer:02}");
        let progress = state.fault.as_ref().map_or(0.0, |f| f.progress(k));
        let mut measurements = std::collections::BTreeMap::new();
        for (p, level) in state.parameters.iter().zip(&state.levels) {
            let z: f64 = StandardNormal.sample(&mut state.rng);
            let (shift, sd_factor) = match &state.fault {
                Some(f) if progress > 0.0 => {
                    let (shift, factor) = f.kind.effect(p.name, f.magnitude);
                    (shift * progress, 1.0 + (factor - 1.0) * progress)
                }
                _ => (0.0, 1.0),
            };
            let value = level + shift * p.sd + z * p.sd * sd_factor;
            measurements.insert(p.name.to_string(), round(value, p.decimals));
        }
        Some(Telemetry {
            tool_id: plan.tool_id.clone(),
            tool_type: plan.tool_type,
            recipe_id: plan.recipe_id.clone(),
            lot_id: Some(lot_id),
            wafer_id: Some(wafer_id),
            event_time: Generator::event_time(scenario, k),
            measurements,
        })
    }
}

/// `value` rounded to `decimals` decimals.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
