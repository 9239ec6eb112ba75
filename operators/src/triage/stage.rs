//! [`TriageStage`], the `triage` stage: per tool, the SPC alerts within a window of event
//! time form one incident, ranked against the playbooks at every alert; a version is
//! published when the incident opens, whenever its severity changes or another failure
//! mode or most likely cause clearly leads the published one, and a last one when it
//! closes. OCAP steps go out once per incident and kind.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spcvm_schemas::{
    ActionKind, Alert, IncidentStatus, OcapAction, RankedAction, RankedCause, SchemaError,
    Severity, TelemetryRef, TelemetryView, ToolType, Triage,
};

use super::evidence::Observation;
use super::observations::Observations;
use super::playbook::{Playbook, Playbooks};
use super::rank::{Facts, Ranked, RecipeChange, rank};
use crate::short::ShortStr;
use crate::stage::{Input, RecordStats, Stage, StageOutput, StreamSpec, ToolStore};

/// Most observations an incident keeps (its latest ones: older evidence has faded).
pub const MAX_OBSERVATIONS: usize = 256;
/// Half-lives after which an observation has faded to nothing (2^-10: under a thousandth of
/// its weight) and is dropped.
pub const FADED_HALF_LIVES: i64 = 10;
/// Most alert ids a triage lists (the first ones).
pub const MAX_ALERT_IDS: usize = 1_000;
/// A published failure mode gives way to another only when the other's alerts weigh at
/// least this many times as much (see [`mod@super::rank`]).
pub const SWITCH_WEIGHT_RATIO: f64 = 2.0;
/// A failure mode that takes over must also weigh at least this much: more than one fresh
/// major alert (2 each), so that a lone false alarm on another parameter does not turn the
/// verdict.
pub const SWITCH_MIN_WEIGHT: f64 = 3.0;
/// A published most likely cause gives way to another only when the other scores at least
/// this much higher (log-odds: e^0.5, about 1.65 times as likely).
pub const SWITCH_SCORE_MARGIN: f64 = 0.5;
/// Recipe changes kept per tool, the latest.
pub const RECIPE_CHANGES_KEPT: usize = 16;

/// The triage stage's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageConfig {
    /// Alerts of a tool less than this far apart in event time (ms) belong to one
    /// incident; an incident closes this long after its last alert.
    pub window_ms: i64,
    /// A recipe change at most this long (ms) before an incident's alert is evidence.
    pub recipe_lookback_ms: i64,
    /// An alert's evidence loses half its strength every this long (ms) of event time
    /// after it (see [`mod@super::rank`]); 0: evidence never fades.
    pub evidence_half_life_ms: i64,
}

impl Default for TriageConfig {
    fn default() -> Self {
        TriageConfig {
            window_ms: 2 * 3_600_000,
            recipe_lookback_ms: 3_600_000,
            evidence_half_life_ms: 1_800_000,
        }
    }
}

/// The `triage` stage.
#[derive(Debug, Clone)]
pub struct TriageStage {
    playbooks: Playbooks,
    config: TriageConfig,
    /// Each playbook's actions as a triage lists them, made once: they read the same in
    /// every version, only their order changes.
    actions: Vec<BookActions>,
}

/// One playbook's actions as a triage lists them, and as JSON.
#[derive(Debug, Clone)]
struct BookActions {
    ranked: Arc<[RankedAction]>,
    json: Vec<Vec<u8>>,
}

impl BookActions {
    fn of(book: &Playbook) -> BookActions {
        let ranked: Arc<[RankedAction]> = book.actions.iter().map(ranked_action).collect();
        let json = ranked
            .iter()
            .map(|a| {
                let mut json = Vec::new();
                spcvm_schemas::write_ranked_action_json(a, &mut json);
                json
            })
            .collect();
        BookActions { ranked, json }
    }
}

