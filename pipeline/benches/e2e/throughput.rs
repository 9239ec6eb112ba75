//! The throughput phase: a round is (a) a bare rdkafka consumer draining the input, then
//! (b) the job consuming it in its own group, timed from its first consumed message to
//! its group's committed offsets at the ends.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use spcvm_testkit::{metric_sum, unique};

use crate::args::Opts;
use crate::job::{CpuClocks, Job, cpu_secs, listener_pid};
use crate::kafka::{committed_reached, consumer};
use crate::metrics::{STEADY, steady_rate};
use crate::setup::Setup;

/// What [`drain_bare`] measured.
pub struct BareDrain {
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Seconds from the first message to the last.
    pub secs: f64,
    /// CPU seconds this process used from the first message to the end of every
    /// partition (which some brokers report well after the last message).
    pub cpu_secs: Option<f64>,
    /// CPU seconds the broker used meanwhile.
    pub broker_cpu_secs: Option<f64>,
    /// Seconds from the first message to the end of every partition.
    pub cpu_window_secs: f64,
    /// Records/s between the message that made a tenth of the records and the one that
    /// made nine tenths (see [`STEADY`]).
    pub steady_rate: Option<f64>,
}

/// (a) of the throughput phase: a bare consumer drains the input.
fn drain_bare(setup: &Setup, highs: &[(i32, i64)]) -> Result<BareDrain> {
    let c = consumer(&setup.bootstrap, &unique("bench-bare"), true)?;
    let mut tpl = TopicPartitionList::new();
    let mut pending = 0;
    for &(p, high) in highs {
        if high > 0 {
            tpl.add_partition_offset(&setup.input, p, Offset::Beginning)?;
            pending += 1;
        }
    }
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut last) = (None, Instant::now());
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut cpu_first = (None, None);
    let total: i64 = highs.iter().map(|&(_, high)| high).sum();
    let marks = [
        (total as f64 * STEADY).ceil() as u64,
        (total as f64 * (1.0 - STEADY)).ceil() as u64,
    ];
    let mut steady = Vec::with_capacity(2);
    let broker = listener_pid(&setup.bootstrap);
    while pending > 0 {
        ensure!(Instant::now() < deadline, "the bare consumer timed out");
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => bail!("bare consumer: {e}"),
            Some(Ok(m)) => {
                let now = Instant::now();
                if first.is_none() {
                    first = Some(now);
                    cpu_first = (cpu_secs(std::process::id()), broker.and_then(cpu_secs));
                }
                last = now;
                count += 1;
                if marks.contains(&count) {
                    steady.push((now, count as f64));
                }
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            }
        }
    }
    let first = first.context("the bare consumer read nothing")?;
    let cpu_window_secs = first.elapsed().as_secs_f64();
    let since = |start: Option<f64>, pid: Option<u32>| {
        start.zip(pid.and_then(cpu_secs)).map(|(a, b)| b - a)
    };
    Ok(BareDrain {
        records: count,
        bytes,
        secs: (last - first).as_secs_f64(),
        cpu_secs: since(cpu_first.0, Some(std::process::id())),
        broker_cpu_secs: since(cpu_first.1, broker),
        cpu_window_secs,
        steady_rate: match steady[..] {
            [(t1, c1), (t2, c2)] if t2 > t1 => Some((c2 - c1) / (t2 - t1).as_secs_f64()),
            _ => None,
        },
    })
}

