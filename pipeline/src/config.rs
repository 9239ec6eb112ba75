//! Loading the chart configuration (`--config CHARTS.toml`) into a validated [`SpcMonitor`].
//!
//! Two kinds of mistakes are caught, and both are reported with the file and line:
//!
//! * **Shape** (unknown key, wrong type, unknown chart type, TOML syntax): the TOML
//!   deserializer reports a byte span, turned into `FILE:LINE:COLUMN: message`, e.g.
//!   ``charts.toml:7:1: unknown field `lamda`, expected one of `tool_type`, ...``.
//! * **Values** ([`SpcMonitor::new`] rejects e.g. `lambda = 1.5`): the message names the
//!   chart and key, and the line is that key's line in the chart's `[[chart]]` table, or the
//!   table header's line when the key was left at its default, e.g.
//!   ``charts.toml:12: chart[1] (beam_current_mA): `lambda`: 1.5 must be in (0, 1]``.

use std::ops::Range;
use std::path::{Path, PathBuf};

use spcvm_operators::{ConfigError, MonitorConfig, SpcMonitor};
use toml::de::{DeTable, DeValue};

/// Error from loading a chart configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    Read {
        /// The config path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for a [`MonitorConfig`] (syntax, unknown key, wrong type).
    #[error("{}:{}: {message}", path.display(), position.map_or_else(|| "?".to_string(), |(l, c)| format!("{l}:{c}")))]
    Parse {
        /// The config path.
        path: PathBuf,
        /// One-based line and column (in characters) of the offending text, if known.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range (reported by [`SpcMonitor::new`]).
    #[error("{}:{}: {error}", path.display(), line.map_or_else(|| "?".to_string(), |l| l.to_string()))]
    Invalid {
        /// The config path.
        path: PathBuf,
        /// One-based line of the offending key or of its `[[chart]]` header, if found.
        line: Option<usize>,
        /// What is wrong, naming the chart and the key.
        error: ConfigError,
    },
}

/// Reads and validates the configuration at `path`.
///
/// # Errors
///
/// [`ConfigFileError`] naming the file, and the line wherever the problem can be placed.
pub fn load(path: &Path) -> Result<(MonitorConfig, SpcMonitor), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// The monitor of `path`, or the built-in seed monitors when there is no path.
///
/// # Errors
///
/// As [`load`].
pub fn load_monitor(path: Option<&Path>) -> Result<SpcMonitor, ConfigFileError> {
    match path {
        Some(path) => Ok(load(path)?.1),
        None => {
            SpcMonitor::new(&MonitorConfig::default()).map_err(|error| ConfigFileError::Invalid {
                path: std::path::PathBuf::from("<built-in defaults>"),
                line: None,
                error,
            })
        }
    }
}

/// Parses and validates configuration `text`; `path` is only used in error messages.
///
/// # Errors
///
/// As [`load`], minus the read error.
pub fn parse(text: &str, path: &Path) -> Result<(MonitorConfig, SpcMonitor), ConfigFileError> {
    let config: MonitorConfig = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
        path: path.to_path_buf(),
        position: e.span().map(|span| line_column(text, span.start)),
        message: e.message().to_string(),
    })?;
    let monitor = SpcMonitor::new(&config).map_err(|error| ConfigFileError::Invalid {
        path: path.to_path_buf(),
        line: error_span(text, &error).map(|span| line_column(text, span.start).0),
        error,
    })?;
    Ok((config, monitor))
}

/// One-based line and column (counted in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The text that a validation error is about: the offending key inside its chart (or the
/// chart's header when the key is absent), or the `window_s` key.
fn error_span(text: &str, error: &ConfigError) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let doc = doc.get_ref();
    match error {
        ConfigError::Chart { index, source, .. } => {
            let charts = doc.get("chart")?.get_ref().as_array()?;
            let chart = charts.get(*index)?;
            let key = match chart.get_ref() {
                DeValue::Table(table) => table
                    .iter()
                    .find(|(k, _)| k.get_ref() == source.field)
                    .map(|(k, _)| k.span()),
                _ => None,
            };
            Some(key.unwrap_or_else(|| chart.span()))
        }
        ConfigError::DedupWindow(_) => {
            let dedup = doc.get("dedup")?;
            let key = dedup
                .get_ref()
                .as_table()
                .and_then(|t| t.iter().find(|(k, _)| k.get_ref() == "window_s"))
                .map(|(k, _)| k.span());
            Some(key.unwrap_or_else(|| dedup.span()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("charts.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn line_and_column() {
        let text = "ab\ncdé\n\nx";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 9), (4, 1));
        // Past the end or inside a character: clamped.
        assert_eq!(line_column(text, 6), (2, 3));
        assert_eq!(line_column(text, 100), (4, 2));
    }

    #[test]
    fn empty_file_is_the_default_monitor() {
        let (config, monitor) = parse("", Path::new("c.toml")).unwrap();
        assert_eq!(config, MonitorConfig::default());
        assert_eq!(monitor.charts().len(), 9);
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let text = "seed_defaults = true\n\n[[chart]]\nparameter = \"beam_current_mA\"\ntype = \"ewma\"\n  lamda = 0.1\n";
        let e = err(text);
        assert!(
            e.starts_with("charts.toml:6:3: unknown field `lamda`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn unknown_chart_type_names_the_value() {
        let e = err("[[chart]]\nparameter = \"x\"\ntype = \"shewhart\"\n");
        assert!(
            e.starts_with("charts.toml:3:8: unknown variant `shewhart`, expected one of `xbar_r`"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_the_position() {
        let e = err("[dedup]\nwindow_s = = 3\n");
        assert!(e.starts_with("charts.toml:2:12: "), "{e}");
    }

    #[test]
    fn value_error_names_the_key_line() {
        let text = "[[chart]]\nparameter = \"a\"\ntype = \"imr\"\n\n[[chart]]\nparameter = \"beam_current_mA\"\ntype = \"ewma\"\nlambda = 1.5\n";
        assert_eq!(
            err(text),
            "charts.toml:8: chart[1] (beam_current_mA): `lambda`: 1.5 must be in (0, 1]"
        );
    }

    #[test]
    fn value_error_from_a_combination_names_the_reported_key() {
        let text =
            "# header\n[[ chart ]]\nparameter = \"a\"\ntype = \"imr\"\ntarget = 2.0\nlcl = 3.0\n";
        assert_eq!(
            err(text),
            "charts.toml:6: chart[0] (a): `lcl`: 3 must be below target = 2"
        );
        let text = "\n\n[[chart]]\nparameter = \"\"\ntype = \"imr\"\n";
        assert_eq!(
            err(text),
            "charts.toml:4: chart[0] (): `parameter`: must not be empty"
        );
    }

    #[test]
    fn dedup_window_error_names_its_line() {
        let text = "seed_defaults = false\n[dedup]\nwindow_s = -1.0\n";
        assert_eq!(
            err(text),
            "charts.toml:3: dedup.window_s: -1 must be zero or a positive number of seconds"
        );
    }
}
