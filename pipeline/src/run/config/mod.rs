//! `pipeline.toml`: the configuration of `spcvm run`, layered as built-in defaults, then the
//! file, then `SPCVM__*` environment variables (`SPCVM__KAFKA__BOOTSTRAP_SERVERS=...` sets
//! `kafka.bootstrap_servers`). Every table rejects unknown keys; every key is documented in
//! `deploy/config/pipeline.example.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::line_column;
use crate::decode::DecodeConfig;

/// Prefix of environment variables that override the file (`__` separates table levels).
pub const ENV_PREFIX: &str = "SPCVM__";

/// Largest `delivery.queue_capacity`: messages a partition task takes at a time.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// The whole `spcvm run` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Chart configuration (the `CHARTS.toml` of `spcvm backtest`); relative paths are
    /// resolved against the directory of `pipeline.toml`. Absent: the built-in ion-implant
    /// and RTP monitors.
    pub charts: Option<PathBuf>,
    /// Where telemetry comes from and alerts go: `kafka` (production) or `file` (the
    /// embedded default: a JSON-lines file in, JSON-lines files out, no broker needed).
    pub source: SourceKind,
    /// The stages each record goes through, in order (`spc`: the SPC charts; `triage`: RCA
    /// triage of their alerts). A stage may read an earlier stage's output stream.
    pub stages: Vec<String>,
    /// RCA triage (the `triage` stage).
    pub triage: TriageSettings,
    /// Kafka connection and client settings (source `kafka`).
    pub kafka: KafkaConfig,
    /// Topic names and the settings `spcvm topics create` uses.
    pub topics: TopicsConfig,
    /// How message payloads are decoded.
    pub decode: DecodeConfig,
    /// Delivery guarantee and checkpointing.
    pub delivery: DeliveryConfig,
    /// Files of the `file` source.
    pub file: FileConfig,
    /// The HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where the output streams other than `alerts` go, by stream name
    /// (`[outputs.<stream>]`). The `alerts` stream is set by `topics.alerts`,
    /// `topics.alert_format`, `topics.alert_schema_id` and `file.alerts`.
    pub outputs: BTreeMap<String, OutputConfig>,
}

/// RCA triage settings (`[triage]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriageSettings {
    /// Playbook files (the format of `deploy/playbooks/*.toml`), which together replace the
    /// built-in ones; relative paths follow `pipeline.toml`. Empty: the built-in playbooks.
    pub playbooks: Vec<PathBuf>,
    /// Alerts of one tool less than this many seconds apart (event time) form one incident,
    /// which closes this long after its last alert.
    pub window_s: u64,
    /// A recipe change at most this many seconds before an alert counts as evidence.
    pub recipe_lookback_s: u64,
    /// An alert's evidence loses half its strength every this many seconds (event time)
    /// after it, so a lone false alarm does not decide an incident a persisting fault
    /// keeps alerting in; 0: evidence never fades.
    pub evidence_half_life_s: u64,
}

impl Default for TriageSettings {
    fn default() -> Self {
        TriageSettings {
            playbooks: Vec::new(),
            window_s: 7_200,
            recipe_lookback_s: 3_600,
            evidence_half_life_s: 1_800,
        }
    }
}

impl TriageSettings {
    /// The stage's settings.
    pub fn stage_config(&self) -> spcvm_operators::triage::TriageConfig {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1_000)).unwrap_or(i64::MAX);
        spcvm_operators::triage::TriageConfig {
            window_ms: ms(self.window_s),
            recipe_lookback_ms: ms(self.recipe_lookback_s),
            evidence_half_life_ms: ms(self.evidence_half_life_s),
        }
    }
}

/// Where one output stream goes (`[outputs.<stream>]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Its topic (source `kafka`, keyed by tool). Default: the stream's own default topic.
    pub topic: Option<String>,
    /// Its encoding on the topic: `json`, or `avro` (Confluent wire format with
    /// `schema_id`, or plain binary when that is absent).
    pub format: AlertFormat,
    /// Schema id to frame Avro outputs with.
    pub schema_id: Option<u32>,
    /// Its JSON-lines file (source `file`). Default: `<stream>.jsonl` beside `file.alerts`.
    pub file: Option<PathBuf>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            charts: None,
            source: SourceKind::File,
            stages: vec!["spc".into()],
            triage: TriageSettings::default(),
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            decode: DecodeConfig::default(),
            delivery: DeliveryConfig::default(),
            file: FileConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            outputs: BTreeMap::new(),
        }
    }
}

