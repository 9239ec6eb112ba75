//! The keyed-operator contract between pure operators and the runtime that drives them.
//!
//! An operator is handed one key, that key's state and one input, and pushes its outputs; it
//! never does I/O, reads a clock or owns state. The runtime (backtest or streaming) owns the
//! state map, snapshots it, and decides when time advances (`on_watermark`) or the input ends
//! (`on_end`). Only `process` is required.

/// A pure, keyed, stateful operator.
pub trait KeyedOperator {
    /// The key the state is partitioned by (borrowed).
    type Key<'a>: Copy;
    /// Per-key state: plain data, serializable by the runtime.
    type State;
    /// One input event (borrowed).
    type Input<'a>;
    /// What the operator emits.
    type Output;

    /// Processes one input for `key`, updating `state` and pushing outputs to `out`.
    fn process(
        &self,
        key: Self::Key<'_>,
        state: &mut Self::State,
        input: Self::Input<'_>,
        out: &mut Vec<Self::Output>,
    );

    /// Event time has advanced to `watermark_ms` (ms since the Unix epoch): close whatever
    /// time-based state has expired. Default: nothing to do.
    fn on_watermark(
        &self,
        _key: Self::Key<'_>,
        _state: &mut Self::State,
        _watermark_ms: i64,
        _out: &mut Vec<Self::Output>,
    ) {
    }

    /// A bounded input has ended: flush everything pending. Default: nothing to do.
    fn on_end(&self, _key: Self::Key<'_>, _state: &mut Self::State, _out: &mut Vec<Self::Output>) {}
}
