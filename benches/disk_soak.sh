#!/usr/bin/env bash
# benches/disk_soak.sh: is disk use bounded when the server runs for long?
# (issue 11, "a soak: 30 minutes of the realistic scenario with
# --snapshot-interval-records 100000, disk use sampled every 10 s").
#
# Usage: benches/disk_soak.sh            (30 minutes)
#        DURATION_SECONDS=120 benches/disk_soak.sh   (a short try)
#
# Builds the release binaries, starts `flashsale serve` on 127.0.0.1 (a free
# port, a fresh data directory under $TMPDIR), runs `flashsale-load
# --scenario realistic` against it for DURATION_SECONDS and, every
# SAMPLE_SECONDS, samples: bytes on disk of DATA_DIR/wal and
# DATA_DIR/snapshots (allocated blocks, `du -B1`), the number of log
# segments, `flashsale_snapshot_seq` and `flashsale_wal_appends_total`
# (records written) from /metrics. Writes OUT_DIR/disk-soak.csv, the
# server's and the generator's output, and an SVG plot (OUT_SVG, default
# docs/disk-soak.svg); prints disk min/max per 10-minute window and for the
# second half against the first. The server is stopped by its pid.
#
# Settings (environment):
#   DURATION_SECONDS=1800  SAMPLE_SECONDS=10  OUT_DIR=target/disk-soak
#   OUT_SVG=docs/disk-soak.svg
#   SNAPSHOT_INTERVAL_RECORDS=100000 (the issue's figure)
#   LOG_SEGMENT_BYTES=4194304: retention deletes whole segments only, so
#     with the default 64 MiB segments a 100,000-record interval (about
#     10-20 MB of log) would never free a segment in 30 minutes and disk
#     use would look like a ramp for a reason that is not a leak. 4 MiB
#     segments are a few per snapshot interval, so every snapshot can
#     delete some and the saw-tooth shows.
#   SOAK_USERS=50000: the realistic preset's 5,000 users reach the 10-item
#     user limit early and then mostly get 409s; 50,000 keep buying.
#   SOAK_ITEMS_PER_SALE=100000: ten times the default, so the sale's
#     state (and so each snapshot) is larger; it still sells out within
#     the first minutes (about 5,000 records/s on a 2-core machine), after
#     which checkouts are 409 item_sold_out, records like any other.
#   --user-writes-per-second 0: the generator drives thousands of users
#     over 32 connections, each user far from a human's rate; the per-user
#     limit would answer most writes 429 (a limiter test, not a disk one).
set -euo pipefail

DURATION_SECONDS=${DURATION_SECONDS:-1800}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-10}
SNAPSHOT_INTERVAL_RECORDS=${SNAPSHOT_INTERVAL_RECORDS:-100000}
LOG_SEGMENT_BYTES=${LOG_SEGMENT_BYTES:-4194304}
SOAK_USERS=${SOAK_USERS:-50000}
SOAK_ITEMS_PER_SALE=${SOAK_ITEMS_PER_SALE:-100000}
while read -r variable; do unset "$variable"; done < <(compgen -e | grep '^FLASHSALE_' || true)

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT_DIR=${OUT_DIR:-$root/target/disk-soak}
OUT_SVG=${OUT_SVG:-$root/docs/disk-soak.svg}
mkdir -p "$OUT_DIR"
SERVER=$root/target/release/flashsale
LOAD=$root/target/release/flashsale-load
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-disk-soak.XXXXXX")
data=$work/data
server_pid=""
load_pid=""
CSV=$OUT_DIR/disk-soak.csv

