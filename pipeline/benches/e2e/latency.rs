//! The latency phase: with the job caught up, records are produced at a paced rate while
//! a read_committed consumer stamps the arrival of every alert.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use spcvm_schemas::{Alert, decode_alert_json};
use spcvm_testkit::{TelemetryGen, metric_sum, unique};

use crate::LATENCY_METRIC;
use crate::args::Opts;
use crate::job::Job;
use crate::kafka::{
    Encoded, committed_reached, consumer, encode, flush, high_watermarks, producer, send,
    written_ends,
};
use crate::metrics::{bucket_delta, buckets};
use crate::setup::Setup;

/// What [`latency_phase`] measured.
pub struct Latency {
    pub sent: usize,
    pub send_secs: f64,
    pub drain_after_send: Duration,
    pub hist: Vec<(f64, f64)>,
    pub alerts: f64,
    pub e2e: Vec<Duration>,
    pub first_firings: usize,
    pub closing_updates: usize,
    pub unmatched: usize,
    /// Ack latencies of the paced producer (sorted).
    pub acks: Vec<Duration>,
    /// Scrapes of the job's metrics before and after the phase.
    pub before: String,
    pub after: String,
}

/// The alert reader: its thread (alerts with their arrival) and the channel on which it is
/// told how many alerts to wait for.
type Reader = (
    std::thread::JoinHandle<Result<ReaderOutcome>>,
    mpsc::Sender<usize>,
);

struct ReaderOutcome {
    alerts: Vec<(Alert, Instant)>,
    /// Whether it stopped on its deadline rather than on the expected count.
    timed_out: bool,
}

/// Reads the alert topic (read_committed) from the beginning to its end (end-of-partition
/// events, not the listed high watermarks, see [`Counting`]) and returns once there; then,
/// on its thread, stamps the arrival of every further alert until it has read the count
/// sent on the channel (or 30 s after it was sent).
fn alert_reader(bootstrap: &str, topic: &str, partitions: i32) -> Result<Reader> {
    let c = consumer(bootstrap, &unique("bench-alerts"), true)?;
    let listed = high_watermarks(&c, topic, partitions)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    // A partition that never held anything lists 0 and may send no end-of-partition event.
    let mut pending: Vec<i32> = listed
        .iter()
        .filter(|(_, high)| *high > 0)
        .map(|(p, _)| *p)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "reading {topic} to its end took over 60 s"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Err(KafkaError::PartitionEOF(p))) => pending.retain(|q| *q != p),
            Some(Err(e)) => bail!("alert reader: {e}"),
            _ => {}
        }
    }
    let (tx, rx) = mpsc::channel::<usize>();
    let topic = topic.to_string();
    let handle = std::thread::spawn(move || -> Result<ReaderOutcome> {
        let mut alerts = Vec::new();
        let mut expected: Option<(usize, Instant)> = None;
        loop {
            match c.poll(Duration::from_millis(20)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => bail!("alert reader: {e}"),
                Some(Ok(m)) => {
                    let now = Instant::now();
                    let alert = decode_alert_json(m.payload().unwrap_or_default())
                        .map_err(|e| anyhow!("alert {}[{}]: {e}", topic, m.partition()))?;
                    alerts.push((alert, now));
                }
            }
            if expected.is_none()
                && let Ok(n) = rx.try_recv()
            {
                expected = Some((n, Instant::now() + Duration::from_secs(30)));
            }
            if let Some((n, deadline)) = expected {
                if alerts.len() >= n {
                    return Ok(ReaderOutcome {
                        alerts,
                        timed_out: false,
                    });
                }
                if Instant::now() > deadline {
                    return Ok(ReaderOutcome {
                        alerts,
                        timed_out: true,
                    });
                }
            }
        }
    });
    Ok((handle, tx))
}

