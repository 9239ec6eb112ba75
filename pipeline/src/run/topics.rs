//! `spcvm topics create`: creates the input topics, the output topic of every stream the
//! configured stages emit, the dead-letter topic and the changelog through the Kafka Admin
//! API, each with settings that fit its use:
//!
//! | topic | partitions | settings |
//! |---|---|---|
//! | input (`tool.telemetry`) | `topics.partitions` | 7-day retention |
//! | each output stream (`spc.alerts`, ...) | `topics.partitions` | 30-day retention |
//! | dead letters (`spc.dlq`) | 1 | 30-day retention, 32 MiB messages (letters carry the original payload) |
//! | changelog (`spcvm.state.<group>`) | at least every input's (see below) | `cleanup.policy=compact` |
//!
//! The job itself creates its internal topics (the changelog) when they are missing
//! ([`create_internal`]), as Kafka Streams does; input and output topics are the
//! platform's to create, or this command's.
//!
//! Topics that already exist are reported and left alone, so the command can run at every
//! deployment, with one exception: the state of input partition p is kept in changelog
//! partition p, so the changelog is created with as many partitions as the largest input
//! (an input topic made by someone else may have more than `topics.partitions`), and an
//! existing changelog with fewer is grown to that many (safe: records go to a partition
//! by number, not by a hash of their key, so none moves).
//!
//! librdkafka's log lines and errors are logged while the requests wait (each
//! distinct line at most once a minute, repeats counted at the end), so a refused
//! certificate, wrong SASL credentials or a wrong address show in the log; a request no
//! broker answers within 30 s fails with an error naming the brokers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::bindings as rdsys;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use spcvm_sinks::ClientLog;

use super::config::PipelineConfig;
use super::{Job, OutputStream, RunError};

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Topic configs.
    pub configs: Vec<(&'static str, String)>,
}

/// What happened to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// It was created.
    Created,
    /// It existed already (left unchanged).
    Exists,
    /// The changelog existed with fewer partitions than an input (this many) and was grown.
    Grown {
        /// Partitions it had.
        from: i32,
    },
}

/// How long the brokers have to answer the create request (the request's and the
/// operation's timeout).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves an admin client's main queue on a thread while it lives.
///
/// rdkafka's `AdminClient` polls only its own result queue, and rdkafka routes librdkafka's
/// log lines and client errors to the main queue, so without this a refused TLS
/// certificate, wrong SASL credentials or an unreachable address would leave no trace
/// before the request times out. Log and error events go to the client's context, as
/// rdkafka's own clients do ([`ClientLog`]: each distinct line at most once a minute).
struct MainQueueServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A reference to the admin client's main queue, moved to the serving thread and released
/// when dropped (with the thread's closure, also if the thread could not start).
struct MainQueue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queue and event functions may be called from any thread; the
// reference is released before the client is dropped (`MainQueueServer::drop` joins the
// thread that owns it).
unsafe impl Send for MainQueue {}

impl Drop for MainQueue {
    fn drop(&mut self) {
        // SAFETY: the reference `rd_kafka_queue_get_main` gave, released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) };
    }
}

impl MainQueueServer {
    fn start<C: ClientContext + 'static>(admin: &AdminClient<C>) -> MainQueueServer {
        let stop = Arc::new(AtomicBool::new(false));
        // SAFETY: the client is valid; `MainQueue` releases the reference.
        let queue =
            MainQueue(unsafe { rdsys::rd_kafka_queue_get_main(admin.inner().native_ptr()) });
        let context = admin.inner().context().clone();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("spcvm-admin-log".into())
            .spawn(move || {
                let queue = queue;
                while !flag.load(Ordering::Relaxed) {
                    // SAFETY: see `MainQueue`; each event is destroyed once read.
                    let event = unsafe {
                        let event = rdsys::rd_kafka_queue_poll(queue.0, 100);
                        if event.is_null() {
                            continue;
                        }
                        let read = read_event(event);
                        rdsys::rd_kafka_event_destroy(event);
                        read
                    };
                    match event {
                        Some(ClientEvent::Log(level, facility, message)) => {
                            context.log(level, &facility, &message)
                        }
                        Some(ClientEvent::Error(error, reason)) => context.error(error, &reason),
                        None => {}
                    }
                }
            })
            .ok();
        MainQueueServer { stop, thread }
    }
}