log() { printf '== %s\n' "$*" >&2; }
stop_pid() {
  local pid=$1
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  stop_pid "$load_pid"
  stop_pid "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
# free_port, wait_healthy
source "$root/benches/lib/server.sh"
# The value of Prometheus metric $1 in the text on stdin (0 if absent).
metric() { awk -v name="$1" '$1 == name { v = $2 } END { printf "%.0f", v + 0 }'; }
# Allocated bytes of directory $1 (0 if it does not exist yet).
dir_bytes() { if [[ -d $1 ]]; then du -s -B1 "$1" | cut -f1; else echo 0; fi; }

log "building the release binaries"
cargo build --release --workspace

port=$(free_port)
"$SERVER" serve --listen "127.0.0.1:$port" --data-dir "$data" --log-format json \
  --snapshot-interval-records "$SNAPSHOT_INTERVAL_RECORDS" --log-segment-bytes "$LOG_SEGMENT_BYTES" \
  --items-per-sale "$SOAK_ITEMS_PER_SALE" --user-writes-per-second 0 >"$OUT_DIR/server.log" 2>&1 &
server_pid=$!
wait_healthy "$port" || { log "the server did not start (see $OUT_DIR/server.log)"; exit 2; }
log "server pid $server_pid on port $port, data in $data"

"$LOAD" --target "http://127.0.0.1:$port" --scenario realistic --users "$SOAK_USERS" \
  --duration-seconds "$DURATION_SECONDS" --no-progress --out "$OUT_DIR/load.json" \
  >"$OUT_DIR/load.txt" 2>&1 &
load_pid=$!
log "load pid $load_pid for ${DURATION_SECONDS}s"

echo "seconds,wal_bytes,snapshot_bytes,total_bytes,segments,snapshot_seq,records_written" >"$CSV"
: >"$OUT_DIR/segments-seen.txt"
start=$(date +%s)
sample() {
  local now metrics wal snap segments
  now=$(($(date +%s) - start))
  metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" || true)
  wal=$(dir_bytes "$data/wal")
  snap=$(dir_bytes "$data/snapshots")
  segments=$(find "$data/wal" -maxdepth 1 -name '*.wal' 2>/dev/null | wc -l)
  find "$data/wal" -maxdepth 1 -name '*.wal' -printf '%f\n' 2>/dev/null >>"$OUT_DIR/segments-seen.txt"
  echo "$now,$wal,$snap,$((wal + snap)),$segments,$(metric flashsale_snapshot_seq <<<"$metrics"),$(metric flashsale_wal_appends_total <<<"$metrics")" >>"$CSV"
}
next=$start
while kill -0 "$load_pid" 2>/dev/null; do
  sample
  next=$((next + SAMPLE_SECONDS))
  while (($(date +%s) < next)) && kill -0 "$load_pid" 2>/dev/null; do sleep 0.5; done
done
sample
load_status=0
wait "$load_pid" || load_status=$?
load_pid=""
final_metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" || true)
stop_pid "$server_pid"
server_pid=""

snapshots_written=$(metric flashsale_snapshots_written_total <<<"$final_metrics")
snapshot_failures=$(metric flashsale_snapshot_failures_total <<<"$final_metrics")
segments_deleted=$(grep '"snapshot written"' "$OUT_DIR/server.log" |
  sed -n 's/.*"segments_deleted":\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
segments_seen=$(sort -u "$OUT_DIR/segments-seen.txt" | wc -l)

# The plot: disk bytes over time (log, snapshots, total), linear axes.
awk -F, -v title="Disk use over the soak (MB; snapshot every $SNAPSHOT_INTERVAL_RECORDS records, $((LOG_SEGMENT_BYTES / 1048576)) MiB segments)" '
  NR == 1 { next }
  { n++; x[n] = $1; y[1, n] = $2 / 1e6; y[2, n] = $3 / 1e6; y[3, n] = $4 / 1e6
    if ($1 > xmax) xmax = $1; if (y[3, n] > ymax) ymax = y[3, n] }
  END {
    w = 760; h = 380; l = 60; b = 40; t = 30; r = 120
    if (xmax == 0) xmax = 1; if (ymax == 0) ymax = 1
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"11\">\n", w, h
    printf "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", w, h
    printf "<text x=\"%d\" y=\"18\">%s</text>\n", l, title
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", l, h - b, w - r, h - b
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", l, t, l, h - b
    for (k = 0; k <= 4; k++) {
      yy = h - b - k / 4 * (h - b - t)
      printf "<text x=\"5\" y=\"%.0f\">%.1f</text><line x1=\"%d\" y1=\"%.0f\" x2=\"%d\" y2=\"%.0f\" stroke=\"#ddd\"/>\n", yy + 4, ymax * k / 4, l, yy, w - r, yy
    }
    step = (xmax > 1200 ? 300 : (xmax > 300 ? 60 : 10))
    for (s = 0; s <= xmax; s += step)
      printf "<text x=\"%.0f\" y=\"%d\">%d</text>\n", l + s / xmax * (w - l - r) - 8, h - b + 15, s / 60
    printf "<text x=\"%d\" y=\"%d\">minutes</text>\n", l, h - 5
    split("log (wal) snapshots total", names, " ")
    split("#1f77b4 #2ca02c #d62728", colors, " ")
    for (c = 1; c <= 3; c++) {
      pts = ""
      for (i = 1; i <= n; i++)
        pts = pts sprintf("%.1f,%.1f ", l + x[i] / xmax * (w - l - r), h - b - y[c, i] / ymax * (h - b - t))
      printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n", colors[c], pts
      label = (c == 1 ? "log (wal/)" : (c == 2 ? "snapshots/" : "total"))
      printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", w - r + 5, t + 14 * c, colors[c], label
    }
    print "</svg>"
  }' "$CSV" >"$OUT_SVG"

# Disk min/max per 10-minute window, and the second half against the first.
# (The last sample, taken when the load ends, counts in the last window.)
summary=$(awk -F, -v half="$((DURATION_SECONDS / 2))" -v duration="$DURATION_SECONDS" '
  NR == 1 { next }
  { w = int(($1 < duration ? $1 : duration - 1) / 600); if (!(w in lo) || $4 < lo[w]) lo[w] = $4; if ($4 > hi[w]) hi[w] = $4; if (w > wmax) wmax = w
    hh = ($1 < half ? 1 : 2); if (!(hh in hlo) || $4 < hlo[hh]) hlo[hh] = $4; if ($4 > hhi[hh]) hhi[hh] = $4
    records = $7; seq = $6 }
  END {
    for (i = 0; i <= wmax; i++) if (i in lo)
      printf "minutes %d-%d: disk min %.1f MB, max %.1f MB\n", i * 10, i * 10 + 10, lo[i] / 1e6, hi[i] / 1e6
    printf "first half: min %.1f MB, max %.1f MB; second half: min %.1f MB, max %.1f MB\n", hlo[1] / 1e6, hhi[1] / 1e6, hlo[2] / 1e6, hhi[2] / 1e6
    printf "records written %d, newest snapshot seq %d\n", records, seq
  }' "$CSV")
{
  echo "$summary"
  echo "snapshots written $snapshots_written (failures $snapshot_failures), segments deleted $segments_deleted, distinct segments seen $segments_seen"
  echo "load generator exit status $load_status; its table:"
  cat "$OUT_DIR/load.txt"
} | tee "$OUT_DIR/summary.txt"
log "CSV $CSV, plot $OUT_SVG"
exit "$load_status"
