//! `SpcMonitor`: routes each measurement of a telemetry record to its chart and turns chart
//! signals into deduplicated alerts. It is the `spc` [`Stage`](crate::Stage): its store keeps a state per
//! chart key (tool, recipe, parameter), grouped by (tool, recipe); `process_record` is the
//! fan-out from one record to its charts (found by name through `routes`),
//! [`SpcMonitor::process_sample`] one chart's step.

use serde::{Deserialize, Serialize};
use spcvm_schemas::{Alert, AlertStatus, TelemetryView, ToolType};

use crate::dedup::{Dedup, Window};
use crate::defaults;
use crate::signal::{Rule, Signal};
use crate::spc::{Chart, ChartSpec, ChartState, ChartType, SpecError};
use crate::stage::RecordStats;
use crate::state::GroupMut;
use crate::state::{ChartKeyRef, KeyedState};

/// Monitor configuration (the `CHARTS.toml` file, or the `[spc]` part of a pipeline config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Include the seed's ion-implant and RTP charts. A `[[chart]]` for the same parameter
    /// (and the same or any tool type) replaces the seed's chart.
    #[serde(default = "yes")]
    pub seed_defaults: bool,
    /// Alert dedup settings.
    #[serde(default)]
    pub dedup: DedupConfig,
    /// Charts, in priority order: the first that matches a (tool type, parameter) wins.
    #[serde(default, rename = "chart")]
    pub charts: Vec<ChartSpec>,
}

fn yes() -> bool {
    true
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            seed_defaults: true,
            dedup: DedupConfig::default(),
            charts: Vec::new(),
        }
    }
}

/// Alert dedup settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Window in seconds of event time: repeats of one rule on one chart within it fold into
    /// one alert. 0 disables dedup.
    #[serde(default = "default_window_s")]
    pub window_s: f64,
}

fn default_window_s() -> f64 {
    1800.0
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window_s: default_window_s(),
        }
    }
}

/// A configuration error: which chart and which field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A chart's value is out of range.
    #[error("chart[{index}] ({parameter}): {source}")]
    Chart {
        /// Position of the `[[chart]]` entry (0-based).
        index: usize,
        /// Its parameter.
        parameter: String,
        /// What is wrong.
        source: SpecError,
    },
    /// The dedup window is negative or not a number.
    #[error("dedup.window_s: {0} must be zero or a positive number of seconds")]
    DedupWindow(f64),
}

/// Index of a chart in the monitor.
pub type ChartId = u16;

/// One measurement routed to a chart: the operator's input.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Which chart.
    pub chart: ChartId,
    /// The value; `None` when the record lacked the parameter.
    pub value: Option<f64>,
    /// Event time, ms since the Unix epoch.
    pub event_time: i64,
    /// Tool type of the record.
    pub tool_type: ToolType,
    /// Lot, if known.
    pub lot_id: Option<&'a str>,
    /// Wafer, if known.
    pub wafer_id: Option<&'a str>,
}

/// The operator state of one chart key (256 bytes, plus the encoded dedup windows).
///
/// Laid out for the per-sample path, after the store's 8-byte entry tag: the time the next
/// dedup window expires, then the chart's sample count and running statistics (the first
/// cache line: all an X-bar sample that does not close a subgroup reads), its frozen limits
/// (the second) and run-rule registers (the third). The per-rule counters, the encoded
/// windows and the settings fingerprint follow, read only when a rule fires, a window closes,
/// a value is missing, or the state is adopted by another monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SpcStateFields")]
#[repr(C)]
pub struct SpcState {
    /// The earliest opening time among the open dedup windows (`i64::MAX` when none): the
    /// one dedup field each sample reads. Derived from `dedup`, so not serialized.
    #[serde(skip)]
    due: i64,
    /// The chart.
    pub chart: ChartState,
    /// Open dedup windows.
    dedup: Dedup,
    /// Fingerprint of the chart settings the state was built under: a restore under changed
    /// settings (type, λ, limits, baseline, ...) starts the chart over.
    pub fingerprint: u64,
    /// The chart type it was built for.
    pub chart_type: ChartType,
    /// Tool type of the key (for alerts emitted without a sample).
    pub tool_type: ToolType,
}

/// [`SpcState`] as serialized.
#[derive(Deserialize)]
struct SpcStateFields {
    chart: ChartState,
    dedup: Dedup,
    fingerprint: u64,
    chart_type: ChartType,
    tool_type: ToolType,
}

impl From<SpcStateFields> for SpcState {
    fn from(f: SpcStateFields) -> Self {
        SpcState {
            due: f.dedup.oldest(),
            chart: f.chart,
            dedup: f.dedup,
            fingerprint: f.fingerprint,
            chart_type: f.chart_type,
            tool_type: f.tool_type,
        }
    }
}

