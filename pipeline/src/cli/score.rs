//! `spcvm score`: a backtest's alerts (and triage) against a simulation's ground truth, as
//! a table on stdout and, with `--json`, a JSON document.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::simulate::score::{self, ScoreError};
use crate::simulate::truth::Truth;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    spcvm simulate --scenario deploy/scenarios/vacuum_leak.toml --out /tmp/fab.jsonl\n  \
    spcvm backtest --input /tmp/fab.jsonl --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl\n  \
    spcvm score --truth /tmp/fab.truth.json --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl --json /tmp/score.json")]
pub(super) struct ScoreArgs {
    /// The ground truth `spcvm simulate` wrote (NAME.truth.json).
    #[arg(long, value_name = "FILE")]
    truth: PathBuf,
    /// The alerts (JSON lines, as `spcvm backtest --alerts` writes them).
    #[arg(long, value_name = "FILE")]
    alerts: PathBuf,
    /// The triage (JSON lines, as `spcvm backtest --triage` writes them): adds top-1 / top-3.
    #[arg(long, value_name = "FILE")]
    triage: Option<PathBuf>,
    /// Also write the score as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub(super) fn command(args: ScoreArgs) -> Result<(), CliError> {
    let truth = Truth::load(&args.truth).map_err(ScoreError::from)?;
    let alerts = score::load_alerts(&args.alerts)?;
    let triage = args.triage.as_deref().map(score::load_triage).transpose()?;
    let result = score::score(&truth, &alerts, triage.as_deref());
    if let Some(path) = &args.json {
        let mut text = serde_json::to_vec_pretty(&result).unwrap_or_default();
        text.push(b'\n');
        std::fs::write(path, text).map_err(|source| ScoreError::Write {
            path: path.clone(),
            source,
        })?;
    }
    print!("{}", score::table(&result));
    Ok(())
}
