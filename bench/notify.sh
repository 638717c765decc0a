#!/usr/bin/env bash
# Throughput of POST /faceid/notify beside the database's own ceiling for the same write, in
# one run, on both engines.
#
#   bench/notify.sh                 # PostgreSQL and SQLite
#   BENCH_ENGINES=postgres bench/notify.sh
#
# PostgreSQL: a fresh database on 127.0.0.1:5432 (user postgres, trust auth) is created,
# migrated, loaded by pgbench with the exact accept_signed transaction (bench/loadgen.rs
# pgbench-script) and by `loadgen http` against a release `faceid-receiver serve`, step by step
# at each concurrency, then dropped. The server itself is never touched.
# SQLite: fresh files (WAL, synchronous=FULL); the baseline is the same transaction as a raw
# sqlx loop on N tasks (`loadgen sqlite-baseline`).
#
# Each cell runs the baseline and ours alternately BENCH_REPEAT times and prints medians: on a
# 2-core machine single runs of the same thing differ by 10 % or more. `ratio` is median ours /
# median baseline; `ratio range` is the lowest and highest ratio of one baseline run and the
# run of ours right after it.
#
# Knobs (environment): BENCH_DURATION (s per step, default 10), BENCH_REPEAT (default 3),
# BENCH_CONCURRENCY ("1 4 16 64"), BENCH_ENGINES ("postgres sqlite"), BENCH_LOG_FILTER
# (server log filter, default info: production-like), BENCH_SERVER_ENV (extra VAR=value pairs
# for serve, e.g. "APP__DATABASE__GROUP_COMMIT=false"), PGHOST/PGPORT/PGUSER.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-10}
REPEAT=${BENCH_REPEAT:-3}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 4 16 64"}
ENGINES=${BENCH_ENGINES:-"postgres sqlite"}
LOG_FILTER=${BENCH_LOG_FILTER:-info}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

