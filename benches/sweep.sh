#!/usr/bin/env bash
# benches/sweep.sh: how cost grows, for the bare actix handler
# (flashsale-baseline) and the durable server (flashsale serve), one after
# the other on 127.0.0.1:
#   1. throughput versus connections: wrk -t1 -cN, N in SWEEP_CONNECTIONS,
#      POST /checkout with benches/wrk/checkout.lua
#   2. latency versus offered rate: flashsale-load --rate R (open loop,
#      latency from each request's intended send time), R a fraction of
#      the durable peak found in 1; p50 / p99 / p99.9 and the generator's
#      own send lag p99
# Writes OUT_DIR/sweep-connections.csv, sweep-latency.csv and two SVG plots.
#
# Settings (environment): SWEEP_SECONDS=5, SWEEP_CONNECTIONS="1 4 16 64 256 1024",
# SWEEP_RATE_PERCENTS="10 25 50 75 90", RATE_CONNECTIONS=128,
# OUT_DIR=target/sweep. Needs the release binaries (cargo build --release)
# and wrk (benches/wrk/wrk.sh installs it from Debian's packages).
set -euo pipefail

SWEEP_SECONDS=${SWEEP_SECONDS:-5}
SWEEP_CONNECTIONS=${SWEEP_CONNECTIONS:-1 4 16 64 256 1024}
SWEEP_RATE_PERCENTS=${SWEEP_RATE_PERCENTS:-10 25 50 75 90}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-128}
while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT_DIR=${OUT_DIR:-$root/target/sweep}
mkdir -p "$OUT_DIR"
LOAD=$root/target/release/flashsale-load
BASELINE=$root/target/release/flashsale-baseline
SERVER=$root/target/release/flashsale
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-sweep.XXXXXX")
server_pid=""
HEALTH_WAIT_TRIES=100
LIMIT_FLAGS="--user-writes-per-second 0 --client-requests-per-second 0"

stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT
log() { printf '== %s\n' "$*" >&2; }
# free_port, wait_healthy
source "$root/benches/lib/server.sh"
# Starts config $1 (bare-actix or flashsale-sync-on) on port $2, fresh.
start() {
  case $1 in
    bare-actix) "$BASELINE" --listen "127.0.0.1:$2" >"$OUT_DIR/$1.log" 2>&1 & ;;
    *) # shellcheck disable=SC2086
      "$SERVER" serve --listen "127.0.0.1:$2" --data-dir "$work/$1-$RANDOM/data" $LIMIT_FLAGS >"$OUT_DIR/$1.log" 2>&1 & ;;
  esac
  server_pid=$!
  wait_healthy "$2"
}