/// A log line or a client error of librdkafka.
enum ClientEvent {
    /// Level, facility and message.
    Log(RDKafkaLogLevel, String, String),
    /// The error and librdkafka's reason.
    Error(KafkaError, String),
}

/// The log line or error in a main-queue event; `None` for other events (an admin
/// client's main queue carries none that matter here).
///
/// # Safety
///
/// `event` must be a valid event, not yet destroyed.
unsafe fn read_event(event: *mut rdsys::rd_kafka_event_t) -> Option<ClientEvent> {
    let text = |p: *const std::ffi::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: librdkafka's strings are NUL-terminated and live as long as `event`.
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .trim()
                .to_string()
        }
    };
    // SAFETY (all calls below): `event` is valid, as the caller promises.
    match unsafe { rdsys::rd_kafka_event_type(event) } {
        rdsys::RD_KAFKA_EVENT_LOG => {
            let mut facility = std::ptr::null();
            let mut message = std::ptr::null();
            let mut level = 0;
            let found = unsafe {
                rdsys::rd_kafka_event_log(event, &mut facility, &mut message, &mut level)
            };
            (found == 0).then(|| ClientEvent::Log(log_level(level), text(facility), text(message)))
        }
        rdsys::RD_KAFKA_EVENT_ERROR => {
            let code = unsafe { rdsys::rd_kafka_event_error(event) };
            let reason = text(unsafe { rdsys::rd_kafka_event_error_string(event) });
            Some(ClientEvent::Error(KafkaError::Global(code.into()), reason))
        }
        _ => None,
    }
}

/// librdkafka's syslog level as rdkafka's enum.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        i32::MIN..=0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

impl Drop for MainQueueServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The error for a create request the brokers did not answer in time.
fn not_answered(bootstrap: &str) -> String {
    format!(
        "create topics: no broker at {bootstrap} answered within {} s. The brokers could \
         not be reached or refused the connection (librdkafka's log lines above say why: a \
         TLS certificate, SASL credentials, the address)",
        ADMIN_TIMEOUT.as_secs()
    )
}

/// The topics `job` needs, with their settings, when none exists yet.
pub fn plan(job: &Job) -> Vec<TopicSpec> {
    plan_for(&job.config, &job.outputs, &HashMap::new())
}

/// The topics `config` and its `outputs` need, given the partition counts of the topics
/// that exist: the changelog gets as many partitions as the largest input will have.
pub fn plan_for(
    config: &PipelineConfig,
    outputs: &[OutputStream],
    existing: &HashMap<String, i32>,
) -> Vec<TopicSpec> {
    let t = &config.topics;
    let input_partitions = t
        .input
        .iter()
        .map(|name| existing.get(name).copied().unwrap_or(t.partitions))
        .fold(t.partitions, i32::max);
    let days = |d: u64| (d * 24 * 3600 * 1000).to_string();
    let mut specs: Vec<TopicSpec> = t
        .input
        .iter()
        .map(|name| TopicSpec {
            name: name.clone(),
            partitions: t.partitions,
            configs: vec![("retention.ms", days(7))],
        })
        .collect();
    for output in outputs {
        if !specs.iter().any(|s| s.name == output.topic) {
            specs.push(TopicSpec {
                name: output.topic.clone(),
                partitions: t.partitions,
                configs: vec![("retention.ms", days(30))],
            });
        }
    }
    specs.push(TopicSpec {
        name: t.dlq.clone(),
        partitions: 1,
        configs: vec![
            ("retention.ms", days(30)),
            (
                "max.message.bytes",
                spcvm_sinks::kafka::MAX_MESSAGE_BYTES.to_string(),
            ),
        ],
    });
    specs.push(TopicSpec {
        name: t.changelog_topic(&config.kafka.group_id),
        partitions: input_partitions,
        configs: vec![
            ("cleanup.policy", "compact".into()),
            ("min.compaction.lag.ms", "0".into()),
        ],
    });
    specs
}

