//! `spcvm chart`: one control chart of a run's input as PNG and SVG.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::chart::{self, KeySpec, Sources, Style, with_ext};
use crate::input::Format;

#[derive(Debug, Args)]
#[command(after_help = "Example (the shipped example's drifting implanter):
  spcvm backtest --input examples/ion_implant_drift.jsonl --alerts /tmp/alerts.jsonl --report /tmp/report.json
  spcvm chart --input examples/ion_implant_drift.jsonl --alerts /tmp/alerts.jsonl --report /tmp/report.json \\
      --tool ION-02 --parameter beam_current_mA --out /tmp/ion02_beam
  (writes /tmp/ion02_beam.png and /tmp/ion02_beam.svg)

The points are re-computed by the same operators over the input (the chart statistic:
subgroup means on X-bar charts, values on I-MR, the EWMA statistic, the CUSUM sums); the
alerts file and the report, when given, are checked against that re-run.")]
pub(super) struct ChartArgs {
    /// The run's telemetry (JSON lines, CSV or Avro). Repeated: merged in event-time order,
    /// as `spcvm backtest` merges them.
    #[arg(long, value_name = "FILE", required = true)]
    input: Vec<PathBuf>,
    /// The run's alerts (JSON lines): checked against the re-run's alerts on the chart.
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// The backtest report: its center line and limits for the chart are checked.
    #[arg(long, value_name = "REPORT.json")]
    report: Option<PathBuf>,
    /// The run's chart configuration (default: the built-in monitors).
    #[arg(long = "charts", value_name = "CHARTS.toml")]
    charts: Option<PathBuf>,
    /// Input format. Default: from the extension.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The tool, e.g. ION-02.
    #[arg(long)]
    tool: String,
    /// The recipe. Default: the tool's only recipe in the input.
    #[arg(long)]
    recipe: Option<String>,
    /// The parameter, e.g. beam_current_mA.
    #[arg(long)]
    parameter: String,
    /// Output path without extension: BASE.png and BASE.svg are written.
    #[arg(long, value_name = "BASE")]
    out: PathBuf,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1400)]
    width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 700)]
    height: u32,
}

pub(super) fn command(args: ChartArgs) -> Result<(), CliError> {
    let key = KeySpec {
        tool_id: args.tool,
        recipe_id: args.recipe,
        parameter: args.parameter,
    };
    let sources = Sources {
        charts: args.charts,
        inputs: args.input,
        format: args.format,
        alerts: args.alerts,
        report: args.report,
    };
    let data = chart::data::load(&key, &sources)?;
    for warning in &data.warnings {
        eprintln!("spcvm chart: warning: {warning}");
    }
    let style = Style {
        width: args.width,
        height: args.height,
        marks: Vec::new(),
    };
    let png = with_ext(&args.out, "png");
    let svg = with_ext(&args.out, "svg");
    chart::render::png(&data, &style, &png)?;
    chart::render::svg(&data, &style, &svg)?;
    eprintln!(
        "spcvm chart: {}/{}/{} ({}): {} samples, {} points, {} alerts -> {}, {}",
        data.tool_id,
        data.recipe_id,
        data.parameter,
        data.spec.chart_type.as_str(),
        data.samples,
        data.points.len(),
        data.alerts.len(),
        png.display(),
        svg.display()
    );
    Ok(())
}