/// The Avro schemas of the two streams.
const STREAMS: [StreamSpec; 2] = [
    StreamSpec {
        name: "triage",
        default_topic: "spc.triage",
        avro_schema: spcvm_schemas::TRIAGE_SCHEMA_JSON,
        value_type: std::any::TypeId::of::<TriageVersion>,
    },
    StreamSpec {
        name: "actions",
        default_topic: "spc.actions",
        avro_schema: spcvm_schemas::ACTION_SCHEMA_JSON,
        value_type: std::any::TypeId::of::<OcapAction>,
    },
];

/// What the stage emits: a triage version, or an OCAP step.
#[derive(Debug, Clone, PartialEq)]
pub enum TriageOutput {
    /// On the `triage` stream.
    Triage(TriageVersion),
    /// On the `actions` stream.
    Action(OcapAction),
}

/// A triage version as the stage emits it. Its actions are the playbook's, shared, in the
/// version's order, and their JSON is joined from the playbook's encoded once: a version
/// costs its own words, not the playbook's again. [`TriageVersion::to_triage`] gives the
/// record.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageVersion {
    /// The record, its `causes` and `actions` left empty (they are `causes`, and `actions`
    /// in `order`).
    head: Triage,
    /// The causes, shared with the incident's [`Published`].
    causes: Arc<[RankedCause]>,
    actions: Arc<[RankedAction]>,
    order: Vec<usize>,
    /// The elements of its `actions` array as JSON, comma-separated, in order.
    actions_json: Vec<u8>,
}

impl TriageVersion {
    /// The triage record of this version.
    pub fn to_triage(&self) -> Triage {
        Triage {
            causes: self.causes.to_vec(),
            actions: self.actions().cloned().collect(),
            ..self.head.clone()
        }
    }

    /// Its actions, first to take first.
    pub fn actions(&self) -> impl Iterator<Item = &RankedAction> {
        self.order.iter().map(|&i| &self.actions[i])
    }

    /// The tool.
    pub fn tool_id(&self) -> &str {
        &self.head.tool_id
    }
}

impl StageOutput for TriageOutput {
    fn stream(&self) -> usize {
        match self {
            TriageOutput::Triage(_) => 0,
            TriageOutput::Action(_) => 1,
        }
    }

    fn key(&self) -> &str {
        match self {
            TriageOutput::Triage(v) => v.tool_id(),
            TriageOutput::Action(a) => &a.tool_id,
        }
    }

    fn to_json(&self) -> Vec<u8> {
        let mut json = Vec::new();
        self.write_json(&mut json);
        json
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            TriageOutput::Triage(v) => {
                spcvm_schemas::write_triage_json_with_actions(
                    &v.head,
                    &v.causes,
                    &v.actions_json,
                    out,
                );
            }
            TriageOutput::Action(a) => spcvm_schemas::write_action_json(a, out),
        }
    }

    fn to_avro(&self) -> Result<Vec<u8>, SchemaError> {
        match self {
            TriageOutput::Triage(v) => spcvm_schemas::encode_triage_avro(&v.to_triage()),
            TriageOutput::Action(a) => spcvm_schemas::encode_action_avro(a),
        }
    }

    fn value(&self) -> &dyn std::any::Any {
        match self {
            TriageOutput::Triage(v) => v,
            TriageOutput::Action(a) => a,
        }
    }
}

/// One tool's triage state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolTriage {
    /// The recipe of the tool's latest record (inline: it is compared at every record).
    pub recipe: Option<ShortStr>,
    /// Its latest recipe changes, oldest first.
    pub recipe_changes: VecDeque<RecipeChange>,
    /// The open incident, if any (boxed: the table of tools stays small, and the lookup
    /// at every record touches less memory).
    pub incident: Option<Box<Incident>>,
}

