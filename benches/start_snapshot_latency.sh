#!/usr/bin/env bash
# benches/start_snapshot_latency.sh: what taking snapshots adds to checkout
# latency. Runs the release server twice per round, on a fresh data dir
# each time: once with snapshots effectively off (--snapshot-interval-records
# at its maximum) and once with a small interval (SNAPSHOT_INTERVAL, default
# 5000 records: a snapshot every couple of seconds at RATE), under the same
# fixed-rate checkout load (`flashsale-load --checkout-only --rate RATE`,
# latency from intended send times). Prints p50/p99/p99.9 of each run and,
# per round, the p99.9 difference; ROUNDS rounds (default 3), medians at
# the end.
#
# Settings (environment): RATE=2000 DURATION_SECONDS=20 ROUNDS=3
#   SNAPSHOT_INTERVAL=5000 CONNECTIONS=64
#   BASE_DIR: a data directory copied afresh for each run (default: an
#   empty one), so that each snapshot holds a large state; e.g. the one
#   `START_GENERATE_ONLY=1 benches/start.sh`'s bench leaves, 10^6 users
#   (its sale has 10^6 items: ITEMS_PER_SALE=1000000).
#   ITEMS_PER_SALE: passed to the server when set.
set -euo pipefail
RATE=${RATE:-2000}
DURATION_SECONDS=${DURATION_SECONDS:-20}
ROUNDS=${ROUNDS:-3}
SNAPSHOT_INTERVAL=${SNAPSHOT_INTERVAL:-5000}
CONNECTIONS=${CONNECTIONS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p flashsale -p flashsale-load >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-snaplat.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# json_number
source "$root/benches/lib/server.sh"

# run NAME INTERVAL: one server, one fixed-rate load; prints "p50 p99 p999" in µs.
run() {
  local name=$1 interval=$2 port=18480
  rm -rf "$work/data"
  if [ -n "${BASE_DIR:-}" ]; then cp -a "$BASE_DIR" "$work/data"; fi
  local items=()
  if [ -n "${ITEMS_PER_SALE:-}" ]; then items=(--items-per-sale "$ITEMS_PER_SALE"); fi
  target/release/flashsale serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --user-writes-per-second 0 --client-requests-per-second 0 "${items[@]}" \
    --snapshot-interval-records "$interval" >"$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  target/release/flashsale-load --target "http://127.0.0.1:$port" --scenario peak \
    --checkout-only --rate "$RATE" --connections "$CONNECTIONS" \
    --duration-seconds "$DURATION_SECONDS" --no-progress --no-audit \
    --out "$work/$name.json" >&2
  local written
  written=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^flashsale_snapshots_written_total/ {print $2}')
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  echo "$(json_number "$work/$name.json" latency_us_p50) $(json_number "$work/$name.json" latency_us_p99) $(json_number "$work/$name.json" latency_us_p999) ${written:-0}"
}

off_p999=() on_p999=()
for round in $(seq 1 "$ROUNDS"); do
  read -r a50 a99 a999 aw < <(run "off-$round" 1000000000000)
  read -r b50 b99 b999 bw < <(run "on-$round" "$SNAPSHOT_INTERVAL")
  printf 'round %s: off p50 %s p99 %s p99.9 %s us | on (%s snapshots) p50 %s p99 %s p99.9 %s us | added p99.9 %s us\n' \
    "$round" "$a50" "$a99" "$a999" "$bw" "$b50" "$b99" "$b999" "$(awk -v a="$a999" -v b="$b999" 'BEGIN{print b-a}')"
  off_p999+=("$a999"); on_p999+=("$b999")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "median p99.9: off $(median "${off_p999[@]}") us, on $(median "${on_p999[@]}") us"
