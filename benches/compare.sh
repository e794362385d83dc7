#!/usr/bin/env bash
# benches/compare.sh: our checkout throughput next to its ceiling and its rival,
# measured one after the other on this machine, over loopback only.
#
#   1. the bare actix-web baseline (flashsale-baseline): the ceiling
#   2. flashsale serve with the log's fsync off (--unsafe-no-fsync)
#   3. flashsale serve with fsync on (the durable configuration)
#   4. if redis-server and redis-benchmark exist: the same claim as a Redis Lua
#      script with appendfsync always
#   5. wrk (an independent C load generator; installed from Debian's packages
#      if missing): WRK_ROUNDS rounds of 1-3 on their default worker counts,
#      POST /checkout with random users and items (benches/wrk/checkout.lua),
#      with the servers' CPU microseconds per request (benches/wrk/wrk.sh)
#
# Each is loaded with `flashsale-load --scenario peak --checkout-only` (closed
# loop) for DURATION_SECONDS; then the durable server gets a fixed-rate run at
# half its peak (latency from intended send times) and an audited realistic
# run. Prints the throughputs and the ratios, writes OUT_DIR/compare.{json,csv,svg}.
#
# Settings (environment):
#   DURATION_SECONDS=15   per configuration
#   CONNECTIONS=128       load connections (and redis-benchmark clients)
#   SERVER_WORKERS=1      HTTP worker threads of both servers: the load
#                         generator needs the other core of a 2-core machine
#   LATENCY_SERVER_WORKERS=0   workers of the server in the fixed-rate run
#                         (0: the server's default, one per core)
#   LOAD_THREADS=1        flashsale-load runtime threads
#   OUT_DIR=target/compare
#   NO_FSYNC_FLAG=--unsafe-no-fsync   the server's flag that turns fsync off
#   AUDIT_SECONDS=10      the audited realistic run (0 skips it)
#   WRK_ROUNDS=3 WRK_SECONDS=8 WRK_CONNECTIONS=64 WRK_THREADS=1   (WRK_ROUNDS=0 skips wrk)
#   LIMIT_FLAGS="--user-writes-per-second 0 --client-requests-per-second 0"
#                         the server's rate limits, off so that peak runs
#                         measure the server, not the limiter (all load
#                         comes from 127.0.0.1 and reuses users)
#
# Exit status: non-zero if a build fails, the baseline cannot be measured, or
# the audit fails.
set -euo pipefail

DURATION_SECONDS=${DURATION_SECONDS:-15}
CONNECTIONS=${CONNECTIONS:-128}
SERVER_WORKERS=${SERVER_WORKERS:-1}
LATENCY_SERVER_WORKERS=${LATENCY_SERVER_WORKERS:-0}
LOAD_THREADS=${LOAD_THREADS:-1}
NO_FSYNC_FLAG=${NO_FSYNC_FLAG:---unsafe-no-fsync}
AUDIT_SECONDS=${AUDIT_SECONDS:-10}
LIMIT_FLAGS=${LIMIT_FLAGS:---user-writes-per-second 0 --client-requests-per-second 0}
HEALTH_WAIT_TRIES=100 # x 0.1 s
REDIS_REQUESTS_MIN=10000
REDIS_REQUESTS_MAX=5000000

# The servers get their settings from the flags below only: a FLASHSALE_*
# variable left in the caller's shell (FLASHSALE_UNSAFE_NO_FSYNC above all)
# would silently change what is measured.
while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT_DIR=${OUT_DIR:-$root/target/compare}
mkdir -p "$OUT_DIR"
LOAD=$root/target/release/flashsale-load
BASELINE=$root/target/release/flashsale-baseline
SERVER=$root/target/release/flashsale

work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-compare.XXXXXX")
server_pid=""

# Stops the server we started, if any (only our own pid, never by name).
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '== %s\n' "$*" >&2; }

for tool in cargo curl awk; do
  command -v "$tool" >/dev/null || { echo "compare.sh needs $tool" >&2; exit 2; }
done

# free_port, wait_healthy, json_number
source "$root/benches/lib/server.sh"

# Closed-loop checkout-only peak against port $2; result file $1.json.
peak_load() {
  local name=$1 port=$2
  log "$name: peak checkout load, $CONNECTIONS connections, ${DURATION_SECONDS}s"
  "$LOAD" --target "http://127.0.0.1:$port" --scenario peak --checkout-only \
    --connections "$CONNECTIONS" --duration-seconds "$DURATION_SECONDS" \
    --threads "$LOAD_THREADS" --no-progress --no-audit --out "$OUT_DIR/$name.json" >&2
  json_number "$OUT_DIR/$name.json" throughput_per_second
}