/// Creates every topic of [`plan_for`] the topics that exist; existing ones are left alone,
/// except a changelog with fewer partitions than an input, which is grown. Each spec
/// returned carries the topic's partition count after the command.
///
/// # Errors
///
/// [`RunError::Kafka`] naming the topic that could not be created or grown.
pub async fn create(job: &Job) -> Result<Vec<(TopicSpec, Created)>, RunError> {
    create_which(job, Which::All).await
}

/// Creates the job's internal topics (the changelog) if they are missing, with the
/// partition count [`plan_for`] gives them; leaves existing ones alone (the job checks
/// their partition counts itself). Returns those it created.
///
/// # Errors
///
/// [`RunError::Kafka`] naming the topic that could not be created.
pub async fn create_internal(job: &Job) -> Result<Vec<TopicSpec>, RunError> {
    Ok(create_which(job, Which::Internal)
        .await?
        .into_iter()
        .filter(|(_, c)| *c == Created::Created)
        .map(|(spec, _)| spec)
        .collect())
}

/// Which topics of the plan a request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// Every topic (`spcvm topics create`).
    All,
    /// The internal ones, and only when missing (the job at start).
    Internal,
}

/// [`create_with`] an admin client whose librdkafka log lines and errors are logged.
async fn create_which(job: &Job, which: Which) -> Result<Vec<(TopicSpec, Created)>, RunError> {
    let mut client = ClientConfig::new();
    for (k, v) in job.config.kafka.common_properties() {
        client.set(k, v);
    }
    let admin: AdminClient<ClientLog> = client
        .create_with_context(ClientLog::default())
        .map_err(|e| RunError::Kafka(format!("cannot create the admin client: {e}")))?;
    let logs = MainQueueServer::start(&admin);
    let result = create_with(job, &admin, which).await;
    drop(logs);
    admin.inner().context().flush();
    result
}

/// [`create`] or [`create_internal`] with its admin client.
async fn create_with(
    job: &Job,
    admin: &AdminClient<ClientLog>,
    which: Which,
) -> Result<Vec<(TopicSpec, Created)>, RunError> {
    let config = &job.config;
    let existing = partition_counts(job, admin)?;
    let changelog = config.topics.changelog_topic(&config.kafka.group_id);
    let mut specs = plan_for(config, &job.outputs, &existing);
    if which == Which::Internal {
        specs.retain(|s| s.name == changelog && !existing.contains_key(&s.name));
        if specs.is_empty() {
            return Ok(Vec::new());
        }
    }
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(config.topics.replication_factor),
                ),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| admin_error(config, "create topics", e))?;
    let mut out = Vec::with_capacity(specs.len());
    for (mut spec, result) in specs.into_iter().zip(results) {
        match result {
            Ok(_) => out.push((spec, Created::Created)),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let have = existing.get(&spec.name).copied();
                match have {
                    Some(from) if spec.name == changelog && from < spec.partitions => {
                        grow(admin, &spec.name, spec.partitions, &options)
                            .await
                            .map_err(|e| admin_error(config, "grow the changelog", e))?;
                        out.push((spec, Created::Grown { from }));
                    }
                    _ => {
                        spec.partitions = have.unwrap_or(spec.partitions);
                        out.push((spec, Created::Exists));
                    }
                }
            }
            Err((name, code)) => {
                return Err(RunError::Kafka(format!(
                    "cannot create topic `{name}`: {code}"
                )));
            }
        }
    }
    Ok(out)
}

