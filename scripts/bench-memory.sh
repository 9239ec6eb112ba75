#!/usr/bin/env bash
# Peak memory of `spcvm run` catching up a backlog it cannot keep up with: N telemetry
# records (about 330 bytes each, 200 tools) on a topic of P partitions, and a job whose
# producer is held back (linger.ms 500, a 20-message queue), so its tasks stall on their
# checkpoint and alert sends while librdkafka prefetches up to its limits. After S seconds
# prints the job's peak resident memory (VmHWM).
#
#   scripts/bench-memory.sh [--records N (4000000)] [--partitions P (48)] [--seconds S (50)]
#                           [--produce-only | --no-produce] [-- EXTRA TOML LINES FOR [kafka.consumer_properties]]
#   e.g. librdkafka's own limits, as before the prefetch budget:
#   scripts/bench-memory.sh --no-produce -- '"queued.min.messages" = "100000"' \
#       '"queued.max.messages.kbytes" = "65536"' '"fetch.queue.backoff.ms" = "1000"'
#   SPCVM__DELIVERY__PREFETCH_MESSAGES=... picks another budget (any SPCVM__ variable works).
#
# KAFKA_BOOTSTRAP=HOST:PORT picks the broker (default: tansu on 127.0.0.1:19092, started if
# needed). The topic (`membench-P.telemetry`) is kept, so later runs can reuse it with
# --no-produce; tansu forgets it when restarted.
set -euo pipefail
cd "$(dirname "$0")/.."
records=4000000 partitions=48 seconds=50 produce=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --produce-only) produce=2; shift ;;
    --no-produce) produce=0; shift ;;
    --) shift; break ;;
    *) echo "bench-memory.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
consumer_lines=$(printf '%s\n' "$@")
cargo build --release -p spcvm
if [ -z "${KAFKA_BOOTSTRAP:-}" ]; then
  KAFKA_BOOTSTRAP="$(bash scripts/broker.sh start tansu | sed -n 's/^KAFKA_BOOTSTRAP=//p')"
fi
python="$(bash scripts/pyenv.sh)"
dir=$(mktemp -d /tmp/spcvm-bench-memory.XXXXXX)
trap 'rm -rf "$dir"' EXIT
topic="membench-$partitions"
config() { # GROUP CONSUMER_LINES
  cat <<TOML
source = "kafka"
[kafka]
bootstrap_servers = "$KAFKA_BOOTSTRAP"
group_id = "$1"
instance_id = "membench"
session_timeout_ms = 6000
[kafka.producer_properties]
"linger.ms" = "500"
"queue.buffering.max.messages" = "20"
[kafka.consumer_properties]
$2
[topics]
input = ["$topic.telemetry"]
alerts = "$topic.alerts"
dlq = "$topic.dlq"
partitions = $partitions
replication_factor = 1
[delivery]
mode = "at_least_once"
[http]
listen = "127.0.0.1:0"
TOML
}
spcvm=target/release/spcvm
if [ "$produce" != 0 ]; then
  config setup "" > "$dir/setup.toml"
  "$spcvm" topics create --config "$dir/setup.toml" >/dev/null
  "$python" - "$KAFKA_BOOTSTRAP" "$topic.telemetry" "$records" <<'PY'
import json, random, sys, time
from confluent_kafka import Producer
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
              "queue.buffering.max.messages": 1000000})
rnd, t0 = random.Random(1), time.time()
for i in range(n):
    tool = f"ION-{i % 200:03d}"
    doc = {"tool_id": tool, "tool_type": "ion_implant", "recipe_id": "B11_30KEV",
           "lot_id": f"LOT-{i // 25:06d}", "wafer_id": f"LOT-{i // 25:06d}-W{i % 25:02d}",
           "event_time": 1772432040000 + i * 1000,
           "measurements": {"beam_current_mA": rnd.gauss(1.0, 0.01),
                            "dose_uniformity_pct": rnd.gauss(95, 0.2),
                            "source_pressure_mtorr": rnd.gauss(2.3e-5, 1e-7),
                            "analyzer_field_gauss": rnd.gauss(1516, 1)}}
    while True:
        try:
            p.produce(topic, key=tool, value=json.dumps(doc))
            break
        except BufferError:
            p.poll(0.01)
    if i % 10000 == 0:
        p.poll(0)
p.flush()
print(f"produced {n} records to {topic} in {time.time() - t0:.1f} s")
PY
  [ "$produce" = 2 ] && exit 0
fi
group="membench-$(date +%s%N)"
config "$group" "$consumer_lines" > "$dir/job.toml"
"$spcvm" topics create --config "$dir/job.toml" >/dev/null
"$spcvm" run --config "$dir/job.toml" 2> "$dir/job.log" &
pid=$!
sleep "$seconds"
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
addr=$(grep -m1 -o 'addr=[0-9.:]*' "$dir/job.log" | cut -d= -f2)
consumed=$(curl -s "http://$addr/metrics" | awk '/^spcvm_messages_consumed_total/ {s += $2} END {print s + 0}')
kill -TERM "$pid"
wait "$pid" || true
grep -o 'prefetch limits per partition.*' "$dir/job.log" | sed 's/\x1b\[[0-9;]*m//g' || true
echo "peak RSS of spcvm run over ${seconds} s: $((peak / 1024)) MiB ($partitions partitions, $topic.telemetry; $consumed records consumed)"
