//! `spcvm config check FILE...`: validates pipeline, chart and playbook files without
//! running anything, naming the file, line and key of each mistake.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use toml::de::DeTable;

use super::{Extensions, describe};
use crate::config::line_column;
use crate::run::Job;
use crate::run::config as run_config;

/// The exit code when a file is invalid (1 is any other failure).
pub(super) const INVALID: u8 = 2;

/// What a file configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Kind {
    /// `spcvm run --config` (deploy/config/pipeline.example.toml).
    Pipeline,
    /// `spcvm backtest --charts` / `charts = ...` (deploy/config/charts.toml).
    Charts,
    /// Triage playbooks (deploy/playbooks/*.toml).
    Playbooks,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  spcvm config check deploy/config/pipeline.example.toml deploy/config/charts.toml
  spcvm config check --kind playbooks deploy/playbooks/ion_implant.toml deploy/playbooks/rtp.toml

Prints `ok: FILE (...)` for each valid file and the error (file, line, key) for each
invalid one; exits with 2 when any is invalid.")]
pub(super) struct CheckArgs {
    /// The files to check.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// What the files configure. Default: told from each file's keys (`[[chart]]`,
    /// `[dedup]` or `seed_defaults`: charts; `[[playbook]]`: playbooks; anything else: a
    /// pipeline).
    #[arg(long, value_enum)]
    kind: Option<Kind>,
}

/// Checks every file; prints a line for each; 2 when any is invalid.
pub(super) fn command(args: &CheckArgs, extensions: &Extensions) -> ExitCode {
    let mut invalid = false;
    for file in &args.files {
        match check(file, args.kind, extensions) {
            Ok(summary) => println!("ok: {} ({summary})", file.display()),
            Err(error) => {
                invalid = true;
                eprintln!("spcvm: error: {error}");
            }
        }
    }
    if invalid {
        ExitCode::from(INVALID)
    } else {
        ExitCode::SUCCESS
    }
}

/// The file's kind from its top-level keys.
fn detect(text: &str) -> Kind {
    let Ok(table) = text.parse::<toml::Table>() else {
        // A syntax error: the pipeline loader reports it with its line.
        return Kind::Pipeline;
    };
    if table.contains_key("playbook") {
        Kind::Playbooks
    } else if ["chart", "dedup", "seed_defaults"]
        .iter()
        .any(|k| table.contains_key(*k))
    {
        Kind::Charts
    } else {
        Kind::Pipeline
    }
}

/// Checks one file; the summary of what it configures, or the error's line.
fn check(path: &Path, kind: Option<Kind>, extensions: &Extensions) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    match kind.unwrap_or_else(|| detect(&text)) {
        Kind::Charts => {
            let (config, monitor) = crate::config::parse(&text, path).map_err(|e| describe(&e))?;
            Ok(format!(
                "charts: {} charts ({} in the file{}), dedup window {} s",
                monitor.charts().len(),
                config.charts.len(),
                if config.seed_defaults {
                    ", the rest built in"
                } else {
                    ""
                },
                config.dedup.window_s
            ))
        }
        Kind::Playbooks => {
            let monitor = crate::config::load_monitor(None).map_err(|e| describe(&e))?;
            let playbooks = crate::playbooks::load(&[path.to_path_buf()], &monitor)
                .map_err(|e| describe(&e))?;
            Ok(format!(
                "playbooks: {} playbooks, checked against the built-in charts",
                playbooks.playbooks.len()
            ))
        }
        Kind::Pipeline => check_pipeline(path, &text, extensions),
    }
}

/// A pipeline file: its keys (environment variables are not applied), then everything
/// `spcvm run` builds from it before connecting anywhere (the charts file, the stages, the
/// playbooks, the streams, the decoder).
fn check_pipeline(path: &Path, text: &str, extensions: &Extensions) -> Result<String, String> {
    let no_env: [(String, String); 0] = [];
    let config = run_config::load(Some(path), no_env).map_err(|e| match &e {
        // A consistency error names its key; place it in the file.
        run_config::PipelineConfigError::Invalid(message) => at_key(path, text, message),
        other => describe(other),
    })?;
    let summary = format!(
        "pipeline: source {}, stages {}, charts {}, playbooks {}",
        match config.source {
            run_config::SourceKind::Kafka => "kafka",
            run_config::SourceKind::File => "file",
        },
        config.stages.join(" -> "),
        config
            .charts
            .as_ref()
            .map_or_else(|| "built in".to_string(), |p| p.display().to_string()),
        if config.triage.playbooks.is_empty() {
            "built in".to_string()
        } else {
            let names: Vec<String> = config
                .triage
                .playbooks
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            names.join(", ")
        }
    );
    Job::with_stages(config, |name| extensions.stage(name)).map_err(|e| {
        let message = describe(&e);
        // Errors about another file name it; the others are about this one.
        if message.contains(".toml:") {
            message
        } else {
            at_key(path, text, &message)
        }
    })?;
    Ok(summary)
}

/// `FILE:LINE: message` for a message that starts with a key path (`kafka.group_id: ...`,
/// `stages: ...`), with the line of that key in `text` when it is there.
fn at_key(path: &Path, text: &str, message: &str) -> String {
    let key = message.split(':').next().unwrap_or_default().trim();
    match key_line(text, key) {
        Some(line) => format!("{}:{line}: {message}", path.display()),
        None => format!("{}: {message}", path.display()),
    }
}

/// The line of the dotted `key` in TOML `text`, if it is set there.
fn key_line(text: &str, key: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, value) = table.get_key_value(part)?;
        if parts.peek().is_none() {
            return Some(line_column(text, name.span().start).0);
        }
        table = value.get_ref().as_table()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_from_the_keys() {
        assert_eq!(
            detect("[[chart]]\nparameter = \"x\"\ntype = \"imr\"\n"),
            Kind::Charts
        );
        assert_eq!(detect("seed_defaults = true\n"), Kind::Charts);
        assert_eq!(detect("[[playbook]]\nid = \"a\"\n"), Kind::Playbooks);
        assert_eq!(detect("source = \"file\"\n"), Kind::Pipeline);
        assert_eq!(detect("this is not toml"), Kind::Pipeline);
    }

    #[test]
    fn a_key_is_found_on_its_line() {
        let text =
            "source = \"kafka\"\n\n[kafka]\nbootstrap_servers = \"b:9092\"\ngroup_id = \"\"\n";
        assert_eq!(key_line(text, "kafka.group_id"), Some(5));
        assert_eq!(key_line(text, "source"), Some(1));
        assert_eq!(key_line(text, "kafka.missing"), None);
        assert_eq!(
            at_key(
                Path::new("p.toml"),
                text,
                "kafka.group_id: must not be empty"
            ),
            "p.toml:5: kafka.group_id: must not be empty"
        );
        assert_eq!(
            at_key(Path::new("p.toml"), text, "stages: name at least one stage"),
            "p.toml: stages: name at least one stage"
        );
    }
}
