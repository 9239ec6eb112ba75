//! `--rate`: paces the wall-clock emission of simulated records (their event time is the
//! scenario's whatever the rate).
//!
//! [`Pacer`] is a token bucket kept as a schedule: record `n` is due at
//! `origin + n / rate`, worked out from `n` each time rather than by adding an interval per
//! record, so late wake-ups and rounding never add up (a run of an hour at 1,000 records/s
//! sends its 3,600,000th record at 3,600 s, not later). A record that is due is sent at
//! once; when the writer falls behind (a full broker queue, a stalled disk) by more than
//! the bucket ([`Pacer::burst`] records), the schedule moves forward so at most that many
//! go out back to back to catch up. The clock is a [`Clock`], so the logic is tested on a
//! clock the test moves.

use std::time::{Duration, Instant};

/// Time as the pacer sees it: now, and sleeping.
pub trait Clock {
    /// Time since an origin of the clock's own.
    fn now(&self) -> Duration;
    /// Blocks for about `duration` (longer is fine: the schedule absorbs it).
    fn sleep(&mut self, duration: Duration);
}

/// The real clock: [`Instant`] and [`std::thread::sleep`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Paces records to `rate` a second (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    /// Most records sent back to back to catch up.
    burst: u64,
    /// When record 0 of the current schedule was due.
    origin: Duration,
    /// Records counted since `origin`.
    n: u64,
}

impl Pacer {
    /// A pacer of `rate` records a second (positive and finite; the caller checks) whose
    /// first record is due at `now`. The bucket holds a tenth of a second of records (at
    /// least one).
    pub fn new(rate: f64, now: Duration) -> Pacer {
        Pacer {
            rate,
            burst: ((rate / 10.0).ceil() as u64).max(1),
            origin: now,
            n: 0,
        }
    }

    /// Most records sent back to back after the writer fell behind.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// When the next record is due, on the clock the pacer was made with.
    fn due(&self) -> Duration {
        self.origin + Duration::from_secs_f64(self.n as f64 / self.rate)
    }

    /// Waits until the next record is due, then counts it as sent.
    pub fn wait(&mut self, clock: &mut impl Clock) {
        let now = clock.now();
        let due = self.due();
        if due > now {
            clock.sleep(due - now);
        } else {
            // Behind by more than the bucket: forget the excess, keep `burst` to catch up.
            let bucket = Duration::from_secs_f64(self.burst as f64 / self.rate);
            if now - due > bucket {
                self.origin = now - bucket;
                self.n = 0;
            }
        }
        self.n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when slept on (each sleep `late` longer than asked) or
    /// moved by the test.
    struct TestClock {
        now: Duration,
        late: Duration,
        sleeps: u64,
    }

    impl TestClock {
        fn new(late: Duration) -> TestClock {
            TestClock {
                now: Duration::ZERO,
                late,
                sleeps: 0,
            }
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Duration {
            self.now
        }
        fn sleep(&mut self, duration: Duration) {
            self.now += duration + self.late;
            self.sleeps += 1;
        }
    }

    /// When each of `count` records goes out.
    fn send_times(pacer: &mut Pacer, clock: &mut TestClock, count: u64) -> Vec<Duration> {
        (0..count)
            .map(|_| {
                pacer.wait(clock);
                clock.now
            })
            .collect()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn records_go_out_on_schedule() {
        let mut clock = TestClock::new(Duration::ZERO);
        let mut pacer = Pacer::new(250.0, clock.now);
        let times = send_times(&mut pacer, &mut clock, 1000);
        for (n, t) in times.iter().enumerate() {
            let due = secs(n as f64 / 250.0);
            assert!(t.abs_diff(due) <= Duration::from_nanos(1), "{n}: {t:?}");
        }
        // The first record goes at once, each later one after a sleep.
        assert_eq!(clock.sleeps, 999);
    }

    #[test]
    fn late_wake_ups_do_not_add_up() {
        // Every sleep ends 3 ms late (at 1,000 records/s, three records' worth).
        let late = Duration::from_millis(3);
        let mut clock = TestClock::new(late);
        let mut pacer = Pacer::new(1000.0, clock.now);
        let times = send_times(&mut pacer, &mut clock, 100_000);
        for (n, t) in times.iter().enumerate() {
            let due = secs(n as f64 / 1000.0);
            assert!(*t >= due, "{n} early: {t:?}");
            assert!(*t - due <= late, "{n} behind by {:?}", *t - due);
        }
        // Sleeping once per record, the run would take 100,000 x 4 ms = 400 s; on the
        // schedule it takes 100 s (plus at most one late wake-up), since the records due
        // while one sleep overran go out without another.
        let last = times.last().copied().unwrap_or_default();
        assert!(last <= secs(99.999) + late, "{last:?}");
        assert!(clock.sleeps < 100_000 / 3, "{} sleeps", clock.sleeps);
    }

    #[test]
    fn a_stall_is_caught_up_by_one_bucket_at_most() {
        let mut clock = TestClock::new(Duration::ZERO);
        let mut pacer = Pacer::new(1000.0, clock.now);
        assert_eq!(pacer.burst(), 100);
        send_times(&mut pacer, &mut clock, 500);
        // The writer stalls for 2 s: 2,000 records' worth.
        clock.now += secs(2.0);
        let stalled_at = clock.now;
        let sleeps = clock.sleeps;
        let after = send_times(&mut pacer, &mut clock, 1000);
        // A bucket (100 records) and the one due now go out at once, not 2,000.
        let at_once = after.iter().take_while(|t| **t == stalled_at).count();
        assert_eq!(at_once, 101);
        // Then the rate again: one record a millisecond.
        for (i, pair) in after[at_once - 1..].windows(2).enumerate() {
            assert!(
                pair[1].abs_diff(pair[0] + secs(0.001)) <= Duration::from_nanos(2),
                "{i}: {pair:?}"
            );
        }
        assert_eq!(clock.sleeps - sleeps, 1000 - 101);
    }

    #[test]
    fn a_slow_writer_never_sleeps_and_never_bursts() {
        // The writer takes 5 ms a record at a rate of 1,000 a second: the pacer never
        // waits, and the backlog never exceeds a bucket.
        let mut clock = TestClock::new(Duration::ZERO);
        let mut pacer = Pacer::new(1000.0, clock.now);
        for _ in 0..10_000 {
            pacer.wait(&mut clock);
            clock.now += Duration::from_millis(5);
        }
        assert_eq!(clock.sleeps, 0);
        // Once the writer is fast again, only a bucket's worth goes out without a sleep.
        let start = clock.now;
        let times = send_times(&mut pacer, &mut clock, 300);
        let at_once = times.iter().take_while(|t| **t == start).count();
        assert!(at_once <= 101, "{at_once}");
    }

    #[test]
    fn slow_rates_pace_too() {
        let mut clock = TestClock::new(Duration::ZERO);
        let mut pacer = Pacer::new(0.5, clock.now);
        assert_eq!(pacer.burst(), 1);
        let times = send_times(&mut pacer, &mut clock, 4);
        assert_eq!(times, [secs(0.0), secs(2.0), secs(4.0), secs(6.0)]);
    }
}
