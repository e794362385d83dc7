# benches/wrk/wrk.sh: the wrk part of benches/compare.sh (sourced by it; uses
# its free_port, start_server, stop_server, wait_healthy, log, $BASELINE,
# $SERVER, $NO_FSYNC_FLAG, $OUT_DIR and $server_pid).
#
# For WRK_ROUNDS rounds, one after the other in each round: the bare actix
# handler, flashsale --unsafe-no-fsync, flashsale durable, each freshly
# started on its default worker count, loaded by
#   wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s -s benches/wrk/checkout.lua
# (POST /checkout, random users and items of the active sale). For each run:
# requests/s, non-2xx answers, and the server's CPU time per request in µs
# (utime + stime of /proc/PID/stat, before and after the run, divided by the
# requests wrk counted). Writes OUT_DIR/wrk.csv; prints medians and the
# median of the per-round ratios (each ratio from one round's paired runs).

WRK_ROUNDS=${WRK_ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-8}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-1}
WRK_USERS=${WRK_USERS:-1000000}
WRK_SERVER_WORKERS=${WRK_SERVER_WORKERS:-0} # 0: the server's default, one per core

# wrk from Debian's packages if it is missing (needs root or sudo).
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  log "wrk not found: installing it from Debian's packages"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get install -y wrk >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y wrk >&2; }
  command -v wrk >/dev/null
}

# utime + stime of a process, in clock ticks.
cpu_ticks() {
  # Fields after the command name (which may hold spaces) start at field 3.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# One wrk run against port $2; prints "requests non2xx cpu_us_per_request".
wrk_run() {
  local name=$1 port=$2 sale items
  sale=$(curl -fsS "http://127.0.0.1:$port/sales/active" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  items=$(curl -fsS "http://127.0.0.1:$port/sales/active" | sed -n 's/.*"total_items":\([0-9]*\).*/\1/p')
  [[ -n "$sale" ]] || { log "$name: no active sale"; return 1; }
  local ticks_before ticks_after
  ticks_before=$(cpu_ticks "$server_pid")
  wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" -s "$root/benches/wrk/checkout.lua" \
    "http://127.0.0.1:$port" -- "$sale" "${items:-10000}" "$WRK_USERS" >"$OUT_DIR/$name.wrk.txt" 2>&1
  ticks_after=$(cpu_ticks "$server_pid")
  local requests non2xx
  requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$OUT_DIR/$name.wrk.txt")
  non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$OUT_DIR/$name.wrk.txt")
  [[ -n "$requests" && "$requests" -gt 0 ]] || { log "$name: wrk counted no requests"; return 1; }
  awk -v r="$requests" -v n="${non2xx:-0}" -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%d %d %.1f\n", r, n, t * 1e6 / hz / r }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

wrk_compare() {
  ((WRK_ROUNDS > 0)) || return 0
  ensure_wrk || { log "wrk is not available and could not be installed"; return 1; }
  local csv=$OUT_DIR/wrk.csv
  echo "round,config,requests,requests_per_second,non_2xx,server_cpu_us_per_request" >"$csv"
  local round config port result
  for round in $(seq "$WRK_ROUNDS"); do
    for config in bare-actix flashsale-sync-none flashsale-sync-on; do
      stop_server
      port=$(free_port)
      case $config in
        bare-actix)
          "$BASELINE" --listen "127.0.0.1:$port" >"$OUT_DIR/$config.wrk-server.log" 2>&1 &
          server_pid=$!
          wait_healthy "$port" || { log "$config did not start"; continue; } ;;
        flashsale-sync-none)
          START_WORKERS=$WRK_SERVER_WORKERS start_server "$config-wrk-$round" "$port" "$NO_FSYNC_FLAG" || continue ;;
        flashsale-sync-on)
          START_WORKERS=$WRK_SERVER_WORKERS start_server "$config-wrk-$round" "$port" || continue ;;
      esac
      log "wrk round $round: $config, -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s"
      if result=$(wrk_run "$config-$round" "$port"); then
        read -r requests non2xx cpu_us <<<"$result"
        echo "$round,$config,$requests,$(awk -v r="$requests" -v s="$WRK_SECONDS" 'BEGIN { printf "%.0f", r / s }'),$non2xx,$cpu_us" >>"$csv"
      fi
      stop_server
    done
  done
  wrk_summary "$csv" | tee "$OUT_DIR/wrk-summary.txt"
}

# Medians per config, and the median of the per-round ratios.
wrk_summary() {
  local csv=$1 config
  echo
  echo "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s, POST /checkout, medians of $WRK_ROUNDS rounds (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
  for config in bare-actix flashsale-sync-none flashsale-sync-on; do
    printf '  %-22s %8s req/s  %6s µs CPU/request  non-2xx %s\n' "$config" \
      "$(awk -F, -v c="$config" '$2 == c { print $4 }' "$csv" | median)" \
      "$(awk -F, -v c="$config" '$2 == c { print $6 }' "$csv" | median)" \
      "$(awk -F, -v c="$config" '$2 == c { print $5 }' "$csv" | median)"
  done
  local pair
  for pair in flashsale-sync-on:bare-actix flashsale-sync-none:bare-actix flashsale-sync-on:flashsale-sync-none; do
    printf '  ratio %-40s %s (median of per-round ratios)\n' "${pair%%:*} / ${pair#*:}" \
      "$(awk -F, -v a="${pair%%:*}" -v b="${pair#*:}" '
          $2 == a { x[$1] = $4 } $2 == b { y[$1] = $4 }
          END { for (r in x) if (r in y && y[r] > 0) printf "%.3f\n", x[r] / y[r] }' "$csv" | median)"
  done
}
