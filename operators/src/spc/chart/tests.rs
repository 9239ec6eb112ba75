//! Unit tests of the chart state (beside it, to keep the file to one job).

use super::*;
use crate::spc::ChartSpec;

#[test]
fn a_baseline_without_variation_starts_over() {
    let mut spec = ChartSpec::new("x", ChartType::Imr);
    spec.baseline = Some(10);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let mut emit = |_s: Signal| panic!("no signal during Phase I");
    for _ in 0..10 {
        st.update(&chart, 5.0, &mut emit);
    }
    assert!(st.in_baseline(), "a stuck sensor gives no sigma");
    // Ten fresh points alternating 4 and 6: mean 5, moving range 2, sigma 2 / 1.128.
    for i in 0..10 {
        assert!(st.in_baseline());
        st.update(&chart, if i % 2 == 0 { 4.0 } else { 6.0 }, &mut emit);
    }
    let l = st.limits.expect("frozen after ten points with variation");
    assert!((l.center - 5.0).abs() < 1e-12, "center {}", l.center);
    // The first moving range (5 -> 4) belongs to the new baseline too: (1 + 9 * 2) / 10.
    assert!((l.sigma - 1.9 / 1.128).abs() < 1e-12, "sigma {}", l.sigma);
}

#[test]
fn spec_and_critical_limits_judge_raw_samples_from_the_first_one() {
    let mut spec = ChartSpec::new("x", ChartType::XbarR);
    spec.spec_lower = Some(0.6);
    spec.spec_upper = Some(0.8);
    spec.critical_pct = Some(15.0);
    spec.target = Some(0.7);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let mut got = vec![];
    for x in [0.70, 0.81, 0.59, 0.79, 0.81 - 0.2] {
        st.update(&chart, x, &mut |s| {
            got.push((x, s.rule, s.center, s.ucl, s.lcl))
        });
    }
    // 0.81 is above spec and beyond 0.7 + 15 % = 0.805; 0.59 is below spec and below
    // 0.595; 0.79 is inside both; 0.61 is inside both.
    assert_eq!(
        got,
        vec![
            (0.81, Rule::SpecHigh, 0.7, Some(0.8), Some(0.6)),
            (
                0.81,
                Rule::CriticalHigh,
                0.7,
                Some(0.7 + 0.105),
                Some(0.7 - 0.105)
            ),
            (0.59, Rule::SpecLow, 0.7, Some(0.8), Some(0.6)),
            (
                0.59,
                Rule::CriticalLow,
                0.7,
                Some(0.7 + 0.105),
                Some(0.7 - 0.105)
            ),
        ]
    );
    assert!(st.in_baseline(), "spec limits apply during Phase I");
    assert_eq!(st.fired[Rule::SpecHigh.index()], 1);
}

#[test]
fn cusum_signals_resets_and_reports_in_data_units() {
    let mut spec = ChartSpec::new("x", ChartType::Cusum);
    spec.target = Some(10.0);
    spec.sigma = Some(2.0);
    spec.k = 0.5;
    spec.h = 4.0;
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let mut signals = vec![];
    // z = +1.5 each point: C+ grows by 1.0 per point and crosses h = 4 at the 5th.
    for _ in 0..5 {
        st.update(&chart, 13.0, &mut |s| signals.push(s));
    }
    assert_eq!(signals.len(), 1);
    let s = signals[0];
    assert_eq!(s.rule, Rule::CusumUpper);
    assert!(
        (s.statistic - 10.0).abs() < 1e-12,
        "C+ = 5 sigma = 10 units"
    );
    assert_eq!((s.ucl, s.lcl), (Some(8.0), Some(-8.0)));
    assert_eq!(
        st.cusum_sums(),
        (0.0, 0.0),
        "both sums reset after a signal"
    );
}

#[test]
fn observed_points_are_what_the_rules_judged() {
    // EWMA: one point a sample, the statistic and the exact limit a signal reports.
    let mut spec = ChartSpec::new("x", ChartType::Ewma);
    (spec.target, spec.sigma, spec.lambda) = (Some(0.0), Some(1.0), 0.2);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let (mut points, mut signals) = (vec![], vec![]);
    for x in [2.0, 4.0] {
        st.update_observed(&chart, x, &mut |s| signals.push(s), &mut |p| points.push(p));
    }
    assert_eq!(points.len(), 2);
    assert_eq!(points[1].plot, Plot::Ewma);
    assert!((points[0].value - 0.4).abs() < 1e-12);
    assert_eq!(points[1].value, st.ewma());
    assert_eq!(signals.len(), 1);
    assert_eq!(Some(points[1].ucl), signals[0].ucl);
    assert!(points[0].ucl < points[1].ucl, "exact limits widen");
    // X-bar/R: nothing until a subgroup closes, then its mean and its range.
    let mut spec = ChartSpec::new("x", ChartType::XbarR);
    (spec.target, spec.sigma, spec.subgroup_size) = (Some(10.0), Some(1.0), 2);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let mut points = vec![];
    for x in [9.0, 12.0, 10.0] {
        st.update_observed(&chart, x, &mut |_| {}, &mut |p| points.push(p));
    }
    assert_eq!(points.len(), 2, "one subgroup closed: X-bar and R");
    assert_eq!((points[0].plot, points[0].value), (Plot::Xbar, 10.5));
    assert_eq!((points[1].plot, points[1].value), (Plot::R, 3.0));
    assert_eq!(points[0].center, 10.0);
    // CUSUM: both sums in data units, before a signal resets them.
    let mut spec = ChartSpec::new("x", ChartType::Cusum);
    (spec.target, spec.sigma, spec.k, spec.h) = (Some(10.0), Some(2.0), 0.5, 4.0);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    let mut points = vec![];
    for _ in 0..5 {
        st.update_observed(&chart, 13.0, &mut |_| {}, &mut |p| points.push(p));
    }
    let last = points.last().unwrap();
    assert_eq!((last.value, last.lower), (10.0, Some(-0.0)));
    assert_eq!((last.ucl, last.lcl), (8.0, -8.0));
    assert_eq!(st.cusum_sums(), (0.0, 0.0));
}

#[test]
fn ewma_exact_limits_widen_towards_the_asymptote() {
    let mut spec = ChartSpec::new("x", ChartType::Ewma);
    spec.target = Some(0.0);
    spec.sigma = Some(1.0);
    spec.lambda = 0.2;
    spec.rules = Some(vec![1]);
    let chart = spec.compile().unwrap();
    let mut st = ChartState::default();
    // z1 = 0.2 * 2.0 = 0.4; exact UCL at t = 1 is 3 * sqrt(0.2/1.8 * (1 - 0.64)) = 0.6.
    st.update(&chart, 2.0, &mut |_| panic!("0.4 is inside 0.6"));
    assert!((st.ewma() - 0.4).abs() < 1e-12);
    // z2 = 0.2 * 4 + 0.8 * 0.4 = 1.12; UCL(2) = 3 * sqrt(1/9 * (1 - 0.4096)) = 0.7684.
    let mut fired = vec![];
    st.update(&chart, 4.0, &mut |s| fired.push(s));
    assert_eq!(fired.len(), 1);
    let ucl = fired[0].ucl.unwrap();
    assert!(
        (ucl - 3.0 * (0.5904f64 / 9.0).sqrt()).abs() < 1e-12,
        "UCL {ucl}"
    );
    assert_eq!(
        st.limits.unwrap().ucl,
        1.0,
        "reported limit is the asymptote 3 * 1/3"
    );
}
