//! Backtest throughput with triage on and off on the same input, interleaved in one run:
//! two backtests (the CLI's loop, [`backtest::run`], over the same file, each writing its
//! own files), one with the SPC stage alone and one with SPC and triage, run in lock step
//! on two threads that take turns: one reads and processes about [`TURN_BYTES`] of the
//! input while the other waits, then the other does. Only one runs at a time, and this
//! machine's slow and fast spells (seconds long; they move a whole run's time by a third)
//! fall on both alike. Each side's CPU time is its thread's (`CLOCK_THREAD_CPUTIME_ID`).
//!
//! ```sh
//! cargo bench -p spcvm --bench triage_onoff [-- INPUT [ROUNDS [same]]]   # INPUT relative to the workspace
//! ```
//!
//! `same` runs triage off on both sides: the harness's own check, whose ratio should be 1.
//!
//! The default input is the simulator's large fab (`deploy/scenarios/large_fab.toml`: 40
//! tools, 1,000,000 records, six faults), generated into `target/bench/large_fab.jsonl` if
//! it is not there. Outputs go to `target/bench/onoff-*.jsonl`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use spcvm::backtest::{self, Silent, StreamWriters};
use spcvm::input::{Format, RecordSource};
use spcvm::run::config::PipelineConfig;
use spcvm::simulate::{Destination, OutputFormat, scenario};
use spcvm::stages::{Chain, DynStage};
use spcvm_sinks::LineWriter;
use spcvm_testkit::median;

/// Input bytes a side reads before it hands the turn over (about 3,500 records, a few ms).
const TURN_BYTES: usize = 1 << 20;

/// Whose turn it is, and who has finished.
#[derive(Default)]
struct Turns {
    state: Mutex<(usize, [bool; 2])>,
    changed: Condvar,
}

impl Turns {
    /// Waits until it is `me`'s turn (or the other side has finished).
    fn wait(&self, me: usize) {
        let mut state = self.state.lock().expect("turns lock");
        while state.0 != me && !state.1[1 - me] {
            state = self.changed.wait(state).expect("turns lock");
        }
    }

    /// Hands the turn to the other side; `done`: `me` has finished.
    fn pass(&self, me: usize, done: bool) {
        let mut state = self.state.lock().expect("turns lock");
        state.0 = 1 - me;
        state.1[me] |= done;
        self.changed.notify_all();
    }
}

/// The input file, read in turns.
struct TurnReader {
    file: File,
    turns: Arc<Turns>,
    me: usize,
    since: usize,
}

impl Read for TurnReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since >= TURN_BYTES {
            self.turns.pass(self.me, false);
            self.turns.wait(self.me);
            self.since = 0;
        }
        let n = self.file.read(buf)?;
        self.since += n;
        Ok(n)
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes the struct it is given and nothing else.
    let t = unsafe {
        let mut t = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t);
        t
    };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Hands the turn over for good when a side ends, even by a panic (the other side would
/// otherwise wait for ever).
struct Finished<'t>(&'t Turns, usize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.pass(self.1, true);
    }
}

/// One side's backtest over `input`, in turns (`me`: its turn; turn 0 goes first),
/// writing each stream of `chain` to `target/bench/onoff-{name}-{stream}.jsonl`; returns
/// its thread's CPU seconds.
fn side(
    chain: &Arc<Chain>,
    name: &str,
    input: &Path,
    out: &Path,
    turns: &Arc<Turns>,
    me: usize,
) -> f64 {
    let _finished = Finished(turns, me);
    turns.wait(me);
    let started = thread_cpu();
    let reader = TurnReader {
        file: File::open(input).expect("the input opens"),
        turns: turns.clone(),
        me,
        since: 0,
    };
    let mut sources = vec![
        RecordSource::from_reader(Box::new(reader), input, Format::Jsonl)
            .expect("JSON lines input"),
    ];
    let mut writers: StreamWriters<File> = chain
        .streams()
        .iter()
        .map(|stream| {
            let path = out.join(format!("onoff-{name}-{}.jsonl", stream.spec.name));
            Some(LineWriter::new(
                File::create(&path).expect("output file"),
                path,
            ))
        })
        .collect();
    backtest::run(chain, &mut sources, &mut writers, &mut Silent).expect("backtest");
    (thread_cpu() - started).as_secs_f64()
}

