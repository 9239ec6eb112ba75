//! [`Routes`]: how a monitor finds the charts of a measurement by its name, a record at a
//! time.

use std::collections::HashMap;

use super::ChartId;
use crate::state::short_eq;

/// Routes from parameter name to chart: a linear scan over a few names (length first, then
/// a word-wise comparison) beats hashing each measurement's name; a hash index takes over for
/// monitors with many parameters.
#[derive(Debug, Clone, Default)]
pub(super) struct Routes {
    names: Vec<Box<str>>,
    charts: Vec<[Option<ChartId>; 3]>,
    pub(super) index: Option<HashMap<Box<str>, usize, foldhash::fast::FixedState>>,
    /// For each route, the route with the next name in byte order (the order a record's
    /// measurements are iterated in), then the first route's: where the next lookup of a
    /// record starts.
    succ: Vec<usize>,
}

/// Above this many parameters, routes are found through a hash index.
const LINEAR_ROUTES: usize = 24;

impl Routes {
    pub(super) fn position(&self, parameter: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(parameter).copied(),
            None => self
                .names
                .iter()
                .position(|n| short_eq(n.as_bytes(), parameter.as_bytes())),
        }
    }

    pub(super) fn get(&self, parameter: &str) -> Option<&[Option<ChartId>; 3]> {
        self.position(parameter).map(|i| &self.charts[i])
    }

    /// [`Routes::get`], trying the route at `*next` first; leaves in `*next` the route that
    /// usually follows in a record (the next name in byte order). Start with
    /// [`Routes::first`].
    #[inline]
    pub(super) fn get_near(
        &self,
        parameter: &str,
        next: &mut usize,
    ) -> Option<&[Option<ChartId>; 3]> {
        let i = match self.names.get(*next) {
            Some(n) if short_eq(n.as_bytes(), parameter.as_bytes()) => *next,
            _ => self.position(parameter)?,
        };
        *next = self.succ[i];
        Some(&self.charts[i])
    }

    /// The route with the smallest name: where a record's lookups start.
    pub(super) fn first(&self) -> usize {
        self.succ.last().copied().unwrap_or(0)
    }

    pub(super) fn entry(&mut self, parameter: &str) -> &mut [Option<ChartId>; 3] {
        let i = match self.position(parameter) {
            Some(i) => i,
            None => {
                self.names.push(parameter.into());
                self.charts.push([None; 3]);
                let mut order: Vec<usize> = (0..self.names.len()).collect();
                order.sort_by(|&a, &b| self.names[a].cmp(&self.names[b]));
                self.succ = vec![0; self.names.len() + 1];
                for w in order.windows(2) {
                    self.succ[w[0]] = w[1];
                }
                // The last name wraps to the first; the extra slot holds the first.
                self.succ[order[order.len() - 1]] = order[0];
                self.succ[self.names.len()] = order[0];
                if self.names.len() > LINEAR_ROUTES {
                    let index = self.index.get_or_insert_with(HashMap::default);
                    for (i, n) in self.names.iter().enumerate().skip(index.len()) {
                        index.insert(n.clone(), i);
                    }
                }
                self.names.len() - 1
            }
        };
        &mut self.charts[i]
    }
}
