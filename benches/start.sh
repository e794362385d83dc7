#!/usr/bin/env bash
# benches/start.sh: start time (open the log, load the newest snapshot,
# replay the log after it, audit) with a snapshot and from the whole log,
# after START_RECORDS records (default 10^7) of START_USERS users (default
# 10^6) holding carts or purchases. See benches/start.rs for what it does.
#
#   START_RECORDS=10000000 START_USERS=1000000 START_TAIL_RECORDS=100000 \
#     benches/start.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-start.XXXXXX")
trap 'rm -rf "$work"' EXIT
cargo bench --bench start -- "$work/data"
du -sh "$work/data/wal" "$work/data/snapshots"
