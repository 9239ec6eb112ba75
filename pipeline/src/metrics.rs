//! Prometheus metrics of the streaming job `spcvm run`.
//!
//! The runtime builds one [`Metrics`] at start-up, shares it as `Arc<Metrics>` between the
//! consumer loop, the producer, the checkpointer and the HTTP server ([`crate::http`]), and
//! updates it through the public fields (the `prometheus` types, e.g.
//! `metrics.decode_failures.with_label_values(&["json"]).inc()`) or the small helpers
//! ([`Metrics::alert`], [`Metrics::set_consumer_lag`], ...). `GET /metrics` serves
//! [`Metrics::render`].
//!
//! Every metric lives in the process's own [`prometheus::Registry`], not the global default,
//! so tests can build as many independent instances as they like.
//!
//! # Naming and labels
//!
//! All names start with `spcvm_`, counters end in `_total`, durations are in seconds. No label
//! ever holds a tool, recipe, lot, wafer or parameter id: those are unbounded (high
//! cardinality) and belong in the alerts and logs, not in time series. The label names in use
//! are `topic`, `partition`, `kind`, `severity`, `chart`, `rule`, `outcome` and `version`
//! (a unit test checks every metric against this list).

use std::fmt;
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Bucket upper bounds of [`Metrics::processing_latency`], in seconds: 100 µs to 10 s, dense
/// between 1 and 50 ms where a healthy pipeline sits.
pub const PROCESSING_LATENCY_BUCKETS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket upper bounds of [`Metrics::checkpoint_duration`], in seconds: 1 ms to 60 s.
pub const CHECKPOINT_DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Bucket upper bounds of [`Metrics::restore_duration`], in seconds: 10 ms to 10 min (a
/// restore replays a whole changelog partition).
pub const RESTORE_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// All metrics of one `spcvm run` process, registered in its own [`prometheus::Registry`].
///
/// `Send + Sync`; share it as `Arc<Metrics>`. Every field is a cheap handle onto the
/// registered metric, so cloning a field (e.g. to hand a counter to a task) is fine.
pub struct Metrics {
    registry: Registry,
    /// `spcvm_messages_consumed_total{topic}`: messages read from Kafka, per source topic
    /// (counted on receipt, whether or not they decode).
    pub messages_consumed: IntCounterVec,
    /// `spcvm_messages_produced_total{topic}`: messages written to Kafka, per destination
    /// topic (alerts, dead letters, changelog).
    pub messages_produced: IntCounterVec,
    /// `spcvm_decode_failures_total{kind}`: messages that could not be turned into telemetry;
    /// `kind` is a short fixed label such as `json`, `avro`, `too_large`,
    /// `unknown_schema_id` or `invalid`.
    pub decode_failures: IntCounterVec,
    /// `spcvm_dlq_messages_total{kind}`: messages sent to the dead-letter topic, by the same
    /// `kind` labels as [`Metrics::decode_failures`].
    pub dlq_messages: IntCounterVec,
    /// `spcvm_alerts_total{severity,chart,rule}`: alerts emitted (after deduplication);
    /// `severity` is `critical`, `major` or `minor`, `chart` the plotted statistic (`ewma`,
    /// `xbar`, `spec`, ...), `rule` the rule name (`rule_1`, `cusum_upper`, ...).
    pub alerts: IntCounterVec,
    /// `spcvm_key_mismatch_total`: messages whose payload `tool_id` differs from the Kafka
    /// message key.
    pub key_mismatches: IntCounter,
    /// `spcvm_non_finite_values_total`: measurements that were NaN or infinite and were
    /// therefore not plotted.
    pub non_finite_values: IntCounter,
    /// `spcvm_missing_parameters_total`: charted parameters absent from a telemetry record.
    pub missing_parameters: IntCounter,
    /// `spcvm_consumer_lag{topic,partition}`: messages between the committed position and
    /// the high watermark of each assigned partition. Set with
    /// [`Metrics::set_consumer_lag`], drop on revocation with [`Metrics::forget_partition`].
    pub consumer_lag: IntGaugeVec,
    /// `spcvm_keys`: chart states (tool, recipe, parameter keys) held in memory.
    pub keys: IntGauge,
    /// `spcvm_partitions_assigned`: input partitions currently assigned to this process.
    pub partitions_assigned: IntGauge,
    /// `spcvm_processing_latency_seconds`: from receipt of a telemetry event to the broker's
    /// acknowledgement of each output (alert, ...) it caused (see
    /// [`PROCESSING_LATENCY_BUCKETS`]).
    pub processing_latency: Histogram,
    /// `spcvm_checkpoint_duration_seconds`: time to checkpoint state (changelog writes and
    /// transaction commit), see [`CHECKPOINT_DURATION_BUCKETS`].
    pub checkpoint_duration: Histogram,
    /// `spcvm_restore_duration_seconds`: time to restore state for newly assigned partitions,
    /// see [`RESTORE_DURATION_BUCKETS`].
    pub restore_duration: Histogram,
    /// `spcvm_transactions_total{outcome}`: Kafka transactions, `outcome` is `committed` or
    /// `aborted` (both series exist from the start, at 0).
    pub transactions: IntCounterVec,
    /// `spcvm_changelog_records_total`: state records written to the changelog topic.
    pub changelog_records: IntCounter,
    /// `spcvm_build_info{version}`: always 1; `version` is this crate's version.
    pub build_info: IntGauge,
}

impl Metrics {
    /// Builds and registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        // Registration only fails for an invalid name, an invalid label name or a name
        // registered twice. All names here are fixed literals, each registered once, and
        // `tests::builds_twice_and_every_metric_is_registered` exercises exactly this path,
        // so a failure is a programming error caught by the unit tests.
        Self::try_new().expect("fixed metric names and labels are valid and unique")
    }

    fn try_new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        };
        let metrics = Metrics {
            messages_consumed: counter_vec(
                "spcvm_messages_consumed_total",
                "Messages read from Kafka, per source topic.",
                &["topic"],
            )?,
            messages_produced: counter_vec(
                "spcvm_messages_produced_total",
                "Messages written to Kafka, per destination topic.",
                &["topic"],
            )?,
            decode_failures: counter_vec(
                "spcvm_decode_failures_total",
                "Messages that could not be decoded into telemetry, by failure kind.",
                &["kind"],
            )?,
            dlq_messages: counter_vec(
                "spcvm_dlq_messages_total",
                "Messages sent to the dead-letter topic, by failure kind.",
                &["kind"],
            )?,
            alerts: counter_vec(
                "spcvm_alerts_total",
                "Alerts emitted after deduplication, by severity, chart and rule.",
                &["severity", "chart", "rule"],
            )?,
            key_mismatches: IntCounter::new(
                "spcvm_key_mismatch_total",
                "Messages whose payload tool_id differs from the message key.",
            )?,
            non_finite_values: IntCounter::new(
                "spcvm_non_finite_values_total",
                "Measurements that were NaN or infinite and were not plotted.",
            )?,
            missing_parameters: IntCounter::new(
                "spcvm_missing_parameters_total",
                "Charted parameters absent from a telemetry record.",
            )?,
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "spcvm_consumer_lag",
                    "Messages between the committed position and the high watermark, per assigned partition.",
                ),
                &["topic", "partition"],
            )?,
            keys: IntGauge::new("spcvm_keys", "Chart states held in memory.")?,
            partitions_assigned: IntGauge::new(
                "spcvm_partitions_assigned",
                "Input partitions currently assigned to this process.",
            )?,
            processing_latency: histogram(
                "spcvm_processing_latency_seconds",
                "Time from receipt of a telemetry event to the acknowledgement of each output (alert, ...) it caused.",
                &PROCESSING_LATENCY_BUCKETS,
            )?,
            checkpoint_duration: histogram(
                "spcvm_checkpoint_duration_seconds",
                "Time to checkpoint state (changelog writes and transaction commit).",
                &CHECKPOINT_DURATION_BUCKETS,
            )?,
            restore_duration: histogram(
                "spcvm_restore_duration_seconds",
                "Time to restore state for newly assigned partitions.",
                &RESTORE_DURATION_BUCKETS,
            )?,
            transactions: counter_vec(
                "spcvm_transactions_total",
                "Kafka transactions, by outcome (committed or aborted).",
                &["outcome"],
            )?,
            changelog_records: IntCounter::new(
                "spcvm_changelog_records_total",
                "State records written to the changelog topic.",
            )?,
            build_info: IntGauge::with_opts(
                Opts::new("spcvm_build_info", "Build information; always 1.")
                    .const_label("version", env!("CARGO_PKG_VERSION")),
            )?,
            registry,
        };
        for collector in metrics.collectors() {
            metrics.registry.register(collector)?;
        }
        // Series with a small, fixed label set start at 0 so that rate() and absence alerts
        // work before the first event.
        for outcome in ["committed", "aborted"] {
            metrics.transactions.with_label_values(&[outcome]);
        }
        metrics.build_info.set(1);
        Ok(metrics)
    }

    /// Every metric as a boxed collector (handles onto the same values): what
    /// [`Metrics::try_new`] registers and what the tests inspect.
    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.messages_consumed.clone()),
            Box::new(self.messages_produced.clone()),
            Box::new(self.decode_failures.clone()),
            Box::new(self.dlq_messages.clone()),
            Box::new(self.alerts.clone()),
            Box::new(self.key_mismatches.clone()),
            Box::new(self.non_finite_values.clone()),
            Box::new(self.missing_parameters.clone()),
            Box::new(self.consumer_lag.clone()),
            Box::new(self.keys.clone()),
            Box::new(self.partitions_assigned.clone()),
            Box::new(self.processing_latency.clone()),
            Box::new(self.checkpoint_duration.clone()),
            Box::new(self.restore_duration.clone()),
            Box::new(self.transactions.clone()),
            Box::new(self.changelog_records.clone()),
            Box::new(self.build_info.clone()),
        ]
    }

    /// The registry holding every metric, e.g. to register an extra collector.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// All metrics in the Prometheus text exposition format 0.0.4 (content type
    /// [`prometheus::TEXT_FORMAT`]).
    ///
    /// Metric vectors without any label set yet (e.g. no alert so far) are left out, as
    /// Prometheus clients do. A family that fails to encode (not possible with the fixed
    /// names here) is logged and skipped rather than failing the whole scrape.
    pub fn render(&self) -> String {
        let encoder = TextEncoder::new();
        let mut out = String::new();
        for family in self.registry.gather() {
            let mut buf = Vec::new();
            match encoder.encode(std::slice::from_ref(&family), &mut buf) {
                Ok(()) => out.push_str(&String::from_utf8_lossy(&buf)),
                Err(e) => {
                    tracing::warn!(metric = family.name(), error = %e, "cannot render metric")
                }
            }
        }
        out
    }

    /// Counts one message read from `topic`.
    pub fn consumed(&self, topic: &str) {
        self.messages_consumed.with_label_values(&[topic]).inc();
    }

    /// Counts `n` messages written to `topic`.
    pub fn produced(&self, topic: &str, n: u64) {
        self.messages_produced.with_label_values(&[topic]).inc_by(n);
    }

    /// Counts one undecodable message of failure `kind` (a short fixed label such as `json`).
    pub fn decode_failure(&self, kind: &str) {
        self.decode_failures.with_label_values(&[kind]).inc();
    }

    /// Counts one message sent to the dead-letter topic for failure `kind`.
    pub fn dead_letter(&self, kind: &str) {
        self.dlq_messages.with_label_values(&[kind]).inc();
    }

    /// Counts one emitted alert: `severity` (`critical`, `major`, `minor`), `chart` (the
    /// plotted statistic, e.g. `ewma`) and `rule` (e.g. `rule_1`). Never pass ids here.
    pub fn alert(&self, severity: &str, chart: &str, rule: &str) {
        self.alerts
            .with_label_values(&[severity, chart, rule])
            .inc();
    }

    /// Counts one emitted alert from the alert itself (its severity, chart and rule only).
    pub fn record_alert(&self, alert: &spcvm_schemas::Alert) {
        self.alert(alert.severity.as_str(), &alert.chart, &alert.rule);
    }

    /// Records a Kafka transaction's outcome: committed (`true`) or aborted (`false`).
    pub fn transaction(&self, committed: bool) {
        let outcome = if committed { "committed" } else { "aborted" };
        self.transactions.with_label_values(&[outcome]).inc();
    }

    /// Sets the consumer lag of one partition, in messages.
    pub fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Drops the lag series of a partition that was revoked, so that a stale lag is not
    /// reported after a rebalance.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        // An error only means the series did not exist; nothing to drop then.
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Observes one end-to-end processing latency.
    pub fn observe_processing_latency(&self, latency: Duration) {
        self.processing_latency.observe(latency.as_secs_f64());
    }

    /// Observes how long one checkpoint took.
    pub fn observe_checkpoint(&self, took: Duration) {
        self.checkpoint_duration.observe(took.as_secs_f64());
    }

    /// Observes how long one state restore took.
    pub fn observe_restore(&self, took: Duration) {
        self.restore_duration.observe(took.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::MetricType;

    /// The only label names any metric may carry (no tool, recipe, lot, wafer or parameter).
    const ALLOWED_LABELS: [&str; 8] = [
        "topic",
        "partition",
        "kind",
        "severity",
        "chart",
        "rule",
        "outcome",
        "version",
    ];

    const NAMES: [&str; 17] = [
        "spcvm_messages_consumed_total",
        "spcvm_messages_produced_total",
        "spcvm_decode_failures_total",
        "spcvm_dlq_messages_total",
        "spcvm_alerts_total",
        "spcvm_key_mismatch_total",
        "spcvm_non_finite_values_total",
        "spcvm_missing_parameters_total",
        "spcvm_consumer_lag",
        "spcvm_keys",
        "spcvm_partitions_assigned",
        "spcvm_processing_latency_seconds",
        "spcvm_checkpoint_duration_seconds",
        "spcvm_restore_duration_seconds",
        "spcvm_transactions_total",
        "spcvm_changelog_records_total",
        "spcvm_build_info",
    ];

    /// Touches one label set of every vector so every family shows up in `render`.
    fn touch_all(m: &Metrics) {
        m.consumed("telemetry");
        m.produced("alerts", 2);
        m.decode_failure("json");
        m.dead_letter("json");
        m.alert("major", "ewma", "rule_1");
        m.key_mismatches.inc();
        m.non_finite_values.inc();
        m.missing_parameters.inc();
        m.set_consumer_lag("telemetry", 3, 42);
        m.keys.set(7);
        m.partitions_assigned.set(2);
        m.observe_processing_latency(Duration::from_millis(4));
        m.observe_checkpoint(Duration::from_millis(20));
        m.observe_restore(Duration::from_secs(1));
        m.transaction(true);
        m.changelog_records.inc_by(5);
    }

    #[test]
    fn builds_twice_and_every_metric_is_registered() {
        // Own registry per instance: a second instance must not clash with the first.
        let a = Metrics::new();
        let b = Metrics::new();
        a.keys.set(1);
        assert_eq!(b.keys.get(), 0);
        let registered: Vec<String> = a
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        let mut sorted = registered.clone();
        sorted.sort();
        let mut expected: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn render_has_every_name_with_help_and_type() {
        let m = Metrics::new();
        touch_all(&m);
        let text = m.render();
        for name in NAMES {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "no TYPE for {name}:\n{text}"
            );
        }
        assert!(text.contains("# TYPE spcvm_alerts_total counter"));
        assert!(text.contains("# TYPE spcvm_consumer_lag gauge"));
        assert!(text.contains("# TYPE spcvm_processing_latency_seconds histogram"));
    }

    #[test]
    fn label_sets_render() {
        let m = Metrics::new();
        touch_all(&m);
        m.alert("critical", "spec", "spec_high");
        m.alert("critical", "spec", "spec_high");
        let text = m.render();
        for line in [
            r#"spcvm_alerts_total{chart="spec",rule="spec_high",severity="critical"} 2"#,
            r#"spcvm_alerts_total{chart="ewma",rule="rule_1",severity="major"} 1"#,
            r#"spcvm_consumer_lag{partition="3",topic="telemetry"} 42"#,
            r#"spcvm_messages_produced_total{topic="alerts"} 2"#,
            r#"spcvm_transactions_total{outcome="committed"} 1"#,
            r#"spcvm_transactions_total{outcome="aborted"} 0"#,
            r#"spcvm_changelog_records_total 5"#,
            r#"spcvm_processing_latency_seconds_bucket{le="0.005"} 1"#,
            r#"spcvm_processing_latency_seconds_bucket{le="0.003"} 0"#,
            r#"spcvm_processing_latency_seconds_count 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}`:\n{text}");
        }
        let version = env!("CARGO_PKG_VERSION");
        let build = format!(r#"spcvm_build_info{{version="{version}"}} 1"#);
        assert!(
            text.lines().any(|l| l == build),
            "missing `{build}`:\n{text}"
        );
    }

    #[test]
    fn untouched_instance_renders_fixed_series_only() {
        let text = Metrics::new().render();
        assert!(text.contains("spcvm_build_info{"));
        assert!(text.contains(r#"spcvm_transactions_total{outcome="aborted"} 0"#));
        assert!(text.contains("spcvm_keys 0"));
        // Vectors without label sets are not rendered yet.
        assert!(!text.contains("spcvm_alerts_total"));
    }

    #[test]
    fn names_types_and_labels_follow_the_conventions() {
        let m = Metrics::new();
        for collector in m.collectors() {
            for desc in collector.desc() {
                let name = &desc.fq_name;
                assert!(name.starts_with("spcvm_"), "{name}");
                let labels = desc
                    .variable_labels
                    .iter()
                    .map(String::as_str)
                    .chain(desc.const_label_pairs.iter().map(|p| p.name()));
                for label in labels {
                    assert!(
                        ALLOWED_LABELS.contains(&label),
                        "{name} has label `{label}` outside the allow-list"
                    );
                    for id in ["tool", "recipe", "lot", "wafer", "parameter"] {
                        assert!(!label.contains(id), "{name} has id label `{label}`");
                    }
                }
            }
            for family in collector.collect() {
                let name = family.name();
                match family.get_field_type() {
                    MetricType::COUNTER => assert!(name.ends_with("_total"), "{name}"),
                    MetricType::HISTOGRAM => assert!(name.ends_with("_seconds"), "{name}"),
                    MetricType::GAUGE => assert!(!name.ends_with("_total"), "{name}"),
                    other => panic!("{name}: unexpected type {other:?}"),
                }
            }
        }
    }

    #[test]
    fn rendered_label_names_are_allowed() {
        // Also check what is actually exposed, after every vector has a label set.
        let m = Metrics::new();
        touch_all(&m);
        for family in m.registry().gather() {
            for metric in family.get_metric() {
                for pair in metric.get_label() {
                    assert!(
                        ALLOWED_LABELS.contains(&pair.name()),
                        "{} has label `{}`",
                        family.name(),
                        pair.name()
                    );
                }
            }
        }
    }

    #[test]
    fn forget_partition_drops_the_lag_series() {
        let m = Metrics::new();
        m.set_consumer_lag("telemetry", 0, 10);
        m.set_consumer_lag("telemetry", 1, 20);
        m.forget_partition("telemetry", 0);
        m.forget_partition("telemetry", 9); // never set: no-op
        let text = m.render();
        assert!(!text.contains(r#"partition="0""#), "{text}");
        assert!(text.contains(r#"spcvm_consumer_lag{partition="1",topic="telemetry"} 20"#));
    }

    #[test]
    fn record_alert_uses_severity_chart_and_rule_only() {
        let m = Metrics::new();
        let alert = spcvm_schemas::Alert {
            alert_id: "a1".into(),
            tool_id: "ION-02".into(),
            tool_type: spcvm_schemas::ToolType::IonImplant,
            recipe_id: "RCP-7".into(),
            lot_id: Some("LOT-1".into()),
            wafer_id: Some("W-1".into()),
            parameter: "beam_current_mA".into(),
            chart: "cusum".into(),
            rule: "cusum_upper".into(),
            severity: spcvm_schemas::Severity::Minor,
            statistic: 1.0,
            center_line: 0.0,
            ucl: None,
            lcl: None,
            event_time: 0,
            message: "m".into(),
            repeats: 0,
            distance_sigma: None,
            status: spcvm_schemas::AlertStatus::Open,
            window_start: None,
            cusum_upper_sigma: None,
            cusum_lower_sigma: None,
        };
        m.record_alert(&alert);
        assert_eq!(
            m.alerts
                .with_label_values(&["minor", "cusum", "cusum_upper"])
                .get(),
            1
        );
        let text = m.render();
        for id in ["ION-02", "RCP-7", "LOT-1", "W-1", "beam_current_mA"] {
            assert!(!text.contains(id), "{id} leaked into metrics:\n{text}");
        }
    }

    #[test]
    fn metrics_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
    }
}
