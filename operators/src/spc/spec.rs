//! Chart configuration: what the user writes (`ChartSpec`) and its validated, resolved form
//! (`Chart`) that the hot path reads.

use serde::{Deserialize, Serialize};
use spcvm_schemas::ToolType;

use super::constants::{self, Constants};
use crate::rules::RuleSet;

/// The kind of control chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartType {
    /// Subgroup means with a range chart.
    XbarR,
    /// Subgroup means with a standard-deviation chart.
    XbarS,
    /// Individuals with a moving-range chart.
    Imr,
    /// Exponentially weighted moving average of individuals.
    Ewma,
    /// Two-sided tabular CUSUM of individuals.
    Cusum,
}

impl ChartType {
    /// The config spelling (`xbar_r`, `xbar_s`, `imr`, `ewma`, `cusum`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChartType::XbarR => "xbar_r",
            ChartType::XbarS => "xbar_s",
            ChartType::Imr => "imr",
            ChartType::Ewma => "ewma",
            ChartType::Cusum => "cusum",
        }
    }

    /// Whether the chart plots subgroup statistics rather than individual values.
    pub fn uses_subgroups(self) -> bool {
        matches!(self, ChartType::XbarR | ChartType::XbarS)
    }
}

/// One chart as configured: which parameter it watches and how (`[[chart]]` in the TOML file).
///
/// Fields that do not apply to the chart type are ignored (for example `lambda` on a CUSUM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    /// Only samples from this tool type use the chart; absent means any tool type.
    #[serde(default)]
    pub tool_type: Option<ToolType>,
    /// The measurement name in the telemetry record, e.g. `beam_current_mA`.
    pub parameter: String,
    /// Chart type: `xbar_r`, `xbar_s`, `imr`, `ewma` or `cusum`.
    #[serde(rename = "type")]
    pub chart_type: ChartType,
    /// EWMA weight of the newest point, in (0, 1].
    #[serde(default = "defaults::lambda")]
    pub lambda: f64,
    /// Control-limit width in sigma of the plotted statistic (Shewhart charts and EWMA).
    #[serde(default = "defaults::l")]
    pub l: f64,
    /// EWMA: use the asymptotic limits instead of the exact time-varying ones.
    #[serde(default)]
    pub asymptotic: bool,
    /// CUSUM reference value (allowance) in sigma.
    #[serde(default = "defaults::k")]
    pub k: f64,
    /// CUSUM decision interval in sigma.
    #[serde(default = "defaults::h")]
    pub h: f64,
    /// CUSUM fast-initial-response head start in sigma (0 = none; h/2 is the usual choice).
    /// Both sums start here, and restart here after a signal.
    #[serde(default)]
    pub headstart: f64,
    /// Samples per subgroup for `xbar_r` and `xbar_s` (2..=25).
    #[serde(default = "defaults::subgroup_size")]
    pub subgroup_size: usize,
    /// Known center line; absent = estimated in the Phase I baseline.
    #[serde(default)]
    pub target: Option<f64>,
    /// Known process standard deviation of one sample; absent = estimated in the baseline.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// Fixed upper control limit of the plotted statistic, overriding the computed one.
    #[serde(default)]
    pub ucl: Option<f64>,
    /// Fixed lower control limit of the plotted statistic, overriding the computed one.
    #[serde(default)]
    pub lcl: Option<f64>,
    /// Phase I length: subgroups (subgroup charts) or points (individual charts) used to
    /// estimate what `target` and `sigma` leave unknown; then the limits are frozen.
    /// Default: 25 subgroups, or 200 points (individual charts need a long baseline: with
    /// 50 points the estimated sigma is often 20 % off, and an EWMA or CUSUM built on it
    /// raises false alarms many times more often than designed).
    #[serde(default)]
    pub baseline: Option<usize>,
    /// Enabled run rules (1..=8). Default: `[1, 2, 5, 6]` on X-bar and I charts, `[1]` on
    /// EWMA and CUSUM (run rules on an autocorrelated statistic multiply false alarms).
    /// CUSUM accepts only rule 1 (its decision interval).
    #[serde(default)]
    pub rules: Option<Vec<u8>>,
    /// Also judge the spread chart (R, S or MR) against its limits (rule 1 of that chart).
    /// Default: on for X-bar charts, off for I-MR, whose moving-range chart alone raises a
    /// false alarm about every 110 in-control points against 370 for the I chart.
    #[serde(default)]
    pub spread: Option<bool>,
    /// Lower specification limit on each individual sample: below it is a critical alert.
    #[serde(default)]
    pub spec_lower: Option<f64>,
    /// Upper specification limit on each individual sample: above it is a critical alert.
    #[serde(default)]
    pub spec_upper: Option<f64>,
    /// Critical threshold in percent of the center line: a sample further than this from the
    /// center is a critical alert (checked once the center is known).
    #[serde(default)]
    pub critical_pct: Option<f64>,
}

