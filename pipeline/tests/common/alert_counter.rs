//! A stage that exists only in the tests: it counts each tool's alerts (the SPC stage's
//! `alerts` stream, opening alerts only) and reports the count on its own stream,
//! `alert_counts`, every third alert, at each watermark sweep for tools with unreported
//! alerts, and at the end of a bounded input. It proves that a new stage, with state, an
//! upstream stream and an output stream of its own, runs through every runtime without a
//! change to any of them.

use serde::{Deserialize, Serialize};
use spcvm_operators::{Input, RecordStats, Stage, StageOutput, StreamSpec, ToolStore};
use spcvm_schemas::{Alert, SchemaError, Severity};

/// Per tool: alerts counted, critical ones among them, alerts not yet reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub alerts: u64,
    pub critical: u64,
    pub unreported: u64,
    pub last_event_time: i64,
}

/// One report on `alert_counts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertCount {
    pub tool_id: String,
    pub alerts: u64,
    pub critical: u64,
    pub event_time: i64,
    /// What made it: `every_3`, `watermark` or `end`.
    pub reason: String,
}

/// The Avro schema of [`AlertCount`].
pub const ALERT_COUNT_AVSC: &str = r#"{"type":"record","name":"AlertCount","namespace":"spcvm.test","fields":[{"name":"tool_id","type":"string"},{"name":"alerts","type":"long"},{"name":"critical","type":"long"},{"name":"event_time","type":"long"},{"name":"reason","type":"string"}]}"#;

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

impl StageOutput for AlertCount {
    fn key(&self) -> &str {
        &self.tool_id
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data serializes")
    }

    fn to_avro(&self) -> Result<Vec<u8>, SchemaError> {
        let mut out = Vec::new();
        string(&mut out, &self.tool_id);
        long(&mut out, self.alerts as i64);
        long(&mut out, self.critical as i64);
        long(&mut out, self.event_time);
        string(&mut out, &self.reason);
        Ok(out)
    }

    fn value(&self) -> &dyn std::any::Any {
        self
    }
}

pub const STREAMS: [StreamSpec; 1] = [StreamSpec {
    name: "alert_counts",
    default_topic: "spc.alert_counts",
    avro_schema: ALERT_COUNT_AVSC,
    value_type: std::any::TypeId::of::<AlertCount>,
}];

/// The stage.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertCounter;

impl AlertCounter {
    fn report(tool: &str, c: &mut Counts, reason: &str, out: &mut Vec<AlertCount>) {
        c.unreported = 0;
        out.push(AlertCount {
            tool_id: tool.to_string(),
            alerts: c.alerts,
            critical: c.critical,
            event_time: c.last_event_time,
            reason: reason.to_string(),
        });
    }
}

impl Stage for AlertCounter {
    type Store = ToolStore<Counts>;
    type Upstream = Alert;
    type Output = AlertCount;

    fn name(&self) -> &str {
        "alert_count"
    }

    fn reads_records(&self) -> bool {
        false
    }

    fn upstream(&self) -> Option<&str> {
        Some("alerts")
    }

    fn outputs(&self) -> &[StreamSpec] {
        &STREAMS
    }

    fn process(
        &self,
        store: &mut ToolStore<Counts>,
        input: Input<'_, Alert>,
        out: &mut Vec<AlertCount>,
    ) -> RecordStats {
        if let Input::Upstream(alert) = input
            && alert.repeats == 0
        {
            let c = store.entry(&alert.tool_id);
            c.alerts += 1;
            c.critical += u64::from(alert.severity == Severity::Critical);
            c.unreported += 1;
            c.last_event_time = c.last_event_time.max(alert.event_time);
            if c.alerts.is_multiple_of(3) {
                Self::report(&alert.tool_id, c, "every_3", out);
            }
        }
        RecordStats::default()
    }

    fn on_watermark(
        &self,
        store: &mut ToolStore<Counts>,
        _watermark_ms: i64,
        out: &mut Vec<AlertCount>,
    ) {
        for (tool, c) in store.sorted_mut_where(|c| c.unreported > 0) {
            Self::report(tool, c, "watermark", out);
        }
    }

    fn on_end(&self, store: &mut ToolStore<Counts>, out: &mut Vec<AlertCount>) {
        for (tool, c) in store.sorted_mut_where(|_| true) {
            Self::report(tool, c, "end", out);
        }
    }
}
