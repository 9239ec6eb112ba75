//! `spcvm run` over TLS with client certificates (mutual TLS, how MSK and Confluent
//! deployments are reached), through the job's typed `[kafka]` TLS settings.
//!
//! Neither broker that installs here terminates TLS itself, so each test starts its own
//! tansu (`SPCVM_TANSU`, the binary `scripts/broker.sh path tansu` prints) that advertises
//! a TLS terminator in front of it (`common/tls_proxy.py`, Python's `ssl`, client
//! certificates required, certificates made fresh per test): every connection of every
//! client, bootstrap and broker, is TLS to the terminator, which forwards the bytes.
//!
//! - With the CA and a client certificate the job publishes the backtest's alerts and
//!   commits its offsets (exactly_once: transactions, the changelog and the group's
//!   offsets all over TLS).
//! - A broker certificate from a CA the job does not trust, or a client certificate the
//!   broker does not trust: the job processes nothing, stays not ready, and its log names
//!   the failed TLS handshake; in exactly_once it then exits with an error that names the
//!   brokers and points at those log lines (once initialising transactions times out).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A tansu broker reachable only through a TLS terminator.
struct TlsBroker {
    tansu: Child,
    proxy: Child,
    /// What the terminator printed so far (`listening PORT`, `accepted CN`).
    proxy_out: Arc<Mutex<Vec<String>>>,
    /// Certificates (see `common/tls_proxy.py`) and the broker's log.
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` of the terminator: the bootstrap and the advertised listener.
    bootstrap: String,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let tansu_bin = std::env::var("SPCVM_TANSU").unwrap_or_else(|_| {
            panic!(
                "SPCVM_TANSU is not set: run the tests with scripts/test.sh, or export \
                 SPCVM_TANSU=\"$(bash scripts/broker.sh path tansu)\""
            )
        });
        let dir = tempfile::tempdir().unwrap();
        // The broker's own (plaintext) port, known before the terminator starts.
        let upstream = free_port();
        let mut proxy = Command::new(python())
            .arg(workspace_root().join("tests/e2e/common/tls_proxy.py"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--upstream")
            .arg(format!("127.0.0.1:{upstream}"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).unwrap())
            .spawn()
            .unwrap();
        let proxy_out = Arc::new(Mutex::new(Vec::new()));
        follow(proxy.stdout.take().unwrap(), proxy_out.clone());
        let port = wait_for(Duration::from_secs(30), || {
            proxy_out
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.strip_prefix("listening ").map(str::to_string))
        })
        .unwrap_or_else(|| {
            panic!(
                "the TLS terminator did not start: {}",
                std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
            )
        });
        let bootstrap = format!("127.0.0.1:{port}");
        let tansu = Command::new(tansu_bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{upstream}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{bootstrap}"))
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("tansu.log")).unwrap())
            .spawn()
            .unwrap();
        let broker = TlsBroker {
            tansu,
            proxy,
            proxy_out,
            dir,
            bootstrap,
        };
        let open = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", upstream))
                .ok()
                .map(|_| ())
        });
        assert!(open.is_some(), "tansu did not open port {upstream}");
        broker
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// The job's `[kafka]` TLS settings with `ca` and the client certificate `client`
    /// (`client.pem`/`.key` in the certificate directory).
    fn kafka_toml(&self, ca: &str, client: &str) -> String {
        format!(
            "security_protocol = \"ssl\"\nssl_ca_location = {:?}\n\
             ssl_certificate_location = {:?}\nssl_key_location = {:?}\n",
            self.path(ca).display().to_string(),
            self.path(&format!("{client}.pem")).display().to_string(),
            self.path(&format!("{client}.key")).display().to_string(),
        )
    }

    /// The test clients' TLS settings: the right CA and client certificate.
    fn client_properties(&self) -> Vec<(String, String)> {
        let path = |f: &str| self.path(f).display().to_string();
        vec![
            ("security.protocol".into(), "ssl".into()),
            ("ssl.ca.location".into(), path("ca.pem")),
            ("ssl.certificate.location".into(), path("client.pem")),
            ("ssl.key.location".into(), path("client.key")),
        ]
    }

    /// Handshakes the terminator completed, by the client certificate's CN.
    fn accepted(&self, cn: &str) -> usize {
        let line = format!("accepted {cn}");
        self.proxy_out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == line)
            .count()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        for child in [&mut self.tansu, &mut self.proxy] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!(
                "TLS broker files (certificates, tansu.log) kept in {}",
                dir.keep().display()
            );
        }
    }
}

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies `out`'s lines into `lines` on a thread.
fn follow(out: ChildStdout, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(line);
        }
    });
}

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
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

/// The status code of `GET /readyz` at `addr`, if the job answers.
fn readyz(addr: &str) -> Option<u16> {
    match ureq::get(&format!("http://{addr}/readyz")).call() {
        Ok(response) => Some(response.status().as_u16()),
        Err(ureq::Error::StatusCode(code)) => Some(code),
        Err(_) => None,
    }
}

#[test]
fn with_mutual_tls_the_job_publishes_the_backtest_alerts() {
    let broker = TlsBroker::start();
    let setup = Setup::with_client(
        broker.bootstrap.clone(),
        "tls",
        3,
        broker.kafka_toml("ca.pem", "client"),
        broker.client_properties(),
    );
    let records = telemetry(3, 300, 53);
    let expected = backtest_alerts(setup.dir.path(), &records);
    assert!(!expected.is_empty(), "test data should raise alerts");
    setup.produce_telemetry(&records);

    let config = setup.write_config("job", "exactly_once", "a", "");
    let mut job = setup.start(&config, "job");
    setup.wait_caught_up(Duration::from_secs(120), &[&job]);
    let addr = job.http_addr(Duration::from_secs(30));
    assert_eq!(readyz(&addr), Some(200), "{}", job.log_text());
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let log = job.log_text();
    assert!(!log.contains("SSL"), "TLS errors in the job's log:\n{log}");

    assert_same_alerts(&setup.alerts(), &expected);
    // Nothing reached the broker but through the terminator: it advertises only the
    // terminator's address, and the job and the test clients completed handshakes there
    // with the client certificate.
    assert!(
        broker.accepted("spcvm-client") >= 2,
        "{:?}",
        broker.proxy_out.lock().unwrap()
    );
}

/// Starts a job with `kafka_toml` against `broker` and checks that its log names the
/// failed handshake (`expected`, part of librdkafka's reason) within 60 s, and that it
/// processes nothing: no partition assigned, no offset committed, not ready while it
/// answers. Returns the setup (its directory holds the job's log) and the job, still
/// running or exiting.
fn assert_refused(
    broker: &TlsBroker,
    name: &str,
    kafka_toml: String,
    expected: &str,
) -> (Setup, Job) {
    // Topics made by a client the terminator accepts, so only the job's settings differ.
    let mut setup = Setup::with_client(
        broker.bootstrap.clone(),
        name,
        1,
        broker.kafka_toml("ca.pem", "client"),
        broker.client_properties(),
    );
    setup.produce_telemetry(&telemetry(1, 30, 7));
    setup.kafka_toml = kafka_toml;
    let config = setup.write_config("job", "exactly_once", "a", "");
    let job = setup.start_logging(&config, name, "info");
    let addr = job.http_addr(Duration::from_secs(30));
    job.wait_log(expected, Duration::from_secs(60));
    if let Some(status) = readyz(&addr) {
        assert_eq!(status, 503, "{}", job.log_text());
    }
    assert!(
        !job.log_text().contains("partitions assigned"),
        "{}",
        job.log_text()
    );
    assert!(!setup.caught_up());
    (setup, job)
}

#[test]
fn a_broker_or_client_certificate_nobody_trusts_fails_the_handshake_and_says_so() {
    let broker = TlsBroker::start();
    // The broker's certificate is not signed by the CA the job trusts.
    let _ = assert_refused(
        &broker,
        "tls-ca",
        broker.kafka_toml("other-ca.pem", "client"),
        "certificate verify failed",
    );
    // The job's client certificate is not signed by a CA the broker trusts.
    let (_setup, mut job) = assert_refused(
        &broker,
        "tls-client",
        broker.kafka_toml("ca.pem", "other-client"),
        "SSL connection closed by peer",
    );
    assert_eq!(broker.accepted("stranger"), 0);
    // exactly_once gives up when initialising transactions times out (30 s), with an error
    // that names the brokers and where the reason is.
    let status = job.wait_exit(Duration::from_secs(90));
    assert!(!status.success());
    let log = job.log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("no broker at {} answered", broker.bootstrap))
            && last.contains("librdkafka's log lines above say why"),
        "{log}"
    );
}
