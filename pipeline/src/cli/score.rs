//! `spcvm score`: a backtest's alerts (and triage) against a simulation's ground truth, as
//! a table on stdout and, with `--json`, a JSON document.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::simulate::score::{self, ScoreError};
use crate::simulate::truth::Truth;
use crate::stdio;

#[derive(Debug, Args)]
#[command(after_help = "Example (from the repository root):
  spcvm simulate --scenario deploy/scenarios/vacuum_leak.toml --out fab.jsonl
  spcvm backtest --input fab.jsonl --alerts alerts.jsonl --triage triage.jsonl --quiet
  spcvm score --truth fab.truth.json --alerts alerts.jsonl --triage triage.jsonl --json score.json
  spcvm score --truth fab.truth.json --alerts - --json - < alerts.jsonl

`-` reads one of --truth, --alerts, --triage from standard input; `--json -` writes the JSON
to standard output (the table then goes to standard error).")]
pub(super) struct ScoreArgs {
    /// The ground truth `spcvm simulate` wrote (NAME.truth.json); `-`: standard input.
    #[arg(long, value_name = "FILE")]
    truth: PathBuf,
    /// The alerts (JSON lines, as `spcvm backtest --alerts` writes them); `-`: standard
    /// input.
    #[arg(long, value_name = "FILE")]
    alerts: PathBuf,
    /// The triage (JSON lines, as `spcvm backtest --triage` writes them): adds top-1 / top-3.
    /// `-`: standard input.
    #[arg(long, value_name = "FILE")]
    triage: Option<PathBuf>,
    /// Also write the score as JSON; `-`: standard output (the table then goes to standard
    /// error).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub(super) fn command(args: ScoreArgs) -> Result<(), CliError> {
    let inputs = [Some(&args.truth), Some(&args.alerts), args.triage.as_ref()];
    if inputs
        .iter()
        .flatten()
        .filter(|p| stdio::is_dash(p))
        .count()
        > 1
    {
        return Err(CliError::Usage(
            "only one of --truth, --alerts and --triage may be `-` (standard input can be \
             read once)"
                .into(),
        ));
    }
    let truth = Truth::load(&args.truth).map_err(ScoreError::from)?;
    let alerts = score::load_alerts(&args.alerts)?;
    let triage = args.triage.as_deref().map(score::load_triage).transpose()?;
    let result = score::score(&truth, &alerts, triage.as_deref());
    let json_to_stdout = args.json.as_deref().is_some_and(stdio::is_dash);
    if let Some(path) = &args.json {
        let mut text = serde_json::to_vec_pretty(&result).unwrap_or_default();
        text.push(b'\n');
        let write_err = |source| ScoreError::Write {
            path: path.clone(),
            source,
        };
        let mut out = stdio::create(path).map_err(write_err)?;
        out.write_all(&text)
            .and_then(|()| out.flush())
            .map_err(write_err)?;
    }
    // Standard output holds the JSON when it goes there; the table then goes to stderr.
    if json_to_stdout {
        eprint!("{}", score::table(&result));
    } else {
        print!("{}", score::table(&result));
    }
    Ok(())
}
