#!/usr/bin/env bash
# Builds spcvm and runs the main job, `spcvm run`, on its embedded default: the file source
# (no broker or other service needed) reading the shipped example telemetry (two ion
# implanters, one with a slow beam-current drift) through the seed's SPC monitors, exactly as
# the Kafka job would. Outputs go to target/demo/: alerts, dead letters (the example has two
# bad lines) and the checkpoint. Each run starts over; extra arguments go to `spcvm run`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p spcvm
out=target/demo
mkdir -p "$out"
rm -f "$out/checkpoint.bin"
export SPCVM__SOURCE=file
export SPCVM__FILE__INPUT=examples/ion_implant_drift.jsonl
export SPCVM__FILE__ALERTS="$out/alerts.jsonl"
export SPCVM__FILE__DLQ="$out/dlq.jsonl"
export SPCVM__FILE__CHECKPOINT="$out/checkpoint.bin"
export SPCVM__HTTP__ENABLED=false
./target/release/spcvm run "$@"
echo
echo "alerts: $out/alerts.jsonl ($(wc -l < "$out/alerts.jsonl") lines); dead letters: $out/dlq.jsonl ($(wc -l < "$out/dlq.jsonl") lines)"
echo "first beam-current alerts:"
grep -m 3 '"beam_current_mA"' "$out/alerts.jsonl"