/// Where records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A Kafka consumer group.
    Kafka,
    /// A JSON-lines file (the embedded default).
    File,
}

/// Kafka client settings. The named keys cover the usual deployments (plaintext, TLS,
/// SASL/SCRAM on MSK or Confluent Cloud); anything else goes in `properties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// `group.id` of the consumer group; also names the changelog topic.
    pub group_id: String,
    /// This instance's stable name within the group (a StatefulSet pod name, say). The
    /// transactional id is `spcvm-<group_id>-<instance_id>`, so a restarted instance fences
    /// its crashed predecessor and aborts its open transaction at once. Default: the host
    /// name.
    pub instance_id: Option<String>,
    /// Static group membership (`group.instance.id` = `spcvm-<instance_id>`): a restarted
    /// instance takes its partitions back without a rebalance of the whole group (good for
    /// a StatefulSet), but an instance that goes away for good keeps its partitions until
    /// `session_timeout_ms` has passed.
    pub static_membership: bool,
    /// `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password` (prefer `SPCVM__KAFKA__SASL_PASSWORD` from a Kubernetes secret).
    pub sasl_password: Option<String>,
    /// `ssl.ca.location`: CA certificate(s) to verify the brokers. Default with `ssl` and
    /// `sasl_ssl` (unless `properties` name a CA): `probe`, the system's CA bundle at its
    /// standard paths (`/etc/ssl/certs/ca-certificates.crt` on Debian); the OpenSSL built
    /// into spcvm would otherwise look in `/usr/local/ssl`, where no system keeps one.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate (mutual TLS).
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`: client private key (mutual TLS).
    pub ssl_key_location: Option<String>,
    /// `ssl.key.password`.
    pub ssl_key_password: Option<String>,
    /// `session.timeout.ms` of the consumer.
    pub session_timeout_ms: u32,
    /// Further librdkafka properties for every client (consumer, producer, admin), passed
    /// through unchanged, e.g. `"client.rack" = "use1-az1"`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only (override `properties`).
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only (override `properties`).
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "spcvm".into(),
            instance_id: None,
            static_membership: false,
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            session_timeout_ms: 10_000,
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The librdkafka properties shared by every client: `client.id` `spcvm-<instance>`
    /// (what broker logs, metrics and quotas name the clients by), the named keys, then
    /// `properties`.
    pub fn common_properties(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert("bootstrap.servers".into(), self.bootstrap_servers.clone());
        p.insert("client.id".into(), format!("spcvm-{}", self.instance()));
        let named = [
            ("security.protocol", &self.security_protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("sasl.password", &self.sasl_password),
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
            ("ssl.key.password", &self.ssl_key_password),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                p.insert(key.into(), v.clone());
            }
        }
        p.extend(self.properties.clone());
        let tls = p
            .get("security.protocol")
            .is_some_and(|v| v.eq_ignore_ascii_case("ssl") || v.eq_ignore_ascii_case("sasl_ssl"));
        let ca_named = ["ssl.ca.location", "ssl.ca.pem", "ssl.ca.certificate.stores"]
            .iter()
            .any(|k| p.contains_key(*k));
        if tls && !ca_named {
            p.insert("ssl.ca.location".into(), "probe".into());
        }
        p
    }

    /// This instance's name: `instance_id`, else the host name, else `spcvm`.
    pub fn instance(&self) -> String {
        if let Some(id) = &self.instance_id {
            return id.clone();
        }
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "spcvm".into())
    }

    /// The producer's `transactional.id`: `spcvm-<group>-<instance>`.
    pub fn transactional_id(&self) -> String {
        format!("spcvm-{}-{}", self.group_id, self.instance())
    }
}

/// Topics: names, and what `spcvm topics create` creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Telemetry topics to consume (keyed by `tool_id`).
    pub input: Vec<String>,
    /// Read the input topics as one stream (co-partitioned, as Kafka Streams' partition
    /// groups): one task per partition number takes partition p of every input and feeds
    /// its stages their records merged in event-time order, so the stages keep one state
    /// per tool across the topics (stored under the first input's name). The inputs must
    /// have the same partition count (checked at start). Off: each input partition is a
    /// task of its own, with its own state.
    pub co_partitioned: bool,
    /// Alert topic (keyed by `tool_id`).
    pub alerts: String,
    /// Dead-letter topic: undecodable or invalid messages, unchanged, with `spcvm.error*`
    /// and `spcvm.source.*` headers.
    pub dlq: String,
    /// Compacted state changelog. Default: `spcvm.state.<group_id>`.
    pub changelog: Option<String>,
    /// Alert encoding: `json`, or `avro` (Confluent wire format with schema id
    /// `alert_schema_id`, or plain binary when that is absent).
    pub alert_format: AlertFormat,
    /// Schema id to frame Avro alerts with (the id under which `alert.avsc` is registered).
    pub alert_schema_id: Option<u32>,
    /// Partitions for topics created by `spcvm topics create` (input, alerts, changelog).
    pub partitions: i32,
    /// Replication factor for created topics (3 on a production cluster, 1 on a single
    /// broker).
    pub replication_factor: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            input: vec!["tool.telemetry".into()],
            co_partitioned: false,
            alerts: "spc.alerts".into(),
            dlq: "spc.dlq".into(),
            changelog: None,
            alert_format: AlertFormat::Json,
            alert_schema_id: None,
            partitions: 6,
            replication_factor: 3,
        }
    }
}

impl TopicsConfig {
    /// The changelog topic for `group_id`.
    pub fn changelog_topic(&self, group_id: &str) -> String {
        self.changelog
            .clone()
            .unwrap_or_else(|| format!("spcvm.state.{group_id}"))
    }
}

/// How alerts (and the outputs of other streams) are encoded on their topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFormat {
    /// JSON, as `spcvm backtest` writes it.
    #[default]
    Json,
    /// Avro (`alert.avsc`).
    Avro,
}

/// Delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Kafka transactions: alerts, DLQ records, state changes and consumer offsets commit
    /// together; `read_committed` consumers see each alert once.
    ExactlyOnce,
    /// Offsets stored only after every output of a message is acknowledged; a crash may
    /// repeat alerts.
    AtLeastOnce,
}

/// Delivery and checkpoint settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `exactly_once` (default) or `at_least_once`.
    pub mode: DeliveryMode,
    /// Checkpoint (commit the transaction with state changes and offsets) at least this
    /// often, in milliseconds.
    pub checkpoint_interval_ms: u64,
    /// Checkpoint as soon as this many messages are processed but not checkpointed.
    pub max_uncheckpointed: u64,
    /// Most messages a partition task takes from its partition's librdkafka queue at a
    /// time (at most [`MAX_QUEUE_CAPACITY`]); a checkpoint barrier waits behind at most this
    /// many. What is buffered ahead of the task is librdkafka's prefetch, bounded by
    /// [`prefetch_messages`](Self::prefetch_messages) and [`prefetch_mb`](Self::prefetch_mb):
    /// a slow task or producer stops the fetching.
    pub queue_capacity: usize,
    /// Most messages librdkafka may hold fetched ahead of the partition tasks, over all the
    /// partitions of this instance. Each partition is read from its own queue, so
    /// librdkafka's limits apply per partition: `queued.min.messages` is set to this budget
    /// divided by the input topics' partition count (at most librdkafka's default, 100,000),
    /// so that an instance holding every partition stays within it.
    pub prefetch_messages: u64,
    /// Most megabytes of message data librdkafka may hold fetched ahead of the partition
    /// tasks, over all the partitions of this instance (`queued.max.messages.kbytes`, per
    /// partition, likewise divided; at most librdkafka's default, 64 MiB).
    pub prefetch_mb: u64,
    /// `transaction.timeout.ms` of the producer.
    pub transaction_timeout_ms: u32,
    /// Event time a partition's watermark trails its newest record by, in milliseconds;
    /// dedup windows close once the watermark passes their end.
    pub watermark_lateness_ms: i64,
    /// Co-partitioned inputs: how long a task waits, in milliseconds, for an input
    /// partition that has nothing fetched while the broker may hold more of it, before it
    /// merges the other inputs' records without it (Kafka Streams' `max.task.idle.ms`). A
    /// partition read to its end does not hold the others back.
    pub max_idle_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::ExactlyOnce,
            checkpoint_interval_ms: 100,
            max_uncheckpointed: 10_000,
            queue_capacity: 1_024,
            prefetch_messages: 1_200_000,
            prefetch_mb: 768,
            transaction_timeout_ms: 60_000,
            watermark_lateness_ms: 300_000,
            max_idle_ms: 500,
        }
    }
}

/// Files of the `file` source: the embedded default that needs no broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Telemetry as JSON lines.
    pub input: PathBuf,
    /// Alerts as JSON lines (appended; truncated back to the last checkpoint on restart).
    pub alerts: PathBuf,
    /// Dead letters as JSON lines: line number, reason and the line itself.
    pub dlq: PathBuf,
    /// Checkpoint file: input position, output lengths and chart state.
    pub checkpoint: PathBuf,
    /// Keep reading as the input grows (like `tail -f`) instead of stopping at its end.
    pub follow: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            input: PathBuf::from("examples/ion_implant_drift.jsonl"),
            alerts: PathBuf::from("out/alerts.jsonl"),
            dlq: PathBuf::from("out/dlq.jsonl"),
            checkpoint: PathBuf::from("out/checkpoint.bin"),
            follow: false,
        }
    }
}

/// The HTTP endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Listen address.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "0.0.0.0:9464".into(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json` (one JSON object per line, for log shippers).
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `info,spcvm=debug`; `RUST_LOG` wins. librdkafka logs
    /// why a connection dropped (a refused TLS client certificate, say) at info: filtering
    /// `librdkafka` to warn hides the reason and leaves only "all broker connections are down".
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineConfigError {
    /// The file cannot be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    #[error("{}:{line}:{column}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// One-based line.
        line: usize,
        /// One-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// An `SPCVM__*` variable names no key or has a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The merged configuration is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// Loads the configuration: defaults, then `path` (if given), then `SPCVM__*` variables of
/// `env`. Relative paths in the file are resolved against its directory.
///
/// # Errors
///
/// [`PipelineConfigError`] naming the file, line and key, or the variable.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<PipelineConfig, PipelineConfigError> {
    let (mut table, text) = match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| PipelineConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| file_error(path, &text, &e))?;
            (table, Some(text))
        }
        None => (toml::Table::new(), None),
    };
    // Check the file alone first, so its mistakes are reported with a line number.
    if let (Some(path), Some(text)) = (path, &text) {
        toml::from_str::<PipelineConfig>(text).map_err(|e| file_error(path, text, &e))?;
    }
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    for (var, value) in &vars {
        apply_env(&mut table, var, value)?;
        // Each variable is checked on its own so an error names it.
        PipelineConfig::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            PipelineConfigError::Env {
                var: var.clone(),
                message: e.message().to_string(),
            }
        })?;
    }
    let mut config = PipelineConfig::deserialize(toml::Value::Table(table))
        .map_err(|e| PipelineConfigError::Invalid(e.message().to_string()))?;
    if let Some(dir) = path.and_then(Path::parent) {
        config.resolve_paths(dir);
    }
    config.validate()?;
    Ok(config)
}

fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> PipelineConfigError {
    let (line, column) = e
        .span()
        .map(|span| line_column(text, span.start))
        .unwrap_or((1, 1));
    PipelineConfigError::File {
        path: path.to_path_buf(),
        line,
        column,
        message: e.message().to_string(),
    }
}

/// Sets the key named by `SPCVM__A__B` to `value` (a TOML value when it parses as one, such
/// as `42`, `true` or `["a", "b"]`; otherwise the text itself).
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), PipelineConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(PipelineConfigError::Env {
            var: var.into(),
            message: "empty key segment (use `__` only between table names)".into(),
        });
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let (last, tables) = path
        .split_last()
        .expect("split yields at least one segment");
    let mut current = table;
    for name in tables {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(PipelineConfigError::Env {
                    var: var.into(),
                    message: format!("`{name}` is not a table"),
                });
            }
        };
    }
    current.insert(last.clone(), parsed);
    Ok(())
}

impl PipelineConfig {
    /// Makes relative paths relative to `dir` (the directory of `pipeline.toml`).
    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        };
        if let Some(charts) = &mut self.charts {
            fix(charts);
        }
        fix(&mut self.file.input);
        fix(&mut self.file.alerts);
        fix(&mut self.file.dlq);
        fix(&mut self.file.checkpoint);
        if let Some(p) = &mut self.decode.schema_ids_file {
            fix(p);
        }
        if let Some(p) = &mut self.decode.avro_schema_file {
            fix(p);
        }
        for output in self.outputs.values_mut() {
            if let Some(p) = &mut output.file {
                fix(p);
            }
        }
        for p in &mut self.triage.playbooks {
            fix(p);
        }
    }

    /// Checks what serde cannot: non-empty names, positive intervals.
    ///
    /// # Errors
    ///
    /// [`PipelineConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), PipelineConfigError> {
        let bad = |key: &str, why: &str| Err(PipelineConfigError::Invalid(format!("{key}: {why}")));
        if self.stages.is_empty() {
            return bad("stages", "name at least one stage");
        }
        if self.outputs.contains_key("alerts") {
            return bad(
                "outputs.alerts",
                "the alerts stream is set by topics.alerts, topics.alert_format, \
                 topics.alert_schema_id and file.alerts",
            );
        }
        if self.source == SourceKind::Kafka {
            if self.topics.input.is_empty() || self.topics.input.iter().any(String::is_empty) {
                return bad("topics.input", "name at least one topic, none empty");
            }
            if self.topics.alerts.is_empty() || self.topics.dlq.is_empty() {
                return bad("topics.alerts / topics.dlq", "must not be empty");
            }
            if self.kafka.group_id.is_empty() {
                return bad("kafka.group_id", "must not be empty");
            }
            if let Some((i, topic)) = self
                .topics
                .input
                .iter()
                .enumerate()
                .find(|(i, t)| self.topics.input[..*i].contains(t))
            {
                return bad(
                    "topics.input",
                    &format!("`{topic}` is listed twice (again at position {})", i + 1),
                );
            }
            let assignor = self
                .kafka
                .consumer_properties
                .get("partition.assignment.strategy")
                .or(self.kafka.properties.get("partition.assignment.strategy"));
            if let Some(assignor) = assignor.filter(|a| self.topics.co_partitioned && *a != "range")
            {
                return bad(
                    "topics.co_partitioned",
                    &format!(
                        "needs partition.assignment.strategy = range (the assignor that gives \
                         a member partition p of every input), not `{assignor}` as set in \
                         [kafka.consumer_properties] or [kafka.properties]"
                    ),
                );
            }
            if self.kafka.bootstrap_servers.is_empty() {
                return bad("kafka.bootstrap_servers", "must not be empty");
            }
        }
        if self.delivery.checkpoint_interval_ms == 0 {
            return bad("delivery.checkpoint_interval_ms", "must be at least 1");
        }
        if self.delivery.max_uncheckpointed == 0 {
            return bad("delivery.max_uncheckpointed", "must be at least 1");
        }
        if self.delivery.prefetch_messages == 0 {
            return bad("delivery.prefetch_messages", "must be at least 1");
        }
        if self.delivery.prefetch_mb == 0 {
            return bad("delivery.prefetch_mb", "must be at least 1");
        }
        if self.delivery.queue_capacity == 0 {
            return bad("delivery.queue_capacity", "must be at least 1");
        }
        if self.delivery.queue_capacity > MAX_QUEUE_CAPACITY {
            return bad(
                "delivery.queue_capacity",
                &format!("must be at most {MAX_QUEUE_CAPACITY} (messages per partition)"),
            );
        }
        if self.triage.window_s == 0 {
            return bad("triage.window_s", "must be at least 1");
        }
        if self.delivery.watermark_lateness_ms < 0 {
            return bad("delivery.watermark_lateness_ms", "must not be negative");
        }
        if self.topics.partitions < 1 {
            return bad("topics.partitions", "must be at least 1");
        }
        if self.topics.replication_factor < 1 {
            return bad("topics.replication_factor", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