mod defaults {
    pub fn lambda() -> f64 {
        0.2
    }
    pub fn l() -> f64 {
        3.0
    }
    pub fn k() -> f64 {
        0.5
    }
    pub fn h() -> f64 {
        5.0
    }
    pub fn subgroup_size() -> usize {
        5
    }
}

/// Default Phase I length for subgroup charts, in subgroups.
pub const DEFAULT_BASELINE_SUBGROUPS: usize = 25;
/// Default Phase I length for individual charts, in points.
pub const DEFAULT_BASELINE_POINTS: usize = 200;

impl ChartSpec {
    /// A spec with every optional field at its default.
    pub fn new(parameter: &str, chart_type: ChartType) -> Self {
        ChartSpec {
            tool_type: None,
            parameter: parameter.to_string(),
            chart_type,
            lambda: defaults::lambda(),
            l: defaults::l(),
            asymptotic: false,
            k: defaults::k(),
            h: defaults::h(),
            headstart: 0.0,
            subgroup_size: defaults::subgroup_size(),
            target: None,
            sigma: None,
            ucl: None,
            lcl: None,
            baseline: None,
            rules: None,
            spread: None,
            spec_lower: None,
            spec_upper: None,
            critical_pct: None,
        }
    }

    /// A stable 64-bit fingerprint (FNV-1a) of the settings that shape the chart's state:
    /// type, λ, L, asymptotic, k, h, head start, subgroup size, target, sigma, fixed limits
    /// and baseline. State saved under another fingerprint is discarded on restore (the chart
    /// starts a new Phase I); rules, spread, spec and critical limits can change without that.
    pub fn state_fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        eat(self.chart_type.as_str().as_bytes());
        for v in [self.lambda, self.l, self.k, self.h, self.headstart] {
            eat(&v.to_bits().to_le_bytes());
        }
        eat(&[u8::from(self.asymptotic)]);
        eat(&(self.subgroup_size as u64).to_le_bytes());
        for v in [self.target, self.sigma, self.ucl, self.lcl] {
            match v {
                Some(x) => {
                    eat(&[1]);
                    eat(&x.to_bits().to_le_bytes());
                }
                None => eat(&[0]),
            }
        }
        match self.baseline {
            Some(b) => {
                eat(&[1]);
                eat(&(b as u64).to_le_bytes());
            }
            None => eat(&[0]),
        }
        h
    }

    /// Checks every value and resolves defaults. The error names the offending field.
    pub fn compile(&self) -> Result<Chart, SpecError> {
        let bad = |field: &'static str, reason: String| SpecError { field, reason };
        let finite = |field: &'static str, v: Option<f64>| match v {
            Some(x) if !x.is_finite() => Err(bad(field, format!("{x} is not a finite number"))),
            _ => Ok(()),
        };
        if self.parameter.is_empty() {
            return Err(bad("parameter", "must not be empty".into()));
        }
        for (field, v) in [
            ("target", self.target),
            ("sigma", self.sigma),
            ("ucl", self.ucl),
            ("lcl", self.lcl),
            ("spec_lower", self.spec_lower),
            ("spec_upper", self.spec_upper),
            ("critical_pct", self.critical_pct),
        ] {
            finite(field, v)?;
        }
        let ty = self.chart_type;
        if ty == ChartType::Ewma && !(self.lambda > 0.0 && self.lambda <= 1.0) {
            return Err(bad("lambda", format!("{} must be in (0, 1]", self.lambda)));
        }
        if ty != ChartType::Cusum && !(self.l > 0.0 && self.l.is_finite()) {
            return Err(bad("l", format!("{} must be a positive number", self.l)));
        }
        if ty == ChartType::Cusum {
            if !(self.k >= 0.0 && self.k.is_finite()) {
                return Err(bad("k", format!("{} must be zero or positive", self.k)));
            }
            if !(self.h > 0.0 && self.h.is_finite()) {
                return Err(bad("h", format!("{} must be positive", self.h)));
            }
            if !(self.headstart >= 0.0 && self.headstart < self.h) {
                return Err(bad(
                    "headstart",
                    format!("{} must be in [0, h = {})", self.headstart, self.h),
                ));
            }
        }
        let constants = if ty.uses_subgroups() {
            Some(constants::for_n(self.subgroup_size).ok_or_else(|| {
                bad(
                    "subgroup_size",
                    format!("{} must be in 2..=25", self.subgroup_size),
                )
            })?)
        } else {
            None
        };
        if let Some(s) = self.sigma
            && s <= 0.0
        {
            return Err(bad("sigma", format!("{s} must be positive")));
        }
        if let (Some(u), Some(l)) = (self.ucl, self.lcl)
            && u <= l
        {
            return Err(bad("ucl", format!("{u} must be above lcl = {l}")));
        }
        if let (Some(u), Some(l)) = (self.spec_upper, self.spec_lower)
            && u <= l
        {
            return Err(bad(
                "spec_upper",
                format!("{u} must be above spec_lower = {l}"),
            ));
        }
        if let Some(p) = self.critical_pct
            && p <= 0.0
        {
            return Err(bad("critical_pct", format!("{p} must be positive")));
        }
        if let Some(t) = self.target {
            if let Some(u) = self.ucl
                && u <= t
            {
                return Err(bad("ucl", format!("{u} must be above target = {t}")));
            }
            if let Some(l) = self.lcl
                && l >= t
            {
                return Err(bad("lcl", format!("{l} must be below target = {t}")));
            }
        }
        let baseline = match self.baseline {
            Some(b) => b,
            None if ty.uses_subgroups() => DEFAULT_BASELINE_SUBGROUPS,
            None => DEFAULT_BASELINE_POINTS,
        };
        let min_baseline = if ty.uses_subgroups() { 1 } else { 2 };
        let needs_baseline = self.target.is_none() || self.sigma.is_none();
        if needs_baseline && baseline < min_baseline {
            return Err(bad(
                "baseline",
                format!(
                    "{baseline} is too short: at least {min_baseline} {} are needed to estimate {}",
                    if ty.uses_subgroups() {
                        "subgroup"
                    } else {
                        "points"
                    },
                    if self.sigma.is_none() {
                        "sigma"
                    } else {
                        "the center"
                    }
                ),
            ));
        }
        let rules = match &self.rules {
            Some(list) => RuleSet::from_numbers(list)
                .map_err(|n| bad("rules", format!("{n} is not a rule number (1..=8)")))?,
            None if matches!(ty, ChartType::Ewma | ChartType::Cusum) => {
                RuleSet::from_numbers(&[1]).unwrap_or(RuleSet::NONE)
            }
            None => RuleSet::from_numbers(&[1, 2, 5, 6]).unwrap_or(RuleSet::NONE),
        };
        if ty == ChartType::Cusum && rules.has_run_rules() {
            return Err(bad(
                "rules",
                "a CUSUM supports only rule 1 (its decision interval h); run rules 2..8 need a \
                 Shewhart or EWMA statistic"
                    .into(),
            ));
        }
        Ok(Chart {
            fingerprint: self.state_fingerprint(),
            spread: self.spread.unwrap_or(ty.uses_subgroups()) && rules.contains(1),
            spec: self.clone(),
            constants,
            baseline: if needs_baseline { baseline as u32 } else { 0 },
            rules,
            ewma_decay2: (1.0 - self.lambda) * (1.0 - self.lambda),
            ewma_var_factor: self.lambda / (2.0 - self.lambda),
        })
    }
}