/// An open incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id: `<tool>:<first alert's event time>:<first alert id>`.
    pub id: String,
    /// The last version published (0: none yet).
    pub version: u32,
    /// Kind of tool.
    pub tool_type: ToolType,
    /// Event time of the first alert.
    pub opened_at: i64,
    /// Event time of the latest alert.
    pub last_alert_at: i64,
    /// Recipe, lot and wafer of the latest alert.
    pub recipe_id: String,
    /// Lot of the latest alert.
    pub lot_id: Option<String>,
    /// Wafer of the latest alert.
    pub wafer_id: Option<String>,
    /// What its alerts say (the latest [`MAX_OBSERVATIONS`], oldest first).
    pub observations: Observations,
    /// Its alerts (the first [`MAX_ALERT_IDS`]).
    pub alert_ids: Vec<String>,
    /// Highest severity among its alerts.
    pub severity: Severity,
    /// What the last published version said.
    pub published: Option<Published>,
    /// OCAP steps sent for it.
    pub ocap_sent: Vec<ActionKind>,
}

/// What a published triage version said, to tell whether new evidence changes it and to
/// repeat it at the close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The failure mode (playbook id).
    pub failure_mode: String,
    /// The causes as ranked (shared with the version that published them).
    pub causes: Arc<[RankedCause]>,
    /// The severity.
    pub severity: Severity,
}

impl TriageStage {
    /// The stage with validated `playbooks`.
    pub fn new(playbooks: Playbooks, config: TriageConfig) -> TriageStage {
        let actions = playbooks.playbooks.iter().map(BookActions::of).collect();
        TriageStage {
            playbooks,
            config,
            actions,
        }
    }

    /// Its playbooks.
    pub fn playbooks(&self) -> &Playbooks {
        &self.playbooks
    }

    /// Its settings.
    pub fn config(&self) -> &TriageConfig {
        &self.config
    }

    /// The tool's recipe as of `record`: a change is remembered with its event time. The
    /// usual case, the same recipe as the tool's last record, is a lookup and a compare.
    #[inline]
    fn record(&self, store: &mut ToolStore<ToolTriage>, record: &impl TelemetryView) {
        let recipe = record.recipe_id();
        if !store
            .get(record.tool_id())
            .is_some_and(|s| s.recipe.as_ref().is_some_and(|r| r.is(recipe)))
        {
            Self::recipe_changed(store, record.tool_id(), recipe, record.event_time());
        }
    }

    /// The tool's first record, or a record of another recipe than the tool's last. Once
    /// the ring is full, the change it drops lends its strings to the new one, so a tool
    /// that changes recipes often allocates nothing (its recipe ids are inline).
    #[cold]
    #[inline(never)]
    fn recipe_changed(store: &mut ToolStore<ToolTriage>, tool: &str, recipe: &str, at: i64) {
        let state = store.entry(tool);
        let Some(from) = state.recipe.replace(ShortStr::new(recipe)) else {
            return;
        };
        let mut change = if state.recipe_changes.len() >= RECIPE_CHANGES_KEPT {
            state.recipe_changes.pop_front().expect("the ring is full")
        } else {
            RecipeChange {
                at: 0,
                from: String::new(),
                to: String::new(),
            }
        };
        change.at = at;
        change.from.clear();
        change.from.push_str(from.as_str());
        change.to.clear();
        change.to.push_str(recipe);
        state.recipe_changes.push_back(change);
    }