/// (b) of the throughput phase: the job from its first consumed message to all committed.
/// Returns the job (still running, caught up) and the timings.
fn job_throughput(
    setup: &Setup,
    opts: &Opts,
    highs: &[(i32, i64)],
    watcher: &BaseConsumer,
) -> Result<(Job, JobTimings, String)> {
    let config = setup.dir.join("job.toml");
    std::fs::write(&config, setup.config())?;
    let started = Instant::now();
    let mut job = Job::start(&opts.spcvm, &config, &setup.dir.join("job.log"))?;
    job.wait_addr(Duration::from_secs(30))?;
    let broker = listener_pid(&setup.bootstrap);
    let consumed_label = format!("topic=\"{}\"", setup.input);
    let consumed = |text: &str| metric_sum(text, "spcvm_messages_consumed_total", &consumed_label);
    let n = opts.records as f64;
    // Start: the first scrape that shows a consumed message.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (t0, c0, cpu0) = loop {
        job.check_running()?;
        let c = consumed(&job.scrape()?);
        if c > 0.0 {
            break (Instant::now(), c, CpuClocks::read(&job, broker));
        }
        ensure!(
            Instant::now() < deadline,
            "the job consumed nothing within 120 s; log:\n{}",
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let join_secs = (t0 - started).as_secs_f64();
    // End: every record consumed (metric), then committed (group offsets).
    let budget = Duration::from_secs(120 + opts.records as u64 / 1000);
    let deadline = Instant::now() + budget;
    let mut all_consumed = None;
    // The committed offsets are asked of the broker every 10 ms; the job's `/metrics` only
    // every 50 ms: a scrape renders every series on the job's own cores (rendering and
    // serving one every 10 ms took about a tenth of the job's CPU in a profile).
    // They are asked from the scrape that shows nine tenths consumed on (asking only after
    // "all consumed" was scraped could see a commit up to a scrape interval late).
    let mut last_scrape = t0;
    let mut near_end = false;
    // (instant, records consumed) of every scrape, for the steady-state rate.
    let mut samples = vec![(t0, c0)];
    let (t_end, cpu1) = loop {
        job.check_running()?;
        if all_consumed.is_none() && last_scrape.elapsed() >= SCRAPE_EVERY {
            last_scrape = Instant::now();
            let c = consumed(&job.scrape()?);
            samples.push((Instant::now(), c));
            near_end |= c >= 0.9 * n;
            if c >= n {
                all_consumed = Some(Instant::now());
            }
        }
        if near_end && committed_reached(watcher, &setup.input, highs) {
            let now = Instant::now();
            // Committed to the end means consumed to the end, whatever the last scrape said.
            all_consumed.get_or_insert(now);
            break (now, CpuClocks::read(&job, broker));
        }
        ensure!(
            Instant::now() < deadline,
            "the job did not commit all {} records within {budget:?}; log:\n{}",
            opts.records,
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let remaining = n - c0;
    let metrics = job.scrape()?;
    let timings = JobTimings {
        first_seen: c0,
        rate_consumed: all_consumed.map(|t| remaining / (t - t0).as_secs_f64()),
        rate_committed: remaining / (t_end - t0).as_secs_f64(),
        steady_rate: steady_rate(&samples, n),
        join_secs,
        cpu_secs: CpuClocks::since(cpu0.job, cpu1.job),
        broker_cpu_secs: CpuClocks::since(cpu0.broker, cpu1.broker),
        bench_cpu_secs: CpuClocks::since(cpu0.bench, cpu1.bench),
        idle_secs: CpuClocks::since(cpu0.idle, cpu1.idle),
        peak_rss_mib: job.peak_rss_mib(),
    };
    Ok((job, timings, metrics))
}

/// What [`job_throughput`] measured.
pub struct JobTimings {
    /// Records consumed at the first scrape that showed any (the start).
    pub first_seen: f64,
    /// Records/s from the start until all were consumed (scraped).
    pub rate_consumed: Option<f64>,
    /// Records/s from the start until the group's offsets reached the end.
    pub rate_committed: f64,
    /// Records/s consumed between a tenth and nine tenths of the records (see
    /// [`STEADY`]), interpolated between scrapes; `None` when the first scrape already
    /// showed more than a tenth.
    pub steady_rate: Option<f64>,
    /// Seconds from the process start to the start of the measurement.
    pub join_secs: f64,
    /// CPU seconds the job used in the measured interval.
    pub cpu_secs: Option<f64>,
    /// CPU seconds the broker used in the measured interval.
    pub broker_cpu_secs: Option<f64>,
    /// CPU seconds the bench process used in the measured interval (scrapes, offset
    /// queries).
    pub bench_cpu_secs: Option<f64>,
    /// Idle CPU seconds of the whole machine in the measured interval.
    pub idle_secs: Option<f64>,
    /// The job's peak resident memory from its start to the end of the measurement, MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Least time between two scrapes of the job's `/metrics` in the throughput phase.
const SCRAPE_EVERY: Duration = Duration::from_millis(50);

/// One throughput round's headline figures.
pub struct Round {
    pub bare_rate: f64,
    pub committed_rate: f64,
    pub job_cpu_per_record: Option<f64>,
    /// The bare consumer's and the job's steady-state rates (see [`STEADY`]).
    pub steady: Option<(f64, f64)>,
}

impl Round {
    /// The job's rate over the bare consumer's.
    pub fn ratio(&self) -> f64 {
        self.committed_rate / self.bare_rate
    }

    /// The job's steady-state rate over the bare consumer's.
    pub fn steady_ratio(&self) -> Option<f64> {
        self.steady.map(|(bare, job)| job / bare)
    }
}

/// What [`throughput_round`] leaves: its figures, what they come from, the job (still
/// running) and the watcher of its group.
pub struct RoundRun {
    pub figures: Round,
    pub bare: BareDrain,
    pub job: Job,
    pub timings: JobTimings,
    /// The job's metrics scraped at the end of the round.
    pub metrics: String,
    pub watcher: BaseConsumer,
}

/// A throughput round: the bare consumer drains the input, then the job consumes it in
/// `setup`'s group.
pub fn throughput_round(opts: &Opts, setup: &Setup, highs: &[(i32, i64)]) -> Result<RoundRun> {
    eprintln!("(a) bare consumer draining the input ...");
    let bare = drain_bare(setup, highs)?;
    ensure!(
        bare.records == opts.records as u64,
        "the bare consumer read {} records, not {}",
        bare.records,
        opts.records
    );
    eprintln!("(b) spcvm run ...");
    let watcher = consumer(&setup.bootstrap, &setup.group, false)?;
    let (job, timings, metrics) = job_throughput(setup, opts, highs, &watcher)?;
    let job_records = opts.records as f64 - timings.first_seen;
    let figures = Round {
        bare_rate: (bare.records - 1) as f64 / bare.secs,
        committed_rate: timings.rate_committed,
        job_cpu_per_record: timings.cpu_secs.map(|cpu| cpu / job_records),
        steady: bare.steady_rate.zip(timings.steady_rate),
    };
    Ok(RoundRun {
        figures,
        bare,
        job,
        timings,
        metrics,
        watcher,
    })
}
