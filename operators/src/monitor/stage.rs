//! [`SpcMonitor`] as the `spc` [`Stage`], and the per-key step beneath it.

use spcvm_schemas::Alert;

use super::{Ctx, Sample, SpcMonitor, SpcState};
use crate::stage::{Input, RecordStats, Stage, StreamSpec};
use crate::state::{ChartKeyRef, KeyedState};

impl SpcMonitor {
    /// One sample of one chart key: `state` is started over first when it was built under
    /// other chart settings. The per-key step that [`SpcMonitor::process_record`] runs for
    /// each measurement of a record.
    pub fn process_sample(
        &self,
        key: ChartKeyRef<'_>,
        state: &mut SpcState,
        input: Sample<'_>,
        out: &mut Vec<Alert>,
    ) {
        let Some(chart) = self.charts.get(input.chart as usize) else {
            return;
        };
        if state.fingerprint != chart.fingerprint {
            *state = SpcState::new(chart, input.tool_type);
        }
        let ctx = Ctx {
            tool_id: key.tool_id,
            recipe_id: key.recipe_id,
            tool_type: input.tool_type,
            event_time: input.event_time,
            lot_id: input.lot_id,
            wafer_id: input.wafer_id,
        };
        self.step(chart, key.parameter, &ctx, state, input.value, out);
    }

    /// Event time reached `watermark_ms` on one chart key: closes its expired dedup windows.
    pub(super) fn watermark_key(
        &self,
        key: ChartKeyRef<'_>,
        state: &mut SpcState,
        watermark_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        if state.expires(watermark_ms, self.window_ms) {
            self.close(key, state, watermark_ms, self.window_ms, out);
        }
    }
}

/// The streams of the `spc` stage.
const SPC_STREAMS: [StreamSpec; 1] = [StreamSpec {
    name: "alerts",
    default_topic: "spc.alerts",
    avro_schema: spcvm_schemas::ALERT_SCHEMA_JSON,
    value_type: std::any::TypeId::of::<Alert>,
}];

impl Stage for SpcMonitor {
    type Store = KeyedState<SpcState>;
    type Upstream = ();
    type Output = Alert;

    fn name(&self) -> &str {
        "spc"
    }

    fn outputs(&self) -> &[StreamSpec] {
        &SPC_STREAMS
    }

    fn process(
        &self,
        store: &mut KeyedState<SpcState>,
        input: Input<'_, ()>,
        out: &mut Vec<Alert>,
    ) -> RecordStats {
        match input {
            Input::Record(record) => self.process_record(store, record, out),
            Input::Upstream(()) => RecordStats::default(),
        }
    }

    fn process_records(
        &self,
        store: &mut KeyedState<SpcState>,
        records: &[spcvm_schemas::TelemetryRef<'_>],
        out: &mut Vec<Alert>,
    ) -> RecordStats {
        SpcMonitor::process_records(self, store, records, out)
    }

    fn on_watermark(
        &self,
        store: &mut KeyedState<SpcState>,
        watermark_ms: i64,
        out: &mut Vec<Alert>,
    ) {
        self.advance_all(store, watermark_ms, out);
    }

    fn on_end(&self, store: &mut KeyedState<SpcState>, out: &mut Vec<Alert>) {
        self.end_all(store, out);
    }
}
