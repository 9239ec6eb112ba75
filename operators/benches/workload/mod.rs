//! The monitor workload shared by the criterion bench (`benches/monitor.rs`), the
//! deterministic driver (`examples/monitor_load.rs`) and the state-size test
//! (`tests/memory.rs`, which takes its noise): the charts, the generated records and
//! the warm-up past Phase I.

#![allow(dead_code)]

use std::collections::BTreeMap;

use spcvm_operators::{ChartSpec, ChartType, KeyedState, MonitorConfig, SpcMonitor, SpcState};
use spcvm_schemas::{Alert, Telemetry, TelemetryView, ToolType};

/// The four charts every record feeds, one per measurement.
pub const PARAMS: [(&str, ChartType); 4] = [
    ("p_imr", ChartType::Imr),
    ("p_xbar", ChartType::XbarR),
    ("p_ewma", ChartType::Ewma),
    ("p_cusum", ChartType::Cusum),
];

/// The monitor; `all_rules` enables all eight run rules on the Shewhart charts, otherwise
/// every chart keeps its default rules (1, 2, 5, 6 on Shewhart charts, 1 on EWMA and CUSUM).
pub fn monitor(all_rules: bool) -> SpcMonitor {
    let charts = PARAMS
        .iter()
        .map(|&(p, ty)| {
            let mut c = ChartSpec::new(p, ty);
            // All eight run rules where they are defined (Shewhart charts); the EWMA and
            // CUSUM keep rule 1: run rules on an autocorrelated statistic fire on most points.
            if all_rules {
                c.rules = Some(if ty.uses_subgroups() || ty == ChartType::Imr {
                    (1..=8).collect()
                } else {
                    vec![1]
                });
            }
            c.spec_lower = Some(-4.5);
            c.spec_upper = Some(4.5);
            c
        })
        .collect();
    let cfg = MonitorConfig {
        seed_defaults: false,
        charts,
        ..MonitorConfig::default()
    };
    SpcMonitor::new(&cfg).expect("valid bench config")
}

/// Deterministic pseudo-normal noise: a sum of four splitmix64 uniforms, scaled to sd 1.
pub fn noise(state: &mut u64) -> f64 {
    let mut s = 0.0;
    for _ in 0..4 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        s += (z >> 11) as f64 / (1u64 << 53) as f64;
    }
    (s - 2.0) * 3.0f64.sqrt()
}

/// Cadence of one tool: a record per minute of event time.
pub const CADENCE_MS: i64 = 60_000;

/// Rounds of one record per tool that take every chart past the default Phase I (200
/// points; 25 subgroups of 5).
pub const WARM_ROUNDS: usize = 250;

/// `count` records round-robin over `tools` tools, starting at round `first_round`.
pub fn records(rng: &mut u64, tools: usize, count: usize, first_round: usize) -> Vec<Telemetry> {
    (0..count)
        .map(|i| {
            let measurements: BTreeMap<String, f64> = PARAMS
                .iter()
                .map(|&(p, _)| (p.to_string(), noise(rng)))
                .collect();
            Telemetry {
                tool_id: format!("TOOL-{:06}", i % tools),
                tool_type: ToolType::IonImplant,
                recipe_id: "RCP".to_string(),
                lot_id: None,
                wafer_id: None,
                event_time: 1_770_000_000_000
                    + ((first_round + i / tools) as i64) * CADENCE_MS
                    + (i % tools) as i64,
                measurements,
            }
        })
        .collect()
}

/// Chart state warmed past Phase I, and the batch of records a timed pass replays.
pub struct Setup {
    /// Every chart's state.
    pub store: KeyedState<SpcState>,
    /// The records one pass replays.
    pub batch: Vec<Telemetry>,
    /// Event time one pass covers: each pass moves the batch forward by this much.
    pub span: i64,
    /// Alerts raised during the warm-up.
    pub warm_alerts: Vec<Alert>,
    /// The noise generator, continued by [`Setup::advance`].
    pub rng: u64,
}

impl Setup {
    /// Puts the tools of each round of the batch in a fixed pseudo-random order (each tool's
    /// records stay in time order): tools that report in no particular order, so that
    /// consecutive records' chart states lie anywhere in memory rather than one after the
    /// other as in round-robin order.
    pub fn shuffle_tools(&mut self, tools: usize) {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut order: Vec<usize> = (0..tools).collect();
        for i in (1..tools).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut slots: Vec<Option<Telemetry>> = std::mem::take(&mut self.batch)
            .into_iter()
            .map(Some)
            .collect();
        for round in 0..slots.len() / tools {
            for &t in &order {
                if let Some(r) = slots[round * tools + t].take() {
                    self.batch.push(r);
                }
            }
        }
        self.batch.extend(slots.into_iter().flatten());
    }