# Starts `flashsale serve` on a fresh data dir; extra flags in "$@".
start_server() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$work/$name"
  "$SERVER" serve --listen "127.0.0.1:$port" --data-dir "$work/$name/data" \
    --workers "${START_WORKERS:-$SERVER_WORKERS}" $LIMIT_FLAGS "$@" \
    >"$OUT_DIR/$name.server.log" 2>&1 &
  server_pid=$!
  if ! wait_healthy "$port"; then
    log "$name: server did not become healthy; last lines of its log:"
    tail -n 5 "$OUT_DIR/$name.server.log" >&2 || true
    stop_server
    return 1
  fi
}

log "building release binaries"
cargo build --release -p flashsale-load >&2
server_built=yes
cargo build --release -p flashsale --bin flashsale >&2 || server_built=no

# Other work on the machine distorts every figure: measure how busy the CPUs
# are for a second before the runs (from /proc/stat) and say so if they are.
cpu_busy_percent() {
  local _label user nice system idle iowait irq softirq steal _rest total_1 idle_1
  read -r _label user nice system idle iowait irq softirq steal _rest </proc/stat
  total_1=$((user + nice + system + idle + iowait + irq + softirq + steal)) idle_1=$((idle + iowait))
  sleep 1
  read -r _label user nice system idle iowait irq softirq steal _rest </proc/stat
  local total=$((user + nice + system + idle + iowait + irq + softirq + steal - total_1))
  local idle_delta=$((idle + iowait - idle_1))
  echo $((total > 0 ? 100 * (total - idle_delta) / total : 0))
}
busy_before=$(cpu_busy_percent 2>/dev/null || echo 0)
busy=no
if ((busy_before > 20)); then
  busy=yes
  log "warning: the CPUs were ${busy_before}% busy before the runs: other work will distort the numbers"
fi

bare="" none="" durable="" redis=""
fixed_rate="" fixed_target="" fixed_p50="" fixed_p99="" fixed_p999="" audit_status="not run"

# 1. The ceiling.
port=$(free_port)
"$BASELINE" --listen "127.0.0.1:$port" --workers "$SERVER_WORKERS" >"$OUT_DIR/bare-actix.server.log" 2>&1 &
server_pid=$!
wait_healthy "$port" || { echo "the baseline server did not start" >&2; exit 2; }
bare=$(peak_load bare-actix "$port")
baseline_port=$port
keep_baseline=yes

# 2 and 3. Our server, fsync off and on.
if [[ $server_built == yes ]]; then
  keep_baseline=no
  stop_server
  port=$(free_port)
  if start_server flashsale-sync-none "$port" "$NO_FSYNC_FLAG"; then
    none=$(peak_load flashsale-sync-none "$port") || none=""
  fi
  stop_server
  port=$(free_port)
  if start_server flashsale-sync-on "$port"; then
    durable=$(peak_load flashsale-sync-on "$port") || durable=""
  fi
else
  log "flashsale did not build: measuring the baseline only"
fi

# The fixed-rate run at half the durable peak (on the baseline if our server
# is not available, so that the latency machinery is still exercised).
if [[ -n "$durable" ]]; then
  fixed_target=flashsale-sync-on
  fixed_rate=$(awk -v peak="$durable" 'BEGIN { printf "%.0f", peak / 2 }')
  # Latency is measured on the server's default worker count (one per core):
  # one worker beside the load generator gives the best closed-loop peak on
  # two cores, but at a fixed rate a lone worker falls behind in bursts.
  stop_server
  port=$(free_port)
  START_WORKERS=$LATENCY_SERVER_WORKERS start_server flashsale-sync-on-latency "$port" ||
    log "the latency server did not start"
else
  if [[ $keep_baseline != yes ]]; then
    stop_server
    port=$(free_port)
    "$BASELINE" --listen "127.0.0.1:$port" --workers "$SERVER_WORKERS" >>"$OUT_DIR/bare-actix.server.log" 2>&1 &
    server_pid=$!
    wait_healthy "$port" || { echo "the baseline server did not restart" >&2; exit 2; }
  else
    port=$baseline_port
  fi
  fixed_target=bare-actix
  fixed_rate=$(awk -v peak="$bare" 'BEGIN { printf "%.0f", peak / 2 }')
