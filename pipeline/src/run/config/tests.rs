//! Unit tests of `pipeline.toml` loading: defaults, file, environment, errors.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn defaults_without_file_or_env() {
    let config = load(None, env(&[])).unwrap();
    assert_eq!(config, PipelineConfig::default());
    assert_eq!(config.delivery.mode, DeliveryMode::ExactlyOnce);
    assert_eq!(config.topics.changelog_topic("g1"), "spcvm.state.g1");
}

#[test]
fn env_overrides_file_and_file_overrides_defaults() {
    let (_dir, path) = write(
        "source = \"kafka\"\n[kafka]\nbootstrap_servers = \"file:1\"\ngroup_id = \"from-file\"\n",
    );
    let config = load(
        Some(&path),
        env(&[
            ("SPCVM__KAFKA__BOOTSTRAP_SERVERS", "env:2,env:3"),
            ("SPCVM__DELIVERY__MODE", "at_least_once"),
            ("SPCVM__TOPICS__INPUT", "[\"a\", \"b\"]"),
            ("SPCVM__DELIVERY__CHECKPOINT_INTERVAL_MS", "250"),
            ("SPCVM__KAFKA__PROPERTIES__CLIENT.RACK", "az1"),
            ("OTHER", "ignored"),
        ]),
    )
    .unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "env:2,env:3");
    assert_eq!(config.kafka.group_id, "from-file");
    assert_eq!(config.delivery.mode, DeliveryMode::AtLeastOnce);
    assert_eq!(config.topics.input, vec!["a", "b"]);
    assert_eq!(config.delivery.checkpoint_interval_ms, 250);
    assert_eq!(config.kafka.properties["client.rack"], "az1");
    assert_eq!(config.kafka.common_properties()["client.rack"], "az1");
}

/// Clients are named after the instance, unless `properties` name them.
#[test]
fn clients_are_named_after_the_instance() {
    let mut kafka = KafkaConfig {
        instance_id: Some("pod-2".into()),
        ..KafkaConfig::default()
    };
    assert_eq!(kafka.common_properties()["client.id"], "spcvm-pod-2");
    kafka
        .properties
        .insert("client.id".into(), "fab7-spc".into());
    assert_eq!(kafka.common_properties()["client.id"], "fab7-spc");
}

/// TLS without a named CA probes the system's CA bundle; a CA named anywhere, or no
/// TLS, leaves `ssl.ca.location` alone.
#[test]
fn tls_without_a_ca_probes_the_system_bundle() {
    let ca = |protocol: Option<&str>, ca: Option<&str>, property: Option<(&str, &str)>| {
        let kafka = KafkaConfig {
            security_protocol: protocol.map(String::from),
            ssl_ca_location: ca.map(String::from),
            properties: property
                .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())]))
                .unwrap_or_default(),
            ..KafkaConfig::default()
        };
        kafka.common_properties().get("ssl.ca.location").cloned()
    };
    assert_eq!(ca(Some("sasl_ssl"), None, None).as_deref(), Some("probe"));
    assert_eq!(ca(Some("SSL"), None, None).as_deref(), Some("probe"));
    let via_properties = Some(("security.protocol", "ssl"));
    assert_eq!(ca(None, None, via_properties).as_deref(), Some("probe"));
    assert_eq!(
        ca(Some("ssl"), Some("/etc/kafka/ca.pem"), None).as_deref(),
        Some("/etc/kafka/ca.pem")
    );
    let pem = Some(("ssl.ca.pem", "-----BEGIN CERTIFICATE-----"));
    assert_eq!(ca(Some("sasl_ssl"), None, pem), None);
    let own = Some(("ssl.ca.location", "/ca"));
    assert_eq!(ca(Some("sasl_ssl"), None, own).as_deref(), Some("/ca"));
    assert_eq!(ca(None, None, None), None);
    assert_eq!(ca(Some("sasl_plaintext"), None, None), None);
}

#[test]
fn unknown_key_in_file_names_file_line_and_key() {
    let (_dir, path) = write("[kafka]\nbootstrap_servers = \"x:1\"\nbootstrap_server = \"y\"\n");
    let err = load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(err.contains("pipeline.toml:3:"), "{err}");
    assert!(err.contains("bootstrap_server"), "{err}");
}

#[test]
fn unknown_env_key_names_the_variable() {
    let err = load(None, env(&[("SPCVM__KAFKA__BOOTSTRAP", "x")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SPCVM__KAFKA__BOOTSTRAP"), "{err}");
    assert!(err.contains("bootstrap"), "{err}");
    let err = load(None, env(&[("SPCVM__DELIVERY__MODE", "twice")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SPCVM__DELIVERY__MODE"), "{err}");
}

#[test]
fn invalid_values_are_rejected_with_the_key() {
    let (_dir, path) = write("[delivery]\ncheckpoint_interval_ms = 0\n");
    let err = load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(err.contains("delivery.checkpoint_interval_ms"), "{err}");
    let (_dir, path) = write("[delivery]\nqueue_capacity = 1048577\n");
    let err = load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(
        err.contains("delivery.queue_capacity: must be at most 1048576"),
        "{err}"
    );
    let (_dir, path) = write("[delivery]\nqueue_capacity = 1048576\n");
    assert!(load(Some(&path), env(&[])).is_ok());
}

#[test]
fn co_partitioned_inputs_are_distinct_and_range_assigned() {
    let kafka = "source = \"kafka\"\n[topics]\nco_partitioned = true\n";
    let (_dir, path) = write(&format!("{kafka}input = [\"a\", \"b\", \"a\"]\n"));
    let err = load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(
        err.contains("topics.input: `a` is listed twice (again at position 3)"),
        "{err}"
    );
    let assignor = "[kafka.consumer_properties]\n\"partition.assignment.strategy\" = ";
    let (_dir, path) = write(&format!(
        "{kafka}input = [\"a\", \"b\"]\n{assignor}\"roundrobin\"\n"
    ));
    let err = load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(
        err.contains("topics.co_partitioned: needs partition.assignment.strategy = range")
            && err.contains("not `roundrobin`"),
        "{err}"
    );
    for (co, strategy) in [("true", "range"), ("false", "roundrobin")] {
        let (_dir, path) = write(&format!(
            "source = \"kafka\"\n[topics]\nco_partitioned = {co}\ninput = [\"a\", \"b\"]\n\
             {assignor}\"{strategy}\"\n"
        ));
        let config = load(Some(&path), env(&[])).unwrap();
        assert_eq!(config.topics.co_partitioned, co == "true");
    }
}

#[test]
fn relative_paths_follow_the_file() {
    let (dir, path) = write("charts = \"charts.toml\"\n[file]\ninput = \"in.jsonl\"\n");
    let config = load(Some(&path), env(&[])).unwrap();
    assert_eq!(config.charts.unwrap(), dir.path().join("charts.toml"));
    assert_eq!(config.file.input, dir.path().join("in.jsonl"));
}

#[test]
fn transactional_id_uses_group_and_instance() {
    let kafka = KafkaConfig {
        group_id: "g".into(),
        instance_id: Some("pod-0".into()),
        ..KafkaConfig::default()
    };
    assert_eq!(kafka.transactional_id(), "spcvm-g-pod-0");
}
