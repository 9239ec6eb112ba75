//! A running `spcvm run`: started with a config, its stderr in a log file; stopped with
//! SIGTERM or `kill -9`; its HTTP endpoint and `/metrics` read while it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::broker::wait_for;
use crate::paths::spcvm;

/// The log filter of the jobs the tests start.
pub const RUST_LOG: &str = "info,librdkafka=warn";

/// A running `spcvm run`, killed (`kill -9`) when dropped while still running.
#[derive(Debug)]
pub struct Job {
    child: Child,
    log: PathBuf,
}

/// Starts `spcvm run --config CONFIG` on its own (no [`crate::Setup`]: a file job, or a
/// Kafka job with a hand-written config); stderr goes to `log`.
pub fn start_run(config: &Path, log: &Path) -> Job {
    Job::spawn(spcvm(), config, log, RUST_LOG, &[]).unwrap()
}

/// Runs `command` to its end and returns its standard output; fails, with its standard
/// error, unless it exits 0.
pub fn output_ok(command: &mut Command) -> Vec<u8> {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Job {
    /// Starts `BINARY run --config CONFIG` with `env` and `RUST_LOG=rust_log` in its
    /// environment, its stdout discarded and its stderr written to `log`.
    pub fn spawn(
        binary: &Path,
        config: &Path,
        log: &Path,
        rust_log: &str,
        env: &[(String, String)],
    ) -> std::io::Result<Job> {
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        Ok(Job {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to `timeout`) for a clean exit; returns whether it exited 0.
    /// Still running after `timeout`, it gets SIGKILL.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status.success();
            }
            if Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits (up to `timeout`) for the process to exit by itself and returns its status;
    /// fails with the log when it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "job still running after {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The job's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the log contains `text` (e.g. `partitions assigned`).
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        let logged = wait_for(timeout, || self.log_text().contains(text).then_some(()));
        assert!(
            logged.is_some(),
            "`{text}` not logged within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    /// The HTTP address the job logged (`serving ... addr=...`), if it has yet.
    pub fn logged_http_addr(&self) -> Option<String> {
        let log = self.log_text();
        let rest = &log[log.find("addr=")? + 5..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '\u{1b}')
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }

    /// The HTTP address the job logged, waiting up to `timeout` for it.
    pub fn http_addr(&self, timeout: Duration) -> String {
        wait_for(timeout, || self.logged_http_addr())
            .unwrap_or_else(|| panic!("no HTTP address in the log:\n{}", self.log_text()))
    }

    /// `GET http://ADDR/PATH` on the job's HTTP endpoint (address from its log).
    pub fn http_get(&self, path: &str) -> String {
        let addr = self.http_addr(Duration::from_secs(30));
        let mut response = ureq::get(&format!("http://{addr}{path}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}\n{}", self.log_text()));
        response.body_mut().read_to_string().unwrap()
    }

    /// Whether `/readyz` answers 200 (partitions assigned and state restored); false while
    /// the job has logged no HTTP address yet.
    pub fn ready(&self) -> bool {
        let Some(addr) = self.logged_http_addr() else {
            return false;
        };
        ureq::get(&format!("http://{addr}/readyz")).call().is_ok()
    }

    /// Waits until [`Job::ready`], failing after `timeout` with the log.
    pub fn wait_ready(&self, timeout: Duration) {
        let ready = wait_for(timeout, || self.ready().then_some(()));
        assert!(
            ready.is_some(),
            "not ready within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    /// The value of the sample `series` (a metric name with its labels, exactly as
    /// rendered, e.g. `spcvm_messages_consumed_total{topic="file"}`) on `/metrics`, if
    /// present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.http_get("/metrics"), series)
    }

    /// Waits until the metric `series` equals `value`, failing after `timeout` with the
    /// job's log and the last value seen.
    pub fn wait_metric(&self, series: &str, value: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.metric(series);
            if seen == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} is {seen:?}, not {value}, after {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.running() {
            self.kill9();
        }
    }
}

/// The value of the sample `series` (name and labels as rendered) in a Prometheus text
/// exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The sum of the samples of metric `name` whose label text contains `label` (e.g.
/// `topic="x"`; `""` for all) in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\n\
        spcvm_alerts_total{chart=\"ewma\"} 3\n\
        spcvm_alerts_total{chart=\"cusum\"} 4\n\
        spcvm_keys 12\n";

    #[test]
    fn metrics_are_read_by_series_or_summed_by_label() {
        assert_eq!(
            metric_value(TEXT, "spcvm_alerts_total{chart=\"ewma\"}"),
            Some(3.0)
        );
        assert_eq!(metric_value(TEXT, "spcvm_keys"), Some(12.0));
        assert_eq!(metric_value(TEXT, "spcvm_alerts_total"), None);
        assert_eq!(metric_sum(TEXT, "spcvm_alerts_total", ""), 7.0);
        assert_eq!(metric_sum(TEXT, "spcvm_alerts_total", "cusum"), 4.0);
        assert_eq!(metric_sum(TEXT, "spcvm_missing", ""), 0.0);
    }
}
