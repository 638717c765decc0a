#!/usr/bin/env bash
# Two builds of the server side by side, on PostgreSQL, in alternating runs: `bench/ab.sh
# DIR_A DIR_B` (each a directory holding `faceid-receiver`, `faceid-loadgen` and optionally
# BUILT_FROM, e.g. binaries copied out of target/release before and after a change). Both
# servers run at once on fresh databases, with notify.sh's server settings; each pair is a
# run of A then a run of B (then B then A in the next pair, so neither always goes first),
# `faceid-loadgen http` at AB_CONCURRENCY connections for AB_SECONDS each. Per run: the rate,
# p50, and the server's CPU per request (user+system from /proc/PID/stat over the run divided
# by its requests), and the load generator's own CPU and the whole machine's per request.
# Medians of the pairs at the end. On this shared 2-core machine the
# absolute figures move with the load; what one pair compares ran within seconds.
#
#   bench/ab.sh /tmp/before /tmp/after                # 1 and 16 connections, 6 pairs of 5 s
#   AB_CONCURRENCY="16" AB_PAIRS=4 AB_SECONDS=8 bench/ab.sh A B
#   AB_OUT=bench/results/<date>/ab-x bench/ab.sh A B  # raw output (ab.txt, runs.jsonl)
#   AB_PGHOST_B=/var/run/postgresql bench/ab.sh D D   # one build, B over the Unix socket
#                               # (AB_PGHOST_A/AB_PGHOST_B: each side's PGHOST, default PGHOST)
#   AB_LOG_FILTER_B=error bench/ab.sh D D             # one build, B without its info/warn lines
#                               # (AB_LOG_FILTER_A/AB_LOG_FILTER_B: each side's log filter, default info)
#   AB_SEED_B=get_result bench/ab.sh D D              # one build, B loaded with the get_result seed
#                               # (AB_SEED_A/AB_SEED_B: each side's LOADGEN_SEED, default notify)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=$(realpath "$1") B=$(realpath "$2")
CONCURRENCY=${AB_CONCURRENCY:-"1 16"}
PAIRS=${AB_PAIRS:-6}
SECONDS_PER_RUN=${AB_SECONDS:-5}
OUT=${AB_OUT:-$ROOT/target/ab/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
# shellcheck source=bench/pg.sh
source "$ROOT/bench/pg.sh"
WORK=$(mktemp -d /tmp/faceid-ab.XXXXXX)
declare -A PID PORT DB
cleanup() {
    for side in a b; do
        if [[ -n ${PID[$side]:-} ]]; then kill "${PID[$side]}" 2>/dev/null || true; wait "${PID[$side]}" 2>/dev/null || true; fi
        if [[ -n ${DB[$side]:-} ]]; then psql -q -d postgres -c "DROP DATABASE IF EXISTS ${DB[$side]} WITH (FORCE)" >/dev/null 2>&1 || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # side dir
    local side=$1 dir=$2
    DB[$side]=faceid_ab_${side}_$$
    psql -q -d postgres -c "CREATE DATABASE ${DB[$side]}" >/dev/null
    local url host_var="AB_PGHOST_${side^^}" filter_var="AB_LOG_FILTER_${side^^}"
    url=$(PGHOST=${!host_var:-$PGHOST} pg_url "${DB[$side]}")
    APP__DATABASE__URL=$url APP_ENVIRONMENT=development "$dir/faceid-receiver" migrate >/dev/null
    PORT[$side]=$(free_port)
    env APP_ENVIRONMENT=development APP__DATABASE__URL="$url" APP__SERVER__LISTEN="127.0.0.1:${PORT[$side]}" \
        APP__SERVER__RATE_LIMIT_PER_SECOND=0 APP__MEGVII__BASE_URL="http://127.0.0.1:9" \
        APP__TELEMETRY__FORMAT=json APP__TELEMETRY__FILTER="${!filter_var:-info}" \
        "$dir/faceid-receiver" serve >"$WORK/serve-$side.log" 2>&1 &
    PID[$side]=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:${PORT[$side]}/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "serve ($side) did not become ready" >&2; tail "$WORK/serve-$side.log" >&2; exit 1
}

# run side dir conc -> one JSON line
run() {
    local side=$1 dir=$2 c=$3
    local t0 t1 result
    t0=$(awk '{print $14 + $15}' "/proc/${PID[$side]}/stat")
    local seed_var="AB_SEED_${side^^}"
    result=$(LOADGEN_SEED=${!seed_var:-notify} "$dir/faceid-loadgen" http --url "http://127.0.0.1:${PORT[$side]}/faceid/notify" --concurrency "$c" --duration "$SECONDS_PER_RUN")
    t1=$(awk '{print $14 + $15}' "/proc/${PID[$side]}/stat")
    python3 - "$side" "$c" "$t0" "$t1" "$(getconf CLK_TCK)" "$result" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
side, c, t0, t1, hz, result, load1 = sys.argv[1:8]
r = json.loads(result)
n = r["ok"] + r.get("failures", 0)
cpu = (float(t1) - float(t0)) / float(hz) * 1000 / max(n, 1)
print(json.dumps({"side": side, "concurrency": int(c), "rate": r["rate"], "p50_ms": r["p50_ms"],
                  "p99_ms": r["p99_ms"], "ok": r["ok"], "failures": r.get("failures", 0),
                  "cpu_ms_per_request": round(cpu, 3), "load1": float(load1),
                  # The load generator's own figures, when it reports them.
                  **{k: r[k] for k in ("machine_cpu_ms", "client_cpu_ms", "machine_steal") if k in r}}))
PY
}

{
    echo "# bench/ab.sh — $(date -u +%Y-%m-%dT%H:%M:%SZ); $PAIRS pairs of ${SECONDS_PER_RUN}s runs per concurrency; uptime: $(uptime)"
    echo "# A = $A: $(cat "$A/BUILT_FROM" 2>/dev/null || echo '?')"
    echo "# B = $B: $(cat "$B/BUILT_FROM" 2>/dev/null || echo '?')"
    echo "# PostgreSQL: A at PGHOST=${AB_PGHOST_A:-$PGHOST}, B at PGHOST=${AB_PGHOST_B:-$PGHOST}"
    echo "# log filter: A ${AB_LOG_FILTER_A:-info}, B ${AB_LOG_FILTER_B:-info}"
    echo "# payload (LOADGEN_SEED): A ${AB_SEED_A:-notify}, B ${AB_SEED_B:-notify}"
} | tee "$OUT/ab.txt"
start a "$A"
start b "$B"
: >"$OUT/runs.jsonl"
for c in $CONCURRENCY; do
    # Warm both: connections, prepared statements, plans.
    LOADGEN_SEED=${AB_SEED_A:-notify} "$A/faceid-loadgen" http --url "http://127.0.0.1:${PORT[a]}/faceid/notify" --concurrency "$c" --duration 1 >/dev/null
    LOADGEN_SEED=${AB_SEED_B:-notify} "$B/faceid-loadgen" http --url "http://127.0.0.1:${PORT[b]}/faceid/notify" --concurrency "$c" --duration 1 >/dev/null
    for pair in $(seq "$PAIRS"); do
        if (( pair % 2 )); then order="a b"; else order="b a"; fi
        for side in $order; do
            dir=$A; [[ $side == b ]] && dir=$B
            run "$side" "$dir" "$c" | tee -a "$OUT/runs.jsonl" >/dev/null
        done
    done
done
python3 - "$OUT/runs.jsonl" <<'PY' | tee -a "$OUT/ab.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'conc':>4} {'side':>4} {'rate':>8} {'p50 ms':>7} {'cpu ms/req':>10} {'client ms':>9} {'machine ms':>10}   per run (rate / cpu)")
opt = lambda rs, k: f"{statistics.median(r[k] for r in rs):.3f}" if all(k in r for r in rs) else "-"
for c in sorted({r['concurrency'] for r in runs}):
    med = {}
    for side in "ab":
        rs = [r for r in runs if r['concurrency'] == c and r['side'] == side]
        med[side] = {k: statistics.median(r[k] for r in rs) for k in ('rate', 'p50_ms', 'cpu_ms_per_request')}
        per = ", ".join(f"{r['rate']:.0f}/{r['cpu_ms_per_request']:.3f}" for r in rs)
        print(f"{c:>4} {side.upper():>4} {med[side]['rate']:>8.1f} {med[side]['p50_ms']:>7.2f} {med[side]['cpu_ms_per_request']:>10.3f}"
              f" {opt(rs, 'client_cpu_ms'):>9} {opt(rs, 'machine_cpu_ms'):>10}   {per}")
    print(f"{c:>4}  B/A {med['b']['rate']/med['a']['rate']:>8.2f} {med['b']['p50_ms']/med['a']['p50_ms']:>7.2f} {med['b']['cpu_ms_per_request']/med['a']['cpu_ms_per_request']:>10.2f}")
PY
echo "raw: $OUT"
