//! [`Observations`]: an incident's observations, oldest first, laid out for the ranking
//! that runs at every alert.
//!
//! Ranking reads each observation's parameter, pattern, direction, severity and event
//! time. An [`Observation`] holds those among its alert id, chart and rule (112 bytes), so a
//! pass over a full incident (256 of them) would touch two cache lines per observation and
//! compare parameter names. A `Row` per observation (16 bytes, parallel to the
//! observations, the parameter as an index into the incident's distinct parameters) holds
//! what the ranking reads; the observations themselves are read for the words of a
//! version only.
//!
//! Dropping the oldest observations (faded, or past the most an incident keeps) moves a
//! start index; the dropped ones are removed in one move once they are as many as the live
//! ones, so a full incident does not shift all of its observations at every alert.
//! Serialized, compared and dereferenced, an `Observations` is its live observations only.

use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use spcvm_schemas::Severity;

use super::evidence::{Direction, Observation, Pattern};

/// Directions an observation may have: up, down, none.
pub(super) const DIRECTIONS: usize = 3;
/// Pattern-and-direction cells of a parameter's observations.
pub(super) const CELLS: usize = Pattern::ALL.len() * DIRECTIONS;

/// The cell of an observation of `pattern` and `direction`.
pub(super) fn cell(pattern: Pattern, direction: Option<Direction>) -> usize {
    let d = match direction {
        Some(Direction::Up) => 0,
        Some(Direction::Down) => 1,
        None => 2,
    };
    pattern as usize * DIRECTIONS + d
}

/// What ranking reads of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Row {
    /// The observation's event time (ms).
    pub(super) event_time: i64,
    /// Its parameter: an index into [`Observations::params`].
    pub(super) param: u32,
    /// Its pattern-and-direction cell ([`cell`]).
    pub(super) cell: u8,
    /// Its severity.
    pub(super) severity: Severity,
}

/// An incident's observations, oldest first (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct Observations {
    /// The observations kept; the live ones are `all[start..]`.
    all: Vec<Observation>,
    /// One row per observation of `all`.
    rows: Vec<Row>,
    /// The distinct parameters of the observations, in order of first appearance (some
    /// may have no live observation left).
    params: Vec<String>,
    /// Where the live observations start.
    start: usize,
}

impl Observations {
    /// The live observations' rows, oldest first.
    pub(super) fn rows(&self) -> &[Row] {
        &self.rows[self.start..]
    }

    /// The parameters [`Row::param`] indexes.
    pub(super) fn params(&self) -> &[String] {
        &self.params
    }

    /// Adds `o` as the latest observation.
    pub fn push(&mut self, o: Observation) {
        let param = match self.params.iter().position(|p| o.parameter.is(p)) {
            Some(i) => i,
            None => {
                self.params.push(o.parameter.to_string());
                self.params.len() - 1
            }
        };
        self.rows.push(Row {
            event_time: o.event_time,
            param: u32::try_from(param).expect("fewer than 2^32 parameters"),
            cell: cell(o.pattern, o.direction) as u8,
            severity: o.severity,
        });
        self.all.push(o);
    }

    /// Drops the `n` oldest live observations (all of them if there are fewer).
    pub fn drop_oldest(&mut self, n: usize) {
        self.start = (self.start + n).min(self.all.len());
        // One move for as many dropped observations as there are live ones.
        if self.start >= self.all.len() - self.start {
            self.all.drain(..self.start);
            self.rows.drain(..self.start);
            self.start = 0;
        }
    }

    /// Whether the incident holds the alert `alert_id` of `event_time` with `repeats`
    /// already (the same alert delivered twice).
    pub fn contains(&self, alert_id: &str, event_time: i64, repeats: u32) -> bool {
        self.rows().iter().zip(self.iter()).any(|(r, o)| {
            r.event_time == event_time && o.repeats == repeats && o.alert_id == alert_id
        })
    }
}

impl Deref for Observations {
    type Target = [Observation];

    fn deref(&self) -> &[Observation] {
        &self.all[self.start..]
    }
}

impl FromIterator<Observation> for Observations {
    fn from_iter<I: IntoIterator<Item = Observation>>(iter: I) -> Self {
        let mut observations = Observations::default();
        for o in iter {
            observations.push(o);
        }
        observations
    }
}

impl PartialEq for Observations {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Serialize for Observations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Observations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Observation>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}
