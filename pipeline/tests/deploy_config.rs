//! What `deploy/` ships must fit the binary: `config/charts.toml` is the seed's monitors
//! written out as configuration (it must load and describe exactly the built-in charts, so
//! a fab can start from it), `config/pipeline.example.toml` documents every key with its
//! default, and the Kubernetes manifest, the Prometheus rules and the Grafana dashboard
//! parse and name only the routes, port, metrics and labels spcvm serves.

use std::path::{Path, PathBuf};

use spcvm::config;
use spcvm_operators::{MonitorConfig, defaults};

/// A file or folder under `deploy/`.
fn deploy_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(relative)
}

#[test]
fn deploy_chart_config_equals_the_seed_defaults() {
    let path = deploy_path("config/charts.toml");
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
    let dir = deploy_path("config");
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
    // `[outputs.<stream>]` tables: every key of one, documented in `[outputs]`.
    let output = run_config::OutputConfig {
        topic: Some("t".into()),
        schema_id: Some(1),
        file: Some("f".into()),
        ..Default::default()
    };
    let keys: toml::Table = toml::from_str(&toml::to_string(&output).unwrap()).unwrap();
    assert_eq!(keys.len(), 4);
    let outputs = section("outputs");
    missing.extend(
        keys.keys()
            .filter(|k| !documented(&outputs, k))
            .map(|k| format!("outputs.<stream>.{k}")),
    );
    assert!(
        missing.is_empty(),
        "keys not in pipeline.example.toml: {missing:?}"
    );
}

/// The pipeline.toml inside the Kubernetes ConfigMap loads.
#[test]
fn kubernetes_configmap_pipeline_loads() {
    let path = deploy_path("kubernetes/spcvm.yaml");
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
    let path = deploy_path("prometheus/spcvm-rules.yaml");
    let rules = std::fs::read_to_string(&path).unwrap();
    assert!(assert_served(&rules, &served_metrics(), "spcvm-rules.yaml") > 5);
}

/// What `/metrics` serves once every labelled family has a series.
fn served_metrics() -> String {
    let metrics = spcvm::metrics::Metrics::new();
    metrics.alert("major", "ewma", "rule_1");
    metrics.set_consumer_lag("t", 0, 1);
    metrics.dead_letter("json");
    metrics.decode_failure("json");
    metrics.messages_consumed.with_label_values(&["t"]).inc();
    metrics.messages_produced.with_label_values(&["t"]).inc();
    metrics.transactions.with_label_values(&["committed"]).inc();
    metrics.render()
}

/// Asserts that every `spcvm_*` name in `text` is a metric spcvm serves (a histogram's
/// `_bucket`, `_sum` and `_count` series included); returns how many names it checked.
fn assert_served(text: &str, served: &str, file: &str) -> usize {
    let mut used = 0;
    for (i, _) in text.match_indices("spcvm_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        used += 1;
        let histogram = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| served.contains(&format!("# TYPE {base} histogram")))
        });
        assert!(
            histogram
                || served.contains(&format!("# TYPE {name} "))
                || served.contains(&format!("\n{name}{{")),
            "{name} in {file} is not served"
        );
    }
    used
}

/// Asserts that every label `expr` groups by (`by (...)`) is one a served metric carries,
/// or `le` (histogram buckets) or `instance` (added by Prometheus).
fn assert_grouping_labels_served(expr: &str, served: &str, context: &str) {
    for (i, _) in expr.match_indices("by (") {
        let rest = &expr[i + 4..];
        let labels = &rest[..rest.find(')').expect(")")];
        for label in labels.split(',').map(str::trim) {
            assert!(
                matches!(label, "le" | "instance")
                    || served.contains(&format!("{{{label}=\""))
                    || served.contains(&format!(",{label}=\"")),
                "{context}: no metric has the label {label}"
            );
        }
    }
}

/// The Grafana dashboard is a dashboard model Grafana imports: panels with unique ids on
/// the 24-column grid, not overlapping, each query on the `datasource` variable; its queries
/// use only metrics spcvm serves and group only by labels they carry (or Prometheus adds).
#[test]
fn grafana_dashboard_queries_served_metrics() {
    let path = deploy_path("grafana/spcvm-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("JSON");
    assert_eq!(dashboard["templating"]["list"][0]["name"], "datasource");
    let served = served_metrics();
    let mut ids = std::collections::BTreeSet::new();
    let mut cells = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title");
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{title}: id");
        let grid = |k: &str| panel["gridPos"][k].as_u64().expect("gridPos");
        let (x, y, w, h) = (grid("x"), grid("y"), grid("w"), grid("h"));
        assert!(x + w <= 24, "{title}: past the grid");
        for cell in (x..x + w).flat_map(|c| (y..y + h).map(move |r| (c, r))) {
            assert!(cells.insert(cell), "{title}: overlaps another panel");
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().expect("expr");
            assert_grouping_labels_served(expr, &served, title);
            exprs.push(expr.to_string());
        }
    }
    assert!(assert_served(&exprs.join("\n"), &served, "spcvm-dashboard.json") >= 15);
}

