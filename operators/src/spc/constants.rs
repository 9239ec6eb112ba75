//! Control-chart constants for subgroup sizes n = 2..=25.
//!
//! The values are the standard published factors (ASTM STP 15D; Montgomery, *Introduction to
//! Statistical Quality Control*, Appendix VI), rounded as printed there. They are data, not
//! computed here: `operators/tests/constants.rs` checks every entry against an independent
//! numerical computation of d2, d3 and c4 from the normal distribution.

/// The factors for one subgroup size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constants {
    /// Subgroup size.
    pub n: usize,
    /// X-bar limits from the mean range: x̿ ± A2·R̄.
    pub a2: f64,
    /// X-bar limits from the mean standard deviation: x̿ ± A3·s̄.
    pub a3: f64,
    /// Lower S-chart limit factor: B3·s̄.
    pub b3: f64,
    /// Upper S-chart limit factor: B4·s̄.
    pub b4: f64,
    /// Lower R-chart limit factor: D3·R̄.
    pub d3_lower: f64,
    /// Upper R-chart limit factor: D4·R̄.
    pub d4: f64,
    /// Mean of the relative range W = R/σ of n normal observations: σ̂ = R̄/d2.
    pub d2: f64,
    /// Standard deviation of the relative range (the table's d3).
    pub d3: f64,
    /// Mean of s/σ for n normal observations: σ̂ = s̄/c4.
    pub c4: f64,
}

/// One table row: `[A2, A3, c4, B3, B4, d2, d3, D3, D4]`.
const fn row(n: usize, v: [f64; 9]) -> Constants {
    let [a2, a3, c4, b3, b4, d2, d3, d3_lower, d4] = v;
    Constants {
        n,
        a2,
        a3,
        b3,
        b4,
        d3_lower,
        d4,
        d2,
        d3,
        c4,
    }
}

/// The published table, one row per n from 2 to 25.
/// Columns: n, A2, A3, c4, B3, B4, d2, d3, D3, D4.
#[rustfmt::skip]
pub const TABLE: [Constants; 24] = [
    row(2, [1.880, 2.659, 0.7979, 0.0, 3.267, 1.128, 0.853, 0.0, 3.267]),
    row(3, [1.023, 1.954, 0.8862, 0.0, 2.568, 1.693, 0.888, 0.0, 2.574]),
    row(4, [0.729, 1.628, 0.9213, 0.0, 2.266, 2.059, 0.880, 0.0, 2.282]),
    row(5, [0.577, 1.427, 0.9400, 0.0, 2.089, 2.326, 0.864, 0.0, 2.114]),
    row(6, [0.483, 1.287, 0.9515, 0.030, 1.970, 2.534, 0.848, 0.0, 2.004]),
    row(7, [
            0.419, 1.182, 0.9594, 0.118, 1.882, 2.704, 0.833, 0.076, 1.924,
        ]),
    row(8, [
            0.373, 1.099, 0.9650, 0.185, 1.815, 2.847, 0.820, 0.136, 1.864,
        ]),
    row(9, [
            0.337, 1.032, 0.9693, 0.239, 1.761, 2.970, 0.808, 0.184, 1.816,
        ]),
    row(10, [
            0.308, 0.975, 0.9727, 0.284, 1.716, 3.078, 0.797, 0.223, 1.777,
        ]),
    row(11, [
            0.285, 0.927, 0.9754, 0.321, 1.679, 3.173, 0.787, 0.256, 1.744,
        ]),
    row(12, [
            0.266, 0.886, 0.9776, 0.354, 1.646, 3.258, 0.778, 0.283, 1.717,
        ]),
    row(13, [
            0.249, 0.850, 0.9794, 0.382, 1.618, 3.336, 0.770, 0.307, 1.693,
        ]),
    row(14, [
            0.235, 0.817, 0.9810, 0.406, 1.594, 3.407, 0.763, 0.328, 1.672,
        ]),
    row(15, [
            0.223, 0.789, 0.9823, 0.428, 1.572, 3.472, 0.756, 0.347, 1.653,
        ]),
    row(16, [
            0.212, 0.763, 0.9835, 0.448, 1.552, 3.532, 0.750, 0.363, 1.637,
        ]),
    row(17, [
            0.203, 0.739, 0.9845, 0.466, 1.534, 3.588, 0.744, 0.378, 1.622,
        ]),
    row(18, [
            0.194, 0.718, 0.9854, 0.482, 1.518, 3.640, 0.739, 0.391, 1.608,
        ]),
    row(19, [
            0.187, 0.698, 0.9862, 0.497, 1.503, 3.689, 0.734, 0.403, 1.597,
        ]),
    row(20, [
            0.180, 0.680, 0.9869, 0.510, 1.490, 3.735, 0.729, 0.415, 1.585,
        ]),
    row(21, [
            0.173, 0.663, 0.9876, 0.523, 1.477, 3.778, 0.724, 0.425, 1.575,
        ]),
    row(22, [
            0.167, 0.647, 0.9882, 0.534, 1.466, 3.819, 0.720, 0.434, 1.566,
        ]),
    row(23, [
            0.162, 0.633, 0.9887, 0.545, 1.455, 3.858, 0.716, 0.443, 1.557,
        ]),
    row(24, [
            0.157, 0.619, 0.9892, 0.555, 1.445, 3.895, 0.712, 0.451, 1.548,
        ]),
    row(25, [
            0.153, 0.606, 0.9896, 0.565, 1.435, 3.931, 0.708, 0.459, 1.541,
        ]),
];

/// Smallest subgroup size in the table.
pub const MIN_N: usize = 2;
/// Largest subgroup size in the table.
pub const MAX_N: usize = 25;

/// The constants for subgroup size `n`, or `None` outside 2..=25.
pub fn for_n(n: usize) -> Option<&'static Constants> {
    if (MIN_N..=MAX_N).contains(&n) {
        Some(&TABLE[n - MIN_N])
    } else {
        None
    }
}
