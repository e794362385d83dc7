# benches/lib/server.sh: sourced by the bench scripts that start servers
# on loopback (compare.sh, sweep.sh, disk_soak.sh, replication.sh,
# start_snapshot_latency.sh): a free port, the wait for /health, and a
# number from a flashsale-load result. Uses the caller's $server_pid and
# HEALTH_WAIT_TRIES (default 100, x 0.1 s).

# A loopback port nothing listens on (random in 20000-59999).
free_port() {
  for _ in $(seq 50); do
    local port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# Waits until GET /health (or the path $2) on port $1 answers 200, or the
# server ($server_pid) died, or time is up.
wait_healthy() {
  local port=$1 path=${2:-/health}
  for _ in $(seq "${HEALTH_WAIT_TRIES:-100}"); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    curl -fsS -o /dev/null "http://127.0.0.1:$port$path" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# A flat top-level number ($2) from a flashsale-load result file ($1).
json_number() {
  sed -n "s/^  \"$2\": \([0-9.eE+-]*\),\{0,1\}$/\1/p" "$1" | head -n 1
}
