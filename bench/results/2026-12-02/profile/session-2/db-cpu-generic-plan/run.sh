# PostgreSQL backend CPU per callback, batch of one, 1 client (loadgen pg-batched: ACCEPT_ROUND alone),
# on two fresh databases alternately: one with the default plan cache (a custom plan per
# execution, as the statement was run before), one with plan_cache_mode = force_generic_plan
# set on the database. Binaries: the "one statement" build (/tmp/perf-bin/A, 6b1e4fe).
set -e
cd /work/wt/perf
backend_cpu() { awk '{printf "%.3f", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$1/stat; }
for db in dbg_custom dbg_generic; do psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"; APP__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$db APP_ENVIRONMENT=development /tmp/perf-bin/A/faceid-receiver migrate >/dev/null; done
psql -q -d postgres -c "ALTER DATABASE dbg_generic SET plan_cache_mode = force_generic_plan"
for i in 1 2 3; do for db in dbg_custom dbg_generic; do
  /tmp/perf-bin/A/faceid-loadgen pg-batched --url postgres://postgres@127.0.0.1:5432/$db --clients 1 --sizes 1:1 --duration 7 > /tmp/dbg.txt 2>&1 &
  P=$!; sleep 1.5
  pid=$(psql -Atc "SELECT pid FROM pg_stat_activity WHERE datname='$db' AND pid <> pg_backend_pid() LIMIT 1" -d postgres)
  c0=$(backend_cpu $pid); t0=$(date +%s.%N); sleep 5; c1=$(backend_cpu $pid); t1=$(date +%s.%N); wait $P
  rate=$(grep -o '"rate":[0-9.]*' /tmp/dbg.txt | cut -d: -f2)
  python3 -c "c=($c1-$c0)/($t1-$t0); r=$rate; print(f'$db: backend {c*100:.1f} % at {r:.0f}/s = {c/r*1000:.3f} ms per callback')"
done; done
for db in dbg_custom dbg_generic; do psql -q -d postgres -c "DROP DATABASE $db WITH (FORCE)"; done
