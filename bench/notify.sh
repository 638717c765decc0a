#!/usr/bin/env bash
# Throughput of POST /faceid/notify beside the database's own ceilings for the same write, in
# one run, on both engines, with a durability check after every step.
#
#   bench/notify.sh                 # PostgreSQL and SQLite
#   BENCH_ENGINES=postgres bench/notify.sh
#
# Three things run at each concurrency N, alternately, BENCH_REPEAT times (medians):
# - ours: a release `faceid-receiver serve` loaded by `faceid-loadgen http` (N connections,
#   closed loop, 1 s warm-up, then BENCH_DURATION s measured);
# - the batched ceiling: the database ingesting the same rows with group commit's own
#   statements, at the batch sizes our server formed in the run just before (read from the
#   `faceid_group_commit_batch_size` histogram on /metrics, before and after), from a client
#   with nothing in front (`loadgen pg-batched`: ACCEPT_ROUND + read back per transaction;
#   SQLite: `loadgen sqlite-baseline --sizes`, N callbacks per transaction). On PostgreSQL it
#   runs max(1, round(N / mean batch size)) concurrent transactions (the same callbacks in
#   flight); on SQLite one writer loop, as our server has;
# - the per-callback baseline: one callback per transaction, N clients (pgbench -M prepared
#   with accept_signed's statements; SQLite: the same as a raw sqlx loop).
# `ours/batched` is the headline ratio (median ours / median batched; `range`: lowest and
# highest ratio of one run of ours and the batched run right after it); `ours/per-cb` is
# the second, labelled column.
#
# Durability check (fails the script): after each run of ours, every biz_id it answered 2xx
# in the measured window (warm-up excluded) must have its journal row and its record
# (`loadgen verify`); the table shows the 2xx count and the missing count, and any missing
# row exits 1 after the row is printed. Self-test: LOADGEN_FAKE_EXTRA_ACK=1 makes the load
# generator list one never-sent biz_id as acknowledged, which must fail the run.
#
# Raw outputs go to BENCH_OUT (default target/bench/<UTC time>/): notify.txt (this table),
# runs.jsonl (every run: its figures, batch sizes, durability count, uptime/load at its
# start), pgbench/ (pgbench's own output per run).
#
# Knobs (environment): BENCH_DURATION (s per step, default 10), BENCH_REPEAT (default 3),
# BENCH_CONCURRENCY ("1 4 16 64"), BENCH_ENGINES ("postgres sqlite"), BENCH_LOG_FILTER
# (server log filter, default info: production-like), BENCH_SERVER_ENV (extra VAR=value pairs
# for serve, e.g. "APP__DATABASE__GROUP_COMMIT=false"), PGHOST/PGPORT/PGUSER.
#
# PostgreSQL: a fresh database on 127.0.0.1:5432 (user postgres, trust auth) is created,
# migrated, used by all three, then dropped. The server itself is never touched. SQLite:
# fresh files (WAL, synchronous=FULL) for every run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-10}
REPEAT=${BENCH_REPEAT:-3}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 4 16 64"}
ENGINES=${BENCH_ENGINES:-"postgres sqlite"}
LOG_FILTER=${BENCH_LOG_FILTER:-info}
OUT=${BENCH_OUT:-$ROOT/target/bench/$(date -u +%Y%m%dT%H%M%SZ)}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

command -v pgbench >/dev/null || { echo "pgbench not found (apt-get install postgresql-contrib)" >&2; exit 1; }

echo "== building (release)" >&2
cargo build --release --locked --quiet --bin faceid-receiver --bin faceid-loadgen
BIN=$ROOT/target/release/faceid-receiver
LOADGEN=$ROOT/target/release/faceid-loadgen

