//! The broker restarts in the middle of the stream, as in a rolling restart or an upgrade:
//! the job rides it out without exiting; in exactly_once the committed alert stream
//! afterwards equals the backtest's, in at_least_once every alert of the backtest is there
//! (a repeat, if any, identical to the first).
//!
//! The test runs its own noida-db (`SPCVM_NOIDA`, the binary `scripts/broker.sh path noida`
//! prints), since the shared brokers serve the other tests: stopped with SIGTERM (noida-db
//! saves its data), started again on the same port and data a few seconds later.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use spcvm_schemas::Alert;
use spcvm_testkit::*;

/// A noida-db of this test's own, restartable with its data.
struct OwnBroker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl OwnBroker {
    fn new() -> OwnBroker {
        let bin = std::env::var_os("SPCVM_NOIDA").unwrap_or_else(|| {
            panic!(
                "SPCVM_NOIDA is not set: run the tests with scripts/test.sh, or export \
                 SPCVM_NOIDA=\"$(bash scripts/broker.sh path noida)\""
            )
        });
        let mut broker = OwnBroker {
            bin: bin.into(),
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        // The port was free when picked, but another process (another test's noida-db opens a
        // second port of its own) may take it before this one binds it: then this broker
        // exits at once, and a new port is tried.
        for _ in 0..5 {
            if broker.start() {
                return broker;
            }
            broker.port = free_port();
        }
        panic!(
            "noida-db could not start: see {}",
            broker.dir.path().join("noida.log").display()
        );
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker on its port and data, and waits until the port answers; false when
    /// it exited instead (its port was taken).
    fn start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("noida.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "start",
                "--host",
                "127.0.0.1",
                "--only",
                "kafka",
                "--kafka-port",
            ])
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let open = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
        assert!(open.is_some(), "noida-db did not open port {}", self.port);
        // The port may answer for another process: this broker must still be running.
        std::thread::sleep(Duration::from_millis(300));
        let child = self.child.as_mut().expect("just started");
        if child.try_wait().unwrap().is_some() {
            self.child = None;
            return false;
        }
        true
    }

    /// SIGTERM (noida-db saves its data), and waits for the exit.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("the broker runs");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let exited = wait_for(Duration::from_secs(30), || child.try_wait().unwrap());
        assert!(exited.is_some(), "noida-db did not stop within 30 s");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        keep_if_failing(&mut self.dir, "broker files (noida.log, data)");
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_and_duplicates_nothing() {
    let (setup, streamed, expected) = through_a_broker_restart("restart", "exactly_once");
    assert_same_alerts(&streamed, &expected);
    drop(setup);
}

#[test]
fn at_least_once_a_broker_restart_mid_stream_loses_nothing() {
    let (setup, streamed, expected) = through_a_broker_restart("restart-alo", "at_least_once");
    assert_alerts_at_least_once(&streamed, &expected);
    drop(setup);
}

/// Runs a job in `mode` while its broker restarts mid-stream; the setup, the alerts it
/// published (read_committed) and the backtest's.
fn through_a_broker_restart(name: &str, mode: &str) -> (Setup, Vec<Alert>, Vec<Alert>) {
    let mut broker = OwnBroker::new();
    let setup = Setup::new(broker.bootstrap(), name, 3);
    let records = telemetry(6, 360, 11);
    let expected = backtest_alerts(setup.dir.path(), &records);
    let producer = setup.produce_paced(records.clone(), 60, Duration::from_millis(200));
    let config = setup.write_config("job", mode, "a", "");
    let mut job = setup.start(&config, "job");
    job.wait_log("partitions assigned", Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(2000));
    broker.stop();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        broker.start(),
        "noida-db did not start again on port {}",
        broker.port
    );
    producer.join().unwrap();
    // The job rides the restart out: it must not exit (a restart by Kubernetes would pass
    // the alert check too, but is not what this test is about).
    let caught_up = wait_for(Duration::from_secs(120), || {
        assert!(job.running(), "the job exited:\n{}", job.log_text());
        setup.caught_up().then_some(())
    });
    assert!(
        caught_up.is_some(),
        "the job did not catch up within 120 s:\n{}",
        job.log_text()
    );
    assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
    let streamed = setup.alerts();
    (setup, streamed, expected)
}
