#!/usr/bin/env bash
# Sets up everything the tests need and runs all of them: formatting, lints, doc links, unit,
# property, statistical and end-to-end tests. Works on a fresh machine with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (broken or ambiguous doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet
echo "== test services: Python tools venv, Kafka-protocol brokers on 127.0.0.1"
# The Confluent serializer (confluent-kafka) makes the Avro wire-format payloads the decoder
# is checked against.
SPCVM_PYTHON="$(bash scripts/pyenv.sh)"
export SPCVM_PYTHON
# tansu runs the streaming suite; noida-db the exactly-once and crash tests (it hides
# aborted transactions from read_committed readers). Brokers this script starts are stopped
# when it ends; one that already ran is reused and left running.
started=()
stop_brokers() {
  for b in "${started[@]}"; do bash scripts/broker.sh stop "$b" >&2 || true; done
}
trap stop_brokers EXIT
# Read the status whole first: `grep -q` in a pipe exits at its first match, and under
# pipefail the status script's SIGPIPE on its next line would read as "not running".
status="$(bash scripts/broker.sh status 2>/dev/null || true)"
for name in tansu noida; do
  if ! grep -q "^$name running" <<<"$status"; then
    started+=("$name")
  fi
done
bootstrap_of() { bash scripts/broker.sh start "$1" | sed -n 's/^KAFKA_BOOTSTRAP=//p'; }
KAFKA_BOOTSTRAP="$(bootstrap_of tansu)"
KAFKA_BOOTSTRAP_TXN="$(bootstrap_of noida)"
# The TLS and SASL tests start their own tansu behind a proxy (tests/e2e/kafka_security.rs).
SPCVM_TANSU="$(bash scripts/broker.sh path tansu)"
# The broker-restart test restarts a noida-db of its own (tests/e2e/kafka_broker_restart.rs).
SPCVM_NOIDA="$(bash scripts/broker.sh path noida)"
export KAFKA_BOOTSTRAP KAFKA_BOOTSTRAP_TXN SPCVM_TANSU SPCVM_NOIDA
echo "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP KAFKA_BOOTSTRAP_TXN=$KAFKA_BOOTSTRAP_TXN SPCVM_PYTHON=$SPCVM_PYTHON SPCVM_TANSU=$SPCVM_TANSU SPCVM_NOIDA=$SPCVM_NOIDA"

echo "== cargo test"
# Library, binary, integration, end-to-end and doc tests. Benches are compiled by clippy
# above and run with `cargo bench` (docs/BENCHMARKS.md), not here.
cargo test --workspace
