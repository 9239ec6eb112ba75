//! Loading triage playbooks (`[triage] playbooks` files, or the built-in
//! `deploy/playbooks/*.toml`) into validated [`Playbooks`], with errors that name the file,
//! the line and the key: a TOML shape error (an unknown key, a missing `priority`) by the
//! deserializer's span, a value [`Playbooks::validate`] refuses (a duplicate id, an unknown
//! parameter, a cause without evidence) by the path it reports, looked up in the file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use spcvm_operators::SpcMonitor;
use spcvm_operators::triage::{PathPart, PlaybookError, Playbooks};
use spcvm_schemas::ToolType;
use toml::de::{DeTable, DeValue};

use crate::config::line_column;

/// The built-in playbooks: (file name, text).
pub const BUILT_IN: [(&str, &str); 2] = [
    (
        "ion_implant.toml",
        include_str!("../../deploy/playbooks/ion_implant.toml"),
    ),
    ("rtp.toml", include_str!("../../deploy/playbooks/rtp.toml")),
];

/// Why playbooks could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookFileError {
    /// A file could not be read.
    #[error("cannot read playbook file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid TOML for playbooks (syntax, unknown key, missing key, wrong type).
    #[error("{}:{}: {message}", path.display(), position.map_or_else(|| "?".to_string(), |(l, c)| format!("{l}:{c}")))]
    Parse {
        /// The file.
        path: PathBuf,
        /// One-based line and column, if known.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// A value is refused: where, and why.
    #[error("{}:{}: {error}", path.display(), line.map_or_else(|| "?".to_string(), |l| l.to_string()))]
    Invalid {
        /// The file holding the value.
        path: PathBuf,
        /// One-based line of the key, if found.
        line: Option<usize>,
        /// The path to the value and what is wrong with it.
        error: PlaybookError,
    },
}

/// The playbooks of `paths` together (the built-in ones when `paths` is empty), checked
/// against the parameters `monitor` charts (`SpcMonitor::route`).
///
/// # Errors
///
/// [`PlaybookFileError`] naming the file, and the line and key where it can.
pub fn load(paths: &[PathBuf], monitor: &SpcMonitor) -> Result<Playbooks, PlaybookFileError> {
    let mut files = Vec::new();
    if paths.is_empty() {
        for (name, text) in BUILT_IN {
            files.push((
                PathBuf::from(format!("<built-in {name}>")),
                text.to_string(),
            ));
        }
    }
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| PlaybookFileError::Read {
            path: path.clone(),
            source,
        })?;
        files.push((path.clone(), text));
    }
    let known =
        |tool_type: ToolType, parameter: &str| monitor.route(tool_type, parameter).is_some();
    let mut all = Playbooks::default();
    // Where each playbook came from: (file index, index in its file).
    let mut origin = Vec::new();
    for (f, (path, text)) in files.iter().enumerate() {
        let books = parse(text, path)?;
        // Each file on its own first, so that a line is found in the right file.
        books
            .validate(&known)
            .map_err(|error| invalid(path, text, error))?;
        origin.extend((0..books.playbooks.len()).map(|i| (f, i)));
        all.playbooks.extend(books.playbooks);
    }
    // Then together: an id may repeat across files.
    all.validate(&known).map_err(|mut error| {
        let at = match error.path.get(1) {
            Some(PathPart::Index(i)) => origin.get(*i).copied(),
            _ => None,
        };
        match at {
            Some((f, i)) => {
                error.path[1] = PathPart::Index(i);
                invalid(&files[f].0, &files[f].1, error)
            }
            None => PlaybookFileError::Invalid {
                path: PathBuf::from("<playbooks>"),
                line: None,
                error,
            },
        }
    })?;
    Ok(all)
}

