#!/usr/bin/env bash
# benches/memory-limits.sh: resident memory of the real server while floods
# of distinct users and distinct client addresses hit its rate limiters
# (the budget: <= 256 MiB, and no growth from a second flood).
#
#   1. starts `flashsale serve` (release, fsync on) with the per-user limit
#      at its default (10 writes per second), the per-client limit on
#      (CLIENT_RATE per second, high enough that the load generator's own
#      address is not throttled) and 127.0.0.1/32 as a trusted proxy;
#   2. `flashsale-load --reject-only` until USERS checkouts were answered:
#      each by a new user (a new key in the per-user limiter), each a 404
#      and a durable log record; reads VmRSS;
#   3. benches/forwarded_flood.py sends ADDRESSES requests, each with a new
#      X-Forwarded-For address (a new key in the per-client limiter);
#      reads VmRSS; then ADDRESSES more with other addresses; reads VmRSS.
#
# Settings (environment): USERS=1000000 ADDRESSES=1000000 CONNECTIONS=64
#   CLIENT_RATE=1000000
set -euo pipefail
USERS=${USERS:-1000000}
ADDRESSES=${ADDRESSES:-1000000}
CONNECTIONS=${CONNECTIONS:-64}
CLIENT_RATE=${CLIENT_RATE:-1000000}
CHUNK_SECONDS=10
CHUNKS_MAX=100

while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p flashsale -p flashsale-load >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-memory-limits.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/flashsale serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --user-writes-per-second 10 --client-requests-per-second "$CLIENT_RATE" \
  --trusted-proxies 127.0.0.1/32 >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }
hwm_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }
answered() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^flashsale_checkout_outcomes_total\{outcome="item_not_found"\}/ { n = $2 } END { print n + 0 }'
}

rss_start=$(rss_mib)
chunks=0
started=$(date +%s)
while (($(answered) < USERS && chunks < CHUNKS_MAX)); do
  target/release/flashsale-load --target "http://127.0.0.1:$port" --scenario peak \
    --connections "$CONNECTIONS" --no-progress --no-audit --reject-only \
    --duration-seconds "$CHUNK_SECONDS" >/dev/null
  chunks=$((chunks + 1))
done
users=$(answered)
users_seconds=$(($(date +%s) - started))
rss_users=$(rss_mib)
started=$(date +%s)
statuses_1=$(python3 benches/forwarded_flood.py "$port" "$ADDRESSES" 0)
addresses_seconds=$(($(date +%s) - started))
rss_addresses_1=$(rss_mib)
statuses_2=$(python3 benches/forwarded_flood.py "$port" "$ADDRESSES" "$ADDRESSES")
rss_addresses_2=$(rss_mib)

echo "distinct users (404 checkouts):   $users in ${users_seconds} s"
echo "VmRSS at start:                   $rss_start MiB"
echo "VmRSS after the users:            $rss_users MiB   (budget 256 MiB)"
echo "distinct addresses, round 1:      $ADDRESSES in ${addresses_seconds} s, statuses $statuses_1"
echo "VmRSS after round 1:              $rss_addresses_1 MiB   (budget 256 MiB)"
echo "distinct addresses, round 2:      $ADDRESSES, statuses $statuses_2"
echo "VmRSS after round 2:              $rss_addresses_2 MiB   (budget: no growth)"
echo "VmHWM (peak resident):            $(hwm_mib) MiB"
