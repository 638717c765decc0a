#!/usr/bin/env bash
# Where the server's CPU goes per notify at BENCH_CONCURRENCY (default 1) connections, on
# PostgreSQL, with the same server settings as bench/notify.sh. Raw outputs in PROFILE_OUT
# (default target/profile/<UTC time>/):
#
#   counts.txt        requests in each window (from /metrics), user/system CPU ms per request
#                     (/proc/PID/stat), perf stat (task-clock, context switches) per request
#   perf-flat.txt     perf record -e cpu-clock (no call graph), by DSO and by symbol, kernel
#                     included
#   strace.txt        strace -c -f: syscalls per window (divide by the window's requests)
#   callgrind.out     valgrind --tool=callgrind of the server, instrumented only during the
#                     measured window (instruction counts: robust to the machine's load)
#   callgrind-inclusive.txt, callgrind-self.txt   callgrind_annotate of it
#
#   bench/profile.sh            # 10 s windows
#   PROFILE_SECONDS=20 bench/profile.sh
#   PROFILE_BIN_DIR=/tmp/before bench/profile.sh   # profile binaries built earlier (a before/
#                               # after pair from one tree), instead of building target/release
#
# perf here has no hardware counters (a VM): cpu-clock sampling only. Each tool runs in its
# own window, because strace and callgrind slow the server down (callgrind ~50×).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECONDS_PER_WINDOW=${PROFILE_SECONDS:-10}
C=${BENCH_CONCURRENCY:-1}
OUT=${PROFILE_OUT:-$ROOT/target/profile/$(date -u +%Y%m%dT%H%M%SZ)}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
# shellcheck source=bench/pg.sh
source "$ROOT/bench/pg.sh"
for tool in perf strace valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install linux-perf strace valgrind)" >&2; exit 1; }
done

BIN_DIR=${PROFILE_BIN_DIR:-}
if [[ -z $BIN_DIR ]]; then
    cargo build --release --locked --quiet --bin faceid-receiver --bin faceid-loadgen
    BIN_DIR=$ROOT/target/release
fi
BIN=$BIN_DIR/faceid-receiver
LOADGEN=$BIN_DIR/faceid-loadgen
mkdir -p "$OUT"
DB=faceid_profile_$$
WORK=$(mktemp -d /tmp/faceid-profile.XXXXXX)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
URL=$(pg_url "$DB")
APP__DATABASE__URL=$URL APP_ENVIRONMENT=development "$BIN" migrate >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# start [WRAPPER...]: serve, optionally under a wrapper (valgrind); waits for /readyz.
start() {
    env APP_ENVIRONMENT=development APP__DATABASE__URL="$URL" APP__SERVER__LISTEN="127.0.0.1:$PORT" \
        APP__SERVER__RATE_LIMIT_PER_SECOND=0 APP__MEGVII__BASE_URL="http://127.0.0.1:9" \
        APP__TELEMETRY__FORMAT=json APP__TELEMETRY__FILTER="${BENCH_LOG_FILTER:-info}" \
        "$@" "$BIN" serve >"$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 600); do
        curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "serve did not become ready" >&2; tail "$WORK/serve.log" >&2; exit 1
}
stop() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
stored() {
    curl -fsS "http://127.0.0.1:$PORT/metrics" \
        | awk '/^faceid_callbacks_total\{route="notify",outcome="stored"\}/ {print $2}'
}
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
load() { "$LOADGEN" http --url "http://127.0.0.1:$PORT/faceid/notify" --concurrency "$C" --duration "$1"; }

{
    echo "# bench/profile.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates bench || echo ' (modified)'), binaries $BIN_DIR"
    if [[ -f $BIN_DIR/BUILT_FROM ]]; then echo "# binaries built from: $(cat "$BIN_DIR/BUILT_FROM")"; fi
    echo "# $C connection(s), ${SECONDS_PER_WINDOW}s windows, PostgreSQL, log filter ${BENCH_LOG_FILTER:-info}; uptime: $(uptime)"
} | tee "$OUT/counts.txt"

start
load 2 >/dev/null # warm: connections, prepared statements, plans