    /// An alert (or a dedup window's closing update): joins the tool's incident (or opens
    /// one), re-ranks it and publishes what changed.
    fn alert(&self, store: &mut ToolStore<ToolTriage>, alert: &Alert, out: &mut Vec<TriageOutput>) {
        let state = store.entry(&alert.tool_id);
        // The same alert delivered twice is one witness, not two.
        if state.incident.as_ref().is_some_and(|i| {
            i.observations
                .contains(&alert.alert_id, alert.event_time, alert.repeats)
        }) {
            return;
        }
        if let Some(incident) = &state.incident
            && alert.event_time - incident.last_alert_at > self.config.window_ms
        {
            let incident = state.incident.take().expect("checked above");
            self.close(&alert.tool_id, incident, out);
        }
        let incident = state.incident.get_or_insert_with(|| {
            Box::new(Incident {
                id: format!("{}:{}:{}", alert.tool_id, alert.event_time, alert.alert_id),
                version: 0,
                tool_type: alert.tool_type,
                opened_at: alert.event_time,
                last_alert_at: alert.event_time,
                recipe_id: alert.recipe_id.clone(),
                lot_id: None,
                wafer_id: None,
                observations: Observations::default(),
                alert_ids: Vec::new(),
                severity: alert.severity,
                published: None,
                ocap_sent: Vec::new(),
            })
        });
        incident.last_alert_at = incident.last_alert_at.max(alert.event_time);
        incident.recipe_id.clone_from(&alert.recipe_id);
        incident.lot_id.clone_from(&alert.lot_id);
        incident.wafer_id.clone_from(&alert.wafer_id);
        incident.severity = incident.severity.max(alert.severity);
        // Observations that faded to nothing leave (they are kept oldest first); then the
        // oldest, when the incident holds the most it may.
        let half_life = self.config.evidence_half_life_ms;
        if half_life > 0 {
            let horizon = incident
                .last_alert_at
                .saturating_sub(half_life.saturating_mul(FADED_HALF_LIVES));
            let faded = incident
                .observations
                .iter()
                .take_while(|o| o.event_time < horizon)
                .count();
            incident.observations.drop_oldest(faded);
        }
        if incident.observations.len() == MAX_OBSERVATIONS {
            incident.observations.drop_oldest(1);
        }
        incident.observations.push(Observation::of(alert));
        // A closing update (repeats > 0) names an alert already listed.
        if alert.repeats == 0 && incident.alert_ids.len() < MAX_ALERT_IDS {
            incident.alert_ids.push(alert.alert_id.clone());
        }
        // The latest recipe change up to this alert, within the lookback.
        let recipe_change = state.recipe_changes.iter().rev().find(|c| {
            c.at <= alert.event_time && alert.event_time - c.at <= self.config.recipe_lookback_ms
        });
        let facts = Facts {
            observations: &incident.observations,
            recipe_change,
            opened_at: incident.opened_at,
            now: incident.last_alert_at,
            half_life_ms: self.config.evidence_half_life_ms,
        };
        let Some(mut ranked) = rank(&self.playbooks, incident.tool_type, &facts) else {
            return;
        };
        if let Some(p) = &incident.published
            && p.failure_mode == ranked.playbook.id
            && let Some(top) = p.causes.first()
        {
            ranked.prefer_on_tie(&top.cause_id);
        }
        if incident
            .published
            .as_ref()
            .is_none_or(|p| news(p, incident.severity, &ranked))
        {
            let causes: Arc<[RankedCause]> = ranked.explain(&facts).into();
            incident.version += 1;
            out.push(TriageOutput::Triage(self.version(
                &alert.tool_id,
                incident,
                ranked.playbook,
                (Arc::clone(&causes), incident.alert_ids.clone()),
                IncidentStatus::Open,
                alert.event_time,
            )));
            incident.published = Some(Published {
                failure_mode: ranked.playbook.id.clone(),
                causes,
                severity: incident.severity,
            });
            // OCAP follows the published verdict, so an action's reason matches a version.
            self.ocap(&alert.tool_id, incident, &ranked, alert.event_time, out);
        }
    }

    /// The OCAP steps the ranking calls for that were not sent yet.
    fn ocap(
        &self,
        tool: &str,
        incident: &mut Incident,
        ranked: &Ranked<'_>,
        event_time: i64,
        out: &mut Vec<TriageOutput>,
    ) {
        let top = ranked
            .scores
            .first()
            .map(|&(i, _)| &ranked.playbook.causes[i]);
        for action in ranked.playbook.actions.iter().filter(|a| a.is_ocap()) {
            let for_top = action
                .cause
                .as_ref()
                .is_none_or(|c| top.is_some_and(|t| &t.id == c));
            if !for_top
                || incident.severity < action.threshold()
                || incident.ocap_sent.contains(&action.kind)
            {
                continue;
            }
            incident.ocap_sent.push(action.kind);
            let reason = match top {
                Some(t) => format!(
                    "{}; most likely {} ({:.0} %)",
                    ranked.playbook.name,
                    t.name,
                    ranked.confidence(0) * 100.0
                ),
                None => ranked.playbook.name.clone(),
            };
            out.push(TriageOutput::Action(OcapAction {
                action_id: format!("{}:{}", incident.id, action.kind),
                incident_id: incident.id.clone(),
                kind: action.kind,
                tool_id: tool.to_string(),
                tool_type: incident.tool_type,
                recipe_id: incident.recipe_id.clone(),
                lot_id: incident.lot_id.clone(),
                wafer_id: incident.wafer_id.clone(),
                severity: incident.severity,
                reason,
                description: action.description.clone(),
                owner: action.owner.clone(),
                event_time,
            }));
        }
    }

