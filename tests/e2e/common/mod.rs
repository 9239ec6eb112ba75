//! Harness of the end-to-end tests: a real Kafka-protocol broker (started by
//! `scripts/test.sh` through `scripts/broker.sh`), the real `spcvm` binary, and rdkafka
//! clients to produce telemetry and read what the job wrote.
//!
//! Brokers: `KAFKA_BOOTSTRAP` (tansu, the general suite) and `KAFKA_BOOTSTRAP_TXN` (noida-db,
//! which hides aborted transactions from read_committed readers: the exactly-once and crash
//! tests). A test whose broker variable is unset fails and says how to start one.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use spcvm_schemas::{Alert, Telemetry, ToolType, decode_alert_json, encode_telemetry_json};

/// The general suite's broker (tansu).
pub fn bootstrap() -> String {
    broker_var("KAFKA_BOOTSTRAP", "tansu")
}

/// The broker of the exactly-once and crash tests (noida-db).
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

/// A unique name suffix per test run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        nanos & 0xff_ffff_ffff
    )
}

/// One test's topic set, group and working directory.
pub struct Setup {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Input topic.
    pub input: String,
    /// Alert topic.
    pub alerts: String,
    /// Dead-letter topic.
    pub dlq: String,
    /// Consumer group (the changelog is `spcvm.state.<group>`).
    pub group: String,
    /// Partitions of the input.
    pub partitions: i32,
    /// Working directory (configs, logs).
    pub dir: tempfile::TempDir,
    /// Jobs use static group membership (`kafka.static_membership`). noida-db never expires
    /// the session of a member that died without leaving, so a job restarted after
    /// `kill -9` would wait forever for the dead member; with static membership the
    /// restart takes its place. A static member also never leaves, though, so tests where
    /// an instance leaves for good use dynamic membership.
    pub static_membership: bool,
    /// `delivery.queue_capacity` of the jobs: messages queued per partition task.
    pub queue_capacity: usize,
    /// TOML lines added to the jobs' `[kafka]` table (TLS settings, say).
    pub kafka_toml: String,
    /// Environment variables of every `spcvm` the setup runs (`SPCVM__KAFKA__SASL_PASSWORD`,
    /// say, as a Kubernetes secret would set it).
    pub env: Vec<(String, String)>,
    /// librdkafka properties of the test's own clients (producing telemetry, reading
    /// outputs and offsets), on top of `bootstrap.servers`.
    pub client_properties: Vec<(String, String)>,
}

impl Setup {
    /// Unique topics with `partitions` partitions, created by `spcvm topics create`.
    pub fn new(bootstrap: String, name: &str, partitions: i32) -> Setup {
        Setup::with_client(
            bootstrap,
            name,
            partitions,
            String::new(),
            Vec::new(),
            Vec::new(),
        )
    }

    /// [`Setup::new`] for a broker that needs client settings: `kafka_toml` goes into the
    /// jobs' `[kafka]` table, `env` into their environment, `client_properties` into the
    /// test's own clients.
    pub fn with_client(
        bootstrap: String,
        name: &str,
        partitions: i32,
        kafka_toml: String,
        env: Vec<(String, String)>,
        client_properties: Vec<(String, String)>,
    ) -> Setup {
        let id = unique(name);
        let setup = Setup {
            bootstrap,
            input: format!("{id}.telemetry"),
            alerts: format!("{id}.alerts"),
            dlq: format!("{id}.dlq"),
            group: id.clone(),
            partitions,
            dir: tempfile::tempdir().unwrap(),
            static_membership: false,
            queue_capacity: 1024,
            kafka_toml,
            env,
            client_properties,
        };
        let config = setup.write_config("topics", "exactly_once", "x", "");
        setup.topics_create(&config);
        setup
    }

