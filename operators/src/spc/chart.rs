//! Per-chart state and the update step: Phase I estimation, frozen limits, the chart
//! statistics (X-bar/R, X-bar/S, I-MR, EWMA, CUSUM), spec checks and run rules.

use serde::{Deserialize, Serialize};

use super::spec::{Chart, ChartType};
use crate::rules::RuleState;
use crate::signal::{Plot, Rule, Signal};

/// d2 for n = 2: the mean moving range of two normal samples is 1.128 σ.
const D2_MR: f64 = 1.128;
/// D4 for n = 2: the moving-range chart's upper limit is 3.267 MR̄.
const D4_MR: f64 = 3.267;
/// d3 for n = 2: the standard deviation of the moving range of two normal samples is
/// 0.853 σ.
const D3_MR: f64 = 0.853;

/// Frozen control limits, in the data's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Center line of the plotted location statistic (the process mean).
    pub center: f64,
    /// Process standard deviation of one sample.
    pub sigma: f64,
    /// Upper control limit of the location statistic (EWMA: asymptotic; CUSUM: +H).
    pub ucl: f64,
    /// Lower control limit of the location statistic (EWMA: asymptotic; CUSUM: -H).
    pub lcl: f64,
    /// Center line of the spread chart (R, S or MR); 0 for EWMA and CUSUM.
    pub spread_center: f64,
    /// Upper limit of the spread chart.
    pub spread_ucl: f64,
    /// Lower limit of the spread chart.
    pub spread_lcl: f64,
}

/// One plotted point of a chart's statistic with the limits it was judged against: what a
/// drawing of the chart shows ([`ChartState::update_observed`]). Only Phase II points are
/// plotted (Phase I has no limits, and an EWMA or CUSUM no statistic yet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The statistic: `Xbar`, `I`, `Ewma` or `Cusum` (location), `R`, `S` or `Mr` (spread).
    pub plot: Plot,
    /// Its value; for CUSUM the upper sum in the data's units (C⁺·σ), before a signal resets it.
    pub value: f64,
    /// CUSUM only: the lower sum shown negative, in the data's units (−C⁻·σ).
    pub lower: Option<f64>,
    /// The center line (CUSUM: 0).
    pub center: f64,
    /// The upper limit at this point (EWMA: the exact, time-varying one unless asymptotic).
    pub ucl: f64,
    /// The lower limit at this point.
    pub lcl: f64,
}

/// Phase I accumulators.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Baseline {
    /// Subgroups or points accumulated.
    count: u32,
    /// Number of spreads summed.
    spread_count: u32,
    /// Sum of subgroup means or of points.
    sum: f64,
    /// Sum of ranges, standard deviations or moving ranges.
    spread_sum: f64,
}

/// Phase I sums until the limits freeze, then the run-rule registers (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Phase {
    /// Estimating: the Phase I sums.
    Baseline(Baseline),
    /// Limits frozen: the run rules of the location statistic.
    Monitoring(RuleState),
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Baseline(Baseline::default())
    }
}

/// What a chart carries from one sample to the next, by chart type (32 bytes). The open
/// subgroup is kept as Welford's running mean, with the min and max (X-bar/R) or the sum of
/// squared deviations (X-bar/S). Every field is finite, so the state serializes to any format.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
enum Running {
    /// A fresh state: becomes the chart type's variant on the first sample.
    #[default]
    Fresh,
    /// X-bar/R: the open subgroup.
    Range {
        count: u32,
        mean: f64,
        min: f64,
        max: f64,
    },
    /// X-bar/S: the open subgroup.
    Deviation { count: u32, mean: f64, m2: f64 },
    /// I-MR: the previous value (moving ranges), if any.
    Individual { has_last: bool, last: f64 },
    /// EWMA: the previous value (Phase I moving ranges), the statistic z, and (1 - λ)^(2t)
    /// for the exact limits.
    Ewma {
        has_last: bool,
        last: f64,
        z: f64,
        w: f64,
    },
    /// CUSUM: the previous value (Phase I moving ranges) and the sums in sigma units.
    Cusum {
        has_last: bool,
        last: f64,
        c_hi: f64,
        c_lo: f64,
    },
}

