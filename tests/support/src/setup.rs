//! One test's Kafka world: unique topics made by `spcvm topics create`, the jobs' configs,
//! producing telemetry, waiting for the group to catch up, reading the alerts; and the
//! scenarios several tests run (`kill -9` three times, a second instance joining and
//! leaving).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use spcvm_schemas::{Alert, Telemetry, decode_alert_json, encode_telemetry_json};

use crate::broker::unique;
use crate::job::{Job, RUST_LOG, output_ok};
use crate::kafka::{
    Read, client_config, committed_reached, plain_consumer, produce_with, read_all_with,
};
use crate::paths::spcvm;

/// One test's topic set, group and working directory.
pub struct Setup {
    /// The executable every `spcvm` command of the setup runs (`topics create`, `run`): the
    /// `spcvm` under test, or a build with stages of its own ([`Setup::with_binary`]).
    pub binary: PathBuf,
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Input topic.
    pub input: String,
    /// Further input topics, read co-partitioned with `input` (`topics.co_partitioned`,
    /// listed after it); none: `input` alone.
    pub co_inputs: Vec<String>,
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
        let setup = Setup::unmade(
            spcvm().to_path_buf(),
            bootstrap,
            name,
            partitions,
            kafka_toml,
            env,
            client_properties,
        );
        setup.make_topics();
        setup
    }

    /// [`Setup::new`] whose `spcvm` commands are `binary`'s (a build that registers stages
    /// or commit participants of its own through `spcvm::cli::main_with`), run with `env`
    /// (what selects that build's stages and outputs, `SPCVM__STAGES` say); its topics
    /// are made by `binary topics create`, so they include its stages' output streams.
    pub fn with_binary(
        binary: PathBuf,
        bootstrap: String,
        name: &str,
        partitions: i32,
        env: Vec<(String, String)>,
    ) -> Setup {
        let setup = Setup::unmade(
            binary,
            bootstrap,
            name,
            partitions,
            String::new(),
            env,
            Vec::new(),
        );
        setup.make_topics();
        setup
    }

    /// The setup with its names chosen and no topic made yet.
    fn unmade(
        binary: PathBuf,
        bootstrap: String,
        name: &str,
        partitions: i32,
        kafka_toml: String,
        env: Vec<(String, String)>,
        client_properties: Vec<(String, String)>,
    ) -> Setup {
        let id = unique(name);
        Setup {
            binary,
            bootstrap,
            input: format!("{id}.telemetry"),
            co_inputs: Vec::new(),
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
        }
    }

    /// Makes the setup's topics through `topics create`.
    fn make_topics(&self) {
        let config = self.write_config("topics", "exactly_once", "x", "");
        self.topics_create(&config);
    }

    /// Runs `spcvm topics create` on `config` with this setup's environment, which must
    /// succeed; its standard output.
    pub fn topics_create(&self, config: &Path) -> String {
        let mut command = Command::new(&self.binary);
        command.args(["topics", "create", "--config"]).arg(config);
        let stdout = output_ok(command.envs(self.env.iter().map(|(k, v)| (k, v))));
        String::from_utf8(stdout).unwrap()
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
{topics}[delivery]
mode = "{mode}"
checkpoint_interval_ms = 100
queue_capacity = {queue_capacity}
[http]
listen = "127.0.0.1:0"
{extra}
"#,
            bootstrap = self.bootstrap,
            group = self.group,
            topics = self.topics_toml(),
            static_membership = self.static_membership,
            queue_capacity = self.queue_capacity,
            kafka_toml = self.kafka_toml,
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The jobs' `[topics]` table.
    fn topics_toml(&self) -> String {
        let table = topics_toml(&self.input, &self.alerts, &self.dlq, self.partitions);
        if self.co_inputs.is_empty() {
            return table;
        }
        let inputs: Vec<String> = std::iter::once(&self.input)
            .chain(&self.co_inputs)
            .map(|t| format!("{t:?}"))
            .collect();
        table.replace(
            &format!("input = [{:?}]\n", self.input),
            &format!("input = [{}]\nco_partitioned = true\n", inputs.join(", ")),
        )
    }

    /// Adds the input topic `<input>.<suffix>`, read co-partitioned with the others and
    /// made with as many partitions; its name.
    pub fn add_co_input(&mut self, suffix: &str) -> String {
        let topic = format!("{}.{suffix}", self.input);
        self.create_topic(&topic, self.partitions);
        self.co_inputs.push(topic.clone());
        topic
    }

    /// Starts `spcvm run` with `config`; its stderr goes to `NAME.log` in the directory.
    pub fn start(&self, config: &Path, name: &str) -> Job {
        self.start_logging(config, name, RUST_LOG)
    }

    /// [`Setup::start`] with the log filter `rust_log` (`info` shows librdkafka's reasons
    /// for dropped connections, which it logs at info level).
    pub fn start_logging(&self, config: &Path, name: &str, rust_log: &str) -> Job {
        let log = self.dir.path().join(format!("{name}.log"));
        Job::spawn(&self.binary, config, &log, rust_log, &self.env).unwrap()
    }

    /// Produces `records` to the input, keyed by tool, and waits for every ack.
    pub fn produce_telemetry(&self, records: &[Telemetry]) {
        self.produce_telemetry_to(&self.input, records);
    }

    /// Produces `records` to `topic`, keyed by tool, and waits for every ack.
    pub fn produce_telemetry_to(&self, topic: &str, records: &[Telemetry]) {
        let messages: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|r| (r.tool_id.clone().into_bytes(), encode_telemetry_json(r)))
            .collect();
        self.produce(topic, &messages, &[]);
    }

    /// [`crate::produce`] with this setup's client properties.
    fn produce(&self, topic: &str, messages: &[(Vec<u8>, Vec<u8>)], headers: &[(&str, &str)]) {
        produce_with(&self.client(), topic, messages, headers);
    }

    /// [`crate::read_all`] with this setup's client properties.
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
        let partitions: Vec<i32> = (0..self.partitions).collect();
        std::iter::once(&self.input)
            .chain(&self.co_inputs)
            .all(|topic| {
                committed_reached(&consumer, topic, &partitions, |p| {
                    let watermarks = consumer.fetch_watermarks(topic, p, Duration::from_secs(5));
                    watermarks.ok().map(|(_, high)| high)
                })
            })
    }

    /// The group's committed offsets on the input, summed over its partitions (a
    /// partition without a committed offset counts 0): how far the group got. `None` when
    /// the broker did not answer (its group coordinator may not be ready yet).
    pub fn committed_total(&self) -> Option<i64> {
        let consumer = plain_consumer(self.client(), Some(&self.group));
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.input, p);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .ok()?;
        let offsets = committed.elements().into_iter().map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        });
        Some(offsets.sum())
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

/// The `[topics]` table of a job config (ending in a newline): `input`, its `alerts` and
/// `dlq`, and the `partitions` (replication factor 1) `spcvm topics create` makes.
pub fn topics_toml(input: &str, alerts: &str, dlq: &str, partitions: i32) -> String {
    format!(
        r#"[topics]
input = ["{input}"]
alerts = "{alerts}"
dlq = "{dlq}"
partitions = {partitions}
replication_factor = 1
"#
    )
}

/// While a test panics (called from a `Drop`), keeps `dir` instead of deleting it and
/// says where `what` (the files it holds) can be looked at.
pub fn keep_if_failing(dir: &mut tempfile::TempDir, what: &str) {
    if std::thread::panicking() {
        let dir = std::mem::replace(dir, tempfile::tempdir().unwrap());
        eprintln!("{what} kept in {}", dir.keep().display());
    }
}
