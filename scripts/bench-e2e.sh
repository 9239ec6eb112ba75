#!/usr/bin/env bash
# End-to-end benchmark of the streaming job (pipeline/benches/e2e/): produces N telemetry
# records to a Kafka-protocol broker, measures `spcvm run`'s sustained throughput against a
# bare rdkafka consumer draining the same topic (the ratio), then the alert latency p50/p99
# at a paced 10,000 records/s. Builds the release binary, makes sure a broker runs, runs the
# bench, and prints each command line so the figures can be reproduced.
#
#   scripts/bench-e2e.sh [BENCH OPTIONS]
#     --records N (200000)  --tools N (50)  --partitions N (4)
#     --mode exactly_once|at_least_once (exactly_once)  --rate N (10000)  --latency-secs S (10)
#     --fetch-wait-ms MS (librdkafka's 500)  --paced-linger-ms MS (1: the latency phase's producer)
#     --client-property KEY=VALUE (every client, the job's included; repeatable)
#     --repeat N (3: throughput rounds on the same input, the ratio judged on their median)
#     --spcvm PATH (another binary)  --keep (keep topics, job config and log)
#   KAFKA_BOOTSTRAP=HOST:PORT picks the broker; unset, tansu is started (scripts/broker.sh).
#
# Run it on a quiet machine: the broker, the job and the bench share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

run cargo build --release -p spcvm
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  printf '+ %s\n' 'bash scripts/broker.sh start tansu'
  KAFKA_BOOTSTRAP="$(bash scripts/broker.sh start tansu | sed -n 's/^KAFKA_BOOTSTRAP=//p')"
  [ -n "$KAFKA_BOOTSTRAP" ] || { echo "bench-e2e.sh: no broker address" >&2; exit 1; }
fi
export KAFKA_BOOTSTRAP
echo "# $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)'), $(nproc) cores, load average$(cut -d' ' -f1-3 /proc/loadavg | sed 's/^/ /')"
bash scripts/broker.sh status 2>/dev/null | sed 's/^/# broker: /' || true
printf '+ KAFKA_BOOTSTRAP=%s' "$KAFKA_BOOTSTRAP"
printf ' %q' cargo bench -p spcvm --bench e2e -- "$@"
printf '\n'
cargo bench -p spcvm --bench e2e -- "$@"