impl Running {
    /// The initial state for a chart type.
    fn new(chart_type: ChartType) -> Self {
        let (has_last, last) = (false, 0.0);
        match chart_type {
            ChartType::XbarR => Running::Range {
                count: 0,
                mean: 0.0,
                min: 0.0,
                max: 0.0,
            },
            ChartType::XbarS => Running::Deviation {
                count: 0,
                mean: 0.0,
                m2: 0.0,
            },
            ChartType::Imr => Running::Individual { has_last, last },
            ChartType::Ewma => Running::Ewma {
                has_last,
                last,
                z: 0.0,
                w: 0.0,
            },
            ChartType::Cusum => Running::Cusum {
                has_last,
                last,
                c_hi: 0.0,
                c_lo: 0.0,
            },
        }
    }

    /// Whether this is the variant of `chart_type`.
    fn fits(&self, chart_type: ChartType) -> bool {
        matches!(
            (self, chart_type),
            (Running::Range { .. }, ChartType::XbarR)
                | (Running::Deviation { .. }, ChartType::XbarS)
                | (Running::Individual { .. }, ChartType::Imr)
                | (Running::Ewma { .. }, ChartType::Ewma)
                | (Running::Cusum { .. }, ChartType::Cusum)
        )
    }

    /// Records `x` as the previous individual value and returns the one it replaces, on
    /// individual charts.
    fn replace_last(&mut self, x: f64) -> Option<f64> {
        match self {
            Running::Individual { has_last, last }
            | Running::Ewma { has_last, last, .. }
            | Running::Cusum { has_last, last, .. } => {
                let prev = has_last.then_some(*last);
                (*has_last, *last) = (true, x);
                prev
            }
            Running::Fresh | Running::Range { .. } | Running::Deviation { .. } => None,
        }
    }

    /// Adds `x` to the open subgroup (Welford's update); returns the subgroup size.
    fn push_subgroup(&mut self, x: f64) -> usize {
        match self {
            Running::Range {
                count,
                mean,
                min,
                max,
            } => {
                *count += 1;
                *mean += (x - *mean) / *count as f64;
                if *count == 1 {
                    (*min, *max) = (x, x);
                } else {
                    *min = min.min(x);
                    *max = max.max(x);
                }
                *count as usize
            }
            Running::Deviation { count, mean, m2 } => {
                *count += 1;
                let d = x - *mean;
                *mean += d / *count as f64;
                *m2 += d * (x - *mean);
                *count as usize
            }
            _ => 0,
        }
    }

    /// Closes the open subgroup: its mean and its spread (range, or standard deviation).
    fn take_subgroup(&mut self) -> (f64, f64) {
        match std::mem::take(self) {
            Running::Range { mean, min, max, .. } => {
                *self = Running::new(ChartType::XbarR);
                (mean, max - min)
            }
            Running::Deviation { count, mean, m2 } => {
                *self = Running::new(ChartType::XbarS);
                let sd = if count < 2 {
                    0.0
                } else {
                    (m2 / (count - 1) as f64).max(0.0).sqrt()
                };
                (mean, sd)
            }
            other => {
                *self = other;
                (0.0, 0.0)
            }
        }
    }
}

/// The state of one chart for one (tool, recipe, parameter). A plain value: serialize it to
/// checkpoint, deserialize it to continue exactly where the chart stopped.
///
/// The fields a sample reads come first, in the order it needs them: the sample count and
/// the running statistics (all that an X-bar sample not closing a subgroup reads), the frozen
/// limits, the run-rule registers (136 bytes); the counters that change only when a value is
/// missing or a rule fires follow. 216 bytes in all.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[repr(C)]
pub struct ChartState {
    /// Finite samples accepted.
    pub samples: u64,
    run: Running,
    /// Frozen limits; `None` while Phase I is still estimating.
    pub limits: Option<Limits>,
    phase: Phase,
    /// Samples rejected as NaN or infinite.
    pub non_finite: u64,
    /// Records of this tool type that lacked the parameter.
    pub missing: u64,
    /// Signals per rule, indexed by [`Rule::index`].
    pub fired: [u32; Rule::COUNT],
}

