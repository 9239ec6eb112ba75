//! The bench's topics, group and job config: unique names per run, an extra group and
//! output topics per throughput round, made by `spcvm topics create` and deleted at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use spcvm_testkit::setup::topics_toml;

use crate::CHECKPOINT_INTERVAL_MS;
use crate::kafka::{CLIENT_PROPERTIES, FETCH_WAIT_MS};

/// The topics (input, alerts, dead letters), group, input partitions, delivery mode and
/// working directory (configs, the job's log) of a run, or of one of its rounds.
#[derive(Clone)]
pub struct Setup {
    pub bootstrap: String,
    pub input: String,
    pub alerts: String,
    pub dlq: String,
    pub group: String,
    pub partitions: i32,
    pub mode: String,
    pub dir: PathBuf,
}

impl Setup {
    /// The job's config.
    pub fn config(&self) -> String {
        let fetch_wait = FETCH_WAIT_MS
            .get()
            .copied()
            .flatten()
            .map_or_else(String::new, |ms| {
                format!("\"fetch.wait.max.ms\" = \"{ms}\"\n")
            });
        let properties: String = CLIENT_PROPERTIES
            .get()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k:?} = {v:?}\n"))
            .collect();
        format!(
            r#"source = "kafka"
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
instance_id = "bench"
session_timeout_ms = 6000
[kafka.properties]
{properties}[kafka.consumer_properties]
"heartbeat.interval.ms" = "500"
{fetch_wait}{topics}[delivery]
mode = "{mode}"
checkpoint_interval_ms = {CHECKPOINT_INTERVAL_MS}
[http]
listen = "127.0.0.1:0"
"#,
            bootstrap = self.bootstrap,
            group = self.group,
            topics = topics_toml(&self.input, &self.alerts, &self.dlq, self.partitions),
            mode = self.mode,
        )
    }

    /// The setup of an extra throughput round: the same input, its own group and outputs.
    pub fn for_round(&self, round: usize) -> Setup {
        Setup {
            alerts: format!("{}-r{round}", self.alerts),
            dlq: format!("{}-r{round}", self.dlq),
            group: format!("{}-r{round}", self.group),
            ..self.clone()
        }
    }

    fn topics(&self) -> Vec<String> {
        vec![
            self.input.clone(),
            self.alerts.clone(),
            self.dlq.clone(),
            format!("spcvm.state.{}", self.group),
        ]
    }

    /// Deletes the topics, the input only `with_input` (best effort: the in-memory tansu
    /// would otherwise keep them).
    pub fn delete_topics(&self, with_input: bool) {
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create();
        let Ok(admin) = admin else { return };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let topics = self.topics();
        let names: Vec<&str> = topics
            .iter()
            .filter(|t| with_input || **t != self.input)
            .map(String::as_str)
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        if let Err(e) = rt.block_on(admin.delete_topics(&names, &opts)) {
            eprintln!("note: could not delete the bench topics: {e}");
        }
    }
}

pub fn create_topics(spcvm: &Path, setup: &Setup) -> Result<()> {
    let topics_config = setup.dir.join("topics.toml");
    std::fs::write(&topics_config, setup.config())?;
    let out = Command::new(spcvm)
        .args(["topics", "create", "--config"])
        .arg(&topics_config)
        .output()?;
    ensure!(
        out.status.success(),
        "spcvm topics create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