/// Parses one file's playbooks; `path` names it in errors.
///
/// # Errors
///
/// [`PlaybookFileError::Parse`].
pub fn parse(text: &str, path: &Path) -> Result<Playbooks, PlaybookFileError> {
    toml::from_str(text).map_err(|e| PlaybookFileError::Parse {
        path: path.to_path_buf(),
        position: e.span().map(|span| line_column(text, span.start)),
        message: e.message().to_string(),
    })
}

fn invalid(path: &Path, text: &str, error: PlaybookError) -> PlaybookFileError {
    PlaybookFileError::Invalid {
        path: path.to_path_buf(),
        line: span_of(text, &error.path).map(|span| line_column(text, span.start).0),
        error,
    }
}

/// The text a path points at: the deepest key or table of it found in the file (the
/// table that lacks a key, for a missing one).
fn span_of(text: &str, path: &[PathPart]) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut span = None;
    for part in path {
        let found = match part {
            PathPart::Key(key) => {
                let table = match value {
                    None => Some(doc.get_ref()),
                    Some(v) => v.get_ref().as_table(),
                };
                table
                    .and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key))
                    .map(|(k, v)| (k.span(), v))
            }
            PathPart::Index(i) => value
                .and_then(|v| v.get_ref().as_array())
                .and_then(|a| a.get(*i))
                .map(|item| (item.span(), item)),
        };
        let Some((at, next)) = found else { break };
        span = Some(at);
        value = Some(next);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> SpcMonitor {
        crate::config::load_monitor(None).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_built_in_playbooks_load() {
        let books = load(&[], &seed()).unwrap();
        assert_eq!(books.playbooks.len(), 9);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let ion = BUILT_IN[0].1;
        // A misspelt key: the deserializer's position.
        let path = write(dir.path(), "a.toml", &ion.replacen("says =", "sayz =", 1));
        let err = load(std::slice::from_ref(&path), &seed())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:", path.display())), "{err}");
        assert!(err.contains("unknown field `sayz`"), "{err}");
        // An unknown parameter: the line of its key.
        let text = ion.replacen(
            "parameter = \"source_pressure_mtorr\"",
            "parameter = \"source_presure\"",
            1,
        );
        let line = text
            .lines()
            .position(|l| l.contains("source_presure"))
            .unwrap()
            + 1;
        let path = write(dir.path(), "b.toml", &text);
        let err = load(std::slice::from_ref(&path), &seed())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:{line}: playbook[0].cause[0].evidence[1].parameter: unknown parameter \
                 `source_presure`: no ion_implant chart watches it",
                path.display()
            )
        );
        // A cause without evidence: the line of its table.
        let text = "[[playbook]]\nid = \"x\"\nname = \"X\"\ntool_type = \"rtp\"\ntrigger = [\"emissivity\"]\n\n\
                    [[playbook.cause]]\nid = \"c\"\nname = \"C\"\n";
        let path = write(dir.path(), "c.toml", text);
        let err = load(std::slice::from_ref(&path), &seed())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:7: playbook[0].cause[0].evidence: cause `c` has no evidence: nothing could rank it",
                path.display()
            )
        );
        // The same id in two files: the second file, its line.
        let rtp = write(dir.path(), "rtp.toml", BUILT_IN[1].1);
        let again = write(
            dir.path(),
            "again.toml",
            "# one playbook\n[[playbook]]\nid = \"ramp_tracking_error\"\nname = \"R\"\n\
             tool_type = \"rtp\"\ntrigger = [\"emissivity\"]\n[[playbook.cause]]\nid = \"c\"\n\
             name = \"C\"\n[[playbook.cause.evidence]]\nwhen = \"recipe_change\"\nweight = 1.0\n\
             says = \"s\"\n",
        );
        let err = load(&[rtp, again.clone()], &seed())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:3: playbook[0].id: duplicate playbook id `ramp_tracking_error`",
                again.display()
            )
        );
        let err = load(&[dir.path().join("none.toml")], &seed())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read playbook file"), "{err}");
    }
}