/// The standard deviation of the statistic `plot` of `chart` whose limits are `limits`
/// (`None` in Phase I), for the σ distance of its signals: σ/√n for X-bar, σ for I, CUSUM
/// and raw (spec) samples, d3·σ for R and MR, σ·√(1-c4²) for S (the spread of normal
/// samples). For EWMA, whose σ_z changes with the sample until it reaches its asymptote,
/// it is taken back from the limit the signal was judged against, `(ucl - center) / L`
/// (exact), when the chart computes its limits; with configured `ucl`/`lcl` it is the
/// asymptotic σ·√(λ/(2-λ)). `None` when no σ is known.
///
/// The chart's own signals carry the exact σ (EWMA included); a dedup window's closing
/// alert takes it from here, so its window need not store it.
pub fn plot_sigma(
    chart: &Chart,
    limits: Option<&Limits>,
    plot: Plot,
    (center, ucl): (f64, Option<f64>),
) -> Option<f64> {
    let sigma = limits.map(|l| l.sigma);
    let n = chart.constants.map(|c| c.n as f64);
    match plot {
        Plot::Spec => sigma.or(chart.spec.sigma),
        Plot::I | Plot::Cusum => sigma,
        Plot::Xbar => Some(sigma? / n?.sqrt()),
        Plot::R => Some(chart.constants?.d3 * sigma?),
        Plot::S => {
            let c4 = chart.constants?.c4;
            Some(sigma? * (1.0 - c4 * c4).max(0.0).sqrt())
        }
        Plot::Mr => Some(D3_MR * sigma?),
        Plot::Ewma => match (chart.spec.ucl, ucl) {
            (None, Some(u)) if chart.spec.l > 0.0 => Some((u - center) / chart.spec.l),
            _ => Some(sigma? * chart.ewma_var_factor.sqrt()),
        },
    }
}

/// Distance of `v` from `c` in thirds of the distance to the limit on its side.
fn zone(v: f64, c: f64, ucl: f64, lcl: f64) -> f64 {
    if v >= c {
        3.0 * (v - c) / (ucl - c).max(f64::MIN_POSITIVE)
    } else {
        -3.0 * (c - v) / (c - lcl).max(f64::MIN_POSITIVE)
    }
}

impl ChartState {
    /// Whether the chart is still in Phase I.
    pub fn in_baseline(&self) -> bool {
        self.limits.is_none()
    }

    /// Counts a sample that could not be plotted (NaN or infinite).
    pub fn reject_non_finite(&mut self) {
        self.non_finite += 1;
    }

    /// Counts a record that lacked this chart's parameter.
    pub fn record_missing(&mut self) {
        self.missing += 1;
    }

    /// Feeds one sample. Non-finite values are counted and ignored. Every signal is passed to
    /// `emit` and counted in [`ChartState::fired`].
    #[inline]
    pub fn update(&mut self, chart: &Chart, x: f64, emit: &mut impl FnMut(Signal)) {
        self.update_observed(chart, x, emit, &mut |_| {});
    }

    /// [`ChartState::update`], also passing each point the sample plots (none, one location
    /// point, or a location and a spread point) to `observe`, before its signals: the same
    /// step, so a drawing shows exactly what the operator judged.
    pub fn update_observed(
        &mut self,
        chart: &Chart,
        x: f64,
        emit: &mut impl FnMut(Signal),
        observe: &mut impl FnMut(Point),
    ) {
        if !x.is_finite() {
            self.reject_non_finite();
            return;
        }
        self.samples += 1;
        if !self.run.fits(chart.chart_type()) {
            self.run = Running::new(chart.chart_type());
        }
        let mut out = |st: &mut ChartState, s: Signal| {
            st.fired[s.rule.index()] += 1;
            emit(s);
        };
        self.check_spec(chart, x, &mut out);
        if self.limits.is_none() && chart.baseline == 0 {
            self.freeze(chart, None, None);
        }
        match chart.chart_type() {
            ChartType::XbarR | ChartType::XbarS => {
                self.update_subgroup(chart, x, &mut out, observe);
            }
            ChartType::Imr => self.update_imr(chart, x, &mut out, observe),
            ChartType::Ewma => self.update_ewma(chart, x, &mut out, observe),
            ChartType::Cusum => self.update_cusum(chart, x, &mut out, observe),
        }
    }

    /// The Phase I sums (called while the limits are not frozen).
    fn base(&mut self) -> &mut Baseline {
        if !matches!(self.phase, Phase::Baseline(_)) {
            self.phase = Phase::default();
        }
        match &mut self.phase {
            Phase::Baseline(base) => base,
            Phase::Monitoring(_) => unreachable!("set just above"),
        }
    }

