#!/usr/bin/env bash
# Durable checkout throughput with identity on (HS256, EdDSA) relative to
# identity off, in the same run, on 127.0.0.1 (docs/benchmarks.md).
#
# Each round starts a fresh `flashsale serve --workers 1` (fsync on) per
# mode (off, hs256, eddsa; the order rotates per round), and loads it with
# `flashsale-load --scenario peak --checkout-only` (closed loop, 128
# connections, DURATION_SECONDS each). Checkout-only mode takes a new user
# every `user_limit` (10) checkouts, so each token serves 10 requests.
# The generator mints the first 256 users' tokens of each connection before
# its clock starts (--token-premint-users), so that its own signing does not
# take the server's CPU: real clients sign on their own machines.
# Keys: the test-only keys of tests/keys/.
#
# Usage: [ROUNDS=3] [DURATION_SECONDS=10] bash benches/identity.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION_SECONDS=${DURATION_SECONDS:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVER="$ROOT/target/release/flashsale"
LOAD="$ROOT/target/release/flashsale-load"
KEYS="$ROOT/tests/keys"
PORT=${PORT:-18093}
WORK=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

b64url() { basenc --base64url -w0 | tr -d '='; }
HS_K=$(tr -d '\n' < "$KEYS/hs256.secret" | b64url)
ED_X=$(openssl pkey -in "$KEYS/ed25519.pem" -pubout -outform DER | tail -c 32 | b64url)
cat > "$WORK/keys.jwks" <<EOF
{"keys": [
  {"kty": "oct", "kid": "bench-hs", "alg": "HS256", "k": "$HS_K"},
  {"kty": "OKP", "kid": "bench-ed", "alg": "EdDSA", "crv": "Ed25519", "x": "$ED_X"}
]}
EOF

start_server() { # $1: mode
  local data="$WORK/data-$1-$round"
  local auth=()
  [ "$1" != off ] && auth=(--auth-jwks "$WORK/keys.jwks")
  "$SERVER" serve --listen "127.0.0.1:$PORT" --workers 1 --data-dir "$data" \
    "${auth[@]}" > "$WORK/server-$1-$round.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && return
    sleep 0.1
  done
  echo "server ($1) did not start" >&2; exit 1
}

load() { # $1: mode
  local token=()
  case "$1" in
    hs256) token=(--token-key "$KEYS/hs256.secret" --token-alg hs256 --token-kid bench-hs --token-premint-users 256) ;;
    eddsa) token=(--token-key "$KEYS/ed25519.pem" --token-alg eddsa --token-kid bench-ed --token-premint-users 256) ;;
  esac
  "$LOAD" --target "http://127.0.0.1:$PORT" --scenario peak --checkout-only \
    --connections 128 --duration-seconds "$DURATION_SECONDS" --no-audit --no-progress \
    "${token[@]}" --out "$WORK/result-$1-$round.json" > /dev/null
  jq -r '.throughput_per_second' "$WORK/result-$1-$round.json"
}

details() { # $1: mode; 200s per second and the generator's CPU
  jq -r '"(200/s \(.success_per_second | floor), p50 \(.latency_us_p50) us, p99 \(.latency_us_p99) us, generator CPU \(.generator_cpu_percent_of_one_core | floor)%)"' \
    "$WORK/result-$1-$round.json"
}

declare -A RESULTS
MODES=(off hs256 eddsa)
for round in $(seq "$ROUNDS"); do
  # The order rotates each round, so that no mode always runs first.
  for k in 0 1 2; do
    mode=${MODES[$(( (k + round - 1) % 3 ))]}
    start_server "$mode"
    RESULTS[$mode,$round]=$(load "$mode")
    echo "round $round $mode: ${RESULTS[$mode,$round]} req/s $(details "$mode")"
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    unset SERVER_PID
  done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in off hs256 eddsa; do
  values=()
  for round in $(seq "$ROUNDS"); do values+=("${RESULTS[$mode,$round]}"); done
  declare "MEDIAN_$mode=$(median "${values[@]}")"
  echo "$mode: ${values[*]} median $(median "${values[@]}")"
done
awk -v on="$MEDIAN_hs256" -v off="$MEDIAN_off" 'BEGIN {printf "ratio hs256/off: %.3f\n", on / off}'
awk -v on="$MEDIAN_eddsa" -v off="$MEDIAN_off" 'BEGIN {printf "ratio eddsa/off: %.3f\n", on / off}'