impl SpcState {
    /// Memory held by this state: the struct plus its heap (open dedup windows).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.dedup.heap_bytes()
    }

    /// The open dedup windows.
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    fn new(chart: &Chart, tool_type: ToolType) -> Self {
        SpcState {
            due: i64::MAX,
            fingerprint: chart.fingerprint,
            chart_type: chart.chart_type(),
            tool_type,
            chart: ChartState::default(),
            dedup: Dedup::default(),
        }
    }

    /// Whether event time `now` has passed a dedup window.
    #[inline]
    fn expires(&self, now: i64, window_ms: i64) -> bool {
        now.saturating_sub(self.due) >= window_ms
    }
}

/// Namespace of the deterministic (UUID v5) alert ids.
const ALERT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_2b0e_52a4_4d3c_9a57_1e0c_5b2d_7a91);

/// Numbers monitors, for the tags they give their charts' entries in a [`KeyedState`].
static MONITORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The SPC operator: every chart of every (tool, recipe, parameter).
#[derive(Debug, Clone)]
pub struct SpcMonitor {
    charts: Vec<Chart>,
    /// This monitor's number (shared by its clones, which have the same charts) in the high
    /// bits: `tags | chart id` tags the entries whose state has been checked against that
    /// chart, so that a lookup under the tag needs neither a name comparison nor the
    /// fingerprint check.
    tags: u64,
    /// parameter -> chart for [ion_implant, rtp, any tool type].
    routes: Routes,
    /// Per tool type, the charts tied to it (missing-parameter accounting).
    expected: [Vec<(String, ChartId)>; 2],
    /// Per tool type, by chart id: whether the chart is in `expected` (a record that routed
    /// a measurement to each of them lacks none, and is not searched for the others).
    is_expected: [Vec<bool>; 2],
    window_ms: i64,
}

fn slot(t: Option<ToolType>) -> usize {
    match t {
        Some(ToolType::IonImplant) => 0,
        Some(ToolType::Rtp) => 1,
        None => 2,
    }
}

impl SpcMonitor {
    /// Validates the configuration and builds the monitor.
    pub fn new(config: &MonitorConfig) -> Result<Self, ConfigError> {
        if !(config.dedup.window_s >= 0.0 && config.dedup.window_s.is_finite()) {
            return Err(ConfigError::DedupWindow(config.dedup.window_s));
        }
        let mut monitor = SpcMonitor {
            charts: Vec::new(),
            tags: MONITORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 16,
            routes: Routes::default(),
            expected: [Vec::new(), Vec::new()],
            is_expected: [Vec::new(), Vec::new()],
            window_ms: (config.dedup.window_s * 1000.0).round() as i64,
        };
        for (index, spec) in config.charts.iter().enumerate() {
            let chart = spec.compile().map_err(|source| ConfigError::Chart {
                index,
                parameter: spec.parameter.clone(),
                source,
            })?;
            monitor.add(chart, false);
        }
        if config.seed_defaults {
            for spec in defaults::seed_charts() {
                let chart = spec.compile().map_err(|source| ConfigError::Chart {
                    index: usize::MAX,
                    parameter: spec.parameter.clone(),
                    source,
                })?;
                monitor.add(chart, true);
            }
        }
        Ok(monitor)
    }

    /// Adds a chart unless an earlier one already covers its (tool type, parameter); a seed
    /// chart also yields to an earlier chart for any tool type.
    fn add(&mut self, chart: Chart, is_seed: bool) {
        let tool_type = chart.spec.tool_type;
        let entry = self.routes.entry(&chart.spec.parameter);
        let s = slot(tool_type);
        if entry[s].is_some() || (is_seed && entry[2].is_some()) {
            return;
        }
        let id = self.charts.len() as ChartId;
        entry[s] = Some(id);
        for (i, is_expected) in self.is_expected.iter_mut().enumerate() {
            is_expected.push(tool_type.is_some_and(|t| slot(Some(t)) == i));
        }
        if let Some(t) = tool_type {
            self.expected[slot(Some(t))].push((chart.spec.parameter.clone(), id));
        }
        self.charts.push(chart);
    }

    /// The chart for a parameter of a tool type, if one watches it.
    pub fn route(&self, tool_type: ToolType, parameter: &str) -> Option<ChartId> {
        let e = self.routes.get(parameter)?;
        e[slot(Some(tool_type))].or(e[2])
    }

    /// The chart with this id.
    pub fn chart(&self, id: ChartId) -> Option<&Chart> {
        self.charts.get(id as usize)
    }