fi
log "$fixed_target: fixed rate $fixed_rate req/s for ${DURATION_SECONDS}s (latency from intended send times)"
"$LOAD" --target "http://127.0.0.1:$port" --scenario peak --checkout-only --rate "$fixed_rate" \
  --connections "$CONNECTIONS" --duration-seconds "$DURATION_SECONDS" --threads "$LOAD_THREADS" \
  --no-progress --no-audit --out "$OUT_DIR/fixed-rate.json" >&2 || log "the fixed-rate run failed"
fixed_p50=$(json_number "$OUT_DIR/fixed-rate.json" latency_us_p50)
fixed_p99=$(json_number "$OUT_DIR/fixed-rate.json" latency_us_p99)
fixed_p999=$(json_number "$OUT_DIR/fixed-rate.json" latency_us_p999)

# The audited run: the realistic mix, then the ledger against the listing.
audit_failed=no
if [[ -n "$durable" && "$AUDIT_SECONDS" -gt 0 ]]; then
  log "flashsale-sync-on: realistic mix for ${AUDIT_SECONDS}s, then the audit"
  audit_exit=0
  "$LOAD" --target "http://127.0.0.1:$port" --scenario realistic --duration-seconds "$AUDIT_SECONDS" \
    --threads "$LOAD_THREADS" --no-progress --out "$OUT_DIR/audit.json" >&2 || audit_exit=$?
  case $audit_exit in
    0) audit_status=$(sed -n 's/^  "audit_status": "\(.*\)",$/\1/p' "$OUT_DIR/audit.json") ;;
    1) audit_status=failed audit_failed=yes ;;
    *) audit_status="the audited run could not be done (exit $audit_exit)" audit_failed=yes ;;
  esac
fi
stop_server

# 4. Redis: the claim as a Lua script, every call fsync'd (appendfsync always).
# Every attempt INCRs a counter, so every call is a durable write, like every
# checkout is a record in our log; then the per-user limit and a SETBIT claim.
REDIS_LUA='
redis.call("INCR", "attempts")
local owned = tonumber(redis.call("HGET", "owned", ARGV[1]) or "0")
if owned >= tonumber(ARGV[3]) then return -2 end
if redis.call("SETBIT", "sold", tonumber(ARGV[2]), 1) == 1 then return -1 end
redis.call("HINCRBY", "owned", ARGV[1], 1)
return 1'
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null; then
  port=$(free_port)
  mkdir -p "$work/redis"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$work/redis" --save "" \
    --appendonly yes --appendfsync always --protected-mode yes >"$OUT_DIR/redis.server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq "$HEALTH_WAIT_TRIES"); do
    redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  sha=$(redis-cli -h 127.0.0.1 -p "$port" SCRIPT LOAD "$REDIS_LUA") || sha=""
  # Arguments: user, item (both 0..9999 via -r), user limit 10.
  redis_run() {
    redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNECTIONS" -n "$1" -r 10000 --csv \
      EVALSHA "$sha" 0 __rand_int__ __rand_int__ 10 2>/dev/null |
      awk -F'","' '/^"EVALSHA/ { print $2 }' || true
  }
  # A short calibration sizes the real run to about DURATION_SECONDS.
  calibration=$(redis_run 3000)
  requests=$(awk -v rps="${calibration:-0}" -v seconds="$DURATION_SECONDS" \
    -v low="$REDIS_REQUESTS_MIN" -v high="$REDIS_REQUESTS_MAX" \
    'BEGIN { n = rps * seconds; if (n < low) n = low; if (n > high) n = high; printf "%.0f", n }')
  log "redis-lua-appendfsync-always: $requests EVALSHA claims, $CONNECTIONS clients"
  redis=$(redis_run "$requests")
  stop_server
else
  log "redis-server / redis-benchmark / redis-cli not installed: no Redis comparison"
fi

# 5. wrk against the bare handler and our server, fsync off and on.
# shellcheck source=benches/wrk/wrk.sh
source "$root/benches/wrk/wrk.sh"
if [[ $server_built == yes ]]; then
  wrk_compare || log "the wrk comparison failed"
fi
stop_server

