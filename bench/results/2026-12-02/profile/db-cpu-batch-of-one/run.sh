#!/usr/bin/env bash
# PostgreSQL backend CPU per transaction: pg-batched (ACCEPT_ROUND, batch 1) vs pgbench per-callback script, 1 client.
set -euo pipefail
cd /work/wt/g
DB=g_dbcpu_$$
psql -q -d postgres -c "CREATE DATABASE $DB"
URL=postgres://postgres@127.0.0.1:5432/$DB
APP__DATABASE__URL=$URL APP_ENVIRONMENT=development target/release/faceid-receiver migrate >/dev/null
target/release/faceid-loadgen pgbench-script --out /tmp/g-dbcpu.sql
backend_cpu() { # pid -> cpu seconds
  awk '{printf "%.3f", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$1/stat; }
measure() { # label, command...
  local label=$1; shift
  "$@" > /tmp/g-dbcpu-out.txt 2>&1 &
  local P=$!
  sleep 2
  local pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE datname='$DB' AND pid <> pg_backend_pid() LIMIT 1" -d postgres)
  local c0=$(backend_cpu $pid); local t0=$(date +%s.%N)
  sleep 6
  local c1=$(backend_cpu $pid); local t1=$(date +%s.%N)
  wait $P
  echo "$label: backend pid $pid, backend CPU $(python3 -c "print(round(($c1-$c0)/($t1-$t0)*100,1))") % of a core over 6 s; $(grep -E '^tps|"rate"' /tmp/g-dbcpu-out.txt | head -1)"
}
for i in 1 2; do
measure "pgbench per-callback (6 statements, libpq)" pgbench -n -M prepared -c 1 -T 9 -f /tmp/g-dbcpu.sql $DB
measure "pg-batched ACCEPT_ROUND batch 1 (sqlx)" target/release/faceid-loadgen pg-batched --url $URL --clients 1 --sizes 1:1 --duration 8
done
psql -q -d postgres -c "DROP DATABASE $DB WITH (FORCE)"
uptime