    /// Readies the batch for the next pass (untimed): moves its event times forward by one
    /// span and draws fresh values in place. Replaying the same values would feed each chart
    /// a periodic sequence (two points per tool for 100,000 keys: up, down, up, down...),
    /// which run rules 4, 7 and 8 flag on nearly every point after a few passes.
    pub fn advance(&mut self) {
        for r in self.batch.iter_mut() {
            r.event_time += self.span;
            for v in r.measurements.values_mut() {
                *v = noise(&mut self.rng);
            }
        }
    }
}

/// Warms every key past the default Phase I (200 points, 25 subgroups of 5) and builds the
/// batch of `batch_len` records that follows.
pub fn warm(m: &SpcMonitor, tools: usize, batch_len: usize) -> Setup {
    let mut store = KeyedState::<SpcState>::default();
    let mut warm_alerts: Vec<Alert> = Vec::new();
    let mut rng = 7u64;
    for round in 0..WARM_ROUNDS {
        for r in records(&mut rng, tools, tools, round) {
            m.process_record(&mut store, &r, &mut warm_alerts);
        }
    }
    let batch = records(&mut rng, tools, batch_len, WARM_ROUNDS);
    let span = (batch.len() / tools) as i64 * CADENCE_MS;
    Setup {
        store,
        batch,
        span,
        warm_alerts,
        rng,
    }
}

/// One pass over `batch`: each record through `SpcMonitor::process_record`, or with
/// `batched` the whole batch through `SpcMonitor::process_records` (which prefetches).
/// Not inlined, so that a profile shows the pass as one function.
#[inline(never)]
pub fn pass<R: TelemetryView>(
    m: &SpcMonitor,
    store: &mut KeyedState<SpcState>,
    batch: &[R],
    out: &mut Vec<Alert>,
    batched: bool,
) {
    if batched {
        m.process_records(store, batch, out);
        return;
    }
    for r in batch {
        m.process_record(store, r, out);
    }
}

/// Rule firings counted on every chart of `store`.
pub fn fired(store: &KeyedState<SpcState>) -> u64 {
    store
        .iter()
        .map(|(_, s)| s.chart.fired.iter().map(|&n| u64::from(n)).sum::<u64>())
        .sum()
}

/// A record as the runtimes hand it to the monitor: decoded a moment ago from a payload that
/// is still in cache, its strings borrowed from that payload. The bench keeps these in one
/// array (its strings in one arena), so reading the input costs what reading a freshly
/// decoded record costs, and the misses left are the chart states'.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    tool_id: &'static str,
    recipe_id: &'static str,
    event_time: i64,
    /// Sorted by name, as [`TelemetryView::measurements`] requires.
    measurements: [(&'static str, f64); 4],
}

impl TelemetryView for Decoded {
    fn tool_id(&self) -> &str {
        self.tool_id
    }
    fn tool_type(&self) -> ToolType {
        ToolType::IonImplant
    }
    fn recipe_id(&self) -> &str {
        self.recipe_id
    }
    fn lot_id(&self) -> Option<&str> {
        None
    }
    fn wafer_id(&self) -> Option<&str> {
        None
    }
    fn event_time(&self) -> i64 {
        self.event_time
    }
    fn measurements(&self) -> impl Iterator<Item = (&str, f64)> {
        self.measurements.iter().copied()
    }
    fn measurement(&self, parameter: &str) -> Option<f64> {
        self.measurements
            .iter()
            .find(|(name, _)| *name == parameter)
            .map(|&(_, v)| v)
    }
    fn measurement_count(&self) -> usize {
        self.measurements.len()
    }
}

/// The tool ids of `tools` tools, in one leaked arena (bench setup only).
pub fn tool_ids(tools: usize) -> Vec<&'static str> {
    let arena: &'static str = (0..tools)
        .map(|t| format!("TOOL-{t:06}"))
        .collect::<String>()
        .leak();
    (0..tools).map(|t| &arena[t * 11..(t + 1) * 11]).collect()
}

/// `batch` as [`Decoded`] records, into `out` (cleared first).
pub fn decoded(batch: &[Telemetry], ids: &[&'static str], out: &mut Vec<Decoded>) {
    out.clear();
    out.extend(batch.iter().map(|r| {
        let tool: usize = r.tool_id[5..].parse().expect("bench tool id");
        let mut measurements = PARAMS.map(|(p, _)| (p, r.measurements[p]));
        measurements.sort_by(|a, b| a.0.cmp(b.0));
        Decoded {
            tool_id: ids[tool],
            recipe_id: "RCP",
            event_time: r.event_time,
            measurements,
        }
    }));
}
