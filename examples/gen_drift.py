#!/usr/bin/env python3
"""Writes examples/ion_implant_drift.jsonl: two ion implanters, one of which drifts.

Deterministic (random.Random(SEED), Python standard library only): running it again
rewrites the same bytes.

    python3 examples/gen_drift.py [OUTPUT]

* Tools ION-01 and ION-02, recipe B11_30KEV, 600 wafers each, one record per wafer every
  60 s of event time from 2026-03-02T06:00:00Z (both tools run side by side; at each
  timestamp ION-01's record comes first). Lots of 25 wafers.
* Measurements (normal, independent): beam_current_mA 1.00 (sd 0.01),
  dose_uniformity_pct 95.0 (sd 0.4), source_pressure_mtorr 2.3e-5 (sd 1e-7),
  analyzer_field_gauss 1520 (sd 1.5).
* From wafer 400 (0-based) on, ION-02's beam current drifts upward by 0.0006 mA per wafer
  (0.06 sigma per wafer): wafer 400 is +0.0006 mA, wafer 599 is +0.12 mA.
* Three deliberately awkward lines show how spcvm backtest skips and counts: one line of
  invalid JSON, one record with "tool_type": "cvd", and one ION-01 record whose
  beam_current_mA is "NaN" (a valid record with one non-finite value).
"""

import json
import random
import sys
from datetime import datetime, timezone
from pathlib import Path

SEED = 20260302
TOOLS = ("ION-01", "ION-02")
RECIPE = "B11_30KEV"
WAFERS_PER_TOOL = 600
WAFERS_PER_LOT = 25
STEP_MS = 60_000
START_MS = int(datetime(2026, 3, 2, 6, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)

DRIFT_TOOL = "ION-02"
DRIFT_START = 400
DRIFT_PER_WAFER_MA = 0.0006

NAN_TOOL, NAN_WAFER = "ION-01", 150
# The bad lines go in before the records of these wafer indexes.
INVALID_JSON_BEFORE = 100
CVD_BEFORE = 300


def measurements(rng, tool, i):
    beam = rng.gauss(1.00, 0.01)
    if tool == DRIFT_TOOL and i >= DRIFT_START:
        beam += DRIFT_PER_WAFER_MA * (i - DRIFT_START + 1)
    return {
        "beam_current_mA": round(beam, 6),
        "dose_uniformity_pct": round(rng.gauss(95.0, 0.4), 4),
        "source_pressure_mtorr": float(f"{rng.gauss(2.3e-5, 0.1e-6):.5e}"),
        "analyzer_field_gauss": round(rng.gauss(1520.0, 1.5), 3),
    }


def record(rng, tool, i):
    lot = i // WAFERS_PER_LOT + 1
    lot_id = f"LOT-{tool[-2:]}{lot:03d}"
    m = measurements(rng, tool, i)
    if tool == NAN_TOOL and i == NAN_WAFER:
        m["beam_current_mA"] = "NaN"
    return {
        "tool_id": tool,
        "tool_type": "ion_implant",
        "recipe_id": RECIPE,
        "lot_id": lot_id,
        "wafer_id": f"{lot_id}-W{i % WAFERS_PER_LOT + 1:02d}",
        "event_time": START_MS + i * STEP_MS,
        "measurements": m,
    }


def lines():
    # One generator per tool, so each tool's data does not depend on the other's.
    rngs = {tool: random.Random(f"{SEED}-{tool}") for tool in TOOLS}
    for i in range(WAFERS_PER_TOOL):
        if i == INVALID_JSON_BEFORE:
            yield '{"tool_id": "ION-01", "tool_type": "ion_implant", "recipe_id": "B11_30KEV", '
        if i == CVD_BEFORE:
            bad = record(random.Random(SEED), "CVD-07", i)
            bad["tool_type"] = "cvd"
            yield json.dumps(bad)
        for tool in TOOLS:
            yield json.dumps(record(rngs[tool], tool, i))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("ion_implant_drift.jsonl")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for line in lines():
            f.write(line + "\n")


if __name__ == "__main__":
    main()