    /// Every chart, indexed by id.
    pub fn charts(&self) -> &[Chart] {
        &self.charts
    }

    /// The dedup window in milliseconds.
    pub fn dedup_window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Feeds every measurement of `record` to its chart, creating chart state on first sight,
    /// and counts parameters this tool type should have but the record lacks.
    pub fn process_record<R: TelemetryView + ?Sized>(
        &self,
        store: &mut KeyedState<SpcState>,
        record: &R,
        out: &mut Vec<Alert>,
    ) -> RecordStats {
        let mut stats = RecordStats::default();
        let ctx = Ctx {
            tool_id: record.tool_id(),
            recipe_id: record.recipe_id(),
            tool_type: record.tool_type(),
            event_time: record.event_time(),
            lot_id: record.lot_id(),
            wafer_id: record.wafer_id(),
        };
        let mut group = store.group(ctx.tool_id, ctx.recipe_id);
        let t = slot(Some(ctx.tool_type));
        let mut next = self.routes.first();
        let mut expected_seen = 0;
        for (parameter, value) in record.measurements() {
            let route = self.routes.get_near(parameter, &mut next);
            match route.and_then(|e| e[t].or(e[2])) {
                Some(id) => {
                    stats.routed += 1;
                    expected_seen += usize::from(self.is_expected[t][id as usize]);
                    stats.non_finite += u32::from(!value.is_finite());
                    let state = self.state_in(&mut group, parameter, id, ctx.tool_type);
                    self.step(
                        &self.charts[id as usize],
                        parameter,
                        &ctx,
                        state,
                        Some(value),
                        out,
                    );
                }
                None => stats.unmonitored += 1,
            }
        }
        if expected_seen == self.expected[t].len() {
            return stats;
        }
        for (parameter, id) in &self.expected[t] {
            if record.measurement(parameter).is_none() {
                stats.missing += 1;
                let state = self.state_in(&mut group, parameter, *id, ctx.tool_type);
                self.step(
                    &self.charts[*id as usize],
                    parameter,
                    &ctx,
                    state,
                    None,
                    out,
                );
            }
        }
        stats
    }

    /// [`SpcMonitor::process_record`] on each record in turn, with the same outputs, while
    /// loading the chart states of the records a few places ahead (see
    /// [`KeyedState::prefetch`]): with more keys than fit in cache, the lookups of several
    /// records then wait for memory together instead of one after another. Returns the
    /// records' stats added up.
    pub fn process_records<R: TelemetryView>(
        &self,
        store: &mut KeyedState<SpcState>,
        records: &[R],
        out: &mut Vec<Alert>,
    ) -> RecordStats {
        let mut total = RecordStats::default();
        for (i, record) in records.iter().enumerate() {
            store.prefetch_ahead(i, |j| records.get(j).map(|r| (r.tool_id(), r.recipe_id())));
            total += self.process_record(store, record, out);
        }
        total
    }

