//! Average run lengths by simulation (fixed seed) against published tables.
//!
//! - Shewhart individuals, 3σ: ARL0 = 370.4; with "2 of 3 beyond 2σ" 225.44 and with "4 of 5
//!   beyond 1σ" 166.05 (Champ and Woodall 1987); 1σ shift 43.96, 2σ shift 6.30.
//! - EWMA, asymptotic limits (Lucas and Saccucci 1990, Montgomery Table 9.11): λ = 0.2,
//!   L = 2.962: ARL 500 / 41.8 / 10.5 / 3.7 at shifts 0 / 0.5 / 1 / 2 σ; λ = 0.1, L = 2.814:
//!   500 / 31.3 / 10.3.
//! - Two-sided tabular CUSUM, k = 0.5 (Montgomery Table 9.3): h = 4: 168 / 74.2 / 26.6 / 8.38
//!   at shifts 0 / 0.25 / 0.5 / 1 σ; h = 5: 465 / 139 / 38.0 / 10.4.
//!
//! Each case runs until its simulated mean is known to about 1 % and must agree with the table
//! within four standard errors (plus the table's own rounding).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use spcvm_operators::spc::{ChartSpec, ChartState, ChartType};

/// Mean and standard error of the run length to the first signal.
fn arl(spec: &ChartSpec, shift: f64, runs: usize, seed: u64) -> (f64, f64) {
    let chart = spec.compile().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut lengths = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut state = ChartState::default();
        let mut n = 0u64;
        loop {
            n += 1;
            let z: f64 = StandardNormal.sample(&mut rng);
            let mut signalled = false;
            state.update(&chart, z + shift, &mut |_| signalled = true);
            if signalled {
                break;
            }
        }
        lengths.push(n as f64);
    }
    let m = lengths.iter().sum::<f64>() / runs as f64;
    let var = lengths.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (runs - 1) as f64;
    (m, (var / runs as f64).sqrt())
}

fn known(ty: ChartType) -> ChartSpec {
    let mut s = ChartSpec::new("x", ty);
    s.target = Some(0.0);
    s.sigma = Some(1.0);
    s
}

fn check(name: &str, spec: &ChartSpec, cases: &[(f64, f64)], seed: u64) {
    for (i, &(shift, published)) in cases.iter().enumerate() {
        // About 1 % standard error: the run-length sd is close to the ARL itself.
        let runs = (10_000.0 * (1.0 - 1.0 / published).max(0.05)).ceil() as usize;
        let (m, se) = arl(spec, shift, runs.max(2000), seed + i as u64);
        // The table's rounding: three significant figures.
        let rounding = published * 0.005;
        assert!(
            (m - published).abs() <= 4.0 * se + rounding,
            "{name}, shift {shift}: simulated ARL {m:.2} ± {se:.2}, published {published}"
        );
    }
}

#[test]
fn shewhart_individuals() {
    let mut s = known(ChartType::Imr);
    s.rules = Some(vec![1]);
    check(
        "I chart, rule 1",
        &s,
        &[(0.0, 370.4), (1.0, 43.96), (2.0, 6.30)],
        1,
    );
}

#[test]
fn shewhart_with_run_rules() {
    let mut s = known(ChartType::Imr);
    s.rules = Some(vec![1, 5]);
    check("I chart, rules 1+5", &s, &[(0.0, 225.44)], 10);
    s.rules = Some(vec![1, 6]);
    check("I chart, rules 1+6", &s, &[(0.0, 166.05)], 20);
}

#[test]
fn ewma_lucas_saccucci() {
    let mut s = known(ChartType::Ewma);
    s.asymptotic = true;
    s.lambda = 0.2;
    s.l = 2.962;
    check(
        "EWMA λ=0.2 L=2.962",
        &s,
        &[(0.0, 500.0), (0.5, 41.8), (1.0, 10.5), (2.0, 3.7)],
        30,
    );
    s.lambda = 0.1;
    s.l = 2.814;
    check(
        "EWMA λ=0.1 L=2.814",
        &s,
        &[(0.0, 500.0), (0.5, 31.3), (1.0, 10.3)],
        40,
    );
}

#[test]
fn ewma_exact_limits_signal_early_shifts_sooner() {
    let mut asym = known(ChartType::Ewma);
    asym.asymptotic = true;
    asym.l = 2.962;
    let mut exact = asym.clone();
    exact.asymptotic = false;
    let (a, _) = arl(&asym, 2.0, 20_000, 50);
    let (e, _) = arl(&exact, 2.0, 20_000, 50);
    assert!(e < a - 0.3, "exact {e} vs asymptotic {a}");
}

#[test]
fn cusum_montgomery_table() {
    let mut s = known(ChartType::Cusum);
    s.k = 0.5;
    s.h = 4.0;
    check(
        "CUSUM h=4",
        &s,
        &[(0.0, 168.0), (0.25, 74.2), (0.5, 26.6), (1.0, 8.38)],
        60,
    );
    s.h = 5.0;
    check(
        "CUSUM h=5",
        &s,
        &[(0.0, 465.0), (0.25, 139.0), (0.5, 38.0), (1.0, 10.4)],
        70,
    );
}

#[test]
fn cusum_head_start_shortens_out_of_control_arl() {
    let mut s = known(ChartType::Cusum);
    s.h = 5.0;
    let (plain, _) = arl(&s, 1.0, 20_000, 80);
    s.headstart = 2.5;
    let (fir, _) = arl(&s, 1.0, 20_000, 80);
    // Lucas and Crosier (1982): FIR with h/2 cuts the 1σ ARL from about 10.4 to about 6.4.
    assert!((fir - 6.35).abs() < 0.35, "FIR ARL {fir}, plain {plain}");
}

/// Mean of the Phase I sigma estimate over many independent baselines of N(0, 1) data.
fn mean_sigma_estimate(ty: ChartType, baseline: usize, trials: usize, seed: u64) -> f64 {
    let mut spec = ChartSpec::new("x", ty);
    spec.baseline = Some(baseline);
    let chart = spec.compile().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0.0;
    for _ in 0..trials {
        let mut state = ChartState::default();
        while state.in_baseline() {
            let z: f64 = StandardNormal.sample(&mut rng);
            state.update(&chart, z, &mut |_| {});
        }
        total += state.limits.unwrap().sigma;
    }
    total / trials as f64
}

#[test]
fn phase1_sigma_estimates_are_unbiased() {
    // R̄/d2, s̄/c4 and MR̄/d2(2) are unbiased for σ (d2, c4 from the published table).
    for (ty, baseline) in [
        (ChartType::XbarR, 25),
        (ChartType::XbarS, 25),
        (ChartType::Imr, 50),
        (ChartType::Ewma, 50),
        (ChartType::Cusum, 50),
    ] {
        let m = mean_sigma_estimate(ty, baseline, 4000, 90);
        assert!((m - 1.0).abs() < 0.01, "{ty:?}: mean sigma estimate {m}");
    }
}