/// A configuration value that is out of range; `field` names the TOML key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct SpecError {
    /// The offending key.
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

/// A validated chart: the spec plus values derived once for the hot path.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The spec as configured.
    pub spec: ChartSpec,
    /// Subgroup constants (subgroup charts only).
    pub constants: Option<&'static Constants>,
    /// Phase I length still needed (0 when target and sigma are both known).
    pub baseline: u32,
    /// Enabled run rules.
    pub rules: RuleSet,
    /// Whether the spread chart raises alerts.
    pub spread: bool,
    /// Fingerprint of the settings that shape the chart's state (see
    /// [`ChartSpec::state_fingerprint`]).
    pub fingerprint: u64,
    /// (1 - λ)², the per-point decay of the exact EWMA variance term.
    pub ewma_decay2: f64,
    /// λ / (2 - λ), the asymptotic EWMA variance factor.
    pub ewma_var_factor: f64,
}

impl Chart {
    /// The chart type.
    pub fn chart_type(&self) -> ChartType {
        self.spec.chart_type
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let c = ChartSpec::new("x", ChartType::XbarR).compile().unwrap();
        assert_eq!(c.baseline, 25);
        assert_eq!(c.constants.unwrap().n, 5);
        assert_eq!(c.rules.numbers().collect::<Vec<_>>(), vec![1, 2, 5, 6]);
        let e = ChartSpec::new("x", ChartType::Ewma).compile().unwrap();
        assert_eq!(e.baseline, 200);
        assert_eq!(e.rules.numbers().collect::<Vec<_>>(), vec![1]);
        let mut known = ChartSpec::new("x", ChartType::Imr);
        known.target = Some(1.0);
        known.sigma = Some(0.1);
        assert_eq!(known.compile().unwrap().baseline, 0);
    }

