//! `spcvm chart`: one control chart, (tool, recipe, parameter), drawn from a run's input as
//! PNG and SVG: the chart's statistic, center line, control limits (and spec limits), Phase
//! I shaded, every rule firing marked and each alert's rule written beside its point.
//!
//! # Layout
//!
//! - [`data`]: [`data::load`] re-runs the SPC operators over the input for the key (the
//!   points the chart plots, the alerts it raises) and checks the run's alerts file and
//!   report against them.
//! - [`render`]: [`render::png`] and [`render::svg`], the drawing (plotters), with the
//!   bundled DejaVu Sans font, so no system font is needed.
//!
//! ```text
//! input(s) + CHARTS.toml ──data::load──> ChartData ──render::png / render::svg──> FILE.png, FILE.svg
//! alerts.jsonl, report.json ──(checked against the re-run)──> ChartData::warnings
//! ```

pub mod data;
pub mod render;

use std::path::{Path, PathBuf};

use spcvm_schemas::ToolType;

pub use data::{ChartData, KeySpec, Sources};
pub use render::{Mark, Style};

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The chart configuration is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigFileError),
    /// An input cannot be opened or read.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// The alerts file cannot be read.
    #[error(transparent)]
    Alerts(#[from] crate::simulate::score::ScoreError),
    /// The report cannot be read.
    #[error("cannot read report `{}`: {reason}", path.display())]
    Report {
        /// The report path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No chart watches the parameter on the tool's type.
    #[error("no chart watches `{parameter}` on {tool_type} tools (see the chart configuration)")]
    NoChart {
        /// The parameter.
        parameter: String,
        /// The tool's type.
        tool_type: ToolType,
    },
    /// The input has nothing to plot for the key.
    #[error("nothing to chart: {0}")]
    NoData(String),
    /// The image could not be drawn or written.
    #[error("cannot draw `{}`: {reason}", path.display())]
    Draw {
        /// The output file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// `base` with `.ext` appended (`out/x` -> `out/x.png`); a `.png` or `.svg` it ends with is
/// replaced, so `--out x.png` writes `x.png` and `x.svg`.
pub fn with_ext(base: &Path, ext: &str) -> PathBuf {
    let mut base = base.to_path_buf();
    if matches!(
        base.extension().and_then(|e| e.to_str()),
        Some("png" | "svg")
    ) {
        base.set_extension("");
    }
    let mut name = base.into_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}
