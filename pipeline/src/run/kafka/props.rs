//! The consumer's librdkafka properties, and the prefetch budget shared by the input
//! partitions.

use super::*;

pub(super) fn client_config(
    properties: impl IntoIterator<Item = (String, String)>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Per-partition prefetch limits: at least about one fetch's worth, at most librdkafka's
/// defaults (`queued.min.messages`, `queued.max.messages.kbytes`), which a single queue
/// for all partitions would have as its total.
pub(super) const PREFETCH_MESSAGES_RANGE: (u64, u64) = (1_000, 100_000);
/// See [`PREFETCH_MESSAGES_RANGE`].
pub(super) const PREFETCH_KBYTES_RANGE: (u64, u64) = (1_024, 65_536);
/// How long librdkafka waits before it fetches again for a partition whose queue was at
/// its limit (librdkafka's default, 1 s, can starve a task that drains its queue quickly).
pub(super) const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// librdkafka's prefetch limits for a job reading `partitions` input partitions in all.
///
/// Each partition's queue is split off the consumer queue (`run::queue`), and librdkafka
/// checks `queued.min.messages` and `queued.max.messages.kbytes` against the queue a
/// partition's messages land in, so with split queues the limits hold per partition and
/// what an instance prefetches grows with its partitions (855 MiB at 12 partitions behind
/// a backlog, librdkafka's defaults). The instance's budget divided by the input's
/// partition count bounds the total even when one instance holds them all; the per-
/// partition values stay within librdkafka's defaults, so few partitions prefetch no more
/// than before. (Lower message limits cost throughput in the e2e bench: 33,333 a partition
/// at 12 partitions ran a quarter slower than 100,000.)
pub(super) fn prefetch_properties(
    delivery: &DeliveryConfig,
    partitions: usize,
) -> Vec<(String, String)> {
    let n = (partitions as u64).max(1);
    let messages = (delivery.prefetch_messages / n)
        .clamp(PREFETCH_MESSAGES_RANGE.0, PREFETCH_MESSAGES_RANGE.1);
    let kbytes = (delivery.prefetch_mb.saturating_mul(1024) / n)
        .clamp(PREFETCH_KBYTES_RANGE.0, PREFETCH_KBYTES_RANGE.1);
    vec![
        ("queued.min.messages".into(), messages.to_string()),
        ("queued.max.messages.kbytes".into(), kbytes.to_string()),
        (
            "fetch.queue.backoff.ms".into(),
            FETCH_QUEUE_BACKOFF_MS.to_string(),
        ),
    ]
}

/// The value of the last setting of `key` in `props`: the one librdkafka keeps.
pub(super) fn last_setting<'a>(props: &'a [(String, String)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The consumer's librdkafka properties, for `partitions` input partitions in all.
pub(super) fn consumer_properties(
    config: &PipelineConfig,
    partitions: usize,
) -> Vec<(String, String)> {
    let k = &config.kafka;
    let mut p: Vec<(String, String)> = vec![
        ("group.id".into(), k.group_id.clone()),
        ("enable.auto.commit".into(), "false".into()),
        ("enable.auto.offset.store".into(), "false".into()),
        ("auto.offset.reset".into(), "earliest".into()),
        ("isolation.level".into(), "read_committed".into()),
        (
            "session.timeout.ms".into(),
            k.session_timeout_ms.to_string(),
        ),
        ("receive.message.max.bytes".into(), "100000000".into()),
        ("statistics.interval.ms".into(), "5000".into()),
        ("partition.assignment.strategy".into(), "range".into()),
    ];
    p.extend(prefetch_properties(&config.delivery, partitions));
    if k.static_membership {
        p.push((
            "group.instance.id".into(),
            format!("spcvm-{}", k.instance()),
        ));
    }
    p.extend(k.common_properties());
    p.extend(k.consumer_properties.clone());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::config::PipelineConfig;
    use rdkafka::consumer::BaseConsumer;

    use super::last_setting as last;

    #[test]
    fn prefetch_budget_is_shared_by_the_input_partitions() {
        let delivery = DeliveryConfig::default();
        let per = |partitions| {
            let props = prefetch_properties(&delivery, partitions);
            (
                last(&props, "queued.min.messages")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                last(&props, "queued.max.messages.kbytes")
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            )
        };
        // Up to 12 partitions, librdkafka's own per-queue defaults...
        assert_eq!(per(1), (100_000, 65_536));
        assert_eq!(per(12), (100_000, 65_536));
        // ...beyond, the budget shared: all partitions together stay within it...
        assert_eq!(per(48), (25_000, 16_384));
        for n in [13, 24, 48, 100, 500] {
            let (messages, kbytes) = per(n);
            assert!(messages * n as u64 <= 1_200_000, "{n}");
            assert!(kbytes * n as u64 <= 768 * 1024, "{n}");
        }
        // ...down to the floors (about one fetch a partition).
        assert_eq!(per(10_000), (1_000, 1_024));
        assert_eq!(per(0), per(1));
        let small = DeliveryConfig {
            prefetch_messages: 40_000,
            prefetch_mb: 64,
            ..DeliveryConfig::default()
        };
        let props = prefetch_properties(&small, 4);
        assert_eq!(last(&props, "queued.min.messages"), Some("10000"));
        assert_eq!(last(&props, "queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(last(&props, "fetch.queue.backoff.ms"), Some("10"));
    }

    #[test]
    fn consumer_properties_of_the_user_win_over_the_prefetch_budget() {
        let mut config = PipelineConfig::default();
        assert_eq!(
            last(&consumer_properties(&config, 4), "queued.min.messages"),
            Some("100000")
        );
        config
            .kafka
            .consumer_properties
            .insert("queued.min.messages".into(), "5000".into());
        config
            .kafka
            .properties
            .insert("fetch.queue.backoff.ms".into(), "50".into());
        let props = consumer_properties(&config, 4);
        assert_eq!(last(&props, "queued.min.messages"), Some("5000"));
        assert_eq!(last(&props, "fetch.queue.backoff.ms"), Some("50"));
        // And librdkafka accepts every property spcvm sets.
        client_config(props)
            .create::<BaseConsumer>()
            .expect("librdkafka takes the consumer's properties");
    }
}
