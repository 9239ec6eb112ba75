//! The published control-chart constants checked against an independent computation from the
//! normal distribution (statrs for Φ and ln Γ, numerical integration for the range moments).

use spcvm_operators::spc::constants::{TABLE, for_n};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::gamma::ln_gamma;

fn c4(n: usize) -> f64 {
    let n = n as f64;
    (2.0 / (n - 1.0)).sqrt() * (ln_gamma(n / 2.0) - ln_gamma((n - 1.0) / 2.0)).exp()
}

/// Grid over [-8, 8] with Φ precomputed.
struct Grid {
    h: f64,
    cdf: Vec<f64>,
}

impl Grid {
    fn new(step: f64) -> Self {
        let norm = Normal::standard();
        let m = (16.0 / step).round() as usize;
        let cdf = (0..=m).map(|i| norm.cdf(-8.0 + i as f64 * step)).collect();
        Grid { h: step, cdf }
    }

    /// E[W] = ∫ 1 - Φ(x)^n - (1 - Φ(x))^n dx (trapezoid rule).
    fn d2(&self, n: i32) -> f64 {
        let f = |p: f64| 1.0 - p.powi(n) - (1.0 - p).powi(n);
        let last = self.cdf.len() - 1;
        let inner: f64 = self.cdf[1..last].iter().map(|&p| f(p)).sum();
        self.h * (inner + 0.5 * (f(self.cdf[0]) + f(self.cdf[last])))
    }

    /// E[W²] = 2 ∫∫_{x<y} 1 - Φ(y)^n - (1 - Φ(x))^n + (Φ(y) - Φ(x))^n dx dy; returns sd(W).
    fn d3(&self, n: i32) -> f64 {
        let m = self.cdf.len();
        let mut total = 0.0;
        for j in 0..m {
            let fy = self.cdf[j];
            let wy = if j == 0 || j == m - 1 { 0.5 } else { 1.0 };
            // Inner integral over x in [-8, y] (trapezoid; the diagonal term is zero).
            let mut inner = 0.0;
            for i in 0..=j {
                let fx = self.cdf[i];
                let g = 1.0 - fy.powi(n) - (1.0 - fx).powi(n) + (fy - fx).powi(n);
                let wx = if i == 0 || i == j { 0.5 } else { 1.0 };
                inner += wx * g;
            }
            total += wy * inner;
        }
        let ew2 = 2.0 * total * self.h * self.h;
        let d2 = self.d2(n);
        (ew2 - d2 * d2).sqrt()
    }
}

#[test]
fn table_covers_two_to_twenty_five() {
    assert_eq!(TABLE.len(), 24);
    for (i, row) in TABLE.iter().enumerate() {
        assert_eq!(row.n, i + 2);
        assert_eq!(for_n(row.n), Some(row));
    }
    assert!(for_n(1).is_none());
    assert!(for_n(26).is_none());
}

#[test]
fn c4_a3_b3_b4_match_the_gamma_function() {
    for row in &TABLE {
        let n = row.n;
        let c = c4(n);
        assert!(
            (row.c4 - c).abs() <= 0.00006,
            "c4({n}) table {} exact {c}",
            row.c4
        );
        let a3 = 3.0 / (c * (n as f64).sqrt());
        assert!(
            (row.a3 - a3).abs() <= 0.0006,
            "A3({n}) table {} exact {a3}",
            row.a3
        );
        let spread = 3.0 * (1.0 - c * c).sqrt() / c;
        let b3 = (1.0 - spread).max(0.0);
        let b4 = 1.0 + spread;
        assert!(
            (row.b3 - b3).abs() <= 0.0006,
            "B3({n}) table {} exact {b3}",
            row.b3
        );
        assert!(
            (row.b4 - b4).abs() <= 0.0006,
            "B4({n}) table {} exact {b4}",
            row.b4
        );
    }
}

#[test]
fn d2_d3_a2_d3_d4_match_the_range_distribution() {
    let grid = Grid::new(0.01);
    for row in &TABLE {
        let n = row.n as i32;
        let d2 = grid.d2(n);
        let d3 = grid.d3(n);
        assert!(
            (row.d2 - d2).abs() <= 0.0006,
            "d2({n}) table {} exact {d2}",
            row.d2
        );
        assert!(
            (row.d3 - d3).abs() <= 0.0008,
            "d3({n}) table {} exact {d3}",
            row.d3
        );
        let a2 = 3.0 / (d2 * (n as f64).sqrt());
        assert!(
            (row.a2 - a2).abs() <= 0.0006,
            "A2({n}) table {} exact {a2}",
            row.a2
        );
        let lower = (1.0 - 3.0 * d3 / d2).max(0.0);
        let upper = 1.0 + 3.0 * d3 / d2;
        assert!(
            (row.d3_lower - lower).abs() <= 0.0015,
            "D3({n}) table {} exact {lower}",
            row.d3_lower
        );
        assert!(
            (row.d4 - upper).abs() <= 0.0015,
            "D4({n}) table {} exact {upper}",
            row.d4
        );
    }
}
