#!/usr/bin/env bash
# Builds spcvm and runs `spcvm demo`: no broker or other service. It simulates five hours of
# a small fab (3 implanters, 2 RTP chambers; deploy/scenarios/demo.toml) with three faults
# injected, runs the real job over it (`spcvm run`'s file runtime, stages spc + triage),
# scores the alerts and triage against what was injected, draws each detected fault's
# control chart, and prints a summary. Files go to out/demo/ (replaced on each run).
# Extra arguments go to `spcvm demo` (e.g. --scenario deploy/scenarios/mixed_fab.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p spcvm
cargo run --release -q -p spcvm -- demo --out out/demo "$@"