/// One round: both sides in turns, `first` (0: off, 1: on) starting; their CPU seconds
/// (off, on) and the round's wall time.
fn round(chains: &[Arc<Chain>; 2], first: usize, input: &Path, out: &Path) -> (f64, f64, f64) {
    let turns = Arc::new(Turns::default());
    let wall = Instant::now();
    let [off, on] = std::thread::scope(|s| {
        [0, 1]
            .map(|k| {
                let (chain, turns) = (&chains[k], &turns);
                let turn = usize::from(k != first);
                s.spawn(move || side(chain, ["off", "on"][k], input, out, turns, turn))
            })
            .map(|h| h.join().expect("a side panicked"))
    });
    (off, on, wall.elapsed().as_secs_f64())
}

/// The default input, generated by the simulator when missing.
fn large_fab(root: &Path, out: &Path) -> PathBuf {
    let path = out.join("large_fab.jsonl");
    if !path.exists() {
        let file = root.join("deploy/scenarios/large_fab.toml");
        let scenario = scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        let destination = Destination::File {
            path: path.clone(),
            format: OutputFormat::Jsonl,
        };
        let truth = out.join("large_fab.truth.json");
        spcvm::simulate::simulate(
            &scenario,
            "large_fab",
            &destination,
            &truth,
            None,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    path
}

fn main() {
    spcvm::cli::tune_malloc();
    // One heap for both sides, as the CLI's one thread has: glibc would give each thread
    // its own arena, and the two arenas do not cost the same.
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench can be created");
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    // `cargo bench` runs this from `pipeline/`: a relative INPUT is the workspace's.
    let input = args
        .first()
        .map_or_else(|| large_fab(&root, &out), |a| root.join(a));
    assert!(input.is_file(), "no input file {}", input.display());
    let rounds: usize = args
        .get(1)
        .map_or(5, |r| r.parse().expect("ROUNDS: a number"));

    let monitor = || Arc::new(spcvm::config::load_monitor(None).expect("the built-in charts"));
    let triage = spcvm::run::triage_stage(&PipelineConfig::default()).expect("the playbooks");
    let off: Vec<Arc<dyn DynStage>> = vec![monitor()];
    let on: Vec<Arc<dyn DynStage>> = vec![monitor(), Arc::new(triage)];
    // `same`: triage off on both sides, which checks the harness (the ratio should be 1).
    let same = args.get(2).is_some_and(|a| a == "same");
    let chains = if same { [off.clone(), off] } else { [off, on] };
    let chains = chains.map(|stages| Arc::new(Chain::new(stages, &[]).expect("a chain")));

    // One untimed round: the input in the page cache, the allocator's heaps grown.
    round(&chains, 0, &input, &out);
    println!(
        "input {}, {rounds} rounds, turns of {TURN_BYTES} bytes{}",
        input.display(),
        if same {
            ", triage off on both sides"
        } else {
            ""
        }
    );
    println!("round  off cpu s  on cpu s  on/off   (wall s, both)");
    let mut ratios = Vec::with_capacity(rounds);
    let (mut off_total, mut on_total) = (0.0, 0.0);
    for n in 1..=rounds {
        // Sides take turns starting: the one that starts reads the file first.
        let (off, on, wall) = round(&chains, n % 2, &input, &out);
        println!("{n:5} {off:10.3} {on:9.3}  {:.3}   ({wall:.3})", off / on);
        ratios.push(off / on);
        off_total += off;
        on_total += on;
    }
    if !same {
        let versions = count_lines(&out.join("onoff-on-triage.jsonl"));
        let actions = count_lines(&out.join("onoff-on-actions.jsonl"));
        println!("{versions} triage versions, {actions} actions a run");
    }
    println!(
        "throughput on/off: median of the rounds {:.3}, all rounds {:.3} (target 0.95)",
        median(ratios),
        off_total / on_total
    );
}

fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}
