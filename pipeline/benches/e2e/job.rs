//! The job under test: `spcvm run` started through the testkit's [`spcvm_testkit::Job`],
//! scraped over HTTP, and the CPU and memory it, the broker and the bench use (from
//! `/proc`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

/// CPU time (user and system, all threads, exited ones included) process `pid` has used,
/// from `/proc/PID/stat` in Linux's clock ticks of 1/100 s; `None` where that cannot be
/// read.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces) start with
    // the third; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    Some((ticks(14)? + ticks(15)?) / 100.0)
}

/// Idle CPU seconds of the whole machine (idle and I/O wait, all cores) from `/proc/stat`
/// in clock ticks of 1/100 s; `None` where that cannot be read. Over an interval it says
/// whether the job, the broker and the bench together kept every core busy.
pub fn machine_idle_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some((fields.get(3)? + fields.get(4)?) / 100.0)
}

/// The CPU clocks read at the start and the end of the job's measured interval, in
/// seconds (`None` where one cannot be read).
#[derive(Clone, Copy)]
pub struct CpuClocks {
    /// The job's CPU time.
    pub job: Option<f64>,
    /// The broker's CPU time (when it runs here).
    pub broker: Option<f64>,
    /// This bench process's CPU time.
    pub bench: Option<f64>,
    /// The machine's idle time, all cores.
    pub idle: Option<f64>,
}

impl CpuClocks {
    pub fn read(job: &Job, broker: Option<u32>) -> CpuClocks {
        CpuClocks {
            job: job.cpu_secs(),
            broker: broker.and_then(cpu_secs),
            bench: cpu_secs(std::process::id()),
            idle: machine_idle_secs(),
        }
    }

    /// The seconds a clock advanced from `start` to `end`.
    pub fn since(start: Option<f64>, end: Option<f64>) -> Option<f64> {
        start.zip(end).map(|(a, b)| b - a)
    }
}

/// The process listening on the port of the first bootstrap server on this machine (the
/// broker, to count its CPU time): the socket's inode from `/proc/net/tcp{,6}`, then the
/// process holding it. `None` when it is elsewhere or cannot be seen.
pub fn listener_pid(bootstrap: &str) -> Option<u32> {
    let port: u16 = bootstrap
        .split(',')
        .next()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()?;
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                // State 0A is LISTEN; the inode is the tenth field.
                (local_port == port && *f.get(3)? == "0A")
                    .then(|| f.get(9).map(|i| i.to_string()))?
            })
        })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == socket.as_str())
                })
                .then_some(pid)
        })
}

/// A running `spcvm run`, killed on drop.
pub struct Job {
    process: spcvm_testkit::Job,
    agent: ureq::Agent,
    addr: Option<String>,
}

impl Job {
    /// Starts `SPCVM run --config CONFIG`, its stderr in `log`, with `RUST_LOG` from
    /// `SPCVM_BENCH_LOG` (the tests' filter by default).
    pub fn start(spcvm: &Path, config: &Path, log: &Path) -> Result<Job> {
        let rust_log = std::env::var("SPCVM_BENCH_LOG")
            .unwrap_or_else(|_| spcvm_testkit::job::RUST_LOG.into());
        let process = spcvm_testkit::Job::spawn(spcvm, config, log, &rust_log, &[])
            .with_context(|| format!("cannot start {}", spcvm.display()))?;
        Ok(Job {
            process,
            agent: ureq::Agent::new_with_defaults(),
            addr: None,
        })
    }

    /// The job's log so far.
    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// The last 30 lines of the log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(30)
    }

    /// Fails (with the log's tail) if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.process.exit_status() {
            bail!(
                "spcvm run exited ({status}); log {}:\n{}",
                self.process.log_path().display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits for the `addr=` of the HTTP server in the log.
    pub fn wait_addr(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Some(addr) = self.process.logged_http_addr() {
                self.addr = Some(addr);
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "no HTTP address in the job's log within {timeout:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU seconds the job's process has used (see [`cpu_secs`]). With `--spcvm` a wrapper
    /// that forks, such as `perf record`, this is the wrapper's own time.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(self.process.pid())
    }

    /// The job's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.pid())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// `/metrics`, once [`Job::wait_addr`] has found the address.
    pub fn scrape(&self) -> Result<String> {
        let addr = self.addr.as_deref().context("HTTP address not known yet")?;
        let mut response = self
            .agent
            .get(&format!("http://{addr}/metrics"))
            .call()
            .context("GET /metrics")?;
        Ok(response.body_mut().read_to_string()?)
    }

    /// SIGTERM, then up to `timeout` for a clean exit; whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.process.terminate(timeout)
    }
}
