#!/usr/bin/env python3
"""Writes telemetry payloads made by the real Confluent Avro serializer, for
`pipeline/tests/confluent_wire.rs` (run `scripts/pyenv.sh` first for the Python environment).

Usage: confluent_payloads.py OUT_DIR

Uses confluent-kafka's `AvroSerializer` with a mock schema registry (`mock://spcvm`) and writes
into OUT_DIR:

* `NAME.bin`: one Kafka message value each, in Confluent wire format (magic byte 0x00, 4-byte
  big-endian schema id, Avro binary datum);
* `expected.jsonl`: for each payload, the record spcvm must decode from it, as one JSON line in
  the format `decode_telemetry_json` reads (non-finite values as "NaN" / "Infinity" /
  "-Infinity"), plus a `"payload": "NAME.bin"` key naming the payload;
* `schemas.json`: the schema ids file for `decode.schema_ids_file` (`{"1": "schema-1.avsc"}`),
  with ids and schema texts read back from the mock registry, and the `.avsc` files beside it.

Payloads are made with (a) our own `schemas/avro/telemetry.avsc` and (b) an evolved producer
schema registered under the same subject (so it gets the next id): fields in another order, an
extra `gateway_version` string with a default, an extra optional `chamber`, no `wafer_id`, and
`event_time` a plain `long` without the logical type. Records include NaN and infinite readings,
an omitted optional `lot_id` (the serializer writes the default), -0.0 and non-ASCII text.
"""

import json
import math
import pathlib
import sys
import warnings

# authlib warns (with its own "always" filter, set when authlib.deprecate is imported) that
# it prefers the httpx2 fork to httpx; both work, and the mock registry makes no request.
import authlib.deprecate  # noqa: E402

warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)

from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOPIC = "spcvm.telemetry"
SUBJECT = f"{TOPIC}-value"  # TopicNameStrategy, the serializer's default

OUR_SCHEMA = (ROOT / "schemas" / "avro" / "telemetry.avsc").read_text()

EVOLVED_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Telemetry",
        "namespace": "io.spcvm",
        "doc": "Telemetry as written by gateway 2.x: new fields, no wafer_id.",
        "fields": [
            {"name": "tool_id", "type": "string"},
            {"name": "gateway_version", "type": "string", "default": "2.0.0"},
            {
                "name": "tool_type",
                "type": {
                    "type": "enum",
                    "name": "ToolType",
                    "symbols": ["ion_implant", "rtp"],
                },
            },
            {"name": "event_time", "type": "long"},
            {"name": "recipe_id", "type": "string"},
            {"name": "chamber", "type": ["null", "string"], "default": None},
            {"name": "lot_id", "type": ["null", "string"], "default": None},
            {"name": "measurements", "type": {"type": "map", "values": "double"}},
        ],
    },
    indent=2,
)

# (payload name, schema, record given to the serializer, what spcvm must decode)
CASES = [
    (
        "ours_full",
        OUR_SCHEMA,
        {
            "tool_id": "ION-01",
            "tool_type": "ion_implant",
            "recipe_id": "B11-5E15",
            "lot_id": "LOT-42",
            "wafer_id": "W07",
            "event_time": 1732617000123,
            "measurements": {
                "beam_current_mA": 4.25,
                "dose_uniformity_pct": 97.31,
                "source_pressure_mtorr": 1.2e-5,
                "analyzer_field_gauss": -1234.5678901234,
            },
        },
        None,
    ),
    (
        "ours_nulls_and_non_finite",
        OUR_SCHEMA,
        {
            "tool_id": "RTP-02",
            "tool_type": "rtp",
            "recipe_id": "SPIKE-1050",
            "lot_id": None,
            "wafer_id": None,
            "event_time": 0,
            "measurements": {
                "ramp_tracking_error_C": float("nan"),
                "overshoot_pct": float("inf"),
                "lamp_power_pct": float("-inf"),
                "emissivity": 0.7,
            },
        },
        None,
    ),
    (
        "ours_unicode_and_many_readings",
        OUR_SCHEMA,
        {
            "tool_id": "ÏON-Ω3",
            "tool_type": "ion_implant",
            "recipe_id": "Rezept-\u00fc\u00df",
            "lot_id": "",
            "wafer_id": "W25",
            "event_time": 4102444800000,
            "measurements": {f"p{i:03}": i * 0.1 - 5.0 for i in range(200)},
        },
        None,
    ),
    (
        "evolved_nan_no_lot",
        EVOLVED_SCHEMA,
        # lot_id and gateway_version left out: the serializer writes their defaults.
        {
            "tool_id": "RTP-02",
            "tool_type": "rtp",
            "event_time": 1732617005000,
            "recipe_id": "SPIKE-1050",
            "chamber": "B",
            "measurements": {
                "gas_flow_deviation_sccm": float("nan"),
                "overshoot_pct": 3.5,
            },
        },
        {
            "tool_id": "RTP-02",
            "tool_type": "rtp",
            "recipe_id": "SPIKE-1050",
            "lot_id": None,
            "wafer_id": None,
            "event_time": 1732617005000,
            "measurements": {
                "gas_flow_deviation_sccm": float("nan"),
                "overshoot_pct": 3.5,
            },
        },
    ),
    (
        "evolved_full",
        EVOLVED_SCHEMA,
        {
            "tool_id": "ION-02",
            "gateway_version": "2.3.1",
            "tool_type": "ion_implant",
            "event_time": 1732617006000,
            "recipe_id": "P31-1E14",
            "chamber": None,
            "lot_id": "LOT-43",
            "measurements": {"beam_current_mA": 4.31, "tilt_deg": -0.0},
        },
        {
            "tool_id": "ION-02",
            "tool_type": "ion_implant",
            "recipe_id": "P31-1E14",
            "lot_id": "LOT-43",
            "wafer_id": None,
            "event_time": 1732617006000,
            "measurements": {"beam_current_mA": 4.31, "tilt_deg": -0.0},
        },
    ),
]


def json_measurement(x: float):
    """A measurement as `decode_telemetry_json` reads it."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)

    client = SchemaRegistryClient.new_client({"url": "mock://spcvm"})
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    serializers = {}
    expected_lines = []
    for name, schema, record, expected in CASES:
        if schema not in serializers:
            serializers[schema] = AvroSerializer(client, schema)
        payload = serializers[schema](record, ctx)
        (out / f"{name}.bin").write_bytes(payload)
        expected = dict(expected or record)
        expected["measurements"] = {
            k: json_measurement(v) for k, v in expected["measurements"].items()
        }
        expected_lines.append(json.dumps({"payload": f"{name}.bin", **expected}))
    (out / "expected.jsonl").write_text("\n".join(expected_lines) + "\n")

    # The ids file, from what the registry holds under the subject.
    ids = {}
    for version in client.get_versions(SUBJECT):
        registered = client.get_version(SUBJECT, version)
        file_name = f"schema-{registered.schema_id}.avsc"
        (out / file_name).write_text(registered.schema.schema_str)
        ids[str(registered.schema_id)] = file_name
    if len(ids) != 2:
        sys.exit(f"expected 2 schemas under {SUBJECT}, the registry holds {ids}")
    (out / "schemas.json").write_text(json.dumps(ids, indent=2) + "\n")
    print(f"wrote {len(CASES)} payloads and {len(ids)} schemas ({ids}) to {out}")


if __name__ == "__main__":
    main()