/// The latency phase on `setup`'s input, the job running and caught up to
/// `input_ends`; the records are the next of `data`.
pub fn latency_phase(
    setup: &Setup,
    opts: &Opts,
    job: &mut Job,
    data: &mut TelemetryGen,
    watcher: &BaseConsumer,
    input_ends: &[(i32, i64)],
) -> Result<Latency> {
    let count = ((opts.rate as f64) * opts.latency_secs).round() as usize;
    let records = encode(data, count);
    let (reader, expected_tx) = alert_reader(&setup.bootstrap, &setup.alerts, setup.partitions)?;
    let p = producer(&setup.bootstrap, opts.paced_linger_ms)?;
    // Connect the producer and get its idempotent producer id before the clock starts (the
    // first records would wait for both): one record to the bench's own dead-letter topic,
    // which nothing reads.
    p.client()
        .fetch_metadata(Some(&setup.input), Duration::from_secs(10))?;
    let warm_up = Encoded {
        key: "bench-warm-up".into(),
        event_time: 0,
        payload: b"warm-up".to_vec(),
    };
    send(&p, &setup.dlq, &warm_up)?;
    flush(&p, 1)?;
    p.context()
        .ack_latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    p.context()
        .ends
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    let before = job.scrape()?;
    let mut sent_at: HashMap<(String, i64), Instant> = HashMap::with_capacity(count);
    let interval = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let t0 = Instant::now();
    for (i, r) in records.iter().enumerate() {
        let due = t0 + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let at = Instant::now();
        send(&p, &setup.input, r)?;
        sent_at.insert((r.key.clone(), r.event_time), at);
    }
    let last_send = Instant::now();
    let send_secs = (last_send - t0).as_secs_f64();
    flush(&p, count as u64 + 1)?;
    let highs = written_ends(&p, setup.partitions, input_ends);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !committed_reached(watcher, &setup.input, &highs) {
        job.check_running()?;
        ensure!(
            Instant::now() < deadline,
            "the job did not catch up within 120 s after the paced phase; log:\n{}",
            job.log_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let drain_after_send = last_send.elapsed();
    // Every alert of the phase is acknowledged (and, exactly-once, committed) by now.
    let alert_label = format!("topic=\"{}\"", setup.alerts);
    let produced = |text: &str| metric_sum(text, "spcvm_messages_produced_total", &alert_label);
    let after = job.scrape()?;
    let expected = (produced(&after) - produced(&before)).round() as usize;
    expected_tx
        .send(expected)
        .map_err(|_| anyhow!("the alert reader stopped early"))?;
    let outcome = reader
        .join()
        .map_err(|_| anyhow!("the alert reader panicked"))??;
    if outcome.timed_out {
        println!(
            "note: the alert reader saw {} of the {expected} alerts the job produced in the \
             phase within 30 s (aborted transactions?)",
            outcome.alerts.len()
        );
    }
    let alerts_read = outcome.alerts;
    let hist = bucket_delta(
        &buckets(&before, LATENCY_METRIC),
        &buckets(&after, LATENCY_METRIC),
    );
    let alerts = metric_sum(&after, "spcvm_alerts_total", "")
        - metric_sum(&before, "spcvm_alerts_total", "");
    let (mut e2e, mut closing_updates, mut unmatched) = (Vec::new(), 0, 0);
    for (alert, arrived) in &alerts_read {
        if alert.repeats > 0 {
            closing_updates += 1;
            continue;
        }
        match sent_at.get(&(alert.tool_id.clone(), alert.event_time)) {
            Some(sent) => e2e.push(arrived.saturating_duration_since(*sent)),
            None => unmatched += 1,
        }
    }
    e2e.sort();
    let mut acks = p
        .context()
        .ack_latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    acks.sort();
    Ok(Latency {
        acks,
        before,
        after,
        sent: count,
        send_secs,
        drain_after_send,
        hist,
        alerts,
        first_firings: e2e.len(),
        e2e,
        closing_updates,
        unmatched,
    })
}
