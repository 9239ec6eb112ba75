//! `spcvm simulate`: a scenario file into telemetry (a JSON-lines or Avro file, or a Kafka
//! topic, paced by `--rate` if asked) and its ground truth, with a progress bar on a
//! terminal.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::CliError;
use crate::decode::PayloadFormat;
use crate::simulate::{self, Destination, Generator, KafkaTarget, OutputFormat};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    spcvm simulate --scenario deploy/scenarios/source_wear.toml --out /tmp/fab.jsonl\n  \
    spcvm backtest --input /tmp/fab.jsonl --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl\n  \
    spcvm score --truth /tmp/fab.truth.json --alerts /tmp/alerts.jsonl --triage /tmp/triage.jsonl\n\n  \
    # live: 500 records a second to the job's input topic, Confluent Avro with schema id 1\n  \
    spcvm simulate --scenario deploy/scenarios/mixed_fab.toml --kafka-bootstrap 127.0.0.1:9092 \\\n      \
    --topic tool.telemetry --kafka-format avro_confluent --schema-id 1 --rate 500 --truth /tmp/fab.truth.json")]
pub(super) struct SimulateArgs {
    /// The scenario: the fab and the faults to inject (deploy/scenarios/*.toml).
    #[arg(long, value_name = "SCENARIO.toml")]
    scenario: PathBuf,
    /// Where the telemetry goes: JSON lines, or an Avro container for `.avro`.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "kafka_bootstrap",
        conflicts_with = "kafka_bootstrap"
    )]
    out: Option<PathBuf>,
    /// Output format of --out. Default: from the extension (`.avro`: Avro, else JSON lines).
    #[arg(long, value_enum, conflicts_with = "kafka_bootstrap")]
    format: Option<OutputFormat>,
    /// Produce the telemetry to Kafka instead of a file: the brokers (`bootstrap.servers`).
    /// Records are keyed by tool id, so a tool's records stay in one partition, in order.
    #[arg(long, value_name = "HOST:PORT", requires = "topic")]
    kafka_bootstrap: Option<String>,
    /// The topic to produce to (it must exist, or the broker must create topics itself).
    #[arg(long, value_name = "NAME", requires = "kafka_bootstrap")]
    topic: Option<String>,
    /// Payload encoding on Kafka, as the job's `[decode] format` names it: `json`,
    /// `avro_confluent` (magic byte, --schema-id, Avro datum) or `avro` (bare datum).
    #[arg(long, value_name = "FORMAT", default_value = "json",
          value_parser = ["json", "avro_confluent", "avro"], requires = "kafka_bootstrap")]
    kafka_format: String,
    /// The schema id in the header of `avro_confluent` payloads: the id under which
    /// `schemas/avro/telemetry.avsc` is in the job's ids file or schema registry.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    schema_id: u32,
    /// A librdkafka producer property over the defaults (idempotent, acks=all, lz4,
    /// linger.ms=2), e.g. `security.protocol=ssl`; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value, requires = "kafka_bootstrap")]
    producer_property: Vec<(String, String)>,
    /// Records a second of wall clock (event time stays the scenario's). Default: as fast
    /// as the output takes them.
    #[arg(long, value_name = "N", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Where the ground truth goes (JSON). Default: NAME.truth.json beside --out, or
    /// TOPIC.truth.json in the current directory with --topic.
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// The RNG seed, instead of the scenario's.
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar and no summary.
    #[arg(long, short)]
    quiet: bool,
}

/// Parses `--producer-property KEY=VALUE`.
fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

/// Parses `--rate N`: a positive, finite number of records a second.
fn positive_rate(arg: &str) -> Result<f64, String> {
    match arg.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "expected a positive number of records a second, got `{arg}`"
        )),
    }
}

/// Where the arguments send the telemetry, and the default truth file.
fn destination(args: &SimulateArgs) -> Result<(Destination, PathBuf), CliError> {
    if let (Some(bootstrap), Some(topic)) = (&args.kafka_bootstrap, &args.topic) {
        let format = match args.kafka_format.as_str() {
            "avro_confluent" => PayloadFormat::AvroConfluent,
            "avro" => PayloadFormat::Avro,
            _ => PayloadFormat::Json,
        };
        let target = KafkaTarget {
            bootstrap: bootstrap.clone(),
            topic: topic.clone(),
            format,
            schema_id: args.schema_id,
            properties: args
                .producer_property
                .iter()
                .cloned()
                .collect::<BTreeMap<_, _>>(),
        };
        return Ok((
            Destination::Kafka(target),
            PathBuf::from(format!("{topic}.truth.json")),
        ));
    }
    let Some(out) = &args.out else {
        return Err(CliError::Usage(
            "say where the telemetry goes: --out FILE, or --kafka-bootstrap HOST:PORT --topic NAME"
                .into(),
        ));
    };
    let format = args.format.unwrap_or_else(|| OutputFormat::of(out));
    Ok((
        Destination::File {
            path: out.clone(),
            format,
        },
        simulate::default_truth_path(out),
    ))
}

pub(super) fn command(args: SimulateArgs) -> Result<(), CliError> {
    let mut scenario =
        simulate::scenario::load(&args.scenario).map_err(simulate::SimulateError::from)?;
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let (destination, default_truth) = destination(&args)?;
    let truth_path = args.truth.clone().unwrap_or(default_truth);
    let total = Generator::new(&scenario).len();
    let bar = (!args.quiet && std::io::stderr().is_terminal())
        .then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} records ({per_sec}, eta {eta})",
            )
            .ok()?;
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style);
            Some(bar)
        })
        .flatten();
    let started = std::time::Instant::now();
    let result = simulate::simulate(
        &scenario,
        &args.scenario.display().to_string(),
        &destination,
        &truth_path,
        args.rate,
        &mut |n| {
            if let Some(bar) = &bar {
                bar.set_position(n);
            }
        },
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (truth, written) = result?;
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "spcvm simulate: {written} records of {} tools ({} per tool, seed {}) in {secs:.2} s ({:.0} records/s) -> {destination}",
            truth.tools.len(),
            scenario.samples_per_tool,
            scenario.seed,
            written as f64 / secs.max(1e-9),
        );
        for f in &truth.faults {
            eprintln!(
                "  fault {} on {} from sample {} ({} sd over {} samples; expect {}/{})",
                f.kind,
                f.tool_id,
                f.onset_sample,
                f.magnitude_sigma,
                f.ramp_samples,
                f.expected.failure_modes.first().map_or("", String::as_str),
                f.expected.cause_id
            );
        }
        eprintln!("  ground truth -> {}", truth_path.display());
    }
    Ok(())
}