    /// The state of chart `id` (on `parameter`) in a (tool, recipe) group, created if absent.
    /// The store tags each entry with the monitor and chart it was last checked against, so
    /// the fingerprint is compared (and a state built under other settings started over) only
    /// when the entry was restored or last used by another monitor.
    #[inline]
    fn state_in<'g>(
        &self,
        group: &'g mut GroupMut<'_, SpcState>,
        parameter: &str,
        id: ChartId,
        tool_type: ToolType,
    ) -> &'g mut SpcState {
        let chart = &self.charts[id as usize];
        group.get_or_insert_with(
            parameter,
            self.tags | u64::from(id),
            || SpcState::new(chart, tool_type),
            |state| {
                if state.fingerprint != chart.fingerprint {
                    *state = SpcState::new(chart, tool_type);
                }
            },
        )
    }

    /// Event time reached `watermark_ms` on every key of `store`: close expired dedup windows,
    /// in key order. Only the charts with an expired window are collected and sorted (the
    /// others would emit nothing and stay unchanged), so a sweep costs one look at each
    /// state's expiry rather than a sort of every key.
    pub fn advance_all(
        &self,
        store: &mut KeyedState<SpcState>,
        watermark_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let window_ms = self.window_ms;
        let mut keys = store.collect_mut_where(|state| state.expires(watermark_ms, window_ms));
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, state) in keys {
            self.watermark_key(key, state, watermark_ms, out);
        }
    }

    /// End of input on every key of `store`: closes every open dedup window, in key order.
    pub fn end_all(&self, store: &mut KeyedState<SpcState>, out: &mut Vec<Alert>) {
        let mut keys = store.collect_mut_where(|state| state.dedup.open_windows() > 0);
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, state) in keys {
            self.close(key, state, i64::MAX, 0, out);
        }
    }

    fn alert_id(key: ChartKeyRef<'_>, signal: &Signal, seq: u64) -> String {
        let mut name =
            Vec::with_capacity(key.tool_id.len() + key.recipe_id.len() + key.parameter.len() + 40);
        for part in [
            key.tool_id,
            key.recipe_id,
            key.parameter,
            signal.plot.as_str(),
            signal.rule.as_str(),
        ] {
            name.extend_from_slice(part.as_bytes());
            name.push(0x1f);
        }
        name.extend_from_slice(seq.to_string().as_bytes());
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v5(&ALERT_NAMESPACE, &name)
            .hyphenated()
            .encode_lower(&mut buf)
            .to_string()
    }

    /// A human line: what crossed which line, e.g. `beam_current_mA ewma = 1.0120 on
    /// ION-02/B11_30KEV: beyond a control limit (UCL 1.0105)`.
    fn message(key: ChartKeyRef<'_>, signal: &Signal, repeats: u32) -> String {
        use std::fmt::Write;
        let mut m = String::with_capacity(128);
        let _ = write!(
            m,
            "{} {} = {} on {}/{}: {}",
            key.parameter,
            signal.plot.as_str(),
            Sig(signal.statistic),
            key.tool_id,
            key.recipe_id,
            signal.rule.describe(),
        );
        let line = if signal.statistic > signal.center {
            signal.ucl.map(|v| ("UCL", v))
        } else {
            signal.lcl.map(|v| ("LCL", v))
        };
        let run_rule = matches!(
            signal.rule,
            Rule::Rule2
                | Rule::Rule3
                | Rule::Rule4
                | Rule::Rule5
                | Rule::Rule6
                | Rule::Rule7
                | Rule::Rule8
        );
        let _ = match line {
            Some((name, v)) if !run_rule => write!(m, " ({name} {})", Sig(v)),
            _ => write!(m, " (center {})", Sig(signal.center)),
        };
        if repeats > 0 {
            let _ = write!(m, "; repeated {repeats} more times in the dedup window");
        }
        m
    }

    /// The alert that opens a dedup window (`window_start` = its own event time).
    #[allow(clippy::too_many_arguments)]
    fn alert(
        key: ChartKeyRef<'_>,
        tool_type: ToolType,
        lot_id: Option<&str>,
        wafer_id: Option<&str>,
        signal: &Signal,
        seq: u64,
        event_time: i64,
        repeats: u32,
    ) -> Alert {
        let message = Self::message(key, signal, repeats);
        let cusum = signal.cusum;
        Alert {
            alert_id: Self::alert_id(key, signal, seq),
            tool_id: key.tool_id.to_string(),
            tool_type,
            recipe_id: key.recipe_id.to_string(),
            lot_id: lot_id.map(str::to_string),
            wafer_id: wafer_id.map(str::to_string),
            parameter: key.parameter.to_string(),
            chart: signal.plot.as_str().to_string(),
            rule: signal.rule.as_str().to_string(),
            severity: signal.severity(),
            statistic: signal.statistic,
            center_line: signal.center,
            ucl: signal.ucl,
            lcl: signal.lcl,
            event_time,
            message,
            repeats,
            distance_sigma: signal.distance_sigma(),
            status: AlertStatus::Open,
            window_start: Some(event_time),
            cusum_upper_sigma: cusum.map(|[upper, _]| upper),
            cusum_lower_sigma: cusum.map(|[_, lower]| lower),
        }
    }

    /// The alert that closes a dedup window: the opening alert's id and time (as
    /// `window_start`), the last repeat's statistic (and its σ distance and CUSUM sums),
    /// time, lot and wafer, the worst severity seen, and the repeat count.
    fn closing_alert(
        key: ChartKeyRef<'_>,
        chart: Option<&Chart>,
        state: &ChartState,
        tool_type: ToolType,
        w: &Window<'_>,
    ) -> Alert {
        let mut signal = w.last_signal();
        if signal.sigma.is_none() {
            signal.sigma = chart.and_then(|chart| {
                let line = (signal.center, signal.ucl);
                crate::spc::plot_sigma(chart, state.limits.as_ref(), signal.plot, line)
            });
        }
        let mut alert = Self::alert(
            key, tool_type, w.lot_id, w.wafer_id, &signal, w.seq, w.last_at, w.repeats,
        );
        alert.severity = w.severity;
        alert.status = AlertStatus::Closed;
        alert.window_start = Some(w.opened_at);
        alert
    }
}