    /// Adds one subgroup or point (and its spread, if any) to the Phase I sums; once there
    /// are `chart.baseline` of them, freezes the limits on the estimates, or starts Phase I
    /// over if they show no variation. `estimate` turns (count, sum, spread count, spread
    /// sum) into (center, sigma).
    fn accumulate(
        &mut self,
        chart: &Chart,
        value: f64,
        spread: Option<f64>,
        estimate: impl FnOnce(f64, f64, f64, f64) -> (f64, f64),
    ) {
        let base = self.base();
        base.count += 1;
        base.sum += value;
        if let Some(spread) = spread {
            base.spread_sum += spread;
            base.spread_count += 1;
        }
        let b = *base;
        if b.count >= chart.baseline && b.spread_count > 0 {
            let (center, sigma) =
                estimate(b.count as f64, b.sum, b.spread_count as f64, b.spread_sum);
            if !self.freeze(chart, Some(center), Some(sigma)) {
                // No variation at all (a stuck or quantized sensor): start Phase I over rather
                // than freeze on whatever first difference comes next.
                self.phase = Phase::default();
            }
        }
    }

    fn check_spec(&mut self, chart: &Chart, x: f64, out: &mut impl FnMut(&mut Self, Signal)) {
        let spec = &chart.spec;
        let (lo, hi) = (spec.spec_lower, spec.spec_upper);
        // A raw sample against a pair of engineering limits, in units of one sample's σ.
        let sigma = plot_sigma(chart, self.limits.as_ref(), Plot::Spec, (0.0, None));
        let signal = |rule, center, ucl, lcl| Signal {
            rule,
            plot: Plot::Spec,
            statistic: x,
            center,
            ucl,
            lcl,
            zone: 0.0,
            sigma,
            cusum: None,
        };
        let rule = match (lo, hi) {
            (_, Some(h)) if x > h => Some(Rule::SpecHigh),
            (Some(l), _) if x < l => Some(Rule::SpecLow),
            _ => None,
        };
        if let Some(rule) = rule {
            let center = match (lo, hi) {
                (Some(l), Some(h)) => (l + h) / 2.0,
                _ => spec.target.or(lo).or(hi).unwrap_or(x),
            };
            out(self, signal(rule, center, hi, lo));
        }
        let Some(pct) = spec.critical_pct else {
            return;
        };
        if let Some(c) = self.limits.map(|l| l.center).or(spec.target)
            && c != 0.0
        {
            let band = c.abs() * pct / 100.0;
            let rule = if x > c + band {
                Some(Rule::CriticalHigh)
            } else if x < c - band {
                Some(Rule::CriticalLow)
            } else {
                None
            };
            if let Some(rule) = rule {
                out(self, signal(rule, c, Some(c + band), Some(c - band)));
            }
        }
    }

    /// Ends Phase I: resolves center and sigma (known values win over estimates) and freezes
    /// the limits. Returns false (the caller restarts Phase I) when the sigma is zero.
    fn freeze(&mut self, chart: &Chart, est_center: Option<f64>, est_sigma: Option<f64>) -> bool {
        let spec = &chart.spec;
        let (Some(center), Some(sigma)) = (spec.target.or(est_center), spec.sigma.or(est_sigma))
        else {
            return false;
        };
        if !(sigma > 0.0 && sigma.is_finite() && center.is_finite()) {
            return false;
        }
        let l = spec.l;
        let (plot_sigma, spread) = match chart.chart_type() {
            ChartType::XbarR => {
                let c = chart.constants.expect("subgroup charts carry constants");
                let rbar = c.d2 * sigma;
                (
                    sigma / (c.n as f64).sqrt(),
                    (rbar, c.d4 * rbar, c.d3_lower * rbar),
                )
            }
            ChartType::XbarS => {
                let c = chart.constants.expect("subgroup charts carry constants");
                let sbar = c.c4 * sigma;
                (
                    sigma / (c.n as f64).sqrt(),
                    (sbar, c.b4 * sbar, c.b3 * sbar),
                )
            }
            ChartType::Imr => {
                let mrbar = D2_MR * sigma;
                (sigma, (mrbar, D4_MR * mrbar, 0.0))
            }
            ChartType::Ewma => (sigma * chart.ewma_var_factor.sqrt(), (0.0, 0.0, 0.0)),
            ChartType::Cusum => (sigma, (0.0, 0.0, 0.0)),
        };
        let (ucl, lcl) = if chart.chart_type() == ChartType::Cusum {
            (spec.h * sigma, -spec.h * sigma)
        } else {
            (
                spec.ucl.unwrap_or(center + l * plot_sigma),
                spec.lcl.unwrap_or(center - l * plot_sigma),
            )
        };
        self.limits = Some(Limits {
            center,
            sigma,
            ucl,
            lcl,
            spread_center: spread.0,
            spread_ucl: spread.1,
            spread_lcl: spread.2,
        });
        self.phase = Phase::Monitoring(RuleState::default());
        match &mut self.run {
            Running::Ewma { z, w, .. } => (*z, *w) = (center, 1.0),
            Running::Cusum { c_hi, c_lo, .. } => (*c_hi, *c_lo) = (spec.headstart, spec.headstart),
            _ => {}
        }
        true
    }

