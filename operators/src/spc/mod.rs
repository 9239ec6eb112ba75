//! Control charts: configuration (`spec`), per-key state and update (`chart`), and the
//! published control-chart constants (`constants`).

pub mod chart;
pub mod constants;
pub mod spec;

pub use chart::{ChartState, Limits, Point, plot_sigma};
pub use spec::{Chart, ChartSpec, ChartType, SpecError};
