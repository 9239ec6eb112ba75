#!/usr/bin/env bash
# Creates (or reuses) the Python tool environment at .venv/tools: confluent-kafka with what its
# Avro serializer needs, used by `scripts/confluent_payloads.py` and the wire-compatibility test
# `pipeline/tests/confluent_wire.rs` (which finds it there, or via SPCVM_PYTHON); cryptography
# and scramp for the TLS and SASL proxy of `tests/e2e/kafka_security.rs`.
#
# Idempotent: an existing venv whose imports work and whose confluent-kafka and scramp are the
# pinned versions is left alone. Prints the venv's python path on the last line of stdout.
#
# Pins (checked by importing confluent_kafka.schema_registry.avro and serializing a record):
# confluent-kafka's Avro serializer imports fastavro, attrs, cachetools, certifi, authlib and
# httpx (it prefers the `httpx2` fork when installed and falls back to `httpx`). Its `[avro]`
# extra also lists `requests` and `avro`, which serializing does not need. The remaining pins are
# their transitive dependencies, pinned too so the environment is the same on every machine.
# scramp (the SCRAM server of the SASL proxy) needs asn1crypto.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv/tools
PY="$VENV/bin/python"
CONFLUENT_KAFKA_VERSION=2.16.1
SCRAMP_VERSION=1.5.0
PINS=(
  "confluent-kafka==${CONFLUENT_KAFKA_VERSION}"
  "fastavro==1.13.1"
  "attrs==26.1.0"
  "cachetools==8.0.2"
  "certifi==2026.10.19.post1"
  "Authlib==1.9.10"
  "joserfc==1.8.0"
  "cryptography==50.0.2"
  "cffi==2.1.1"
  "pycparser==3.12"
  "httpx==0.28.1"
  "httpcore==1.0.9"
  "h11==0.16.0"
  "anyio==4.16.0"
  "idna==3.20"
  "typing_extensions==4.16.0"
  "scramp==${SCRAMP_VERSION}"
  "asn1crypto==1.5.1"
)

# Imports and serializes one record with the mock registry, exactly as the payload script does.
check() {
  "$PY" -W ignore - <<EOF >/dev/null 2>&1
import confluent_kafka
assert confluent_kafka.__version__ == "${CONFLUENT_KAFKA_VERSION}", confluent_kafka.__version__
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
client = SchemaRegistryClient.new_client({"url": "mock://pyenv-check"})
schema = '{"type":"record","name":"R","fields":[{"name":"x","type":"double"}]}'
payload = AvroSerializer(client, schema)({"x": 1.0}, SerializationContext("t", MessageField.VALUE))
assert payload[:1] == b"\\x00" and len(payload) == 13, payload
import importlib.metadata, scramp, cryptography.x509
assert importlib.metadata.version("scramp") == "${SCRAMP_VERSION}"
scramp.ScramMechanism("SCRAM-SHA-512").make_auth_info("pw", iteration_count=4096)
EOF
}

if [[ -x "$PY" ]] && check; then
  echo "reusing $VENV (imports work)" >&2
else
  if [[ ! -x "$PY" ]]; then
    echo "creating $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  else
    echo "repairing $VENV" >&2
  fi
  "$PY" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
  if ! check; then
    echo "error: $VENV was set up but its imports still fail:" >&2
    "$PY" -c "from confluent_kafka.schema_registry.avro import AvroSerializer; import scramp" >&2 || true
    exit 1
  fi
fi

echo "$(cd "$(dirname "$PY")" && pwd)/python"