command -v pgbench >/dev/null || { echo "pgbench not found (apt-get install postgresql-contrib)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release --quiet --bin faceid-receiver --bin faceid-loadgen
BIN=$ROOT/target/release/faceid-receiver
LOADGEN=$ROOT/target/release/faceid-loadgen

WORK=$(mktemp -d /tmp/faceid-bench.XXXXXX)
DB=faceid_bench_$$
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# user+system CPU seconds the process has used so far.
cpu_s() { awk '{printf "%.2f", ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_server URL: serve (release) on a free port with production-like settings; no
# follow-up calls (megvii.base_url points at the discard port, and a final notify schedules
# no job anyway).
start_server() {
    local url=$1
    PORT=$(free_port)
    # shellcheck disable=SC2086
    env APP_ENVIRONMENT=development \
        APP__DATABASE__URL="$url" \
        APP__SERVER__LISTEN="127.0.0.1:$PORT" \
        APP__SERVER__RATE_LIMIT_PER_SECOND=0 \
        APP__MEGVII__BASE_URL="http://127.0.0.1:9" \
        APP__TELEMETRY__FORMAT=json \
        APP__TELEMETRY__FILTER="$LOG_FILTER" \
        ${BENCH_SERVER_ENV:-} \
        "$BIN" serve >"$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "serve did not become ready:" >&2; tail -20 "$WORK/serve.log" >&2; exit 1
}

stop_server() {
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

row_header() {
    printf '%-6s %12s %12s %7s %13s %9s %9s %9s %9s %11s\n' "$1" "$2" "ours req/s" "ratio" "ratio range" "p50 ms" "p99 ms" "non-2xx" "RSS MiB" "srv CPU ms/req"
}

# One step of ours: load for DURATION, append its JSON line (with the server's CPU per
# request added) to $WORK/step.jsonl.
run_ours() {
    local c=$1 cpu_before cpu_after out
    cpu_before=$(cpu_s "$SERVER_PID")
    out=$("$LOADGEN" http --url "http://127.0.0.1:$PORT/faceid/notify" --concurrency "$c" --duration "$DURATION")
    cpu_after=$(cpu_s "$SERVER_PID")
    # Server CPU includes the 1 s warm-up: divided by all requests, warm-up included.
    python3 -c "import json,sys; o=json.loads(sys.argv[1]); n=o['rate']*(o['seconds']+1); o['cpu_ms']=($cpu_after-$cpu_before)*1000/n; print(json.dumps(o))" "$out" >>"$WORK/step.jsonl"
    echo "$out" >>"$WORK/ours.jsonl"
}

# print_row CONC LOAD RSS: one table row from $WORK/base.txt (one baseline rate per line) and
# $WORK/step.jsonl (ours, in the same order), then clears both.
print_row() {
    local c=$1 load=$2 rss=$3
    python3 - "$c" "$load" "$rss" "$WORK/base.txt" "$WORK/step.jsonl" <<'PY'
import json, statistics, sys
c, load, rss, base_file, ours_file = sys.argv[1:]
base = [float(l) for l in open(base_file)]
ours = [json.loads(l) for l in open(ours_file)]
med = statistics.median
rate = med(o["rate"] for o in ours)
ratios = [o["rate"] / b for o, b in zip(ours, base)]
print(f"{c:<6} {med(base):12.1f} {rate:12.1f} {rate / med(base):7.2f} "
      f"{min(ratios):6.2f}-{max(ratios):<6.2f} {med(o['p50_ms'] for o in ours):9.2f} "
      f"{med(o['p99_ms'] for o in ours):9.2f} {sum(o['failures'] for o in ours):9d} {rss:>9} "
      f"{med(o['cpu_ms'] for o in ours):11.2f}   (load {load})")
PY
    rm -f "$WORK/base.txt" "$WORK/step.jsonl"
}

echo "# faceid-receiver notify throughput — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "# ${DURATION}s per step (+1 s warm-up for ours), $REPEAT alternating runs per cell (medians), server log filter $LOG_FILTER, extra env: ${BENCH_SERVER_ENV:-none}"

if [[ " $ENGINES " == *" postgres "* ]]; then
    echo "# $(psql -Atc 'SELECT version()' -d postgres | cut -d, -f1)"
    psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
    PG_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
    APP__DATABASE__URL=$PG_URL APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
    "$LOADGEN" pgbench-script --out "$WORK/notify.sql"
    start_server "$PG_URL"
    echo
    echo "## PostgreSQL: pgbench (-M prepared, same transaction) vs POST /faceid/notify"
    row_header conc "pgbench TPS"
    for c in $CONCURRENCY; do
        j=$(( c < 2 ? c : 2 ))
        load_before=$(cut -d' ' -f1 /proc/loadavg)
        for _rep in $(seq "$REPEAT"); do
            tps=$(pgbench -n -M prepared -c "$c" -j "$j" -T "$DURATION" -f "$WORK/notify.sql" "$DB" 2>"$WORK/pgbench.err" \
                | awk '/^tps = / {print $3; exit}')
            [[ -n $tps ]] || { cat "$WORK/pgbench.err" >&2; exit 1; }
            echo "$tps" >>"$WORK/base.txt"
            run_ours "$c"
        done
        print_row "$c" "$load_before" "$(hwm_mib "$SERVER_PID")"
    done
    acked=$(python3 -c 'import json,sys; print(sum(json.loads(l)["ok"] for l in open(sys.argv[1])))' "$WORK/ours.jsonl")
    stop_server
    stored=$(psql -Atc "SELECT count(*) FROM callbacks WHERE kind = 'notify' AND biz_id ~ '^[0-9]+,[0-9a-f-]{36}\$'" -d "$DB")
    echo "# measured 2xx answers: $acked; notify rows from the service in callbacks (incl. warm-up): $stored"
    rm -f "$WORK/ours.jsonl"
fi

if [[ " $ENGINES " == *" sqlite "* ]]; then
    echo
    echo "## SQLite (WAL, synchronous=FULL): raw sqlx loop (same transaction, N tasks) vs POST /faceid/notify"
    row_header conc "sqlx tx/s"
    for c in $CONCURRENCY; do
        load_before=$(cut -d' ' -f1 /proc/loadavg)
        rss=0
        for _rep in $(seq "$REPEAT"); do
            base_db="$WORK/baseline.db"
            svc_db="$WORK/service.db"
            rm -f "$base_db"* "$svc_db"*
            APP__DATABASE__URL="sqlite://$base_db?mode=rwc" APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
            APP__DATABASE__URL="sqlite://$svc_db?mode=rwc" APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
            base=$("$LOADGEN" sqlite-baseline --path "$base_db" --concurrency "$c" --duration "$DURATION")
            json_field "$base" rate >>"$WORK/base.txt"
            start_server "sqlite://$svc_db?mode=rwc"
            run_ours "$c"
            rss=$(python3 -c "print(max($rss, $(hwm_mib "$SERVER_PID")))")
            stop_server
        done
        rm -f "$base_db"* "$svc_db"* "$WORK/ours.jsonl"
        print_row "$c" "$load_before" "$rss"
    done
fi
