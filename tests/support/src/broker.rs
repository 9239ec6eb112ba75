//! The brokers and the machine: bootstrap addresses from the environment (or a broker
//! started through `scripts/broker.sh`), unique names, free ports, polling.
//!
//! Brokers: `KAFKA_BOOTSTRAP` (tansu, the general suite) and `KAFKA_BOOTSTRAP_TXN` (noida-db,
//! which hides aborted transactions from read_committed readers: the exactly-once and crash
//! tests). A test whose broker variable is unset fails and says how to start one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use crate::paths::workspace_root;

/// The general suite's broker (tansu): `KAFKA_BOOTSTRAP`.
///
/// # Panics
/// When the variable is unset, saying how to start the broker.
pub fn bootstrap() -> String {
    broker_var("KAFKA_BOOTSTRAP", "tansu")
}

/// The broker of the exactly-once and crash tests (noida-db): `KAFKA_BOOTSTRAP_TXN`.
///
/// # Panics
/// When the variable is unset, saying how to start the broker.
pub fn bootstrap_txn() -> String {
    broker_var("KAFKA_BOOTSTRAP_TXN", "noida")
}

fn broker_var(var: &str, broker: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests with scripts/test.sh, or start the broker with \
             `scripts/broker.sh start {broker}` and export {var}=127.0.0.1:PORT"
        )
    })
}

/// Runs `scripts/broker.sh start BROKER` (`tansu` or `noida`; it reuses a running one) and
/// returns the bootstrap address from its `KAFKA_BOOTSTRAP=` line. Its progress goes to
/// this process's stderr.
pub fn start_broker(broker: &str) -> anyhow::Result<String> {
    let script = workspace_root().join("scripts/broker.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["start", broker])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    ensure!(
        out.status.success(),
        "scripts/broker.sh start {broker} failed ({})",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP=").map(str::to_string))
        .context("scripts/broker.sh printed no KAFKA_BOOTSTRAP= line")
}

/// A unique name per run: `prefix`, the process id and the clock's nanoseconds (for
/// topics, groups and readers, so that tests share a broker).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}

/// A port nothing listens on now, below the kernel's ephemeral range: a port the kernel
/// picked for `bind(":0")` and released is soon handed to someone else's `bind(":0")` (in a
/// clean-clone CI run another test's proxy took tansu's port between the pick and tansu's
/// bind, and the test talked to the wrong proxy), but ports below the range are only ever
/// given to whoever asks for them by number. Tests of one binary run concurrently, so each
/// call starts from a different candidate.
pub fn free_port() -> u16 {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = 8000.min(low.saturating_sub(1024));
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(call * 101);
    (0..span)
        .map(|i| (low - span + (start.wrapping_add(i)) % span) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| panic!("no free port in {}..{low}", low - span))
}

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
