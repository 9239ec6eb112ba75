//! `-` as a path: standard output for the files a command writes, standard input for one it
//! reads (`spcvm backtest --alerts -`, `spcvm score --alerts -`).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use spcvm_sinks::{LineWriter, SinkError};

/// What messages call standard output when `-` names it.
pub const STDOUT_NAME: &str = "standard output";

/// Whether `path` is `-` (standard output for an output, standard input for an input).
pub fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Where a command writes: a file it created, or standard output.
pub type Output = Box<dyn Write>;

/// Creates (or truncates) the file at `path`, or takes standard output for `-`.
///
/// # Errors
///
/// The file cannot be created.
pub fn create(path: &Path) -> io::Result<Output> {
    if is_dash(path) {
        Ok(Box::new(io::stdout()))
    } else {
        Ok(Box::new(File::create(path)?))
    }
}

/// A line writer to the file at `path`, or to standard output for `-`.
///
/// # Errors
///
/// [`SinkError::Create`] naming the path when the file cannot be created.
pub fn line_writer(path: &Path) -> Result<LineWriter<Output>, SinkError> {
    let out = create(path).map_err(|source| SinkError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    let name = if is_dash(path) {
        Path::new(STDOUT_NAME)
    } else {
        path
    };
    Ok(LineWriter::new(out, name))
}

/// How to show `path` in a summary: `standard output` for `-`.
pub fn display(path: &Path) -> String {
    if is_dash(path) {
        STDOUT_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_dash_is_standard_output() {
        assert!(is_dash(Path::new("-")));
        for other in ["--", "-.jsonl", "./-", "a-"] {
            assert!(!is_dash(Path::new(other)), "{other}");
        }
        assert_eq!(display(Path::new("-")), "standard output");
        assert_eq!(display(Path::new("a.jsonl")), "a.jsonl");
    }
}
