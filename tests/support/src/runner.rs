//! A runner for test targets without libtest's harness (`harness = false`), whose `main`
//! has other work too (`tests/e2e/kafka_stages.rs` is also the job it starts): runs named
//! scenarios as libtest would, selected by libtest's arguments, in parallel, a line per
//! result and libtest's summary line.

use std::process::ExitCode;

/// A named scenario; it fails by panicking.
pub type Scenario = (&'static str, fn());

/// What the command line asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    /// Names containing one of these (equal to one, with `exact`) run; none: all.
    filters: Vec<String>,
    exact: bool,
    /// Names containing one of these do not run.
    skips: Vec<String>,
    /// `--ignored`: only ignored scenarios run, and there are none.
    ignored: bool,
    /// `--list`: print the names instead.
    list: bool,
    /// `--test-threads=1`: one at a time.
    sequential: bool,
}

impl Request {
    /// Reads libtest's arguments; flags it does not know are accepted and ignored.
    fn parse(args: &[String]) -> Request {
        let mut request = Request::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--exact" => request.exact = true,
                "--ignored" => request.ignored = true,
                "--list" => request.list = true,
                "--skip" => request.skips.extend(it.next().cloned()),
                "--test-threads" => request.sequential = it.next().is_some_and(|n| n == "1"),
                // libtest's other options with a value: the value is no filter.
                "--color" | "--format" | "--logfile" | "--shuffle-seed" | "-Z" => {
                    it.next();
                }
                _ => {
                    if let Some(v) = a.strip_prefix("--skip=") {
                        request.skips.push(v.to_string());
                    } else if let Some(n) = a.strip_prefix("--test-threads=") {
                        request.sequential = n == "1";
                    } else if !a.starts_with('-') {
                        request.filters.push(a.clone());
                    }
                }
            }
        }
        request
    }

    /// Whether the scenario named `name` runs.
    fn selects(&self, name: &str) -> bool {
        let filtered = self.filters.is_empty()
            || self.filters.iter().any(|f| {
                if self.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            });
        !self.ignored && filtered && !self.skips.iter().any(|s| name.contains(s.as_str()))
    }
}

/// Runs the `scenarios` the command line (libtest's arguments) selects, each on a thread
/// of its own, all at once unless `--test-threads=1`; prints libtest's lines; fails if
/// any scenario failed.
pub fn run_scenarios(scenarios: &[Scenario]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = Request::parse(&args);
    let selected: Vec<&Scenario> = scenarios
        .iter()
        .filter(|(name, _)| request.selects(name))
        .collect();
    if request.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} tests", selected.len());
    let started = std::time::Instant::now();
    let results: Vec<(&str, bool)> = if request.sequential {
        selected.iter().copied().map(one).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = selected
                .iter()
                .map(|&s| scope.spawn(move || one(s)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; \
         finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        results.len() - failed.len(),
        failed.len(),
        scenarios.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one scenario on a thread named after it (its panic message names it) and prints
/// its result with its time; whether it passed.
fn one(&(name, f): &Scenario) -> (&'static str, bool) {
    let started = std::time::Instant::now();
    let passed = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .unwrap()
        .join()
        .is_ok();
    println!(
        "test {name} ... {} ({:.1} s)",
        if passed { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    (name, passed)
}

#[cfg(test)]
mod tests {
    use super::Request;

    fn request(args: &[&str]) -> Request {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Request::parse(&args)
    }

    #[test]
    fn libtest_arguments_select_as_libtest_does() {
        let all = request(&["--nocapture", "--color", "never"]);
        assert!(all.selects("a_kill_test") && !all.list && !all.sequential);
        let some = request(&["kill", "--skip", "rebalance", "--test-threads=1"]);
        assert!(some.selects("a_kill_test") && some.sequential);
        assert!(!some.selects("a_kill_rebalance_test") && !some.selects("other"));
        let exact = request(&["--exact", "kill"]);
        assert!(exact.selects("kill") && !exact.selects("a_kill_test"));
        assert!(!request(&["--ignored"]).selects("a_kill_test"));
        assert!(request(&["--list", "--skip=x"]).list);
        assert!(!request(&["--skip=kill"]).selects("a_kill_test"));
    }
}
