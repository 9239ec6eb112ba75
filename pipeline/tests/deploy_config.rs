//! `deploy/config/charts.toml` is the seed's monitors written out as configuration: it must
//! load and describe exactly the built-in charts, so a fab can start from it.

use std::path::Path;

use spcvm::config;
use spcvm_operators::{MonitorConfig, defaults};

#[test]
fn deploy_chart_config_equals_the_seed_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/charts.toml");
    let (cfg, monitor) = config::load(&path).expect("deploy/config/charts.toml loads");
    assert!(!cfg.seed_defaults);
    assert_eq!(cfg.charts, defaults::seed_charts());
    assert_eq!(cfg.dedup, MonitorConfig::default().dedup);
    // And the monitor built from it routes like the built-in one.
    let builtin = spcvm_operators::SpcMonitor::new(&MonitorConfig::default()).unwrap();
    let a: Vec<_> = monitor.charts().iter().map(|c| &c.spec).collect();
    let b: Vec<_> = builtin.charts().iter().map(|c| &c.spec).collect();
    assert_eq!(a, b);
}

/// `deploy/config/pipeline.example.toml` documents every key of `spcvm run` with its default:
/// it loads to exactly the defaults (but for `source = "kafka"`), and every key of every
/// table appears in it, set or commented out.
#[test]
fn pipeline_example_documents_every_key_with_its_default() {
    use spcvm::run::config::{self as run_config, PipelineConfig, SourceKind};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let path = dir.join("pipeline.example.toml");
    let loaded = run_config::load(Some(&path), Vec::new()).expect("the example loads");
    let mut expected = PipelineConfig {
        source: SourceKind::Kafka,
        ..PipelineConfig::default()
    };
    for p in [
        &mut expected.file.input,
        &mut expected.file.alerts,
        &mut expected.file.dlq,
        &mut expected.file.checkpoint,
    ] {
        *p = dir.join(&*p);
    }
    assert_eq!(loaded, expected);

    // Every key, with every optional key set so that it serializes.
    let mut full = PipelineConfig {
        charts: Some("c.toml".into()),
        ..PipelineConfig::default()
    };
    full.kafka.instance_id = Some("i".into());
    for o in [
        &mut full.kafka.security_protocol,
        &mut full.kafka.sasl_mechanism,
        &mut full.kafka.sasl_username,
        &mut full.kafka.sasl_password,
        &mut full.kafka.ssl_ca_location,
        &mut full.kafka.ssl_certificate_location,
        &mut full.kafka.ssl_key_location,
        &mut full.kafka.ssl_key_password,
        &mut full.decode.schema_registry_url,
        &mut full.decode.schema_registry_username,
        &mut full.decode.schema_registry_password,
    ] {
        *o = Some("x".into());
    }
    full.topics.changelog = Some("c".into());
    full.topics.alert_schema_id = Some(1);
    full.decode.schema_ids_file = Some("s.json".into());
    full.decode.avro_schema_file = Some("s.avsc".into());
    let table: toml::Table = toml::from_str(&toml::to_string(&full).unwrap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let section = |name: &str| -> String {
        let header = format!("[{name}]\n");
        let start = if name.is_empty() {
            0
        } else {
            text.find(&header)
                .unwrap_or_else(|| panic!("no [{name}] table"))
                + header.len()
        };
        let end = text[start..].find("\n[").map_or(text.len(), |i| start + i);
        text[start..end].to_string()
    };
    let documented = |section: &str, key: &str| {
        section.lines().any(|l| {
            let l = l.trim_start_matches("# ");
            l.starts_with(&format!("{key} ="))
        })
    };
    let mut missing = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                let body = section(key);
                for (k, v) in inner {
                    if v.is_table() {
                        // Free-form librdkafka property maps: their table must exist.
                        section(&format!("{key}.{k}"));
                    } else if !documented(&body, k) {
                        missing.push(format!("{key}.{k}"));
                    }
                }
            }
            _ if !documented(&section(""), key) => missing.push(key.clone()),
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "keys not in pipeline.example.toml: {missing:?}"
    );
}

/// The pipeline.toml inside the Kubernetes ConfigMap loads.
#[test]
fn kubernetes_configmap_pipeline_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/spcvm.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let start = yaml
        .find("pipeline.toml: |\n")
        .expect("the ConfigMap has pipeline.toml")
        + "pipeline.toml: |\n".len();
    let toml: String = yaml[start..]
        .lines()
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipeline.toml");
    std::fs::write(&file, &toml).unwrap();
    let config =
        spcvm::run::config::load(Some(&file), Vec::new()).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.source, spcvm::run::config::SourceKind::Kafka);
    assert!(config.kafka.static_membership);
}

/// Every metric the Prometheus rules use is one spcvm serves.
#[test]
fn prometheus_rules_use_served_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/spcvm-rules.yaml");
    let rules = std::fs::read_to_string(&path).unwrap();
    let metrics = spcvm::metrics::Metrics::new();
    metrics.alert("major", "ewma", "rule_1");
    metrics.set_consumer_lag("t", 0, 1);
    metrics.dead_letter("json");
    let served = metrics.render();
    let mut used = 0;
    for (i, _) in rules.match_indices("spcvm_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used += 1;
        // A histogram's series: `<name>_bucket`, `<name>_sum`, `<name>_count`.
        let histogram = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| served.contains(&format!("# TYPE {base} histogram")))
        });
        assert!(
            histogram
                || served.contains(&format!("# TYPE {name} "))
                || served.contains(&format!("\n{name}{{")),
            "{name} in spcvm-rules.yaml is not served"
        );
    }
    assert!(used > 5);
}