command -v wrk >/dev/null || { log "wrk is missing (apt-get install -y wrk)"; exit 2; }
echo "config,connections,requests_per_second" >"$OUT_DIR/sweep-connections.csv"
declare -A peak
for config in bare-actix flashsale-sync-on; do
  peak[$config]=0
  for connections in $SWEEP_CONNECTIONS; do
    stop_server
    port=$(free_port)
    start "$config" "$port" || { log "$config did not start"; continue; }
    sale=$(curl -fsS "http://127.0.0.1:$port/sales/active" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    log "$config: wrk -t1 -c$connections -d${SWEEP_SECONDS}s"
    rps=$(wrk -t1 -c"$connections" -d"${SWEEP_SECONDS}s" -s benches/wrk/checkout.lua \
      "http://127.0.0.1:$port" -- "$sale" 10000 1000000 | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
    echo "$config,$connections,${rps:-0}" >>"$OUT_DIR/sweep-connections.csv"
    peak[$config]=$(awk -v a="${peak[$config]}" -v b="${rps:-0}" 'BEGIN { print (b > a ? b : a) }')
  done
done
stop_server

echo "config,offered_per_second,achieved_per_second,p50_us,p99_us,p999_us,send_lag_p99_us" >"$OUT_DIR/sweep-latency.csv"
for config in bare-actix flashsale-sync-on; do
  for percent in $SWEEP_RATE_PERCENTS; do
    rate=$(awk -v p="${peak[flashsale-sync-on]}" -v x="$percent" 'BEGIN { printf "%.0f", p * x / 100 }')
    ((rate > 0)) || continue
    stop_server
    port=$(free_port)
    start "$config" "$port" || continue
    log "$config: fixed rate $rate/s (${percent}% of the durable peak) for ${SWEEP_SECONDS}s"
    out=$OUT_DIR/$config-rate-$percent.json
    "$LOAD" --target "http://127.0.0.1:$port" --scenario peak --checkout-only --rate "$rate" \
      --connections "$RATE_CONNECTIONS" --duration-seconds "$SWEEP_SECONDS" --no-progress --no-audit \
      --out "$out" >/dev/null 2>&1 || { log "run failed"; continue; }
    echo "$config,$rate,$(json_number "$out" throughput_per_second),$(json_number "$out" latency_us_p50),$(json_number "$out" latency_us_p99),$(json_number "$out" latency_us_p999),$(sed -n '/"send_lag_us"/,/}/ s/^ *"p99": \([0-9]*\),*$/\1/p' "$out" | head -n 1)" >>"$OUT_DIR/sweep-latency.csv"
  done
done
stop_server

# A line plot of CSV $1: x column $2, y columns "$3" (space-separated), one
# line per config and y column; categorical x (in CSV order), linear y.
plot() {
  awk -F, -v xcol="$2" -v ycols="$3" -v title="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { c = $1; if (!(c in seen)) { seen[c] = 1; configs[++nc] = c }
      x = $col[xcol]; if (!(x in xi)) { xi[x] = ++nx; xs[nx] = x }
      n = split(ycols, ys, " ")
      for (k = 1; k <= n; k++) { v = $col[ys[k]] + 0; val[c, ys[k], xi[x]] = v; if (v > ymax) ymax = v } }
    END {
      w = 640; h = 360; l = 70; b = 40; t = 30; r = 160; split(ycols, ys, " "); n = length(ys)
      printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", w, h
      printf "<text x=\"%d\" y=\"18\">%s</text>\n", l, title
      printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", l, h - b, w - r, h - b
      printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", l, t, l, h - b
      printf "<text x=\"5\" y=\"%d\">%.0f</text><text x=\"5\" y=\"%d\">0</text>\n", t + 4, ymax, h - b
      for (i = 1; i <= nx; i++) printf "<text x=\"%.0f\" y=\"%d\">%s</text>\n", l + (i - 0.5) * (w - l - r) / nx, h - b + 15, xs[i]
      printf "<text x=\"%d\" y=\"%d\">%s</text>\n", l, h - 5, xcol
      split("#1f77b4 #d62728 #2ca02c #ff7f0e #9467bd #8c564b", colors, " "); line = 0
      for (ci = 1; ci <= nc; ci++) for (k = 1; k <= n; k++) {
        color = colors[(line % 6) + 1]; line++; pts = ""
        for (i = 1; i <= nx; i++) if ((configs[ci], ys[k], i) in val)
          pts = pts sprintf("%.0f,%.0f ", l + (i - 0.5) * (w - l - r) / nx, h - b - (ymax > 0 ? val[configs[ci], ys[k], i] / ymax : 0) * (h - b - t))
        printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", color, pts
        printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s %s</text>\n", w - r + 5, t + 14 * line, color, configs[ci], ys[k]
      }
      print "</svg>"
    }' "$1"
}
plot "$OUT_DIR/sweep-connections.csv" connections requests_per_second \
  "requests/s vs connections (wrk -t1, POST /checkout)" >"$OUT_DIR/sweep-connections.svg"
plot "$OUT_DIR/sweep-latency.csv" offered_per_second "p50_us p99_us p999_us" \
  "latency (us) vs offered rate (flashsale-load --rate)" >"$OUT_DIR/sweep-latency.svg"
cat "$OUT_DIR/sweep-connections.csv" "$OUT_DIR/sweep-latency.csv"