    /// Plots a location statistic (whose standard deviation is `sigma`) against limits and
    /// run rules.
    fn plot_location(
        &mut self,
        chart: &Chart,
        plot: Plot,
        v: f64,
        (center, ucl, lcl, sigma): (f64, f64, f64, f64),
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        observe(Point {
            plot,
            value: v,
            lower: None,
            center,
            ucl,
            lcl,
        });
        let s = zone(v, center, ucl, lcl);
        if !matches!(self.phase, Phase::Monitoring(_)) {
            self.phase = Phase::Monitoring(RuleState::default());
        }
        let Phase::Monitoring(rules) = &mut self.phase else {
            return;
        };
        let fired = rules.push(v, s, chart.rules);
        if fired.is_empty() {
            return;
        }
        for n in fired.numbers() {
            let rule = Rule::run_rule(n).expect("rule sets hold 1..=8");
            out(
                self,
                Signal {
                    rule,
                    plot,
                    statistic: v,
                    center,
                    ucl: Some(ucl),
                    lcl: Some(lcl),
                    zone: s,
                    sigma: Some(sigma),
                    cusum: None,
                },
            );
        }
    }

    /// Plots a spread statistic (rule 1 only, when enabled).
    fn plot_spread(
        &mut self,
        chart: &Chart,
        plot: Plot,
        v: f64,
        lim: &Limits,
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        observe(Point {
            plot,
            value: v,
            lower: None,
            center: lim.spread_center,
            ucl: lim.spread_ucl,
            lcl: lim.spread_lcl,
        });
        if !chart.spread {
            return;
        }
        let sigma = plot_sigma(chart, Some(lim), plot, (lim.spread_center, None));
        let rule = if v > lim.spread_ucl {
            Rule::SpreadHigh
        } else if lim.spread_lcl > 0.0 && v < lim.spread_lcl {
            Rule::SpreadLow
        } else {
            return;
        };
        out(
            self,
            Signal {
                rule,
                plot,
                statistic: v,
                center: lim.spread_center,
                ucl: Some(lim.spread_ucl),
                lcl: Some(lim.spread_lcl),
                zone: 0.0,
                sigma,
                cusum: None,
            },
        );
    }

    fn update_subgroup(
        &mut self,
        chart: &Chart,
        x: f64,
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        let c = chart.constants.expect("subgroup charts carry constants");
        if self.run.push_subgroup(x) < c.n {
            return;
        }
        let (xbar, spread) = self.run.take_subgroup();
        let plot = if chart.chart_type() == ChartType::XbarR {
            Plot::R
        } else {
            Plot::S
        };
        match self.limits {
            None => {
                let unbias = if plot == Plot::R { c.d2 } else { c.c4 };
                self.accumulate(chart, xbar, Some(spread), |m, sum, k, spread_sum| {
                    (sum / m, spread_sum / k / unbias)
                });
            }
            Some(lim) => {
                let sigma = lim.sigma / (c.n as f64).sqrt();
                let line = (lim.center, lim.ucl, lim.lcl, sigma);
                self.plot_location(chart, Plot::Xbar, xbar, line, out, observe);
                self.plot_spread(chart, plot, spread, &lim, out, observe);
            }
        }
    }

