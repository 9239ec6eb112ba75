//! The one record path that `spcvm backtest`, the file runtime and the Kafka runtime all
//! take: a decoded message (or why it did not decode) ─> validate ─> dead letter ─> the
//! stages in order ─> their outputs ─> statistics. Decoding is the source's (payload bytes
//! for the Kafka and file runtimes, the input file's format for the backtest); what
//! happens after it is here once, so a backtest equals a stream by construction.
//!
//! A record with a NaN or infinite measurement is the one case handled twice on purpose:
//! it is dead-lettered with the reason (the value is bad data a gateway sent), and its
//! finite measurements are charted; the stages count the non-finite values and never plot
//! them.

use spcvm_operators::RecordStats;
use spcvm_schemas::{TelemetryRef, TelemetryView};

use super::{Emitted, PartitionChain};
use crate::metrics::Metrics;

/// Why a message goes to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// It did not decode into a valid record: nothing of it was charted.
    Undecodable {
        /// Short kind (`json`, `avro`, `too_large`, ...).
        kind: &'static str,
        /// The full reason.
        reason: String,
    },
    /// A valid record with NaN or infinite measurements: the rest of it was charted.
    NonFinite {
        /// Which measurements.
        reason: String,
    },
}

impl Rejection {
    /// The short kind (`non_finite` for [`Rejection::NonFinite`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Undecodable { kind, .. } => kind,
            Rejection::NonFinite { .. } => "non_finite",
        }
    }

    /// The full reason.
    pub fn reason(&self) -> &str {
        match self {
            Rejection::Undecodable { reason, .. } | Rejection::NonFinite { reason } => reason,
        }
    }
}

impl From<crate::decode::DecodeError> for Rejection {
    fn from(e: crate::decode::DecodeError) -> Self {
        Rejection::Undecodable {
            kind: e.kind(),
            reason: e.to_string(),
        }
    }
}

/// The reason text when `record` has NaN or infinite measurements.
pub fn non_finite(record: &impl TelemetryView) -> Option<String> {
    if record.measurements().all(|(_, v)| v.is_finite()) {
        return None;
    }
    let bad: Vec<String> = record
        .measurements()
        .filter(|(_, v)| !v.is_finite())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some(format!(
        "non-finite measurement(s) {}: not charted (the finite measurements of this record were charted)",
        bad.join(", ")
    ))
}

/// What one step over some messages produced. Reused: [`Step::clear`] between batches.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages for the dead letters: their position among the messages given, and why.
    pub rejected: Vec<(usize, Rejection)>,
    /// What the stages emitted, in order.
    pub outputs: Vec<Emitted>,
    /// Measurement counts of the records charted.
    pub stats: RecordStats,
    /// Records charted.
    pub records: u64,
}

impl Step {
    /// Forgets the previous batch's results.
    pub fn clear(&mut self) {
        self.rejected.clear();
        self.outputs.clear();
        self.stats = RecordStats::default();
        self.records = 0;
    }

    /// Message `index`, decoded or not, through `chain`.
    pub fn one(
        &mut self,
        chain: &mut PartitionChain,
        index: usize,
        decoded: Result<TelemetryRef<'_>, Rejection>,
    ) {
        if let Some(record) = self.validate(index, decoded) {
            self.records += 1;
            self.stats += chain.process(&record, &mut self.outputs);
        }
    }

    /// Messages, decoded or not, with their positions, through `chain`: the valid records
    /// as one batch (see [`PartitionChain::process_batch`]).
    pub fn batch<'a>(
        &mut self,
        chain: &mut PartitionChain,
        decoded: impl IntoIterator<Item = (usize, Result<TelemetryRef<'a>, Rejection>)>,
    ) {
        let records: Vec<TelemetryRef<'a>> = decoded
            .into_iter()
            .filter_map(|(index, decoded)| self.validate(index, decoded))
            .collect();
        self.records += records.len() as u64;
        self.stats += chain.process_batch(&records, &mut self.outputs);
    }

    /// The record to chart, if any; a rejection for the dead letters, if any.
    fn validate<'a>(
        &mut self,
        index: usize,
        decoded: Result<TelemetryRef<'a>, Rejection>,
    ) -> Option<TelemetryRef<'a>> {
        match decoded {
            Ok(record) => {
                if let Some(reason) = non_finite(&record) {
                    self.rejected.push((index, Rejection::NonFinite { reason }));
                }
                Some(record)
            }
            Err(rejection) => {
                self.rejected.push((index, rejection));
                None
            }
        }
    }

    /// Adds this step's counts to `metrics`: dead letters and decode failures by kind,
    /// non-finite values, missing parameters, alerts by severity, chart and rule.
    pub fn count(&self, metrics: &Metrics) {
        for (_, rejection) in &self.rejected {
            if let Rejection::Undecodable { kind, .. } = rejection {
                metrics.decode_failure(kind);
            }
            metrics.dead_letter(rejection.kind());
        }
        if self.stats.non_finite > 0 {
            metrics
                .non_finite_values
                .inc_by(u64::from(self.stats.non_finite));
        }
        if self.stats.missing > 0 {
            metrics
                .missing_parameters
                .inc_by(u64::from(self.stats.missing));
        }
        for emitted in &self.outputs {
            if let Some(alert) = emitted
                .output
                .value()
                .downcast_ref::<spcvm_schemas::Alert>()
            {
                metrics.record_alert(alert);
            }
        }
    }
}