    /// Runs `spcvm topics create` on `config` with this setup's environment, which must
    /// succeed; its standard output.
    pub fn topics_create(&self, config: &Path) -> String {
        let out = Command::new(spcvm())
            .args(["topics", "create", "--config"])
            .arg(config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "topics create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The changelog topic.
    pub fn changelog(&self) -> String {
        format!("spcvm.state.{}", self.group)
    }

    /// Writes `NAME.toml` for this setup: kafka source, `mode`, `instance` id, plus `extra`
    /// TOML appended at the end.
    pub fn write_config(&self, name: &str, mode: &str, instance: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            r#"source = "kafka"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
instance_id = "{instance}"
session_timeout_ms = 6000
static_membership = {static_membership}
{kafka_toml}
[kafka.consumer_properties]
"heartbeat.interval.ms" = "500"
"max.poll.interval.ms" = "10000"
[topics]
input = ["{input}"]
alerts = "{alerts}"
dlq = "{dlq}"
partitions = {partitions}
replication_factor = 1
[delivery]
mode = "{mode}"
checkpoint_interval_ms = 100
queue_capacity = {queue_capacity}
[http]
listen = "127.0.0.1:0"
{extra}
"#,
            bootstrap = self.bootstrap,
            group = self.group,
            input = self.input,
            alerts = self.alerts,
            dlq = self.dlq,
            partitions = self.partitions,
            static_membership = self.static_membership,
            queue_capacity = self.queue_capacity,
            kafka_toml = self.kafka_toml,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `spcvm run` with `config`; its stderr goes to `NAME.log` in the directory.
    pub fn start(&self, config: &Path, name: &str) -> Job {
        self.start_logging(config, name, "info,librdkafka=warn")
    }

    /// [`Setup::start`] with the log filter `rust_log` (`info` shows librdkafka's reasons
    /// for dropped connections, which it logs at info level).
    pub fn start_logging(&self, config: &Path, name: &str, rust_log: &str) -> Job {
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(spcvm())
            .args(["run", "--config"])
            .arg(config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Job { child, log }
    }

    /// Produces `records` to the input, keyed by tool, and waits for every ack.
    pub fn produce_telemetry(&self, records: &[Telemetry]) {
        let messages: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|r| (r.tool_id.clone().into_bytes(), encode_telemetry_json(r)))
            .collect();
        self.produce(&self.input, &messages, &[]);
    }

    /// [`produce`] with this setup's client properties.
    fn produce(&self, topic: &str, messages: &[(Vec<u8>, Vec<u8>)], headers: &[(&str, &str)]) {
        produce_with(&self.client(), topic, messages, headers);
    }

    /// [`read_all`] with this setup's client properties.
    fn read_all(&self, topic: &str) -> Vec<Read> {
        read_all_with(&self.client(), topic)
    }

    /// The test clients' settings: the bootstrap servers and [`Setup::client_properties`].
    fn client(&self) -> ClientConfig {
        client_config(&self.bootstrap, &self.client_properties)
    }

    /// Produces `records` in `chunks` batches `pause` apart, on a thread (so a job consuming
    /// them is still mid-stream for a while).
    pub fn produce_paced(
        &self,
        records: Vec<Telemetry>,
        chunks: usize,
        pause: Duration,
    ) -> std::thread::JoinHandle<()> {
        let client = self.client();
        let topic = self.input.clone();
        std::thread::spawn(move || {
            let size = records.len().div_ceil(chunks);
            for chunk in records.chunks(size) {
                let messages: Vec<(Vec<u8>, Vec<u8>)> = chunk
                    .iter()
                    .map(|r| (r.tool_id.clone().into_bytes(), encode_telemetry_json(r)))
                    .collect();
                produce_with(&client, &topic, &messages, &[]);
                std::thread::sleep(pause);
            }
        })
    }

    /// Whether the group's committed offsets have reached the end of every input partition.
    pub fn caught_up(&self) -> bool {
        let consumer = plain_consumer(self.client(), Some(&self.group));
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.input, p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(5)) else {
            return false;
        };
        committed.elements().iter().all(|e| {
            let (_, high) = consumer
                .fetch_watermarks(&self.input, e.partition(), Duration::from_secs(5))
                .unwrap_or((0, i64::MAX));
            match e.offset() {
                Offset::Offset(o) => o >= high,
                _ => high == 0,
            }
        })
    }

    /// Waits until [`Setup::caught_up`], failing after `timeout` with the job logs.
    pub fn wait_caught_up(&self, timeout: Duration, jobs: &[&Job]) {
        let deadline = Instant::now() + timeout;
        while !self.caught_up() {
            if Instant::now() > deadline {
                let logs: Vec<String> = jobs.iter().map(|j| j.log_text()).collect();
                panic!(
                    "job did not catch up within {timeout:?}; logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates `topic` with `partitions` partitions through the Admin API (as an operator's
    /// own tooling would).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.client().create().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = runtime
            .block_on(admin.create_topics(&[new], &AdminOptions::new()))
            .unwrap();
        for result in results {
            result.unwrap_or_else(|(name, code)| panic!("create {name}: {code}"));
        }
    }

    /// How many partitions `topic` has (0 if it does not exist).
    pub fn partitions_of(&self, topic: &str) -> usize {
        let consumer = plain_consumer(self.client(), None);
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len())
    }

    /// Runs a job in `mode` on `records` (produced paced, on a thread) and `kill -9`s it
    /// mid-stream three times, then a last run catches up and stops cleanly; returns that
    /// run's log. Needs static membership on noida-db (see [`Setup::static_membership`]).
    pub fn kill_9_three_times(&self, records: &[Telemetry], mode: &str) -> String {
        let producer = self.produce_paced(records.to_vec(), 60, Duration::from_millis(200));
        let config = self.write_config("job", mode, "a", "");
        for (round, run_for) in [1200u64, 900, 1500].into_iter().enumerate() {
            let mut job = self.start(&config, &format!("killed-{round}"));
            job.wait_log("partitions assigned", Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(run_for));
            assert!(job.running(), "job exited early:\n{}", job.log_text());
            job.kill9();
        }
        producer.join().unwrap();
        let mut job = self.start(&config, "final");
        self.wait_caught_up(Duration::from_secs(120), &[&job]);
        assert!(job.terminate(Duration::from_secs(30)), "{}", job.log_text());
        job.log_text()
    }

    /// Runs a job in `mode` on `records` (produced paced); a second instance joins
    /// mid-stream and leaves again; the first catches up and stops cleanly. Returns both
    /// logs, the first's first.
    pub fn second_instance_joins_and_leaves(
        &self,
        records: &[Telemetry],
        mode: &str,
    ) -> (String, String) {
        let producer = self.produce_paced(records.to_vec(), 60, Duration::from_millis(200));
        let one = self.write_config("one", mode, "one", "");
        let two = self.write_config("two", mode, "two", "");
        let mut first = self.start(&one, "first");
        first.wait_log("partitions assigned", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(1500));
        let mut second = self.start(&two, "second");
        second.wait_log("partitions assigned", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            second.terminate(Duration::from_secs(30)),
            "{}",
            second.log_text()
        );
        producer.join().unwrap();
        self.wait_caught_up(Duration::from_secs(120), &[&first]);
        assert!(
            first.terminate(Duration::from_secs(30)),
            "{}",
            first.log_text()
        );
        (first.log_text(), second.log_text())
    }

    /// Every alert on the alert topic, read_committed.
    pub fn alerts(&self) -> Vec<Alert> {
        self.read_all(&self.alerts)
            .into_iter()
            .map(|m| decode_alert_json(&m.payload).expect("alert JSON"))
            .collect()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Keep the configs and job logs of a failed test for a look.
        keep_if_failing(&mut self.dir, "test files");
    }
}

/// While a test panics (called from a `Drop`), keeps `dir` instead of deleting it and
/// says where `what` (the files it holds) can be looked at.
pub fn keep_if_failing(dir: &mut tempfile::TempDir, what: &str) {
    if std::thread::panicking() {
        let dir = std::mem::replace(dir, tempfile::tempdir().unwrap());
        eprintln!("{what} kept in {}", dir.keep().display());
    }
}

/// A running `spcvm run`.
pub struct Job {
    child: Child,
    log: PathBuf,
}

impl Job {
    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to `timeout`) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                self.kill9();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The job's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text` (e.g. `partitions assigned`).
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "`{text}` not logged within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The HTTP address the job logged (`serving ... addr=...`), once it has.
    pub fn http_addr(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if let Some(pos) = log.find("addr=") {
                let rest = &log[pos + 5..];
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '\u{1b}')
                    .unwrap_or(rest.len());
                return rest[..end].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no HTTP address in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
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

/// Path of the `spcvm` binary under test.
pub fn spcvm() -> &'static str {
    env!("CARGO_BIN_EXE_spcvm")
}

/// A message read back.
#[derive(Debug, Clone)]
pub struct Read {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload (empty when absent).
    pub payload: Vec<u8>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp, milliseconds since the epoch, if it has one.
    pub timestamp: Option<i64>,
}

/// `bootstrap.servers` and `properties`.
fn client_config(bootstrap: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

fn plain_consumer(mut config: ClientConfig, group: Option<&str>) -> BaseConsumer {
    config
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("receive.message.max.bytes", "100000000");
    // librdkafka refuses `assign` without a group id; a reader that never commits or
    // subscribes does not join the group.
    config.set(
        "group.id",
        group.map_or_else(|| unique("reader"), str::to_string),
    );
    config.create().unwrap()
}

/// Every committed message of `topic` (all partitions, from the beginning to the end).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Read> {
    read_all_with(&client_config(bootstrap, &[]), topic)
}

/// [`read_all`] with a client configured by `client`.
fn read_all_with(client: &ClientConfig, topic: &str) -> Vec<Read> {
    let consumer = plain_consumer(client.clone(), None);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut pending = 0;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            pending += 1;
        }
    }
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending > 0 {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push(Read {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
    out
}

/// Produces `(key, payload)` messages to `topic` (murmur2 partitioning, like the Java
/// client) with `headers` on each, and waits for every ack.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    messages: &[(Vec<u8>, Vec<u8>)],
    headers: &[(&str, &str)],
) {
    produce_with(&client_config(bootstrap, &[]), topic, messages, headers);
}

/// [`produce`] with a client configured by `client`.
fn produce_with(
    client: &ClientConfig,
    topic: &str,
    messages: &[(Vec<u8>, Vec<u8>)],
    headers: &[(&str, &str)],
) {
    let producer: ThreadedProducer<DefaultProducerContext> = client
        .clone()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.max.bytes", "33554432")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (key, payload) in messages {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::to(topic).key(key).payload(payload).headers(h);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce to {topic}: {e}"
                    );
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// Round from which the drifting tools drift (after every chart's Phase I baseline).
pub const DRIFT_FROM: usize = 230;

/// Deterministic telemetry: `tools` ion-implant tools and as many RTP tools, `rounds`
/// wafers each (one minute apart), with a slow beam-current drift on every third implanter
/// and a ramp-tracking and lamp-power step on every third RTP tool from [`DRIFT_FROM`] on; so there are alerts
/// of several charts and rules, and open dedup windows.
pub fn telemetry(tools: usize, rounds: usize, seed: u64) -> Vec<Telemetry> {
    let mut state = seed;
    let mut noise = move || {
        // splitmix64 -> two uniforms -> one standard normal (Box-Muller)
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u1, u2) = (next().max(1e-12), next());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let start = 1_772_440_200_000i64;
    let mut out = Vec::with_capacity(tools * 2 * rounds);
    for round in 0..rounds {
        for t in 0..tools {
            // Phase I takes the first 200 points (EWMA, CUSUM) or 25 subgroups of 5.
            let late = round >= DRIFT_FROM;
            let drift = if t % 3 == 0 && late {
                0.002 * (round - DRIFT_FROM) as f64
            } else {
                0.0
            };
            let mut m = BTreeMap::new();
            m.insert("beam_current_mA".to_string(), 1.0 + drift + 0.01 * noise());
            m.insert("dose_uniformity_pct".to_string(), 95.5 + 0.3 * noise());
            m.insert("source_pressure_mtorr".to_string(), 2.3e-5 + 1e-7 * noise());
            m.insert("analyzer_field_gauss".to_string(), 1520.0 + 2.0 * noise());
            out.push(Telemetry {
                tool_id: format!("ION-{t:02}"),
                tool_type: ToolType::IonImplant,
                recipe_id: "B11_30KEV".into(),
                lot_id: Some(format!("LOT-{:05}", round / 25)),
                wafer_id: Some(format!("W{round:05}")),
                event_time: start + round as i64 * 60_000 + t as i64 * 1000,
                measurements: m,
            });
            let step = if t % 3 == 1 && late { 2.5 } else { 0.0 };
            let mut m = BTreeMap::new();
            m.insert("ramp_tracking_error_C".to_string(), step + noise());
            m.insert("overshoot_pct".to_string(), 2.0 + 0.3 * noise());
            m.insert("lamp_power_pct".to_string(), 60.0 + step + 1.0 * noise());
            m.insert("emissivity".to_string(), 0.7 + 0.01 * noise());
            m.insert("gas_flow_deviation_sccm".to_string(), noise());
            out.push(Telemetry {
                tool_id: format!("RTP-{t:02}"),
                tool_type: ToolType::Rtp,
                recipe_id: "SPIKE_1050".into(),
                lot_id: Some(format!("LOT-{:05}", round / 25)),
                wafer_id: Some(format!("W{round:05}")),
                event_time: start + round as i64 * 60_000 + t as i64 * 1000 + 500,
                measurements: m,
            });
        }
    }
    out
}

/// The alerts `spcvm backtest` raises on `records` (written to a JSON-lines file in `dir`).
pub fn backtest_alerts(dir: &Path, records: &[Telemetry]) -> Vec<Alert> {
    let input = dir.join("backtest-input.jsonl");
    let mut text = Vec::new();
    for r in records {
        text.extend_from_slice(&encode_telemetry_json(r));
        text.push(b'\n');
    }
    std::fs::write(&input, text).unwrap();
    let alerts = dir.join("backtest-alerts.jsonl");
    let out = Command::new(spcvm())
        .args(["backtest", "--quiet", "--input"])
        .arg(&input)
        .arg("--alerts")
        .arg(&alerts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| decode_alert_json(l.as_bytes()).unwrap())
        .collect()
}

/// Checks the streamed alerts against the backtest's: every alert raised (`repeats` = 0)
/// appears exactly once and equal in every field; every dedup closing update the stream
/// carries is one the backtest has (the backtest also closes the windows still open at the
/// end of its input, which a stream never reaches); nothing else, and nothing twice.
pub fn assert_same_alerts(streamed: &[Alert], backtest: &[Alert]) {
    check_alerts(streamed, backtest, false);
}

/// [`assert_same_alerts`] for at_least_once: an alert may also come more than once (after
/// a rebalance whose commit could not reach the broker), each time identical.
pub fn assert_alerts_at_least_once(streamed: &[Alert], backtest: &[Alert]) {
    check_alerts(streamed, backtest, true);
}

fn check_alerts(streamed: &[Alert], backtest: &[Alert], repeats_allowed: bool) {
    let key = |a: &Alert| (a.alert_id.clone(), a.repeats);
    let mut seen: BTreeMap<_, Alert> = BTreeMap::new();
    for a in streamed {
        match seen.insert(key(a), a.clone()) {
            None => {}
            Some(before) if repeats_allowed => assert_eq!(
                spcvm_schemas::encode_alert_json(a),
                spcvm_schemas::encode_alert_json(&before),
                "an alert delivered again, but different"
            ),
            Some(_) => panic!("alert delivered twice: {a:?}"),
        }
    }
    let expected: BTreeMap<_, _> = backtest.iter().map(|a| (key(a), a.clone())).collect();
    for (k, a) in &seen {
        let want = expected
            .get(k)
            .unwrap_or_else(|| panic!("streamed alert not raised by the backtest: {a:?}"));
        assert_eq!(
            spcvm_schemas::encode_alert_json(a),
            spcvm_schemas::encode_alert_json(want)
        );
    }
    for (k, a) in &expected {
        if a.repeats == 0 {
            assert!(seen.contains_key(k), "alert lost: {a:?}");
        }
    }
    let raised = expected.values().filter(|a| a.repeats == 0).count();
    assert!(
        raised >= 10,
        "test data should raise alerts, got {raised}: {:?}",
        expected.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------- helpers without a broker

/// `records` as JSON lines (each ending in `\n`), as `spcvm backtest` and the file runtime
/// read them.
pub fn jsonl_lines(records: &[Telemetry]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|r| {
            let mut line = encode_telemetry_json(r);
            line.push(b'\n');
            line
        })
        .collect()
}

/// Starts `spcvm run --config CONFIG` on its own (no [`Setup`]: a file job, or a Kafka job
/// with a hand-written config); stderr goes to `log`.
pub fn start_run(config: &Path, log: &Path) -> Job {
    let child = Command::new(spcvm())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Job {
        child,
        log: log.to_path_buf(),
    }
}

impl Job {
    /// Waits (up to `timeout`) for the process to exit by itself and returns its status;
    /// fails with the log when it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
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

    /// `GET http://ADDR/PATH` on the job's HTTP endpoint (address from its log).
    pub fn http_get(&self, path: &str) -> String {
        let addr = self.http_addr(Duration::from_secs(30));
        let mut response = ureq::get(&format!("http://{addr}{path}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}\n{}", self.log_text()));
        response.body_mut().read_to_string().unwrap()
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

/// The value of the sample `series` (name and labels as rendered) in a Prometheus text
/// exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("pipeline/ has a parent")
        .to_path_buf()
}

/// The Python with confluent-kafka: `SPCVM_PYTHON`, else `.venv/tools/bin/python`.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SPCVM_PYTHON").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "SPCVM_PYTHON={} does not exist; unset it or run `bash scripts/pyenv.sh`",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".venv/tools/bin/python");
    assert!(
        venv.exists(),
        "no Python with confluent-kafka: {} is missing and SPCVM_PYTHON is not set. \
         Run `bash scripts/pyenv.sh` (it creates .venv/tools and prints the python path), \
         or set SPCVM_PYTHON to a python that can import confluent_kafka.schema_registry.avro",
        venv.display()
    );
    venv
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
