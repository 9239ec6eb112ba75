//! The bench's options: environment variables, then flags (see `main.rs`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use spcvm_testkit::workspace_root;

/// Default `linger.ms` of the paced producer of the latency phase (a gateway sending as it
/// reads), `--paced-linger-ms`.
const PACED_LINGER_MS: u32 = 1;

/// The bench's options.
#[derive(Debug, Clone)]
pub struct Opts {
    pub records: usize,
    pub tools: usize,
    pub partitions: i32,
    pub mode: String,
    pub rate: u64,
    pub latency_secs: f64,
    pub bootstrap: Option<String>,
    pub spcvm: PathBuf,
    pub keep: bool,
    /// `fetch.wait.max.ms` for the job's and the bench's consumers (librdkafka's 500 when
    /// absent).
    pub fetch_wait_ms: Option<u32>,
    /// librdkafka properties for every client, the job's and the bench's.
    pub client_properties: Vec<(String, String)>,
    /// `linger.ms` of the latency phase's paced producer.
    pub paced_linger_ms: u32,
    /// Throughput rounds (bare consumer, then the job in a fresh group) on the same input.
    pub repeat: usize,
}

const USAGE: &str = "usage: cargo bench -p spcvm --bench e2e -- [--records N] [--tools N] \
[--partitions N] [--mode exactly_once|at_least_once] [--rate RECORDS_PER_S] \
[--latency-secs S] [--fetch-wait-ms MS] [--paced-linger-ms MS] [--client-property KEY=VALUE]... \
[--repeat N] [--spcvm PATH] [--keep]
env: E2E_RECORDS E2E_TOOLS E2E_PARTITIONS E2E_MODE E2E_RATE E2E_LATENCY_SECS \
E2E_FETCH_WAIT_MS E2E_PACED_LINGER_MS E2E_REPEAT E2E_CLIENT_PROPERTIES (KEY=VALUE,...) SPCVM_BIN \
KAFKA_BOOTSTRAP (default: start tansu with scripts/broker.sh)";

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    let clean: String = value.chars().filter(|c| *c != '_' && *c != ',').collect();
    clean
        .parse()
        .map_err(|_| anyhow!("{name}: `{value}` is not a valid number\n{USAGE}"))
}

impl Opts {
    /// The options of this run: the environment variables, then the flags; checked.
    pub fn from_env_and_args() -> Result<Opts> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let mut o = Opts {
            records: 200_000,
            tools: 50,
            partitions: 4,
            mode: "exactly_once".into(),
            rate: 10_000,
            latency_secs: 10.0,
            bootstrap: env("KAFKA_BOOTSTRAP"),
            spcvm: env("SPCVM_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("release/spcvm")),
            keep: false,
            fetch_wait_ms: None,
            client_properties: Vec::new(),
            paced_linger_ms: PACED_LINGER_MS,
            repeat: 3,
        };
        let set = |o: &mut Opts, key: &str, value: &str| -> Result<()> {
            match key {
                "records" => o.records = parse_num(key, value)?,
                "tools" => o.tools = parse_num(key, value)?,
                "partitions" => o.partitions = parse_num(key, value)?,
                "mode" => o.mode = value.to_string(),
                "rate" => o.rate = parse_num(key, value)?,
                "latency-secs" => o.latency_secs = parse_num(key, value)?,
                "spcvm" => o.spcvm = PathBuf::from(value),
                "bootstrap" => o.bootstrap = Some(value.to_string()),
                "fetch-wait-ms" => o.fetch_wait_ms = Some(parse_num(key, value)?),
                "paced-linger-ms" => o.paced_linger_ms = parse_num(key, value)?,
                "repeat" => o.repeat = parse_num(key, value)?,
                "client-property" => {
                    for pair in value.split(',').filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once('=').ok_or_else(|| {
                            anyhow!("--client-property: `{pair}` is not KEY=VALUE\n{USAGE}")
                        })?;
                        o.client_properties.push((k.trim().into(), v.trim().into()));
                    }
                }
                _ => bail!("unknown option --{key}\n{USAGE}"),
            }
            Ok(())
        };
        for (var, key) in [
            ("E2E_RECORDS", "records"),
            ("E2E_TOOLS", "tools"),
            ("E2E_PARTITIONS", "partitions"),
            ("E2E_MODE", "mode"),
            ("E2E_RATE", "rate"),
            ("E2E_LATENCY_SECS", "latency-secs"),
            ("E2E_FETCH_WAIT_MS", "fetch-wait-ms"),
            ("E2E_CLIENT_PROPERTIES", "client-property"),
            ("E2E_PACED_LINGER_MS", "paced-linger-ms"),
            ("E2E_REPEAT", "repeat"),
        ] {
            if let Some(v) = env(var) {
                set(&mut o, key, &v).with_context(|| format!("environment variable {var}"))?;
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                // `cargo bench` passes `--bench` to a harness-less target.
                "--bench" => {}
                "--keep" => o.keep = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                a if a.starts_with("--") => {
                    let a = &a[2..];
                    let (key, value) = match a.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (
                            a.to_string(),
                            args.next()
                                .ok_or_else(|| anyhow!("--{a} needs a value\n{USAGE}"))?,
                        ),
                    };
                    set(&mut o, &key, &value)?;
                }
                // A bare word would be a test-name filter from `cargo bench NAME`: ignore it.
                _ => {}
            }
        }
        ensure!(
            o.mode == "exactly_once" || o.mode == "at_least_once",
            "--mode must be exactly_once or at_least_once, not `{}`",
            o.mode
        );
        ensure!(o.records >= 1000, "--records must be at least 1000");
        ensure!(o.tools >= 2, "--tools must be at least 2");
        ensure!(o.partitions >= 1, "--partitions must be at least 1");
        ensure!(o.rate >= 1, "--rate must be at least 1");
        ensure!(o.repeat >= 1, "--repeat must be at least 1");
        ensure!(o.latency_secs > 0.0, "--latency-secs must be positive");
        Ok(o)
    }
}