    /// The incident's last version, repeating what was last published (nothing when no
    /// version was), at the end of its window.
    fn close(&self, tool: &str, incident: Box<Incident>, out: &mut Vec<TriageOutput>) {
        let mut incident = *incident;
        let Some(published) = incident.published.take() else {
            return;
        };
        let Some(book) = self
            .playbooks
            .playbooks
            .iter()
            .find(|b| b.id == published.failure_mode)
        else {
            return;
        };
        incident.version += 1;
        incident.severity = published.severity;
        let at = incident.last_alert_at.saturating_add(self.config.window_ms);
        let alert_ids = std::mem::take(&mut incident.alert_ids);
        out.push(TriageOutput::Triage(self.version(
            tool,
            &incident,
            book,
            (published.causes, alert_ids),
            IncidentStatus::Closed,
            at,
        )));
    }
}

/// Whether the ranking now differs from the published version enough to tell a subscriber:
/// the severity changed, or another failure mode or most likely cause leads the published
/// one by a margin ([`SWITCH_WEIGHT_RATIO`], [`SWITCH_SCORE_MARGIN`]). The order behind
/// the first cause rides along with the next version. Without the margins, an incident
/// whose alerts come from several parameters (a fault and the false alarms around it)
/// would change its verdict at nearly every alert, as the freshest alert's parameter
/// briefly weighs most.
fn news(published: &Published, severity: Severity, ranked: &Ranked<'_>) -> bool {
    if published.severity != severity {
        return true;
    }
    if published.failure_mode != ranked.playbook.id {
        let weight = ranked.weight();
        return weight >= SWITCH_MIN_WEIGHT
            && weight >= SWITCH_WEIGHT_RATIO * ranked.weight_of(&published.failure_mode);
    }
    let top = published.causes.first().map(|c| c.cause_id.as_str());
    match (top, ranked.scores.first()) {
        (Some(top), Some(&(i, score))) if ranked.playbook.causes[i].id != top => ranked
            .score_of(top)
            .is_none_or(|was| score - was >= SWITCH_SCORE_MARGIN),
        (top, first) => top.is_some() != first.is_some(),
    }
}

impl TriageStage {
    /// A triage version of `incident`: failure mode `book`, its causes ranked as `causes`,
    /// its alerts `alert_ids` (given owned, so that the last version takes them).
    fn version(
        &self,
        tool: &str,
        incident: &Incident,
        book: &Playbook,
        (causes, alert_ids): (Arc<[RankedCause]>, Vec<String>),
        status: IncidentStatus,
        event_time: i64,
    ) -> TriageVersion {
        let rank_of = |cause: &Option<String>| match cause {
            Some(c) => causes
                .iter()
                .position(|r| &r.cause_id == c)
                .unwrap_or(usize::MAX),
            None => causes.len(),
        };
        // Actions for the likelier causes first, then those for any cause; by priority
        // within.
        let mut order: Vec<usize> = (0..book.actions.len()).collect();
        order.sort_by_key(|&i| (rank_of(&book.actions[i].cause), book.actions[i].priority));
        let made;
        let shared = match self
            .playbooks
            .playbooks
            .iter()
            .position(|b| std::ptr::eq(b, book))
        {
            Some(i) => &self.actions[i],
            None => {
                made = BookActions::of(book);
                &made
            }
        };
        let mut actions_json = Vec::with_capacity(1024);
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                actions_json.push(b',');
            }
            actions_json.extend_from_slice(&shared.json[i]);
        }
        TriageVersion {
            head: Triage {
                incident_id: incident.id.clone(),
                version: incident.version,
                status,
                tool_id: tool.to_string(),
                tool_type: incident.tool_type,
                recipe_id: incident.recipe_id.clone(),
                lot_id: incident.lot_id.clone(),
                wafer_id: incident.wafer_id.clone(),
                failure_mode: book.id.clone(),
                failure_mode_name: book.name.clone(),
                severity: incident.severity,
                causes: Vec::new(),
                actions: Vec::new(),
                alert_ids,
                opened_at: incident.opened_at,
                event_time,
            },
            causes,
            actions: Arc::clone(&shared.ranked),
            order,
            actions_json,
        }
    }
}

