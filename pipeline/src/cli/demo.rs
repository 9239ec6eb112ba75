//! `spcvm demo`: simulate a small fab with faults, run the job on it, score it, chart each
//! detected fault, and print what happened.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::chart::render::utc;
use crate::demo::{self, DemoOptions, DemoOutcome, files};

#[derive(Debug, Args)]
#[command(after_help = "Example:
  spcvm demo                      # the embedded 5-tool fab, 3 faults, into out/demo/
  spcvm demo --scenario deploy/scenarios/mixed_fab.toml --out /tmp/mixed

No broker or other service: the job runs on files (`spcvm run`'s file runtime, stages spc
and triage), exactly as `spcvm run --config out/demo/pipeline.toml` would.")]
pub(super) struct DemoArgs {
    /// The scenario (deploy/scenarios/*.toml). Default: the embedded demo fab
    /// (deploy/scenarios/demo.toml).
    #[arg(long, value_name = "SCENARIO.toml")]
    scenario: Option<PathBuf>,
    /// The RNG seed, instead of the scenario's.
    #[arg(long)]
    seed: Option<u64>,
    /// The output folder.
    #[arg(long, value_name = "DIR", default_value = "out/demo")]
    out: PathBuf,
}

pub(super) fn command(args: DemoArgs) -> Result<(), CliError> {
    let outcome = demo::run(&DemoOptions {
        scenario: args.scenario,
        seed: args.seed,
        out: args.out,
    })?;
    print!("{}", summary(&outcome));
    Ok(())
}

/// Thousands separated by commas.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The end-of-demo summary: what was injected, found, how fast, triage's first cause,
/// false alarms, and where the files are.
pub(crate) fn summary(o: &DemoOutcome) -> String {
    let mut s = String::new();
    let t = &o.truth;
    let per_tool = t.tools.first().map_or(0, |x| x.samples);
    let interval = t.tools.first().map_or(0, |x| x.sample_interval_ms);
    let hours = (per_tool as f64 * interval as f64) / 3_600_000.0;
    let _ = writeln!(
        s,
        "spcvm demo: {} tools, {} samples each ({hours:.1} h of event time, one every {} s), \
         {} records from {}",
        t.tools.len(),
        per_tool,
        interval / 1000,
        thousands(o.records),
        t.scenario
    );
    let _ = writeln!(
        s,
        "job: spcvm run (file source, stages spc + triage): {} records in {:.2} s -> {} alert \
         lines, {} triage versions, {} actions; {} dead letters",
        thousands(o.run.records),
        o.run_time.as_secs_f64(),
        o.run.alerts,
        o.triage.len(),
        o.actions,
        o.run.dead_letters
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "{} faults injected:", t.faults.len());
    for (f, scored) in t.faults.iter().zip(&o.score.faults) {
        let _ = writeln!(
            s,
            "  {:<7} {:<17} from sample {} ({})",
            f.tool_id,
            f.kind.to_string(),
            f.onset_sample,
            utc(f.onset_event_time)
        );
        match &scored.detection {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "          detected after {} samples ({:.1} min): {} {} {}",
                    d.delay_samples,
                    d.delay_s / 60.0,
                    d.parameter,
                    d.chart,
                    d.rule
                );
                if let Some(pd) = &scored.primary_detection
                    && pd.alert_id != d.alert_id
                {
                    let _ = writeln!(
                        s,
                        "          on its own parameter {} after {} samples ({:.1} min): {} {}",
                        f.primary_parameter,
                        pd.delay_samples,
                        pd.delay_s / 60.0,
                        pd.chart,
                        pd.rule
                    );
                }
            }
            None => {
                let _ = writeln!(s, "          NOT detected");
            }
        }
        match &scored.first {
            Some(v) => {
                let first = v.causes.first().map_or("-", String::as_str);
                let _ = writeln!(
                    s,
                    "          triage ranked first: {first} ({}; expected {}{})",
                    v.failure_mode,
                    scored.expected_cause,
                    if v.top1 {
                        ": right"
                    } else if v.top3 {
                        ": in its top 3"
                    } else {
                        ": not in its top 3"
                    }
                );
                if let Some(last) = &scored.last
                    && last.causes.first() != v.causes.first()
                {
                    let _ = writeln!(
                        s,
                        "          final version of the incident ranks first: {}{}",
                        last.causes.first().map_or("-", String::as_str),
                        if last.top1 { " (right)" } else { "" }
                    );
                }
            }
            None => {
                let _ = writeln!(s, "          triage: no verdict after the onset");
            }
        }
    }
    let fa = &o.score.false_alarms;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "detected {} of {} faults; false alarms: {} alerts in {} fault-free samples = {:.2} per \
         1,000 samples",
        o.score.detected,
        o.score.faults.len(),
        fa.alerts,
        thousands(fa.samples),
        fa.per_1000_samples
    );
    if let Some(tt) = &o.score.triage {
        let _ = writeln!(
            s,
            "triage: expected cause ranked first for {} of {} faults (top 3: {}); final versions: {} \
             (top 3: {})",
            tt.top1, tt.faults, tt.top3, tt.final_top1, tt.final_top3
        );
    }
    let _ = writeln!(s);
    let dir = o.out.display();
    let _ = writeln!(s, "files in {dir}/:");
    let rows = [
        (
            format!("{}, {}", files::TELEMETRY, files::TRUTH),
            "the simulated fab, and what was injected where",
        ),
        (
            files::PIPELINE.to_string(),
            "the job that ran (spcvm run --config)",
        ),
        (
            format!("{}, {}, {}", files::ALERTS, files::TRIAGE, files::ACTIONS),
            "its alerts, triage and lot holds / tool inhibits",
        ),
        (
            format!("{}, {}", files::SCORE_JSON, files::SCORE_TABLE),
            "the score (JSON, Markdown table)",
        ),
    ];
    for (name, what) in rows {
        let _ = writeln!(s, "  {name:<45} {what}");
    }
    for c in &o.charts {
        let f = &o.truth.faults[c.fault];
        let name = c
            .png
            .strip_prefix(&o.out)
            .unwrap_or(&c.png)
            .display()
            .to_string();
        let _ = writeln!(s, "  {:<45} {} on {} (and .svg)", name, f.kind, f.tool_id);
    }
    let _ = writeln!(s, "done in {:.1} s", o.elapsed.as_secs_f64());
    s
}