mkdir -p "$OUT/pgbench"
RUNS=$OUT/runs.jsonl
: >"$RUNS"
exec > >(tee "$OUT/notify.txt")
WORK=$(mktemp -d /tmp/faceid-bench.XXXXXX)
DB=faceid_bench_$$
SERVER_PID=
DURABILITY_FAILED=0
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# user+system CPU seconds the process has used so far.
cpu_s() { awk '{printf "%.2f", ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
load_now() { cut -d' ' -f1-3 /proc/loadavg; }

# record ENGINE CONC REP KIND JSON [EXTRA_JSON]: one line of runs.jsonl (and of the cell's
# file), with the time and uptime/load when the run started ($RUN_UPTIME).
record() {
    python3 - "$@" "$RUN_UPTIME" >>"$WORK/cell.jsonl" <<'PY'
import json, sys, time
engine, conc, rep, kind, run = sys.argv[1:6]
extra = sys.argv[6] if len(sys.argv) > 7 else "{}"
o = {"engine": engine, "conc": int(conc), "rep": int(rep), "kind": kind}
o.update(json.loads(run)); o.update(json.loads(extra))
o["uptime_at_start"] = sys.argv[-1]
o["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
print(json.dumps(o))
PY
    tail -n 1 "$WORK/cell.jsonl" >>"$RUNS"
}
mark_start() { RUN_UPTIME=$(uptime); }

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

# The server's cumulative batch-size histogram, as `le count` lines.
batch_histogram() {
    curl -fsS "http://127.0.0.1:$PORT/metrics" \
        | sed -n 's/^faceid_group_commit_batch_size_bucket{le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p'
}

# batch_sizes BEFORE AFTER: the batches formed between two histograms, as `size:count,…`
# (exact per size up to 64; a wider bucket counts at its upper bound). Empty if none (group
# commit off).
batch_sizes() {
    python3 - "$1" "$2" <<'PY'
import sys
def read(path):
    out = {}
    for line in open(path):
        le, count = line.split()
        out[le] = int(count)
    return out
before, after = read(sys.argv[1]), read(sys.argv[2])
bounds = sorted((float(le), le) for le in after if le != "+Inf")
sizes, below = [], 0
for value, le in bounds:
    cumulative = after[le] - before.get(le, 0)
    if cumulative > below:
        sizes.append(f"{int(value)}:{cumulative - below}")
    below = cumulative
print(",".join(sizes))
PY
}

# run_ours ENGINE C REP DB_URL: one step of ours, its durability check, its batch sizes
# (exported as SIZES and CLIENTS for the batched ceiling that follows).
run_ours() {
    local engine=$1 c=$2 rep=$3 db_url=$4 cpu_before cpu_after out check status=0
    batch_histogram >"$WORK/hist.before"
    mark_start
    cpu_before=$(cpu_s "$SERVER_PID")
    out=$("$LOADGEN" http --url "http://127.0.0.1:$PORT/faceid/notify" --concurrency "$c" \
        --duration "$DURATION" --acked-out "$WORK/acked.txt")
    cpu_after=$(cpu_s "$SERVER_PID")
    batch_histogram >"$WORK/hist.after"
    SIZES=$(batch_sizes "$WORK/hist.before" "$WORK/hist.after")
    check=$("$LOADGEN" verify --db "$db_url" --ids "$WORK/acked.txt") || status=$?
    if [[ $status != 0 ]]; then
        DURABILITY_FAILED=1
        echo "!! durability check failed for $engine at $c connections (run $rep): $check" >&2
    fi
    [[ -n $check ]] || { echo "durability check printed nothing" >&2; exit 1; }
    # PostgreSQL: as many concurrent batch transactions as keep N callbacks in flight.
    # SQLite: one writer, as our server has (a second writer would only sleep in SQLite's
    # busy handler waiting for the first one's lock).
    CLIENTS=1
    [[ $engine == sqlite ]] || CLIENTS=$(python3 -c '
import sys
c, sizes = int(sys.argv[1]), sys.argv[2]
pairs = [tuple(map(int, p.split(":"))) for p in sizes.split(",") if p]
batches = sum(n for _, n in pairs)
mean = sum(s * n for s, n in pairs) / batches if batches else 1.0
print(max(1, min(c, round(c / mean))))' "$c" "$SIZES")
    [[ -n $SIZES ]] || SIZES="1:1"
    # Server CPU includes the 1 s warm-up: divided by all requests, warm-up included.
    record "$engine" "$c" "$rep" ours "$out" "$(python3 -c '
import json, sys
o = json.loads(sys.argv[1]); check = json.loads(sys.argv[2])
n = o["rate"] * (o["seconds"] + 1)
print(json.dumps({"cpu_ms": (float(sys.argv[3]) - float(sys.argv[4])) * 1000 / n,
                  "batch_sizes": sys.argv[5], "durability": check}))' \
        "$out" "$check" "$cpu_after" "$cpu_before" "$SIZES")"
}

# print_row CONC RSS: one table row from $WORK/cell.jsonl (this cell's runs), then clears it.
print_row() {
    python3 - "$1" "$2" "$WORK/cell.jsonl" <<'PY'
import json, statistics, sys
c, rss, cell = sys.argv[1:]
runs = [json.loads(l) for l in open(cell)]
kind = lambda k: [r for r in runs if r["kind"] == k]
ours, batched, per = kind("ours"), kind("batched"), kind("per-callback")
med = statistics.median
rate = med(o["rate"] for o in ours)
b, p = med(r["rate"] for r in batched), med(r["rate"] for r in per)
ratios = [o["rate"] / r["rate"] for o, r in zip(ours, batched)]
sizes = [tuple(map(int, s.split(":"))) for o in ours for s in o["batch_sizes"].split(",")]
mean_batch = sum(s * n for s, n in sizes) / max(1, sum(n for _, n in sizes))
acked = sum(o["durability"]["acked"] for o in ours)
missing = sum(o["durability"]["missing"] for o in ours)
per_p50 = med(r["p50_ms"] for r in per)
load = runs[0]["uptime_at_start"].split("load average:")[-1].split(",")[0].strip()
print(f"{c:<5} {b:9.1f} {p:9.1f} {rate:9.1f} {rate / b:6.2f} {min(ratios):5.2f}-{max(ratios):<5.2f}"
      f" {rate / p:6.2f} {mean_batch:6.1f} {batched[0]['concurrency']:4d}"
      f" {med(o['p50_ms'] for o in ours):7.2f} {per_p50:7.2f} {med(o['p99_ms'] for o in ours):7.2f}"
      f" {acked:7d} {missing:5d} {sum(o['failures'] for o in ours):5d} {rss:>6}"
      f" {med(o['cpu_ms'] for o in ours):6.2f}  {load}")
PY
    rm -f "$WORK/cell.jsonl"
}

row_header() {
    echo "# cb/s = callbacks made durable per second (medians); ratios of medians; p50/p99 per request (ours) or per transaction"
    printf '%-5s %9s %9s %9s %6s %11s %6s %6s %4s %7s %7s %7s %7s %5s %5s %6s %6s  %s\n' \
        conc batched "$1" ours ours/b range ours/p batch cl "p50 ms" "$2" "p99 ms" 2xx miss non2x "RSS M" "cpu ms" "load1"
}

echo "# faceid-receiver notify throughput — $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src bench || echo ' (modified)')"
echo "# $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); uptime at start: $(uptime)"
echo "# ${DURATION}s per step (+1 s warm-up), $REPEAT alternating runs per cell (medians), server log filter $LOG_FILTER, extra env: ${BENCH_SERVER_ENV:-none}"
echo "# raw: $OUT (runs.jsonl: every run's figures, batch sizes, durability count, uptime at its start)"

if [[ " $ENGINES " == *" postgres "* ]]; then
    echo "# $(psql -Atc 'SELECT version()' -d postgres | cut -d, -f1)"
    psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
    PG_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
    APP__DATABASE__URL=$PG_URL APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
    "$LOADGEN" pgbench-script --out "$WORK/notify.sql"
    cp "$WORK/notify.sql" "$OUT/pgbench/notify.sql"
    start_server "$PG_URL"
    echo
    echo "## PostgreSQL: ours vs batched ceiling (pg-batched: ACCEPT_ROUND + read back, same batch sizes) vs per-callback pgbench (-M prepared)"
    row_header "pgbench" "pgb p50"
    for c in $CONCURRENCY; do
        j=$(( c < 2 ? c : 2 ))
        for rep in $(seq "$REPEAT"); do
            mark_start
            raw="$OUT/pgbench/c$c-r$rep.txt"
            rm -f "$WORK"/pgl.*
            pgbench -n -M prepared -c "$c" -j "$j" -T "$DURATION" -l --log-prefix="$WORK/pgl" \
                -f "$WORK/notify.sql" "$DB" >"$raw" 2>&1 || { cat "$raw" >&2; exit 1; }
            record postgres "$c" "$rep" per-callback "$(python3 - "$raw" "$WORK" <<'PY'
import glob, json, re, statistics, sys
text = open(sys.argv[1]).read()
tps = float(re.search(r"^tps = ([0-9.]+)", text, re.M).group(1))
lat = sorted(int(l.split()[2]) for f in glob.glob(sys.argv[2] + "/pgl.*") for l in open(f))
pct = lambda p: lat[max(0, min(len(lat), int(-(-len(lat) * p // 1))) - 1)] / 1000
failed = re.search(r"number of failed transactions: ([0-9]+)", text)
print(json.dumps({"rate": tps, "tx_rate": tps, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                  "failures": int(failed.group(1)) if failed else 0, "transactions": len(lat)}))
PY
)"
            run_ours postgres "$c" "$rep" "$PG_URL"
            mark_start
            out=$("$LOADGEN" pg-batched --url "$PG_URL" --clients "$CLIENTS" --sizes "$SIZES" --duration "$DURATION")
            record postgres "$c" "$rep" batched "$out" "{\"batch_sizes\": \"$SIZES\"}"
        done
        print_row "$c" "$(hwm_mib "$SERVER_PID")"
        [[ $DURABILITY_FAILED == 0 ]] || { echo "DURABILITY CHECK FAILED: an acknowledged callback is not in the database" >&2; exit 1; }
    done
    stop_server
fi

if [[ " $ENGINES " == *" sqlite "* ]]; then
    echo
    echo "## SQLite (WAL, synchronous=FULL): ours vs batched ceiling (raw sqlx loop, N callbacks per transaction, same batch sizes) vs per-callback raw loop"
    row_header "per-cb" "per p50"
    fresh_sqlite() {
        rm -f "$1"*
        APP__DATABASE__URL="sqlite://$1?mode=rwc" APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
    }
    for c in $CONCURRENCY; do
        rss=0
        for rep in $(seq "$REPEAT"); do
            fresh_sqlite "$WORK/baseline.db"
            mark_start
            out=$("$LOADGEN" sqlite-baseline --path "$WORK/baseline.db" --concurrency "$c" --duration "$DURATION")
            record sqlite "$c" "$rep" per-callback "$out"
            fresh_sqlite "$WORK/service.db"
            start_server "sqlite://$WORK/service.db?mode=rwc"
            run_ours sqlite "$c" "$rep" "sqlite://$WORK/service.db"
            rss=$(python3 -c "print(max($rss, $(hwm_mib "$SERVER_PID")))")
            stop_server
            fresh_sqlite "$WORK/batched.db"
            mark_start
            out=$("$LOADGEN" sqlite-baseline --path "$WORK/batched.db" --concurrency "$CLIENTS" --sizes "$SIZES" --duration "$DURATION")
            record sqlite "$c" "$rep" batched "$out" "{\"batch_sizes\": \"$SIZES\"}"
        done
        rm -f "$WORK"/*.db*
        print_row "$c" "$rss"
        [[ $DURABILITY_FAILED == 0 ]] || { echo "DURABILITY CHECK FAILED: an acknowledged callback is not in the database" >&2; exit 1; }
    done
fi
echo
python3 - "$RUNS" <<'PY'
import json, sys
runs = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "ours"]
acked = sum(r["durability"]["acked"] for r in runs)
missing = sum(r["durability"]["missing"] for r in runs)
print(f"# durability: {acked} measured 2xx answers over {len(runs)} runs of ours, {missing} without their journal row and record")
PY