    /// Phase I for individual charts: mean and average moving range. Returns true when the
    /// sample was consumed by the baseline.
    fn baseline_individual(&mut self, chart: &Chart, x: f64) -> bool {
        if self.limits.is_some() {
            return false;
        }
        let prev = self.run.replace_last(x);
        self.accumulate(
            chart,
            x,
            prev.map(|p| (x - p).abs()),
            |m, sum, k, spread_sum| (sum / m, spread_sum / k / D2_MR),
        );
        true
    }

    fn update_imr(
        &mut self,
        chart: &Chart,
        x: f64,
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        if self.baseline_individual(chart, x) {
            return;
        }
        let Some(lim) = self.limits else { return };
        let line = (lim.center, lim.ucl, lim.lcl, lim.sigma);
        self.plot_location(chart, Plot::I, x, line, out, observe);
        if let Some(prev) = self.run.replace_last(x) {
            self.plot_spread(chart, Plot::Mr, (x - prev).abs(), &lim, out, observe);
        }
    }

    fn update_ewma(
        &mut self,
        chart: &Chart,
        x: f64,
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        if self.baseline_individual(chart, x) {
            return;
        }
        let Some(lim) = self.limits else { return };
        let Running::Ewma { z, w, .. } = &mut self.run else {
            return;
        };
        let spec = &chart.spec;
        *z = spec.lambda * x + (1.0 - spec.lambda) * *z;
        *w *= chart.ewma_decay2;
        let var = if spec.asymptotic {
            chart.ewma_var_factor
        } else {
            chart.ewma_var_factor * (1.0 - *w)
        };
        let sigma_z = lim.sigma * var.sqrt();
        let half = spec.l * sigma_z;
        let ucl = spec.ucl.unwrap_or(lim.center + half);
        let lcl = spec.lcl.unwrap_or(lim.center - half);
        let z = *z;
        let line = (lim.center, ucl, lcl, sigma_z);
        self.plot_location(chart, Plot::Ewma, z, line, out, observe);
    }

    fn update_cusum(
        &mut self,
        chart: &Chart,
        x: f64,
        out: &mut impl FnMut(&mut Self, Signal),
        observe: &mut impl FnMut(Point),
    ) {
        if self.baseline_individual(chart, x) {
            return;
        }
        let Some(lim) = self.limits else { return };
        let Running::Cusum { c_hi, c_lo, .. } = &mut self.run else {
            return;
        };
        let spec = &chart.spec;
        let zi = (x - lim.center) / lim.sigma;
        *c_hi = (*c_hi + zi - spec.k).max(0.0);
        *c_lo = (*c_lo - zi - spec.k).max(0.0);
        observe(Point {
            plot: Plot::Cusum,
            value: *c_hi * lim.sigma,
            lower: Some(-*c_lo * lim.sigma),
            center: 0.0,
            ucl: lim.ucl,
            lcl: lim.lcl,
        });
        let signal = if *c_hi > spec.h {
            Some((Rule::CusumUpper, *c_hi * lim.sigma))
        } else if *c_lo > spec.h {
            Some((Rule::CusumLower, -*c_lo * lim.sigma))
        } else {
            None
        };
        if let Some((rule, statistic)) = signal {
            let sums = [*c_hi, *c_lo];
            *c_hi = spec.headstart;
            *c_lo = spec.headstart;
            if chart.rules.contains(1) {
                out(
                    self,
                    Signal {
                        rule,
                        plot: Plot::Cusum,
                        statistic,
                        center: 0.0,
                        ucl: Some(lim.ucl),
                        lcl: Some(lim.lcl),
                        zone: 0.0,
                        sigma: Some(lim.sigma),
                        cusum: Some(sums),
                    },
                );
            }
        }
    }

    /// The current CUSUM sums (upper, lower) in sigma units; zero on other charts.
    pub fn cusum_sums(&self) -> (f64, f64) {
        match self.run {
            Running::Cusum { c_hi, c_lo, .. } => (c_hi, c_lo),
            _ => (0.0, 0.0),
        }
    }

    /// The current EWMA statistic; zero on other charts.
    pub fn ewma(&self) -> f64 {
        match self.run {
            Running::Ewma { z, .. } => z,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests;