# Window 1: CPU per request (user/system) and perf stat.
before=$(stored); read -r u0 s0 < <(ticks "$SERVER_PID")
perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$SERVER_PID" -o "$WORK/perfstat.txt" &
PERF=$!
result=$(load "$SECONDS_PER_WINDOW")
kill -INT "$PERF"; wait "$PERF" || true
after=$(stored); read -r u1 s1 < <(ticks "$SERVER_PID")
python3 - "$before" "$after" "$u0" "$s0" "$u1" "$s1" "$(getconf CLK_TCK)" "$result" <<'PY' | tee -a "$OUT/counts.txt"
import sys
b, a, u0, s0, u1, s1, hz = map(float, sys.argv[1:8])
n = a - b
print(f"window 1 (perf stat): {int(n)} requests; loadgen {sys.argv[8]}")
print(f"  server CPU per request: user {(u1-u0)/hz*1000/n:.3f} ms, system {(s1-s0)/hz*1000/n:.3f} ms, total {((u1-u0)+(s1-s0))/hz*1000/n:.3f} ms")
PY
python3 - "$before" "$after" "$WORK/perfstat.txt" <<'PY' | tee -a "$OUT/counts.txt"
import re, sys
n = float(sys.argv[2]) - float(sys.argv[1])
for line in open(sys.argv[3]):
    m = re.match(r"\s*([\d,.]+)\s+(?:msec\s+)?([\w-]+)", line)
    if m and m.group(2) in ("task-clock", "context-switches", "cpu-migrations", "page-faults"):
        v = float(m.group(1).replace(",", ""))
        print(f"  perf stat {m.group(2)}: {v:,.1f} total, {v / n:.3f} per request")
PY
cat "$WORK/perfstat.txt" >>"$OUT/counts.txt"

# Window 2: where the CPU goes, kernel included (sampled).
before=$(stored)
perf record -e cpu-clock -F 4999 -p "$SERVER_PID" -o "$WORK/perf.data" 2>/dev/null &
PERF=$!
load "$SECONDS_PER_WINDOW" >/dev/null
kill -INT "$PERF"; wait "$PERF" || true
after=$(stored)
{
    echo "# perf record -e cpu-clock -F 4999, $((after - before)) requests"
    perf report -i "$WORK/perf.data" --stdio --sort dso
    perf report -i "$WORK/perf.data" --stdio --sort dso,sym --percent-limit 0.2
} >"$OUT/perf-flat.txt"
echo "window 2 (perf record): $((after - before)) requests" | tee -a "$OUT/counts.txt"

# Window 3: syscalls.
before=$(stored)
strace -c -f -p "$SERVER_PID" -o "$WORK/strace.txt" &
STRACE=$!
sleep 0.5
load "$SECONDS_PER_WINDOW" >/dev/null
kill -INT "$STRACE"; wait "$STRACE" || true
after=$(stored)
{ echo "# strace -c -f, $((after - before)) requests in the window"; cat "$WORK/strace.txt"; } >"$OUT/strace.txt"
echo "window 3 (strace): $((after - before)) requests" | tee -a "$OUT/counts.txt"
stop

# Window 4: instructions, under callgrind (collection on only while the load runs).
start valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" --separate-threads=no
load 2 >/dev/null
before=$(stored)
callgrind_control -i on "$SERVER_PID" >/dev/null
load "$((SECONDS_PER_WINDOW * 3))" >/dev/null
callgrind_control -i off "$SERVER_PID" >/dev/null
after=$(stored)
stop
cp "$WORK/callgrind.out" "$OUT/callgrind.out"
echo "window 4 (callgrind): $((after - before)) requests" | tee -a "$OUT/counts.txt"
callgrind_annotate --inclusive=yes --threshold=99 "$OUT/callgrind.out" >"$OUT/callgrind-inclusive.txt"
callgrind_annotate --threshold=95 "$OUT/callgrind.out" >"$OUT/callgrind-self.txt"
python3 - "$OUT/callgrind.out" "$((after - before))" <<'PY' | tee -a "$OUT/counts.txt"
import sys
# `totals:` (not `summary:`, which stays 0 when instrumentation is switched on late).
total = next(int(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("totals:"))
print(f"  instructions per request: {total / int(sys.argv[2]):,.0f} (total {total:,})")
PY
echo "raw outputs: $OUT"
