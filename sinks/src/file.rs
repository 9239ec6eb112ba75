//! [`AppendFile`]: a JSON-lines output that can be committed and rolled back to its last
//! commit, so a file runtime gets exactly-once output across crashes.
//!
//! The runtime writes lines, calls [`AppendFile::commit`] (flush + `fdatasync`) and records
//! the returned length in its checkpoint; after a crash it reopens the file with that length
//! and everything written after the checkpoint is cut off before processing resumes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Error from an [`AppendFile`], naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{operation} `{}`", path.display())]
pub struct AppendError {
    /// What was being done (`cannot open`, `cannot write`, ...).
    pub operation: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

/// An append-only line file with commit points.
#[derive(Debug)]
pub struct AppendFile {
    out: BufWriter<File>,
    path: PathBuf,
    len: u64,
    lines: u64,
}

impl AppendFile {
    /// Opens (creating it and its directory if needed) `path` for appending. With
    /// `committed = Some(n)` the file is first cut back to its first `n` bytes (what the last
    /// checkpoint recorded); with `None` it is truncated to empty (a fresh start).
    ///
    /// # Errors
    ///
    /// [`AppendError`] naming the file; also when the file is shorter than `n` (the
    /// checkpoint does not belong to it).
    pub fn open(path: &Path, committed: Option<u64>) -> Result<AppendFile, AppendError> {
        let err = |operation, source| AppendError {
            operation,
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err("cannot create the directory of", e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| err("cannot open", e))?;
        let len = committed.unwrap_or(0);
        let actual = file.metadata().map_err(|e| err("cannot stat", e))?.len();
        if actual < len {
            return Err(err(
                "checkpoint records more output than there is in",
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("checkpoint says {len} bytes, the file has {actual}"),
                ),
            ));
        }
        file.set_len(len).map_err(|e| err("cannot truncate", e))?;
        file.seek(SeekFrom::Start(len))
            .map_err(|e| err("cannot seek", e))?;
        Ok(AppendFile {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: path.to_path_buf(),
            len,
            lines: 0,
        })
    }

    /// Appends `line` and a newline.
    ///
    /// # Errors
    ///
    /// [`AppendError`] naming the file.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), AppendError> {
        self.out
            .write_all(line)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| AppendError {
                operation: "cannot write",
                path: self.path.clone(),
                source,
            })?;
        self.len += line.len() as u64 + 1;
        self.lines += 1;
        Ok(())
    }

    /// Flushes and syncs everything written; returns the file's length, to be recorded in
    /// the checkpoint.
    ///
    /// # Errors
    ///
    /// [`AppendError`] naming the file.
    pub fn commit(&mut self) -> Result<u64, AppendError> {
        let err = |source| AppendError {
            operation: "cannot sync",
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(err)?;
        self.out.get_ref().sync_data().map_err(err)?;
        Ok(self.len)
    }

    /// Bytes in the file, committed or not.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lines written through this handle.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_at_a_commit_cuts_later_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alerts.jsonl");
        let mut f = AppendFile::open(&path, None).unwrap();
        f.write_line(b"one").unwrap();
        let committed = f.commit().unwrap();
        assert_eq!(committed, 4);
        f.write_line(b"two").unwrap();
        f.commit().unwrap();
        drop(f);
        let mut f = AppendFile::open(&path, Some(committed)).unwrap();
        f.write_line(b"three").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\nthree\n");
    }

    #[test]
    fn fresh_start_truncates_and_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let f = AppendFile::open(&path, None).unwrap();
        assert!(f.is_empty());
        drop(f);
        let err = AppendFile::open(&path, Some(10)).unwrap_err().to_string();
        assert!(err.contains("a.jsonl"), "{err}");
    }
}
