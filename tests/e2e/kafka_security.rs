//! `spcvm run` over TLS and SASL, through the job's typed `[kafka]` security settings:
//! mutual TLS (client certificates, how MSK and Confluent mutual-TLS listeners are reached)
//! and SASL/SCRAM over TLS (MSK's and Confluent Cloud's usual listener), with the password
//! from the environment as a Kubernetes secret would give it.
//!
//! Neither broker that installs here terminates TLS or authenticates clients itself, so
//! each test starts its own tansu (`SPCVM_TANSU`, the binary `scripts/broker.sh path tansu`
//! prints) that advertises a proxy in front of it (`tests/support/broker_proxy.py`: Python's `ssl`
//! with certificates made fresh per test, and the Kafka protocol's SASL handshake with the
//! `scramp` package's SCRAM server): every connection of every client, bootstrap and
//! broker, goes through the proxy, which forwards the bytes once the client is accepted.
//!
//! - With the right CA and client certificate, or the right SASL user and password, the job
//!   publishes the backtest's alerts and commits its offsets (exactly_once: transactions,
//!   the changelog and the group's offsets all through the proxy).
//! - A broker certificate from a CA the job does not trust, a client certificate the broker
//!   does not trust, or a wrong password: the job processes nothing, stays not ready, and
//!   its log names the failed handshake or authentication; in exactly_once it then exits
//!   with an error that names the brokers and points at those log lines (once initialising
//!   transactions times out). `spcvm topics create` with a wrong password logs the same
//!   reason and fails with an error naming the brokers.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spcvm_testkit::*;

