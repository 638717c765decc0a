#!/usr/bin/env bash
# PostgreSQL backend CPU per callback, 1 client, batch of one: the batched ceiling's statement(s)
# before (BEGIN, ACCEPT_ROUND, GET_VERIFICATIONS, COMMIT) and after (ACCEPT_ROUND alone,
# returning the records), alternately, each from its own build's `faceid-loadgen pg-batched`.
# Usage: run.sh BEFORE_BIN_DIR AFTER_BIN_DIR
set -euo pipefail
BEFORE=$(realpath "$1") AFTER=$(realpath "$2")
cd "$(dirname "$0")/../../../../../.."  # the repository root (config/ for migrate)
backend_cpu() { awk '{printf "%.3f", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$1/stat; }
measure() { # label db loadgen-dir
  local label=$1 db=$2 dir=$3
  "$dir/faceid-loadgen" pg-batched --url "postgres://postgres@127.0.0.1:5432/$db" --clients 1 --sizes 1:1 --duration 8 >/tmp/dbcpu-out.txt 2>&1 &
  local P=$!
  sleep 2
  local pid; pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE datname='$db' AND pid <> pg_backend_pid() LIMIT 1" -d postgres)
  local c0 t0 c1 t1; c0=$(backend_cpu "$pid"); t0=$(date +%s.%N)
  sleep 5
  c1=$(backend_cpu "$pid"); t1=$(date +%s.%N)
  wait $P
  local rate; rate=$(python3 -c "import json;print(json.load(open('/tmp/dbcpu-out.txt'))['rate'])" 2>/dev/null || grep -o '"rate":[0-9.]*' /tmp/dbcpu-out.txt | cut -d: -f2)
  python3 -c "
c=($c1-$c0)/($t1-$t0); r=float('$rate')
print(f'$label: backend CPU {c*100:.1f} % of a core at {r:.0f} callbacks/s = {c/r*1000:.3f} ms per callback; load1 $(cut -d' ' -f1 /proc/loadavg)')"
}
for side in before after; do
  psql -q -d postgres -c "CREATE DATABASE dbcpu_$side"
  dir=$BEFORE; [[ $side == after ]] && dir=$AFTER
  APP__DATABASE__URL=postgres://postgres@127.0.0.1:5432/dbcpu_$side APP_ENVIRONMENT=development "$dir/faceid-receiver" migrate >/dev/null
done
for i in 1 2 3; do
  measure "before (BEGIN, ACCEPT_ROUND, GET_VERIFICATIONS, COMMIT)" dbcpu_before "$BEFORE"
  measure "after  (ACCEPT_ROUND alone, records returned)      " dbcpu_after "$AFTER"
done
for side in before after; do psql -q -d postgres -c "DROP DATABASE dbcpu_$side WITH (FORCE)"; done
uptime
