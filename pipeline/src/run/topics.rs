//! `spcvm topics create`: creates the input, alert, dead-letter and changelog topics through
//! the Kafka Admin API, each with settings that fit its use:
//!
//! | topic | partitions | settings |
//! |---|---|---|
//! | input (`tool.telemetry`) | `topics.partitions` | 7-day retention |
//! | alerts (`spc.alerts`) | `topics.partitions` | 30-day retention |
//! | dead letters (`spc.dlq`) | 1 | 30-day retention, 32 MiB messages (letters carry the original payload) |
//! | changelog (`spcvm.state.<group>`) | `topics.partitions` (mirrors the input) | `cleanup.policy=compact` |
//!
//! Topics that already exist are reported and left alone, so the command can run at every
//! deployment. librdkafka's log lines and errors are logged while the request waits (each
//! distinct line at most once a minute, repeats counted at the end), so a refused
//! certificate, wrong SASL credentials or a wrong address show in the log; a request no
//! broker answers within 30 s fails with an error naming the brokers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::bindings as rdsys;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use spcvm_sinks::ClientLog;

use super::RunError;
use super::config::PipelineConfig;

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

/// The topics `config` needs, with their settings.
pub fn plan(config: &PipelineConfig) -> Vec<TopicSpec> {
    let t = &config.topics;
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
    specs.push(TopicSpec {
        name: t.alerts.clone(),
        partitions: t.partitions,
        configs: vec![("retention.ms", days(30))],
    });
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
        partitions: t.partitions,
        configs: vec![
            ("cleanup.policy", "compact".into()),
            ("min.compaction.lag.ms", "0".into()),
        ],
    });
    specs
}

/// Creates every topic of [`plan`]; existing ones are left alone.
///
/// # Errors
///
/// [`RunError::Kafka`] naming the topic that could not be created.
pub async fn create(config: &PipelineConfig) -> Result<Vec<(TopicSpec, Created)>, RunError> {
    let mut client = ClientConfig::new();
    for (k, v) in config.kafka.common_properties() {
        client.set(k, v);
    }
    let admin: AdminClient<ClientLog> = client
        .create_with_context(ClientLog::default())
        .map_err(|e| RunError::Kafka(format!("cannot create the admin client: {e}")))?;
    let specs = plan(config);
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
    let results = {
        let _logs = MainQueueServer::start(&admin);
        admin.create_topics(&new_topics, &options).await
    };
    admin.inner().context().flush();
    let results = results.map_err(|e| match e {
        KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => {
            RunError::Kafka(not_answered(&config.kafka.bootstrap_servers))
        }
        e => RunError::Kafka(format!("create topics: {e}")),
    })?;
    let mut out = Vec::with_capacity(specs.len());
    for (spec, result) in specs.into_iter().zip(results) {
        match result {
            Ok(_) => out.push((spec, Created::Created)),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((spec, Created::Exists)),
            Err((name, code)) => {
                return Err(RunError::Kafka(format!(
                    "cannot create topic `{name}`: {code}"
                )));
            }
        }
    }
    Ok(out)
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

    #[test]
    fn plan_compacts_the_changelog_and_mirrors_input_partitions() {
        let mut config = PipelineConfig::default();
        config.kafka.group_id = "g".into();
        config.topics.partitions = 4;
        let specs = plan(&config);
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
}
