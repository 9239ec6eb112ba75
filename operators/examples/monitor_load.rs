//! A deterministic driver for the monitor bench's workload, for cache simulation and quick
//! checks: warms the keys past Phase I exactly as `benches/monitor.rs` does, then replays the
//! batch `--passes` times. Prints the chart-state size, the wall time per pass, and a digest
//! of every alert (warm-up, passes and the final flush) so that two builds can be checked for
//! identical output.
//!
//! ```sh
//! cargo run --release -p spcvm-operators --example monitor_load -- --keys 100000 --rules all --passes 2
//! ```
//!
//! Options: `--keys N` (chart keys, four per tool; default 100,000), `--rules all|default`,
//! `--passes N`, `--batch N` (records per pass; default two per tool, at least 2,000),
//! `--shuffle` (tools in a pseudo-random order within each round instead of round robin),
//! `--batched` (through `SpcMonitor::process_records`).
//!
//! Under callgrind, the warm-up runs uninstrumented (fast), the passes are simulated, and only
//! the last pass is counted (the earlier ones warm the simulated caches):
//!
//! ```sh
//! valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no --cache-sim=yes \
//!     --D1=32768,8,64 --LL=33554432,16,64 \
//!     target/release/examples/monitor_load --keys 100000 --rules all --passes 2
//! ```

use std::time::Instant;

use spcvm_schemas::Alert;

#[path = "../benches/workload/mod.rs"]
mod workload;

/// Callgrind client requests (no-ops outside valgrind).
mod callgrind {
    const BASE: u64 = ((b'C' as u64) << 24) | ((b'T' as u64) << 16);
    /// Start or stop counting events.
    pub const TOGGLE_COLLECT: u64 = BASE + 2;
    /// Start simulating (and counting, when collection is on).
    pub const START_INSTRUMENTATION: u64 = BASE + 4;
    /// Stop simulating.
    pub const STOP_INSTRUMENTATION: u64 = BASE + 5;

    /// Issues a client request: valgrind recognises the rotate sequence (a no-op on real
    /// hardware: the rotations add up to 128 bits) and reads the request from `rax`.
    #[cfg(target_arch = "x86_64")]
    pub fn request(code: u64) {
        let args = [code, 0, 0, 0, 0, 0];
        // SAFETY: the sequence leaves every register as it found it except rdx, declared
        // here; valgrind only reads `args`, which outlives the call.
        unsafe {
            std::arch::asm!(
                "rol rdi, 3",
                "rol rdi, 13",
                "rol rdi, 61",
                "rol rdi, 51",
                "xchg rbx, rbx",
                in("rax") args.as_ptr(),
                inout("rdx") 0u64 => _,
                options(nostack),
            );
        }
    }

    /// Client requests need x86_64 here; elsewhere the driver runs without them.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn request(_code: u64) {}
}

/// Nanoseconds this thread has spent on a CPU (Linux; 0 elsewhere): unlike the wall clock,
/// it does not count the time other processes hold the core.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// FNV-1a over the JSON of every alert, in order.
fn digest(h: &mut u64, alerts: &[Alert]) {
    for a in alerts {
        for &b in serde_json::to_string(a)
            .expect("alerts serialize")
            .as_bytes()
        {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn main() {
    let mut keys = 100_000usize;
    let mut all_rules = true;
    let mut passes = 1usize;
    let mut batch = None;
    let (mut shuffle, mut batched, mut decoded) = (false, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("option needs a value");
        match a.as_str() {
            "--keys" => keys = val().parse().expect("--keys N"),
            "--rules" => all_rules = val() == "all",
            "--passes" => passes = val().parse().expect("--passes N"),
            "--batch" => batch = Some(val().parse().expect("--batch N")),
            "--shuffle" => shuffle = true,
            "--batched" => batched = true,
            "--decoded" => decoded = true,
            other => panic!("unknown option {other}"),
        }
    }
    let m = workload::monitor(all_rules);
    let tools = keys.div_ceil(workload::PARAMS.len());
    // As the bench: two records per tool, at least 2,000 (or `--batch`).
    let batch_len = batch.unwrap_or((tools * 2).max(2_000));
    let t0 = Instant::now();
    let mut st = workload::warm(&m, tools, batch_len);
    if shuffle {
        st.shuffle_tools(tools);
    }
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    digest(&mut h, &st.warm_alerts);
    let mut alerts = st.warm_alerts.len();
    let sizes: Vec<usize> = st.store.iter().map(|(_, s)| s.memory_bytes()).collect();
    println!(
        "{} chart states, {} records per pass, warm-up {:.1} s; SpcState::memory_bytes: max {}, \
         mean {:.1}; store overhead per chart {:.1} bytes",
        st.store.len(),
        st.batch.len(),
        t0.elapsed().as_secs_f64(),
        sizes.iter().max().unwrap_or(&0),
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64,
        st.store.overhead_bytes() as f64 / st.store.len().max(1) as f64,
    );
    let mut sink = Vec::new();
    let ids = workload::tool_ids(tools);
    let mut fresh = Vec::new();
    let fired = workload::fired(&st.store);
    let measurements = st.batch.len() * workload::PARAMS.len();
    // Nothing else runs between the passes, so the simulated caches see what the bench does.
    callgrind::request(callgrind::START_INSTRUMENTATION);
    for pass in 0..passes {
        st.advance();
        if decoded {
            workload::decoded(&st.batch, &ids, &mut fresh);
        }
        let last = pass + 1 == passes;
        if last {
            callgrind::request(callgrind::TOGGLE_COLLECT);
        }
        let (t, cpu) = (Instant::now(), cpu_ns());
        if decoded {
            workload::pass(&m, &mut st.store, &fresh, &mut sink, batched);
        } else {
            workload::pass(&m, &mut st.store, &st.batch, &mut sink, batched);
        }
        let dt = t.elapsed().as_secs_f64();
        let dcpu = (cpu_ns() - cpu) as f64 / 1e9;
        if last {
            callgrind::request(callgrind::TOGGLE_COLLECT);
        }
        println!(
            "pass {pass}: {:.1} ms wall, {:.2} M measurements/s; {:.1} ms on CPU, {:.2} M/s; {} alerts",
            dt * 1e3,
            measurements as f64 / dt / 1e6,
            dcpu * 1e3,
            measurements as f64 / dcpu / 1e6,
            sink.len(),
        );
        digest(&mut h, &sink);
        alerts += sink.len();
        sink.clear();
    }
    callgrind::request(callgrind::STOP_INSTRUMENTATION);
    let max_bytes = st
        .store
        .iter()
        .map(|(_, s)| s.memory_bytes())
        .max()
        .unwrap_or(0);
    println!(
        "{} rule firings in {passes} passes; SpcState::memory_bytes max {max_bytes}",
        workload::fired(&st.store) - fired
    );
    m.end_all(&mut st.store, &mut sink);
    digest(&mut h, &sink);
    alerts += sink.len();
    println!(
        "alerts {alerts} (final flush {}), digest {h:016x}",
        sink.len()
    );
}