/// Reads every YAML document of a file under `deploy/`.
fn yaml_documents(relative: &str) -> Vec<yaml_rust2::Yaml> {
    let path = deploy_path(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest's document of `kind` (`StatefulSet`, `Service`, ...).
fn of_kind<'a>(docs: &'a [yaml_rust2::Yaml], kind: &str) -> &'a yaml_rust2::Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The StatefulSet's spcvm container.
fn spcvm_container(docs: &[yaml_rust2::Yaml]) -> &yaml_rust2::Yaml {
    &of_kind(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
}

/// A YAML list of strings.
fn strings(list: &yaml_rust2::Yaml) -> Vec<String> {
    list.as_vec()
        .expect("a list")
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// The alerting rules are valid YAML in Prometheus's rule-file shape: every rule has a
/// unique name, an expression grouping only by labels spcvm's metrics carry, a severity
/// Alertmanager routes on, and a summary.
#[test]
fn prometheus_rules_have_the_rule_file_shape() {
    let docs = yaml_documents("prometheus/spcvm-rules.yaml");
    assert_eq!(docs.len(), 1);
    let served = served_metrics();
    let groups = docs[0]["groups"].as_vec().expect("groups");
    let mut names = std::collections::BTreeSet::new();
    for group in groups {
        assert!(group["name"].as_str().is_some());
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            assert!(names.insert(name.to_string()), "{name} twice");
            let expr = rule["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("spcvm_"), "{name}: {expr:?}");
            assert_grouping_labels_served(expr, &served, name);
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("info" | "warning" | "critical")),
                "{name}: {severity:?}"
            );
            let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty(), "{name}");
            if let Some(wait) = rule["for"].as_str() {
                assert!(wait.ends_with('m') || wait.ends_with('s'), "{name}: {wait}");
            }
        }
    }
    assert!(names.contains("SpcvmNoCommits") && names.contains("SpcvmAbsent"));
}

/// The Kubernetes manifest is valid YAML; its probes and scrape annotations name routes
/// and the port spcvm serves, and the disruption budget selects the StatefulSet's pods.
#[test]
fn kubernetes_manifest_fits_the_binary() {
    let docs = yaml_documents("kubernetes/spcvm.yaml");
    let set = of_kind(&docs, "StatefulSet");
    let pod = &set["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&set["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(
        &of_kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        labels
    );
    assert_eq!(&of_kind(&docs, "Service")["spec"]["selector"], labels);
    let container = spcvm_container(&docs);
    assert_eq!(
        strings(&container["args"]),
        ["run", "--config", "/etc/spcvm/pipeline.toml"]
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    let port = annotations["prometheus.io/port"].as_str().expect("port");
    assert_eq!(
        container["ports"][0]["containerPort"].as_i64(),
        port.parse().ok()
    );
    // The port spcvm listens on by default.
    let http = spcvm::run::config::PipelineConfig::default().http;
    assert!(
        http.listen.ends_with(&format!(":{port}")),
        "{}",
        http.listen
    );
}

/// The instructions of a Dockerfile, each as (keyword, arguments), continuation lines
/// joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_string()));
        current.clear();
    }
    assert!(current.is_empty(), "a continuation runs off the end");
    out
}

/// The image the manifest runs fits it: the entrypoint is the binary (so the manifest's
/// `args` start at the subcommand) and its default command is the manifest's; it exposes the
/// port the probes use, runs as a numeric non-root user (which `runAsNonRoot` can check), is
/// built with a Rust at least as new as the workspace's `rust-version`, and the build context
/// leaves out `target/`.
#[test]
fn dockerfile_fits_the_manifest_and_the_workspace() {
    let text = std::fs::read_to_string(deploy_path("docker/Dockerfile")).unwrap();
    let all = dockerfile_instructions(&text);
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let runtime = &all[last_from..];
    let one = |keyword: &str| -> &str {
        let found: Vec<_> = runtime.iter().filter(|(k, _)| k == keyword).collect();
        assert_eq!(found.len(), 1, "{keyword} in the runtime stage: {found:?}");
        &found[0].1
    };
    let json = |args: &str| -> Vec<String> {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("{args}: exec form expected ({e})"))
    };

    let entrypoint = json(one("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/spcvm"]);
    assert!(
        runtime.iter().any(|(k, a)| k == "COPY"
            && a.starts_with("--from=build ")
            && a.ends_with(" /usr/local/bin/spcvm")),
        "the runtime stage copies the built binary to the entrypoint"
    );

    let docs = yaml_documents("kubernetes/spcvm.yaml");
    let container = spcvm_container(&docs);
    assert_eq!(json(one("CMD")), strings(&container["args"]));
    assert_eq!(
        one("EXPOSE").parse::<i64>().ok(),
        container["ports"][0]["containerPort"].as_i64()
    );

    let user = one("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: a numeric uid"));
    assert_ne!(uid, 0, "the image runs as root");
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));

    // rust:<version>-... in the builder's default base, against the workspace's floor.
    let rust_image = all
        .iter()
        .find_map(|(k, a)| {
            (k == "ARG")
                .then(|| a.strip_prefix("RUST_IMAGE="))
                .flatten()
        })
        .expect("ARG RUST_IMAGE=...");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let image_version = rust_image
        .rsplit_once(":")
        .and_then(|(_, tag)| tag.split('-').next())
        .expect("a rust:VERSION-... tag");
    let manifest = std::fs::read_to_string(deploy_path("../Cargo.toml")).unwrap();
    let floor = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    assert!(
        version(image_version) >= version(floor),
        "{rust_image} is older than rust-version {floor}"
    );

    let ignore = std::fs::read_to_string(deploy_path("../.dockerignore")).unwrap();
    assert!(
        ignore
            .lines()
            .any(|l| l.trim().trim_end_matches('/') == "target"),
        ".dockerignore must leave out target/"
    );
}
