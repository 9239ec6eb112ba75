//! The bench's options: a flag, or the environment variable named in its help (`cargo bench
//! -p spcvm --bench e2e -- --help`). A flag given on the command line wins over its
//! variable (for `--client-property` too: the flags replace `E2E_CLIENT_PROPERTIES`), and a
//! variable set to the empty string counts as unset.

use std::path::PathBuf;

use anyhow::{Result, ensure};
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use spcvm_testkit::workspace_root;

/// End-to-end benchmark of `spcvm run` against a Kafka-protocol broker: throughput against a
/// bare consumer, then alert latency at a paced rate (docs/BENCHMARKS.md).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "e2e",
    override_usage = "cargo bench -p spcvm --bench e2e -- [OPTIONS]",
    after_help = "The broker is KAFKA_BOOTSTRAP (or --bootstrap); unset, tansu is started \
                  with scripts/broker.sh. SPCVM_BENCH_LOG sets the job's RUST_LOG (e.g. \
                  info,spcvm=debug to log each commit's phases)."
)]
pub struct Opts {
    /// Records produced for the throughput phase (at least 1000; `_` and `,` may group
    /// digits, as in all numbers here).
    #[arg(long, env = "E2E_RECORDS", value_name = "N", default_value = "200000",
          value_parser = number::<usize>)]
    pub records: usize,
    /// Tools (half ion implanters with 4 measurements, half RTP chambers with 5; at least 2).
    #[arg(long, env = "E2E_TOOLS", value_name = "N", default_value = "50",
          value_parser = number::<usize>)]
    pub tools: usize,
    /// Partitions of the input topic.
    #[arg(long, env = "E2E_PARTITIONS", value_name = "N", default_value = "4",
          value_parser = number::<i32>)]
    pub partitions: i32,
    /// Delivery mode of the job: exactly_once or at_least_once.
    #[arg(
        long,
        env = "E2E_MODE",
        value_name = "MODE",
        default_value = "exactly_once"
    )]
    pub mode: String,
    /// Records/s of the latency phase.
    #[arg(long, env = "E2E_RATE", value_name = "RECORDS_PER_S", default_value = "10000",
          value_parser = number::<u64>)]
    pub rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, env = "E2E_LATENCY_SECS", value_name = "S", default_value = "10",
          value_parser = number::<f64>)]
    pub latency_secs: f64,
    /// `fetch.wait.max.ms` of the job's and the bench's consumers (librdkafka's 500 when
    /// absent).
    #[arg(long, env = "E2E_FETCH_WAIT_MS", value_name = "MS", value_parser = number::<u32>)]
    pub fetch_wait_ms: Option<u32>,
    /// `linger.ms` of the latency phase's paced producer.
    #[arg(long, env = "E2E_PACED_LINGER_MS", value_name = "MS", default_value = "1",
          value_parser = number::<u32>)]
    pub paced_linger_ms: u32,
    /// A librdkafka property for every client, the job's (`kafka.properties`) and the
    /// bench's; repeatable, and each value may hold several, comma-separated.
    #[arg(long = "client-property", env = "E2E_CLIENT_PROPERTIES", value_name = "KEY=VALUE",
          value_parser = properties)]
    client_property: Vec<Properties>,
    /// The `--client-property` settings, in order.
    #[arg(skip)]
    pub client_properties: Vec<(String, String)>,
    /// Throughput rounds on the same input, each a bare drain then the job in a fresh group
    /// with fresh output topics; the ratio is judged on their median, as the two rates move
    /// from run to run on a shared machine.
    #[arg(long, env = "E2E_REPEAT", value_name = "N", default_value = "3",
          value_parser = number::<usize>)]
    pub repeat: usize,
    /// The spcvm binary to run.
    #[arg(long, env = "SPCVM_BIN", value_name = "PATH", default_value_os_t = release_spcvm())]
    pub spcvm: PathBuf,
    /// Bootstrap servers of the broker.
    #[arg(long, env = "KAFKA_BOOTSTRAP", value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    /// Keep the topics, the job's config and log.
    #[arg(long)]
    pub keep: bool,
    /// Passed by `cargo bench` to a bench without libtest's harness: ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// A name filter (`cargo bench NAME`): ignored.
    #[arg(hide = true)]
    filter: Vec<String>,
}

/// The librdkafka properties of one `--client-property` value.
#[derive(Debug, Clone)]
struct Properties(Vec<(String, String)>);

/// `KEY=VALUE[,KEY=VALUE...]` (empty items skipped, spaces around keys and values trimmed).
fn properties(value: &str) -> Result<Properties, String> {
    let pairs = value.split(',').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
        Ok((k.trim().to_string(), v.trim().to_string()))
    });
    pairs.collect::<Result<_, String>>().map(Properties)
}

/// A number, `_` and `,` allowed between the digits (`200_000`, `2,000,000`).
fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    let clean: String = value.chars().filter(|c| *c != '_' && *c != ',').collect();
    clean
        .parse()
        .map_err(|_| format!("`{value}` is not a valid number"))
}

/// The release binary of this workspace (under `CARGO_TARGET_DIR` when set).
fn release_spcvm() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("release/spcvm")
}

impl Opts {
    /// The options of this run, checked. Exits with clap's message on a malformed command
    /// line, and after printing the help for `--help`.
    pub fn from_env_and_args() -> Result<Opts> {
        let mut command = Opts::command();
        // An empty variable counts as unset (`E2E_MODE= cargo bench ...`).
        let empty: Vec<clap::Id> = command
            .get_arguments()
            .filter(|a| {
                a.get_env()
                    .and_then(std::env::var_os)
                    .is_some_and(|v| v.is_empty())
            })
            .map(|a| a.get_id().clone())
            .collect();
        for id in empty {
            command = command.mut_arg(id, |a| a.env(None::<&'static str>));
        }
        let mut o = Opts::from_arg_matches(&command.get_matches())?;
        o.client_properties = o.client_property.drain(..).flat_map(|p| p.0).collect();
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
