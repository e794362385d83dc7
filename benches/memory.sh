#!/usr/bin/env bash
# benches/memory.sh: resident memory of the real server with 10^6 users
# holding carts, and what rejected requests add to it (the standing budgets:
# <= 256 MiB, and no growth from rejections).
#
#   1. starts `flashsale serve` (release, fsync on) on a fresh data dir with
#      --user-limit 1, so that `flashsale-load --checkout-only` opens one cart
#      of one item per new user (the per-user state is the same as with the
#      default limit of 10 and a one-item cart);
#   2. loads checkouts until USERS carts are acknowledged, reads VmRSS;
#   3. sends REJECT_SECONDS of checkouts of items that do not exist (404,
#      each by a new user, each a durable log record), reads VmRSS again.
#
# Settings (environment): USERS=1000000 REJECT_SECONDS=20 CONNECTIONS=64
#   LIMIT_FLAGS="--user-writes-per-second 0 --client-requests-per-second 0"
#   (the rate limits, off: this measures the engine; benches/memory-limits.sh
#   measures the limiters)
set -euo pipefail
USERS=${USERS:-1000000}
REJECT_SECONDS=${REJECT_SECONDS:-20}
CONNECTIONS=${CONNECTIONS:-64}
LIMIT_FLAGS=${LIMIT_FLAGS:---user-writes-per-second 0 --client-requests-per-second 0}
CHUNK_SECONDS=10
CHUNKS_MAX=100

while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p flashsale -p flashsale-load >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-memory.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/flashsale serve --listen "127.0.0.1:$port" --data-dir "$work/data" --user-limit 1 $LIMIT_FLAGS \
  >"$work/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }
carts() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^flashsale_checkout_outcomes_total\{outcome="ok"\}/ { n = $2 } END { print n + 0 }'
}
load() {
  target/release/flashsale-load --target "http://127.0.0.1:$port" --scenario peak \
    --connections "$CONNECTIONS" --no-progress --no-audit "$@" >/dev/null
}

rss_start=$(rss_mib)
chunks=0
while (( $(carts) < USERS && chunks < CHUNKS_MAX )); do
  load --checkout-only --duration-seconds "$CHUNK_SECONDS"
  chunks=$((chunks + 1))
done
users=$(carts)
rss_carts=$(rss_mib)
# Two rounds: the first may still warm up buffers and allocator caches; a
# leak shows as growth in the second round too.
load --reject-only --duration-seconds "$REJECT_SECONDS"
rss_rejected_1=$(rss_mib)
load --reject-only --duration-seconds "$REJECT_SECONDS"
rss_rejected_2=$(rss_mib)
rejected=$(curl -s "http://127.0.0.1:$port/metrics" |
  awk '/^flashsale_checkout_outcomes_total\{outcome="item_not_found"\}/ { n = $2 } END { print n + 0 }')

echo "users holding a cart:          $users"
echo "VmRSS at start:                $rss_start MiB"
echo "VmRSS with the carts:          $rss_carts MiB   (budget 256 MiB)"
echo "rejected checkouts (2 rounds): $rejected"
echo "VmRSS after round 1:           $rss_rejected_1 MiB"
echo "VmRSS after round 2:           $rss_rejected_2 MiB   (budget: no growth)"
