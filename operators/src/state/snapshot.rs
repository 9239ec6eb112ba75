//! [`KeyedState`] as a [`StateStore`]: one changelog record per (tool, recipe) group,
//! holding every chart of the group.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ChartKeyRef, KeyedState};
use crate::stage::StateStore;

/// The states of one (tool, recipe) group, as its changelog record holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSnapshot<S> {
    /// (parameter, state) in the group's order.
    pub charts: Vec<(String, S)>,
}

/// A [`GroupSnapshot`] that borrows the states it holds, so that a checkpoint writes them
/// straight from the store; it serializes exactly as the owned one.
#[derive(Debug, Serialize)]
pub struct GroupSnapshotRef<'a, S> {
    /// (parameter, state) in the group's order.
    pub charts: Vec<(&'a str, &'a S)>,
}

impl<S: Serialize + DeserializeOwned + Send + 'static> StateStore for KeyedState<S> {
    type Snapshot = GroupSnapshot<S>;
    type SnapshotRef<'a> = GroupSnapshotRef<'a, S>;

    fn drain_changed(&mut self, mut f: impl FnMut(&[&str], GroupSnapshotRef<'_, S>)) {
        for id in self.take_changed() {
            if let Some(((tool_id, recipe_id), entries)) = self.group_at(id) {
                f(
                    &[tool_id, recipe_id],
                    GroupSnapshotRef {
                        charts: entries.collect(),
                    },
                );
            }
        }
    }

    fn restore(&mut self, key: &[String], snapshot: GroupSnapshot<S>) -> Result<(), String> {
        let [tool_id, recipe_id] = key else {
            return Err(format!(
                "expected two key parts (tool, recipe), found {}",
                key.len()
            ));
        };
        for (parameter, state) in snapshot.charts {
            let key = ChartKeyRef {
                tool_id,
                recipe_id,
                parameter: &parameter,
            };
            self.insert(key, state);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        KeyedState::len(self)
    }
}