ratio() { # numerator denominator
  if [[ -n "$1" && -n "$2" ]]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; fi
}
or_null() { if [[ -n "$1" ]]; then printf '%s' "$1"; else printf 'null'; fi; }
durable_over_bare=$(ratio "$durable" "$bare")
durable_over_redis=$(ratio "$durable" "$redis")
none_over_bare=$(ratio "$none" "$bare")

{
  printf '{\n  "duration_seconds": %s,\n  "connections": %s,\n  "load_threads": %s,\n' \
    "$DURATION_SECONDS" "$CONNECTIONS" "$LOAD_THREADS"
  printf '  "cores": %s,\n  "cpu_busy_percent_before": %s,\n  "configs": [\n' \
    "$(nproc 2>/dev/null || echo null)" "$busy_before"
  first=yes
  for pair in "bare-actix:$bare" "flashsale-sync-none:$none" "flashsale-sync-on:$durable" \
    "redis-lua-appendfsync-always:$redis"; do
    name=${pair%%:*} value=${pair#*:}
    [[ -n "$value" ]] || continue
    [[ $first == yes ]] || printf ',\n'
    first=no
    printf '    {"name": "%s", "throughput_per_second": %s}' "$name" "$value"
  done
  printf '\n  ],\n  "ratios": {"durable_over_bare": %s, "durable_over_redis": %s, "none_over_bare": %s},\n' \
    "$(or_null "$durable_over_bare")" "$(or_null "$durable_over_redis")" "$(or_null "$none_over_bare")"
  printf '  "fixed_rate": {"target": "%s", "rate_per_second": %s, "latency_us_p50": %s, "latency_us_p99": %s, "latency_us_p999": %s},\n' \
    "$fixed_target" "$fixed_rate" "$(or_null "$fixed_p50")" "$(or_null "$fixed_p99")" "$(or_null "$fixed_p999")"
  printf '  "audit": "%s"\n}\n' "$audit_status"
} >"$OUT_DIR/compare.json"

{
  echo "config,throughput_per_second"
  echo "bare-actix,$bare"
  echo "flashsale-sync-none,$none"
  echo "flashsale-sync-on,$durable"
  echo "redis-lua-appendfsync-always,$redis"
} >"$OUT_DIR/compare.csv"
"$LOAD" plot "$OUT_DIR/compare.json" "$OUT_DIR/compare.svg" >/dev/null || true

show() { if [[ -n "$1" ]]; then printf '%.0f req/s' "$1"; else printf 'not measured'; fi; }
cpu_of() { # the load generator's CPU in a run, if that run happened
  if [[ -f "$OUT_DIR/$1.json" && -n "$2" ]]; then
    printf '  (load generator %.0f%% of a core)' "$(json_number "$OUT_DIR/$1.json" generator_cpu_percent_of_one_core)"
  fi
}
echo
echo "checkout throughput, ${CONNECTIONS} connections, ${DURATION_SECONDS}s each ($(nproc 2>/dev/null || echo '?') cores, loopback)"
printf '  %-30s %s%s\n' "bare actix (ceiling)" "$(show "$bare")" "$(cpu_of bare-actix "$bare")"
printf '  %-30s %s%s\n' "flashsale, fsync off" "$(show "$none")" "$(cpu_of flashsale-sync-none "$none")"
printf '  %-30s %s%s\n' "flashsale, fsync on" "$(show "$durable")" "$(cpu_of flashsale-sync-on "$durable")"
printf '  %-30s %s\n' "redis lua, appendfsync always" "$(show "$redis")"
if [[ "$busy" == yes ]]; then
  echo "warning: the CPUs were ${busy_before}% busy with other work before the runs: numbers are noisy"
fi
echo "ratios (goals: durable/bare >= 0.7, durable/redis >= 1.0)"
printf '  durable/bare  %s\n  durable/redis %s\n  none/bare     %s\n' \
  "${durable_over_bare:-n/a}" "${durable_over_redis:-n/a}" "${none_over_bare:-n/a}"
awk -v t="$fixed_target" -v r="$fixed_rate" -v a="${fixed_p50:-0}" -v b="${fixed_p99:-0}" -v c="${fixed_p999:-0}" \
  'BEGIN { printf "fixed rate %s req/s on %s: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms (goals 1 / 2 / 10)\n", r, t, a/1000, b/1000, c/1000 }'
echo "audit: $audit_status"
echo "results: $OUT_DIR/compare.json, compare.csv, compare.svg (per-run files alongside)"
[[ $audit_failed == no ]]