    #[test]
    fn fingerprint_follows_state_shaping_settings_only() {
        let base = ChartSpec::new("x", ChartType::Ewma);
        let f = base.state_fingerprint();
        assert_eq!(f, base.clone().state_fingerprint());
        let mut other = base.clone();
        other.spec_upper = Some(1.0);
        other.rules = Some(vec![1, 2]);
        other.critical_pct = Some(10.0);
        assert_eq!(
            other.state_fingerprint(),
            f,
            "spec, rules, critical keep the state"
        );
        for change in [
            |c: &mut ChartSpec| c.lambda = 0.1,
            |c: &mut ChartSpec| c.target = Some(0.0),
            |c: &mut ChartSpec| c.baseline = Some(50),
            |c: &mut ChartSpec| c.chart_type = ChartType::Imr,
            |c: &mut ChartSpec| c.asymptotic = true,
        ] {
            let mut c = base.clone();
            change(&mut c);
            assert_ne!(c.state_fingerprint(), f, "{c:?}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut s = ChartSpec::new("x", ChartType::Ewma);
        s.lambda = 1.5;
        assert_eq!(s.compile().unwrap_err().field, "lambda");
        let mut s = ChartSpec::new("x", ChartType::XbarS);
        s.subgroup_size = 30;
        let e = s.compile().unwrap_err();
        assert_eq!(e.to_string(), "`subgroup_size`: 30 must be in 2..=25");
        let mut s = ChartSpec::new("x", ChartType::Cusum);
        s.rules = Some(vec![1, 2]);
        assert_eq!(s.compile().unwrap_err().field, "rules");
        let mut s = ChartSpec::new("x", ChartType::Imr);
        s.rules = Some(vec![9]);
        assert!(s.compile().unwrap_err().reason.contains("9 is not a rule"));
        let mut s = ChartSpec::new("x", ChartType::Imr);
        s.sigma = Some(-1.0);
        assert_eq!(s.compile().unwrap_err().field, "sigma");
        let mut s = ChartSpec::new("x", ChartType::Imr);
        s.ucl = Some(1.0);
        s.lcl = Some(2.0);
        assert_eq!(s.compile().unwrap_err().field, "ucl");
        let mut s = ChartSpec::new("x", ChartType::Imr);
        s.baseline = Some(1);
        assert_eq!(s.compile().unwrap_err().field, "baseline");
        let mut s = ChartSpec::new("x", ChartType::Cusum);
        s.headstart = 5.0;
        assert_eq!(s.compile().unwrap_err().field, "headstart");
    }
}