/// What the charts of one record share.
struct Ctx<'r> {
    tool_id: &'r str,
    recipe_id: &'r str,
    tool_type: ToolType,
    event_time: i64,
    lot_id: Option<&'r str>,
    wafer_id: Option<&'r str>,
}

impl Ctx<'_> {
    fn key<'k>(&'k self, parameter: &'k str) -> ChartKeyRef<'k> {
        ChartKeyRef {
            tool_id: self.tool_id,
            recipe_id: self.recipe_id,
            parameter,
        }
    }
}

/// The most signals one sample raises: a spec limit, the critical threshold, eight run rules
/// and the spread chart.
const MAX_SIGNALS: usize = 11;

/// The signals of one sample, admitted to dedup together.
struct Signals {
    len: usize,
    items: [Signal; MAX_SIGNALS],
    /// Beyond `MAX_SIGNALS` (should a chart ever raise more).
    more: Vec<Signal>,
}

impl Signals {
    fn new(first: Signal) -> Self {
        Signals {
            len: 0,
            items: [first; MAX_SIGNALS],
            more: Vec::new(),
        }
    }

    fn push(&mut self, signal: Signal) {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = signal;
                self.len += 1;
            }
            None => self.more.push(signal),
        }
    }
}

impl SpcMonitor {
    /// [`SpcMonitor::process_sample`] on a state known to match `chart`'s fingerprint. The
    /// per-sample path; what happens only when a window expires or a rule fires is out of
    /// line.
    #[inline]
    fn step(
        &self,
        chart: &Chart,
        parameter: &str,
        ctx: &Ctx<'_>,
        state: &mut SpcState,
        value: Option<f64>,
        out: &mut Vec<Alert>,
    ) {
        if state.expires(ctx.event_time, self.window_ms) {
            self.close_windows(parameter, ctx, state, out);
        }
        let Some(x) = value else {
            state.chart.record_missing();
            return;
        };
        let seq = state.chart.samples + 1;
        // Built on the first signal only: most samples raise none.
        let mut signals: Option<Signals> = None;
        state
            .chart
            .update(chart, x, &mut |signal: Signal| match &mut signals {
                Some(buf) => buf.push(signal),
                None => {
                    let mut buf = Signals::new(signal);
                    buf.push(signal);
                    signals = Some(buf);
                }
            });
        if let Some(signals) = signals {
            self.admit(parameter, ctx, state, seq, &signals, out);
        }
    }

    /// Closes the dedup windows that event time has passed.
    #[cold]
    #[inline(never)]
    fn close_windows(
        &self,
        parameter: &str,
        ctx: &Ctx<'_>,
        state: &mut SpcState,
        out: &mut Vec<Alert>,
    ) {
        self.close(
            ctx.key(parameter),
            state,
            ctx.event_time,
            self.window_ms,
            out,
        );
    }

    /// Closes the dedup windows of `key` that event time `now` has passed.
    fn close(
        &self,
        key: ChartKeyRef<'_>,
        state: &mut SpcState,
        now: i64,
        window_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        let tool_type = state.tool_type;
        // The chart the state was built under (for the σ of the closing alerts), unless the
        // state was restored under other settings and not touched since.
        let chart = self
            .route(tool_type, key.parameter)
            .and_then(|id| self.chart(id))
            .filter(|c| c.fingerprint == state.fingerprint);
        state.due = state.dedup.expire(now, window_ms, |w| {
            out.push(Self::closing_alert(key, chart, &state.chart, tool_type, w))
        });
    }

    /// Admits one sample's signals to dedup and emits the alerts of those that open a window.
    #[cold]
    #[inline(never)]
    fn admit(
        &self,
        parameter: &str,
        ctx: &Ctx<'_>,
        state: &mut SpcState,
        seq: u64,
        signals: &Signals,
        out: &mut Vec<Alert>,
    ) {
        let key = ctx.key(parameter);
        let ids = (ctx.lot_id, ctx.wafer_id);
        let mut emit = |signal: &Signal| {
            out.push(Self::alert(
                key,
                ctx.tool_type,
                ctx.lot_id,
                ctx.wafer_id,
                signal,
                seq,
                ctx.event_time,
                0,
            ))
        };
        for batch in [&signals.items[..signals.len], &signals.more[..]] {
            if !batch.is_empty() {
                let (now, window) = (ctx.event_time, self.window_ms);
                state.due = state
                    .dedup
                    .admit_all(batch, now, seq, window, ids, &mut emit);
            }
        }
    }
}

#[cfg(test)]
mod field_tests;
mod routes;
mod stage;
#[cfg(test)]
mod tests;
mod text;

use routes::Routes;
use text::Sig;
