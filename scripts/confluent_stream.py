#!/usr/bin/env python3
"""Serializes a JSON-lines telemetry file with the real Confluent Avro serializer, for the
end-to-end test `tests/e2e/kafka_avro.rs` (run `scripts/pyenv.sh` first for the Python
environment).

Usage: confluent_stream.py INPUT.jsonl OUT_DIR

INPUT.jsonl holds telemetry records as `spcvm` writes them (`encode_telemetry_json`: non-finite
values as "NaN" / "Infinity" / "-Infinity"). Uses confluent-kafka's `AvroSerializer` with a mock
schema registry (`mock://spcvm-stream`) and writes into OUT_DIR:

* `payloads.bin`: one Kafka message value per input record, in input order, each as a 4-byte
  big-endian length followed by the payload in Confluent wire format (magic byte 0x00, 4-byte
  big-endian schema id, Avro binary datum);
* `schemas.json`: the schema ids file for `decode.schema_ids_file` (`{"1": "schema-1.avsc"}`),
  ids and schema texts read back from the mock registry, with the `.avsc` files beside it.

Even records are written with our own `schemas/avro/telemetry.avsc`, odd ones with a producer
schema evolved from it and registered under the same subject (so it gets the next id): fields
in another order, an extra `gateway_version` string (with a default), and `event_time` a plain
`long`. Both carry every field spcvm reads, so the decoded records equal the input.
"""

import json
import math
import pathlib
import struct
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
        "doc": "Telemetry as written by gateway 2.x: fields reordered, one more field.",
        "fields": [
            {"name": "event_time", "type": "long"},
            {"name": "tool_id", "type": "string"},
            {"name": "gateway_version", "type": "string", "default": "2.0.0"},
            {"name": "measurements", "type": {"type": "map", "values": "double"}},
            {
                "name": "tool_type",
                "type": {
                    "type": "enum",
                    "name": "ToolType",
                    "symbols": ["ion_implant", "rtp"],
                },
            },
            {"name": "wafer_id", "type": ["null", "string"], "default": None},
            {"name": "recipe_id", "type": "string"},
            {"name": "lot_id", "type": ["null", "string"], "default": None},
        ],
    },
    indent=2,
)

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def avro_record(line: str) -> dict:
    """One input line as the record given to the serializer."""
    record = json.loads(line)
    record["measurements"] = {
        k: NON_FINITE.get(v, v) if isinstance(v, str) else float(v)
        for k, v in record["measurements"].items()
    }
    record.setdefault("lot_id", None)
    record.setdefault("wafer_id", None)
    return record


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} INPUT.jsonl OUT_DIR")
    source = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    client = SchemaRegistryClient.new_client({"url": "mock://spcvm-stream"})
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    ours = AvroSerializer(client, OUR_SCHEMA)
    evolved = AvroSerializer(client, EVOLVED_SCHEMA)
    count = 0
    with source.open() as lines, (out / "payloads.bin").open("wb") as payloads:
        for line in lines:
            if not line.strip():
                continue
            record = avro_record(line)
            if count % 2 == 1:
                record["gateway_version"] = f"2.{count % 7}.0"
                payload = evolved(record, ctx)
            else:
                payload = ours(record, ctx)
            payloads.write(struct.pack(">I", len(payload)))
            payloads.write(payload)
            count += 1

    # The ids file, from what the registry holds under the subject.
    ids = {}
    for version in client.get_versions(SUBJECT):
        registered = client.get_version(SUBJECT, version)
        file_name = f"schema-{registered.schema_id}.avsc"
        (out / file_name).write_text(registered.schema.schema_str)
        ids[str(registered.schema_id)] = file_name
    if count > 1 and len(ids) != 2:
        sys.exit(f"expected 2 schemas under {SUBJECT}, the registry holds {ids}")
    (out / "schemas.json").write_text(json.dumps(ids, indent=2) + "\n")
    print(f"wrote {count} payloads and {len(ids)} schemas ({ids}) to {out}")


if __name__ == "__main__":
    main()