/// A tansu broker reachable only through `tests/support/broker_proxy.py`.
struct ProxiedBroker {
    tansu: Child,
    proxy: Child,
    /// What the proxy printed so far (`listening PORT`, `accepted CN`, `authenticated USER
    /// MECHANISM`, `authentication failed USER MECHANISM: WHY`).
    proxy_out: Arc<Mutex<Vec<String>>>,
    /// Certificates (see `tests/support/broker_proxy.py`) and the broker's log.
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT` of the proxy: the bootstrap and the advertised listener.
    bootstrap: String,
}

/// SASL users the SASL tests' proxy accepts: the job's, and the test clients'.
const JOB_USER: (&str, &str) = ("spcvm", "job-secret-7f3a");
const LOADER_USER: (&str, &str) = ("loader", "loader-secret-91c2");

/// How a job and the test's own clients reach a [`ProxiedBroker`].
struct Access {
    /// Lines of the job's `[kafka]` table.
    kafka_toml: String,
    /// The job's environment.
    env: Vec<(String, String)>,
    /// The test clients' librdkafka properties.
    client: Vec<(String, String)>,
}

impl ProxiedBroker {
    /// Starts tansu and the proxy with `proxy_args` (`--tls MODE`, `--sasl-user U:P`).
    fn start(proxy_args: &[String]) -> ProxiedBroker {
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
            .arg(broker_proxy_py())
            .arg("--dir")
            .arg(dir.path())
            .arg("--upstream")
            .arg(format!("127.0.0.1:{upstream}"))
            .args(proxy_args)
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
                "the proxy did not start: {}",
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
        let broker = ProxiedBroker {
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
        let log = std::fs::read_to_string(broker.path("tansu.log")).unwrap_or_default();
        assert!(
            open.is_some() && !log.contains("AddrInUse"),
            "tansu did not open port {upstream}: {log}"
        );
        broker
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Starts a broker behind mutual TLS.
    fn mutual_tls() -> ProxiedBroker {
        ProxiedBroker::start(&["--tls".into(), "mutual".into()])
    }

    /// Starts a broker behind SASL (the users [`JOB_USER`] and [`LOADER_USER`]) with `tls`
    /// (`server`: SASL_SSL, `none`: SASL_PLAINTEXT).
    fn sasl(tls: &str) -> ProxiedBroker {
        let mut args = vec!["--tls".to_string(), tls.to_string()];
        for (user, password) in [JOB_USER, LOADER_USER] {
            args.push("--sasl-user".into());
            args.push(format!("{user}:{password}"));
        }
        ProxiedBroker::start(&args)
    }

    /// Mutual TLS: the job trusts `ca` and presents the client certificate `client`
    /// (`client.pem`/`.key` in the certificate directory); the test's clients use the right
    /// CA and client certificate.
    fn tls_access(&self, ca: &str, client: &str) -> Access {
        let path = |f: &str| self.path(f).display().to_string();
        Access {
            kafka_toml: format!(
                "security_protocol = \"ssl\"\nssl_ca_location = {:?}\n\
                 ssl_certificate_location = {:?}\nssl_key_location = {:?}\n",
                path(ca),
                path(&format!("{client}.pem")),
                path(&format!("{client}.key")),
            ),
            env: Vec::new(),
            client: vec![
                ("security.protocol".into(), "ssl".into()),
                ("ssl.ca.location".into(), path("ca.pem")),
                ("ssl.certificate.location".into(), path("client.pem")),
                ("ssl.key.location".into(), path("client.key")),
            ],
        }
    }

    /// SASL with `protocol` (`sasl_ssl` or `sasl_plaintext`): the job authenticates as
    /// [`JOB_USER`] with `mechanism` and `password`, which it reads from
    /// `SPCVM__KAFKA__SASL_PASSWORD`; the test's clients as [`LOADER_USER`] with PLAIN.
    fn sasl_access(&self, protocol: &str, mechanism: &str, password: &str) -> Access {
        let mut kafka_toml = format!(
            "security_protocol = {protocol:?}\nsasl_mechanism = {mechanism:?}\n\
             sasl_username = {:?}\n",
            JOB_USER.0
        );
        let mut client = vec![
            ("security.protocol".into(), protocol.into()),
            ("sasl.mechanism".into(), "PLAIN".into()),
            ("sasl.username".into(), LOADER_USER.0.into()),
            ("sasl.password".into(), LOADER_USER.1.into()),
        ];
        if protocol == "sasl_ssl" {
            let ca = self.path("ca.pem").display().to_string();
            kafka_toml.push_str(&format!("ssl_ca_location = {ca:?}\n"));
            client.push(("ssl.ca.location".into(), ca));
        }
        Access {
            kafka_toml,
            env: vec![("SPCVM__KAFKA__SASL_PASSWORD".into(), password.into())],
            client,
        }
    }

    /// A setup (topics created by a job with `access`) on this broker.
    fn setup(&self, name: &str, partitions: i32, access: Access) -> Setup {
        Setup::with_client(
            self.bootstrap.clone(),
            name,
            partitions,
            access.kafka_toml,
            access.env,
            access.client,
        )
    }

    /// Lines the proxy printed that are exactly `line`.
    fn count(&self, line: &str) -> usize {
        self.proxy_out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }

    /// Lines the proxy printed that start with `prefix`.
    fn count_prefix(&self, prefix: &str) -> usize {
        self.proxy_out
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Handshakes the proxy completed, by the client certificate's CN.
    fn accepted(&self, cn: &str) -> usize {
        self.count(&format!("accepted {cn}"))
    }
}

impl Drop for ProxiedBroker {
    fn drop(&mut self) {
        for child in [&mut self.tansu, &mut self.proxy] {
            let _ = child.kill();
            let _ = child.wait();
        }
        keep_if_failing(
            &mut self.dir,
            "proxied broker files (certificates, proxy.log, tansu.log)",
        );
    }
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
    let broker = ProxiedBroker::mutual_tls();
    let setup = broker.setup("tls", 3, broker.tls_access("ca.pem", "client"));
    assert_publishes_backtest_alerts(&setup);
    // Nothing reached the broker but through the proxy: it advertises only the proxy's
    // address, and the job and the test clients completed handshakes there with the
    // client certificate.
    assert!(
        broker.accepted("spcvm-client") >= 2,
        "{:?}",
        broker.proxy_out.lock().unwrap()
    );
}

#[test]
fn with_scram_over_tls_the_job_publishes_the_backtest_alerts() {
    let broker = ProxiedBroker::sasl("server");
    let access = broker.sasl_access("sasl_ssl", "SCRAM-SHA-512", JOB_USER.1);
    let setup = broker.setup("sasl", 3, access);
    assert_publishes_backtest_alerts(&setup);
    // The job's consumer, producer and admin client and the test's clients all
    // authenticated; no attempt failed.
    let job = format!("authenticated {} SCRAM-SHA-512", JOB_USER.0);
    let loader = format!("authenticated {} PLAIN", LOADER_USER.0);
    let out = broker.proxy_out.lock().unwrap().clone();
    assert!(broker.count(&job) >= 3, "{out:?}");
    assert!(broker.count(&loader) >= 1, "{out:?}");
    assert_eq!(broker.count_prefix("authentication failed"), 0, "{out:?}");
}

/// Runs an exactly_once job on `setup` until it has caught up, checks it was ready and
/// that its log has no TLS or SASL error, stops it, and compares its alerts with the
/// backtest's.
fn assert_publishes_backtest_alerts(setup: &Setup) {
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
    assert!(
        !log.contains("SSL") && !log.contains("SASL"),
        "TLS or SASL errors in the job's log:\n{log}"
    );
    assert_same_alerts(&setup.alerts(), &expected);
}

/// Starts a job with `job` access against `broker` (the topics made with `good` access, so
/// that only the job's settings differ) and checks that its log names the failed handshake
/// (`expected`, part of librdkafka's reason) within 60 s, and that it processes nothing:
/// no partition assigned, no offset committed, not ready while it answers. Returns the
/// setup (its directory holds the job's log) and the job, still running or exiting.
fn assert_refused(
    broker: &ProxiedBroker,
    name: &str,
    good: Access,
    job: Access,
    expected: &str,
) -> (Setup, Job) {
    let mut setup = broker.setup(name, 1, good);
    setup.produce_telemetry(&telemetry(1, 30, 7));
    setup.kafka_toml = job.kafka_toml;
    setup.env = job.env;
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

/// Waits for an exactly_once job that cannot reach the brokers to give up (initialising
/// transactions times out after 30 s) and checks that its last log line names the brokers
/// and where the reason is, and that it did not repeat itself: librdkafka reports the
/// failure several times a second, and the job logs each kind of line at most once a
/// minute for each of its three clients.
fn assert_gives_up(broker: &ProxiedBroker, job: &mut Job) {
    let status = job.wait_exit(Duration::from_secs(90));
    assert!(!status.success());
    let log = job.log_text();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("no broker at {} answered", broker.bootstrap))
            && last.contains("librdkafka's log lines above say why"),
        "{log}"
    );
    let mut kinds: std::collections::HashMap<&str, usize> = Default::default();
    for line in log.lines() {
        // Without the timestamp and librdkafka's "(after N ms in state ...)".
        let text = line.split_once(' ').map_or(line, |(_, text)| text);
        *kinds
            .entry(text.split(" (after ").next().unwrap_or(text))
            .or_default() += 1;
    }
    let most = kinds.iter().max_by_key(|(_, n)| **n);
    assert!(most.is_none_or(|(_, n)| *n <= 3), "{most:?} in\n{log}");
}

#[test]
fn a_broker_or_client_certificate_nobody_trusts_fails_the_handshake_and_says_so() {
    let broker = ProxiedBroker::mutual_tls();
    let good = || broker.tls_access("ca.pem", "client");
    // The broker's certificate is not signed by the CA the job trusts.
    let _ = assert_refused(
        &broker,
        "tls-ca",
        good(),
        broker.tls_access("other-ca.pem", "client"),
        "certificate verify failed",
    );
    // The job's client certificate is not signed by a CA the broker trusts.
    let (_setup, mut job) = assert_refused(
        &broker,
        "tls-client",
        good(),
        broker.tls_access("ca.pem", "other-client"),
        "SSL connection closed by peer",
    );
    assert_eq!(broker.accepted("stranger"), 0);
    assert_gives_up(&broker, &mut job);
}

#[test]
fn a_wrong_sasl_password_fails_authentication_and_says_so() {
    let broker = ProxiedBroker::sasl("none");
    let mechanism = "SCRAM-SHA-256";
    let authenticated = format!("authenticated {} {mechanism}", JOB_USER.0);
    let (setup, mut job) = {
        let good = broker.sasl_access("sasl_plaintext", mechanism, JOB_USER.1);
        let wrong = broker.sasl_access("sasl_plaintext", mechanism, "not-the-password");
        // librdkafka's line carries the broker's reason.
        assert_refused(
            &broker,
            "sasl-password",
            good,
            wrong,
            "SASL authentication error: Authentication failed during authentication due to \
             invalid credentials with SASL mechanism SCRAM-SHA-256",
        )
    };
    // The job's every attempt was refused (only the topics were made as the job's user,
    // with the right password, before it started).
    let before = broker.count(&authenticated);
    assert!(before >= 1, "{:?}", broker.proxy_out.lock().unwrap());
    assert!(
        broker.count_prefix(&format!("authentication failed {} {mechanism}", JOB_USER.0)) >= 1,
        "{:?}",
        broker.proxy_out.lock().unwrap()
    );
    // `topics create` with the same settings, while the job waits: it names the failed
    // authentication too and gives up with an error that names the brokers.
    let topics = Command::new(spcvm())
        .args(["topics", "create", "--config"])
        .arg(setup.write_config("topics-wrong", "exactly_once", "b", ""))
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_gives_up(&broker, &mut job);
    let out = topics.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("SASL authentication error: Authentication failed")
            && stderr.contains(&format!(
                "create topics: no broker at {} answered within 30 s",
                broker.bootstrap
            )),
        "{stderr}"
    );
    assert_eq!(broker.count(&authenticated), before);
}