/// A playbook action as a triage lists it.
fn ranked_action(a: &super::playbook::Action) -> RankedAction {
    RankedAction {
        action_id: a.id.clone(),
        description: a.description.clone(),
        priority: a.priority,
        owner: a.owner.clone(),
        kind: a.kind,
        cause_id: a.cause.clone(),
    }
}

impl Stage for TriageStage {
    type Store = ToolStore<ToolTriage>;
    type Upstream = Alert;
    type Output = TriageOutput;

    fn name(&self) -> &str {
        "triage"
    }

    fn upstream(&self) -> Option<&str> {
        Some("alerts")
    }

    /// An alert is weighed against recipe changes up to its own event time only, so a
    /// batch's records may come before the alerts they caused.
    fn upstream_after_each_record(&self) -> bool {
        false
    }

    fn outputs(&self) -> &[StreamSpec] {
        &STREAMS
    }

    fn process(
        &self,
        store: &mut ToolStore<ToolTriage>,
        input: Input<'_, Alert>,
        out: &mut Vec<TriageOutput>,
    ) -> RecordStats {
        match input {
            Input::Record(record) => self.record(store, record),
            Input::Upstream(alert) if alert.repeats == 0 => self.alert(store, alert, out),
            // A dedup closing update is one more witness of its alert (the rule kept firing
            // until its event time, see `super::rank`), for the incident its alert joined;
            // it opens none.
            Input::Upstream(alert) => {
                if store.get(&alert.tool_id).is_some_and(|s| {
                    s.incident.as_ref().is_some_and(|i| {
                        alert.event_time - i.last_alert_at <= self.config.window_ms
                    })
                }) {
                    self.alert(store, alert, out);
                }
            }
        }
        RecordStats::default()
    }

    /// Records only move the recipe tracking: no per-record dispatch.
    fn process_records(
        &self,
        store: &mut ToolStore<ToolTriage>,
        records: &[TelemetryRef<'_>],
        _out: &mut Vec<TriageOutput>,
    ) -> RecordStats {
        for record in records {
            self.record(store, record);
        }
        RecordStats::default()
    }

    fn on_watermark(
        &self,
        store: &mut ToolStore<ToolTriage>,
        watermark_ms: i64,
        out: &mut Vec<TriageOutput>,
    ) {
        let window = self.config.window_ms;
        let expired = |s: &ToolTriage| {
            s.incident
                .as_ref()
                .is_some_and(|i| watermark_ms - i.last_alert_at > window)
        };
        for (tool, state) in store.sorted_mut_where(expired) {
            let incident = state.incident.take().expect("selected for it");
            self.close(tool, incident, out);
        }
    }

    fn on_end(&self, store: &mut ToolStore<ToolTriage>, out: &mut Vec<TriageOutput>) {
        for (tool, state) in store.sorted_mut_where(|s| s.incident.is_some()) {
            let incident = state.incident.take().expect("selected for it");
            self.close(tool, incident, out);
        }
    }
}
