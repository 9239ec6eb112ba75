#!/usr/bin/env bash
# Builds spcvm and runs it on the embedded default: the shipped example telemetry (two ion
# implanters, one with a slow beam-current drift) through the seed's SPC monitors.
# No external services are needed. Outputs go to target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p spcvm
out=target/demo
mkdir -p "$out"
./target/release/spcvm backtest \
  --input examples/ion_implant_drift.jsonl \
  --alerts "$out/alerts.jsonl" \
  --report "$out/report.json" "$@"
echo
echo "alerts: $out/alerts.jsonl ($(wc -l < "$out/alerts.jsonl") lines); report: $out/report.json"
echo "first beam-current alerts:"
grep '"beam_current_mA"' "$out/alerts.jsonl" | head -3
