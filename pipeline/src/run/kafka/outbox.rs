//! Outputs held back while the transaction they belong to has not begun, and the
//! futures that resolve once a batch's deliveries are acknowledged.

use super::*;

/// Where the outputs of a batch go. Whether they can be sent is decided when the batch
/// starts: the gate only opens further while a batch is processed (it is required to reach
/// a later epoch only at a barrier, between batches).
pub(super) enum Outbox {
    /// Sent as they come: at-least-once, or the transaction they belong to has begun.
    Sending(Vec<(Output, rdkafka::producer::DeliveryFuture)>),
    /// Held back in order (copied, as the messages go back to librdkafka after the batch).
    Holding(Vec<Held>),
}

/// An output held back (see [`super::task::PartitionTask::held`]).
pub(super) enum Held {
    /// An encoded output of a stream.
    Output {
        stream: StreamId,
        key: Vec<u8>,
        payload: Vec<u8>,
    },
    /// A dead letter, with the input partition its message came from.
    DeadLetter {
        tp: Tp,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        offset: i64,
        kind: &'static str,
        error: String,
    },
}

impl Held {
    /// Approximate memory held, in bytes.
    pub(super) fn bytes(&self) -> usize {
        match self {
            Held::Output { key, payload, .. } => {
                std::mem::size_of::<Held>() + key.len() + payload.len()
            }
            Held::DeadLetter {
                key,
                payload,
                headers,
                error,
                ..
            } => {
                let header_bytes: usize = headers
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum();
                std::mem::size_of::<Held>()
                    + key.as_ref().map_or(0, Vec::len)
                    + payload.as_ref().map_or(0, Vec::len)
                    + header_bytes
                    + error.len()
            }
        }
    }
}

/// The held outputs of one batch, with what their acknowledgement reports.
pub(super) struct HeldBatch {
    pub(super) received: Instant,
    pub(super) produced: usize,
    pub(super) outputs: Vec<Held>,
    /// Approximate size of `outputs` in bytes.
    pub(super) bytes: usize,
}

/// A future resolving once every delivery of one message (or one checkpoint) is
/// acknowledged, counting them per output topic.
pub(super) fn acks_of(
    shared: Arc<Shared>,
    deliveries: Vec<(Output, rdkafka::producer::DeliveryFuture)>,
    received: Instant,
    produced: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acked, RunError>> + Send>> {
    Box::pin(async move {
        for (output, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    let topics = shared.sink.topics();
                    let topic = match output {
                        Output::Stream(id) => &shared.job.outputs[usize::from(id.0)].topic,
                        Output::DeadLetter => &topics.dlq,
                        Output::State => &topics.changelog,
                    };
                    shared.job.metrics.produced(topic, 1);
                }
                Ok(Err((e, m))) => {
                    return Err(RunError::Kafka(format!(
                        "delivery to `{}` failed: {e}",
                        m.topic()
                    )));
                }
                Err(_) => return Err(RunError::Kafka("producer closed".into())),
            }
        }
        Ok(Acked {
            received,
            produced,
            reply: None,
        })
    })
}
