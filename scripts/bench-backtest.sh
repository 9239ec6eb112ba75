#!/usr/bin/env bash
# End-to-end backtest throughput: generates N telemetry records (default 1,000,000; 500 ion
# implanters x 2 recipes, 4 measurements each, one record per tool per minute), then times
# `spcvm backtest` over them with the seed monitors. Prints records/s and measurements/s.
#   scripts/bench-backtest.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
out=target/bench
mkdir -p "$out"
input="$out/telemetry-$n.jsonl"
if [ ! -f "$input" ]; then
  python3 - "$n" "$input" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
tools = [f"ION-{i:03d}" for i in range(500)]
with open(path, "w") as f:
    for i in range(n):
        t = tools[i % len(tools)]
        rec = {
            "tool_id": t, "tool_type": "ion_implant", "recipe_id": f"RCP-{(i // 50000) % 2}",
            "lot_id": f"LOT-{i // 12500:05d}", "wafer_id": f"W{i % 25:02d}",
            "event_time": 1772431200000 + (i // len(tools)) * 60000,
            "measurements": {
                "beam_current_mA": rng.gauss(1.0, 0.01),
                "dose_uniformity_pct": rng.gauss(95.0, 0.4),
                "source_pressure_mtorr": rng.gauss(2.3e-5, 1e-7),
                "analyzer_field_gauss": rng.gauss(1520.0, 1.5),
            },
        }
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
PY
fi
cargo build --release -q -p spcvm
start=$(date +%s.%N)
./target/release/spcvm backtest --quiet --input "$input" --alerts "$out/alerts.jsonl" --report "$out/report.json"
end=$(date +%s.%N)
python3 - "$n" "$start" "$end" "$input" "$out/alerts.jsonl" <<'PY'
import os, sys
n, t = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2])
mib = os.path.getsize(sys.argv[4]) / 2**20
alerts = sum(1 for _ in open(sys.argv[5]))
print(f"{n} records ({mib:.0f} MiB) in {t:.2f} s: {n / t:,.0f} records/s, "
      f"{4 * n / t:,.0f} measurements/s, {mib / t:.0f} MiB/s, {alerts} alert lines")
PY
