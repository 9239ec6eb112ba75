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
//! deployment.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

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
    let admin: AdminClient<DefaultClientContext> = client
        .create()
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
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| RunError::Kafka(format!("create topics: {e}")))?;
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
