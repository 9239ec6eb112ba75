//! Phase I limits on a published data set: Montgomery, *Introduction to Statistical Quality
//! Control*, Example 6.1 / 6.3 (piston-ring inside diameters, 25 subgroups of 5, then 15 more),
//! also shipped as `pistonrings` in R's qcc package. Published: x̿ = 74.00118, R̄ = 0.02276,
//! X-bar limits 73.98805 / 74.0143, R chart UCL 0.04812 (qcc); Montgomery rounds the X-bar
//! limits to 73.988 / 74.014; in the 15 later subgroups, 37, 38 and 39 plot above the UCL.
//! The X-bar/S chart is checked against s̄ computed here by statrs and the published A3, B4.

use spcvm_operators::spc::{ChartSpec, ChartState, ChartType};
use spcvm_operators::{Rule, Signal};

const PHASE1: [[f64; 5]; 25] = [
    [74.030, 74.002, 74.019, 73.992, 74.008],
    [73.995, 73.992, 74.001, 74.011, 74.004],
    [73.988, 74.024, 74.021, 74.005, 74.002],
    [74.002, 73.996, 73.993, 74.015, 74.009],
    [73.992, 74.007, 74.015, 73.989, 74.014],
    [74.009, 73.994, 73.997, 73.985, 73.993],
    [73.995, 74.006, 73.994, 74.000, 74.005],
    [73.985, 74.003, 73.993, 74.015, 73.988],
    [74.008, 73.995, 74.009, 74.005, 74.004],
    [73.998, 74.000, 73.990, 74.007, 73.995],
    [73.994, 73.998, 73.994, 73.995, 73.990],
    [74.004, 74.000, 74.007, 74.000, 73.996],
    [73.983, 74.002, 73.998, 73.997, 74.012],
    [74.006, 73.967, 73.994, 74.000, 73.984],
    [74.012, 74.014, 73.998, 73.999, 74.007],
    [74.000, 73.984, 74.005, 73.998, 73.996],
    [73.994, 74.012, 73.986, 74.005, 74.007],
    [74.006, 74.010, 74.018, 74.003, 74.000],
    [73.984, 74.002, 74.003, 74.005, 73.997],
    [74.000, 74.010, 74.013, 74.020, 74.003],
    [73.988, 74.001, 74.009, 74.005, 73.996],
    [74.004, 73.999, 73.990, 74.006, 74.009],
    [74.010, 73.989, 73.990, 74.009, 74.014],
    [74.015, 74.008, 73.993, 74.000, 74.010],
    [73.982, 73.984, 73.995, 74.017, 74.013],
];

const PHASE2: [[f64; 5]; 15] = [
    [74.012, 74.015, 74.030, 73.986, 74.000],
    [73.995, 74.010, 73.990, 74.015, 74.001],
    [73.987, 73.999, 73.985, 74.000, 73.990],
    [74.008, 74.010, 74.003, 73.991, 74.006],
    [74.003, 74.000, 74.001, 73.986, 73.997],
    [73.994, 74.003, 74.015, 74.020, 74.004],
    [74.008, 74.002, 74.018, 73.995, 74.005],
    [74.001, 74.004, 73.990, 73.996, 73.998],
    [74.015, 74.000, 74.016, 74.025, 74.000],
    [74.030, 74.005, 74.000, 74.016, 74.012],
    [74.001, 73.990, 73.995, 74.010, 74.024],
    [74.015, 74.020, 74.024, 74.005, 74.019],
    [74.035, 74.010, 74.012, 74.015, 74.026],
    [74.017, 74.013, 74.036, 74.025, 74.026],
    [74.010, 74.005, 74.029, 74.000, 74.020],
];

fn run(ty: ChartType, rules: &[u8]) -> (ChartState, Vec<(usize, Signal)>) {
    let mut spec = ChartSpec::new("diameter", ty);
    spec.baseline = Some(25);
    spec.rules = Some(rules.to_vec());
    let chart = spec.compile().unwrap();
    let mut state = ChartState::default();
    let mut signals = vec![];
    for (i, sub) in PHASE1.iter().chain(PHASE2.iter()).enumerate() {
        for &x in sub {
            state.update(&chart, x, &mut |s| signals.push((i + 1, s)));
        }
        if i == 24 {
            assert!(
                !state.in_baseline(),
                "limits freeze after the 25th subgroup"
            );
            assert!(signals.is_empty(), "Phase I subgroups are not judged");
        }
    }
    (state, signals)
}

#[test]
fn xbar_r_phase1_limits_match_qcc() {
    let (state, _) = run(ChartType::XbarR, &[1]);
    let l = state.limits.unwrap();
    assert!(
        (l.center - 74.00118).abs() < 0.000005,
        "center {}",
        l.center
    );
    assert!(
        (l.spread_center - 0.02276).abs() < 0.000005,
        "R-bar {}",
        l.spread_center
    );
    assert!((l.ucl - 74.0143).abs() < 0.00005, "UCL {}", l.ucl);
    assert!((l.lcl - 73.98805).abs() < 0.00005, "LCL {}", l.lcl);
    assert!(
        (l.spread_ucl - 0.04812).abs() < 0.00005,
        "R UCL {}",
        l.spread_ucl
    );
    assert_eq!(l.spread_lcl, 0.0);
    // Montgomery rounds to x̿ = 74.001, UCL = 74.014, LCL = 73.988.
    assert_eq!(
        format!("{:.3} {:.3} {:.3}", l.center, l.ucl, l.lcl),
        "74.001 74.014 73.988"
    );
}

#[test]
fn xbar_s_phase1_limits_match_a3_b4_on_independent_s_bar() {
    use statrs::statistics::Statistics;
    let (state, _) = run(ChartType::XbarS, &[1]);
    let l = state.limits.unwrap();
    let s_bar = PHASE1.iter().map(|s| s.iter().std_dev()).sum::<f64>() / 25.0;
    let xbb = PHASE1.iter().flatten().sum::<f64>() / 125.0;
    // Published n = 5 factors: A3 = 1.427, B4 = 2.089, B3 = 0.
    assert!(
        (l.spread_center - s_bar).abs() < 1e-12,
        "s-bar {} vs {s_bar}",
        l.spread_center
    );
    assert!(
        (l.ucl - (xbb + 1.427 * s_bar)).abs() < 0.00001,
        "UCL {}",
        l.ucl
    );
    assert!(
        (l.lcl - (xbb - 1.427 * s_bar)).abs() < 0.00001,
        "LCL {}",
        l.lcl
    );
    assert!(
        (l.spread_ucl - 2.089 * s_bar).abs() < 1e-9,
        "S UCL {}",
        l.spread_ucl
    );
    assert_eq!(l.spread_lcl, 0.0);
    assert_eq!(format!("{:.3} {:.3}", l.ucl, l.lcl), "74.014 73.988");
}

#[test]
fn phase2_subgroups_37_to_39_exceed_the_ucl() {
    let (_, signals) = run(ChartType::XbarR, &[1]);
    let beyond: Vec<usize> = signals
        .iter()
        .filter(|(_, s)| s.rule == Rule::Rule1)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(beyond, vec![37, 38, 39]);
    assert!(
        signals
            .iter()
            .all(|(_, s)| s.rule == Rule::Rule1 && s.statistic > s.ucl.unwrap())
    );
}
