#!/usr/bin/env bash
# benches/slow_clients.sh: legitimate traffic while slow and numerous clients
# attack, against the release binary on 127.0.0.1 only. Not a timed test.
#
# For each case a fresh server starts; a legitimate load of RATE requests/s
# (GET /sales/active, half on new connections, half on 16 keep-alive ones,
# latency from the intended send time) runs for DURATION_SECONDS while the
# attack runs beside it:
#   none           no attack (the reference figures)
#   slow_headers   slowhttptest -H, 4,000 connections
#   slow_bodies    slowhttptest -B, 1,000 connections
#   slow_readers   slowhttptest -X, 1,000 connections
#   trickle        1,000 chunked bodies at one byte a second (slow_clients.py)
#   idle           as many idle connections as the open-file limit allows
# Goal: >= 99% of legitimate requests succeed, p99 < 250 ms, in every case.
#
# Settings (environment): DURATION_SECONDS=30 RATE=400 SERVER_WORKERS=1
#   CASES="none slow_headers slow_bodies slow_readers trickle idle"
set -euo pipefail

DURATION_SECONDS=${DURATION_SECONDS:-30}
RATE=${RATE:-400}
SERVER_WORKERS=${SERVER_WORKERS:-1}
CASES=${CASES:-none slow_headers slow_bodies slow_readers trickle idle}
PORT=${PORT:-18777}
HEALTH_WAIT_TRIES=100 # x 0.1 s

while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
SERVER=${SERVER:-$root/target/release/flashsale}
HELPER=$root/benches/slow_clients.py
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-slow.XXXXXX")
server_pid=""
attack_pid=""

stop_pid() {
  local pid=$1
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop_pid "$attack_pid"
  stop_pid "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '== %s\n' "$*" >&2; }

command -v python3 >/dev/null || { echo "slow_clients.sh needs python3" >&2; exit 2; }
if ! command -v slowhttptest >/dev/null; then
  log "installing slowhttptest"
  apt-get install -y slowhttptest >/dev/null || { echo "cannot install slowhttptest" >&2; exit 2; }
fi
[[ -x "$SERVER" ]] || cargo build --release --bin flashsale
# Attackers and the load need descriptors of their own.
ulimit -n "$(ulimit -Hn)"
open_files=$(ulimit -n)

start_server() {
  rm -rf "$work/data"
  "$SERVER" serve --listen "127.0.0.1:$PORT" --data-dir "$work/data" \
    --workers "$SERVER_WORKERS" --log-format json >"$work/server-$1.log" 2>&1 &
  server_pid=$!
  for _ in $(seq "$HEALTH_WAIT_TRIES"); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not start" >&2
  exit 1
}

start_attack() {
  local url="http://127.0.0.1:$PORT/sales/active"
  local seconds=$((DURATION_SECONDS + 5))
  case "$1" in
    none) attack_pid="" ; return ;;
    slow_headers) slowhttptest -H -c 4000 -r 1000 -i 10 -s 8192 -l "$seconds" -u "$url" -p 3 ;;
    slow_bodies) slowhttptest -B -c 1000 -r 500 -i 10 -s 8192 -l "$seconds" -u "$url" -t POST -p 3 ;;
    slow_readers) slowhttptest -X -c 1000 -r 500 -w 512 -y 1024 -n 5 -z 32 -k 3 -l "$seconds" -u "$url" -p 3 ;;
    trickle) python3 "$HELPER" trickle "$PORT" 1000 "$((seconds + 60))" ;;
    idle) python3 "$HELPER" idle "$PORT" "$((open_files - 1000))" "$((seconds + 60))" ;;
  esac >"$work/attack-$1.log" 2>&1 &
  attack_pid=$!
  case "$1" in
    trickle|idle) wait_for_ready "$work/attack-$1.log" ;;
    *) sleep 3 ;; # let the attack build up before measuring
  esac
}

# The Python attacker opens its connections in batches; measuring starts
# once all are open, so the figures are those of a server holding them
# (not of the client's own ramp on the same two cores).
wait_for_ready() {
  for _ in $(seq 600); do
    grep -q '"ready"' "$1" && return 0
    sleep 0.1
  done
  echo "the attacker did not get ready within 60 s" >&2
  exit 1
}

printf '%-13s %8s %8s %9s %8s %8s %s\n' case sent failed success% p50_ms p99_ms connections
for case in $CASES; do
  log "case $case"
  start_server "$case"
  start_attack "$case"
  result=$(python3 "$HELPER" legit "$PORT" "$RATE" "$DURATION_SECONDS")
  connections=$(curl -fs --max-time 5 "http://127.0.0.1:$PORT/health" | python3 -c \
    'import json,sys; c=json.load(sys.stdin)["connections"]; print("%s open=%s max=%s evicted=%s" % (c["state"], c["open"], c["max"], c["evicted_total"]))' || echo "health failed")
  stalls=$(curl -fs --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk '/^flashsale_http_response_write_stalls_total/ {print $2}' || true)
  echo "$result" | python3 -c "import json,sys; r=json.load(sys.stdin); print('%-13s %8d %8d %9.2f %8s %8s %s' % ('$case', r['sent'], r['failed'], r['success_pct'], r['p50_ms'], r['p99_ms'], '$connections stalls=${stalls:-?}'))"
  stop_pid "$attack_pid"; attack_pid=""
  errors=$(grep -c '"level":"ERROR"' "$work/server-$case.log" || true)
  log "server ERROR lines: $errors; log lines: $(wc -l <"$work/server-$case.log")"
  stop_pid "$server_pid"; server_pid=""
done