/// The partition counts of the topics `job` names that exist.
fn partition_counts(
    job: &Job,
    admin: &AdminClient<ClientLog>,
) -> Result<HashMap<String, i32>, RunError> {
    let config = &job.config;
    let wanted: Vec<String> = plan(job).into_iter().map(|s| s.name).collect();
    // Metadata of every topic (asking for named ones may auto-create them on some
    // brokers). A blocking call: the command does nothing else meanwhile.
    let metadata = admin
        .inner()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(|e| admin_error(config, "read topic metadata", e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && wanted.iter().any(|w| w == t.name()))
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

/// Adds partitions to `topic` up to `partitions`.
async fn grow(
    admin: &AdminClient<ClientLog>,
    topic: &str,
    partitions: i32,
    options: &AdminOptions,
) -> Result<(), KafkaError> {
    let grown = NewPartitions::new(topic, partitions as usize);
    match admin.create_partitions(&[grown], options).await?.pop() {
        Some(Err((_, code))) => Err(KafkaError::AdminOp(code)),
        _ => Ok(()),
    }
}

/// An admin request's error, saying what was asked; a timeout names the brokers.
fn admin_error(config: &PipelineConfig, what: &str, e: KafkaError) -> RunError {
    match e {
        // The metadata request fails with what the last connection attempt met.
        KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut)
        | KafkaError::MetadataFetch(
            RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL,
        ) => RunError::Kafka(not_answered(&config.kafka.bootstrap_servers)),
        e => RunError::Kafka(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_levels_map_to_syslog_severities() {
        assert!(matches!(log_level(3), RDKafkaLogLevel::Error));
        assert!(matches!(log_level(4), RDKafkaLogLevel::Warning));
        assert!(matches!(log_level(6), RDKafkaLogLevel::Info));
        assert!(matches!(log_level(7), RDKafkaLogLevel::Debug));
        assert!(matches!(log_level(-1), RDKafkaLogLevel::Emerg));
    }

    fn job(config: PipelineConfig) -> Job {
        Job::new(config).unwrap()
    }

    #[test]
    fn plan_compacts_the_changelog_and_mirrors_input_partitions() {
        let mut config = PipelineConfig::default();
        config.kafka.group_id = "g".into();
        config.topics.partitions = 4;
        let specs = plan(&job(config));
        let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["tool.telemetry", "spc.alerts", "spc.dlq", "spcvm.state.g"]
        );
        let changelog = &specs[3];
        assert_eq!(changelog.partitions, 4);
        assert!(
            changelog
                .configs
                .contains(&("cleanup.policy", "compact".to_string()))
        );
        assert_eq!(specs[0].partitions, 4);
    }

    #[test]
    fn the_changelog_has_as_many_partitions_as_the_largest_input() {
        let mut config = PipelineConfig::default();
        config.kafka.group_id = "g".into();
        config.topics.partitions = 4;
        config.topics.input = vec!["a".into(), "b".into()];
        let outputs = job(config.clone()).outputs;
        let changelog = |existing: &[(&str, i32)]| {
            let existing = existing.iter().map(|(n, p)| (n.to_string(), *p)).collect();
            let specs = plan_for(&config, &outputs, &existing);
            let spec = specs.iter().find(|s| s.name == "spcvm.state.g").unwrap();
            spec.partitions
        };
        assert_eq!(changelog(&[]), 4);
        // An input made elsewhere with more partitions than `topics.partitions`.
        assert_eq!(changelog(&[("b", 12)]), 12);
        // Fewer: the inputs still to be created get `topics.partitions`.
        assert_eq!(changelog(&[("a", 2)]), 4);
        // Other topics' counts do not matter, nor does the changelog's own.
        assert_eq!(changelog(&[("spc.alerts", 30), ("spcvm.state.g", 2)]), 4);
    }
}
