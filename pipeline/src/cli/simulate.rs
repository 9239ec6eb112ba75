//! `spcvm simulate`: a scenario file into telemetry (JSON lines or Avro) and its ground
//! truth, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::CliError;
use crate::simulate::{self, Generator, OutputFormat};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    spcvm simulate --scenario deploy/scenarios/source_wear.toml --out /tmp/fab.jsonl\n  \
    spcvm backtest --input /tmp/fab.jsonl --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl\n  \
    spcvm score --truth /tmp/fab.truth.json --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl")]
pub(super) struct SimulateArgs {
    /// The scenario: the fab and the faults to inject (deploy/scenarios/*.toml).
    #[arg(long, value_name = "SCENARIO.toml")]
    scenario: PathBuf,
    /// Where the telemetry goes: JSON lines, or an Avro container for `.avro`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Output format. Default: from the extension (`.avro`: Avro, else JSON lines).
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// Where the ground truth goes (JSON). Default: NAME.truth.json beside --out.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// The RNG seed, instead of the scenario's.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar and no summary.
    #[arg(long, short)]
    quiet: bool,
}

pub(super) fn command(args: SimulateArgs) -> Result<(), CliError> {
    let mut scenario =
        simulate::scenario::load(&args.scenario).map_err(simulate::SimulateError::from)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let format = args.format.unwrap_or_else(|| OutputFormat::of(&args.out));
    let truth_path = args
        .truth
        .clone()
        .unwrap_or_else(|| simulate::default_truth_path(&args.out));
    let total = Generator::new(&scenario).len();
    let bar = (!args.quiet && std::io::stderr().is_terminal())
        .then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .ok()?;
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style);
            Some(bar)
        })
        .flatten();
    let started = std::time::Instant::now();
    let truth = simulate::simulate(
        &scenario,
        &args.scenario.display().to_string(),
        &args.out,
        format,
        &truth_path,
        &mut |n| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        },
    )?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "spcvm simulate: {total} records of {} tools ({} per tool, seed {}) in {secs:.2} s -> {}",
            truth.tools.len(),
            scenario.samples_per_tool,
            scenario.seed,
            args.out.display()
        );
        for f in &truth.faults {
            eprintln!(
                "  fault {} on {} from sample {} ({} sd over {} samples; expect {}/{})",
                f.kind,
                f.tool_id,
                f.onset_sample,
                f.magnitude_sigma,
                f.ramp_samples,
                f.expected.failure_modes.first().map_or("", String::as_str),
                f.expected.cause_id
            );
        }
        eprintln!("  ground truth -> {}", truth_path.display());
    }
    Ok(())
}
