#!/usr/bin/env bash
# Backtest throughput with triage on and off on the same input, interleaved: ROUNDS rounds of
# (off, on), each timed (user CPU and wall); prints the medians and on/off as throughput.
# The default input is the simulator's large fab (40 tools, 1,000,000 records, six faults).
#   scripts/bench-triage.sh [INPUT] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
cargo build --release -q -p spcvm
bin=./target/release/spcvm
input=${1:-$out/large_fab.jsonl}
rounds=${2:-7}
if [ ! -f "$input" ]; then
  if [ "$input" != "$out/large_fab.jsonl" ]; then
    echo "no input file $input" >&2
    exit 2
  fi
  $bin simulate --quiet --scenario deploy/scenarios/large_fab.toml --out "$input"
fi
times="$out/triage-times.txt"
: > "$times"
for _ in $(seq "$rounds"); do
  /usr/bin/time -a -o "$times" -f "off %U %e" \
    $bin backtest --quiet --input "$input" --alerts "$out/onoff-alerts-off.jsonl"
  /usr/bin/time -a -o "$times" -f "on %U %e" \
    $bin backtest --quiet --input "$input" --alerts "$out/onoff-alerts-on.jsonl" \
      --triage "$out/onoff-triage.jsonl" --actions "$out/onoff-actions.jsonl"
done
python3 - "$times" "$out/onoff-triage.jsonl" "$out/onoff-actions.jsonl" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
med = lambda kind, col: statistics.median(float(r[col]) for r in rows if r[0] == kind)
versions = sum(1 for _ in open(sys.argv[2]))
actions = sum(1 for _ in open(sys.argv[3]))
print(f"{len(rows) // 2} rounds; {versions} triage versions, {actions} actions")
for name, col in (("user s", 1), ("wall s", 2)):
    off, on = med("off", col), med("on", col)
    print(f"{name}: off {off:.2f}, on {on:.2f}: throughput on/off {off / on:.3f}")
PY
