//! librdkafka's log lines and client errors, each distinct one at most once a minute.
//!
//! While no broker answers, librdkafka reports "All broker connections are down" several
//! times a second for every client (the job has three), which through a broker outage would
//! be hundreds of thousands of identical log lines a day. [`ClientLog`] is a client context
//! that passes each distinct line on at most once per [`REPEAT_WINDOW`] and says, when it
//! passes it again, how many it held back; [`ClientLog::flush`] reports what is still held
//! (for a command that ends). Lines are logged as rdkafka's default context logs them
//! (through the `log` facade, target `librdkafka`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// How long a line that was logged is held back when it comes again.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Most distinct lines remembered; beyond it, lines whose window has passed are forgotten
/// (and, should all be recent, all of them: a line is then logged once more).
const MAX_LINES: usize = 1024;

/// Which lines pass: a pure record of what was logged when, with the time passed in.
#[derive(Debug)]
pub struct Repeats {
    window: Duration,
    seen: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    /// When the line was last logged.
    logged: Instant,
    /// Lines like it held back since.
    held: u64,
    /// The last one held back, as it was.
    last: String,
}

impl Repeats {
    /// Holds a logged line back for `window`.
    pub fn new(window: Duration) -> Repeats {
        Repeats {
            window,
            seen: HashMap::new(),
        }
    }

    /// Whether `line`, coming at `now`, is logged: `Some(n)` if so, `n` lines like it having
    /// been held back since it was last logged; `None` if it is held back. Lines are alike
    /// when they are equal up to librdkafka's parenthesised "(after N ms in state ...)"
    /// suffix, which changes from one report of the same failure to the next.
    pub fn admit(&mut self, line: &str, now: Instant) -> Option<u64> {
        let key = shape(line);
        if let Some(seen) = self.seen.get_mut(key) {
            if now.saturating_duration_since(seen.logged) < self.window {
                seen.held += 1;
                seen.last.clear();
                seen.last.push_str(line);
                return None;
            }
            let held = seen.held;
            seen.logged = now;
            seen.held = 0;
            return Some(held);
        }
        if self.seen.len() >= MAX_LINES {
            let window = self.window;
            self.seen
                .retain(|_, s| now.saturating_duration_since(s.logged) < window);
            if self.seen.len() >= MAX_LINES {
                self.seen.clear();
            }
        }
        self.seen.insert(
            key.to_string(),
            Seen {
                logged: now,
                held: 0,
                last: String::new(),
            },
        );
        Some(0)
    }

    /// The lines held back since they were last logged (the last of each, with how many),
    /// and forgets them.
    pub fn drain_held(&mut self) -> Vec<(String, u64)> {
        let mut held: Vec<(String, u64)> = self
            .seen
            .drain()
            .filter(|(_, s)| s.held > 0)
            .map(|(_, s)| (s.last, s.held))
            .collect();
        held.sort();
        held
    }
}

/// `line` without librdkafka's " (after ..." suffix.
fn shape(line: &str) -> &str {
    line.find(" (after ").map_or(line, |i| &line[..i])
}

/// `line`, and when `held` lines like it were held back, a note saying so.
fn with_count(line: &str, held: u64) -> String {
    if held == 0 {
        line.to_string()
    } else {
        format!("{line} [{held} more like it since it was last logged]")
    }
}

/// A client context that logs librdkafka's lines and errors through [`Repeats`]. Clones
/// share what was seen (one for the client, one to [`flush`](Self::flush) it).
#[derive(Debug, Clone)]
pub struct ClientLog {
    repeats: Arc<Mutex<Repeats>>,
}

impl Default for ClientLog {
    fn default() -> Self {
        ClientLog {
            repeats: Arc::new(Mutex::new(Repeats::new(REPEAT_WINDOW))),
        }
    }
}

impl ClientLog {
    fn admit(&self, line: &str) -> Option<u64> {
        let mut repeats = self.repeats.lock().unwrap_or_else(|p| p.into_inner());
        repeats.admit(line, Instant::now())
    }

    /// Logs, at warning level, the last of each kind of line still held back with how many
    /// were (for a command that ends while a failure repeats).
    pub fn flush(&self) {
        let held = {
            let mut repeats = self.repeats.lock().unwrap_or_else(|p| p.into_inner());
            repeats.drain_held()
        };
        for (line, n) in held {
            DefaultClientContext.log(
                RDKafkaLogLevel::Warning,
                "REPEATED",
                &format!("`{line}`: {n} more like it"),
            );
        }
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if let Some(held) = self.admit(&format!("{fac} {log_message}")) {
            DefaultClientContext.log(level, fac, &with_count(log_message, held));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(held) = self.admit(&format!("{error}: {reason}")) {
            DefaultClientContext.error(error, &with_count(reason, held));
        }
    }
}

/// rdkafka's default rebalance handling: for consumers that only assign (no group).
impl ConsumerContext for ClientLog {}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN: &str = "AllBrokersDown: 1/1 brokers are down";

    #[test]
    fn a_line_passes_once_a_window_and_says_how_many_were_held() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut r = Repeats::new(s(60));
        assert_eq!(r.admit(DOWN, t0), Some(0));
        for i in 1..=5 {
            assert_eq!(r.admit(DOWN, t0 + s(i)), None);
        }
        // Another line is not held back by the first.
        assert_eq!(r.admit("0/1 brokers are down", t0 + s(6)), Some(0));
        assert_eq!(r.admit(DOWN, t0 + s(59)), None);
        assert_eq!(r.admit(DOWN, t0 + s(60)), Some(6));
        assert_eq!(r.admit(DOWN, t0 + s(61)), None);
        assert_eq!(r.admit(DOWN, t0 + s(200)), Some(1));
    }

    #[test]
    fn librdkafkas_timing_suffix_does_not_make_a_line_new() {
        let t0 = Instant::now();
        let mut r = Repeats::new(Duration::from_secs(60));
        let refused = "Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        assert_eq!(
            r.admit(&format!("{refused} (after 0ms in state CONNECT)"), t0),
            Some(0)
        );
        let again =
            format!("{refused} (after 3ms in state CONNECT, 1 identical error(s) suppressed)");
        assert_eq!(r.admit(&again, t0), None);
        // Another broker's address is another line.
        let other = "Connect to ipv4#10.0.0.2:9092 failed: Connection refused (after 1ms)";
        assert_eq!(r.admit(other, t0), Some(0));
        assert_eq!(r.drain_held(), vec![(again, 1)]);
        assert!(r.drain_held().is_empty());
    }

    #[test]
    fn the_memory_of_lines_is_bounded() {
        let t0 = Instant::now();
        let mut r = Repeats::new(Duration::from_secs(60));
        for i in 0..MAX_LINES {
            assert_eq!(r.admit(&format!("line {i}"), t0), Some(0));
        }
        assert_eq!(r.admit("line 0", t0), None);
        // Full of recent lines: forgets them rather than grow.
        assert_eq!(r.admit("one more", t0), Some(0));
        assert!(r.seen.len() <= MAX_LINES);
        assert_eq!(r.admit("line 0", t0), Some(0));
    }

    #[test]
    fn counts_are_written_into_the_line() {
        assert_eq!(with_count(DOWN, 0), DOWN);
        assert_eq!(
            with_count(DOWN, 7),
            format!("{DOWN} [7 more like it since it was last logged]")
        );
    }
}
