#!/usr/bin/env bash
# The long fuzzing run behind the figures in BENCHMARKS.md. Exits non-zero on any failure:
# a libFuzzer crash, timeout, out-of-memory or leak, a build error, a run that reports no
# count, or (proptest fallback) a failing property.
#
#   scripts/fuzz-long.sh [SECONDS_PER_TARGET]   (default 300)
#   scripts/fuzz-long.sh --self-test            (proves each kind of failure fails the script)
#
# libFuzzer (cargo-fuzz, `cargo install cargo-fuzz`): each target in FUZZ_TARGETS (default
# callback_body signed_data biz_id_query) runs for SECONDS_PER_TARGET under AddressSanitizer,
# with -timeout=FUZZ_INPUT_TIMEOUT (default 10 s per input) and LeakSanitizer on. cargo-fuzz
# passes -Z flags to rustc (-Zsanitizer=address): on a stable toolchain the script sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them (tested with stable 1.95.0; a nightly
# toolchain works too: FUZZ_TOOLCHAIN=nightly). `fuzz/` is its own workspace, so the root's
# [patch.crates-io] does not apply there: it builds the published sqlx-core, which no target
# uses at run time.
#
# Without cargo-fuzz (or with PROPTEST_ONLY=1): the proptest properties of
# tests/faults/props.rs with PROPTEST_CASES cases each (default 100000), which is what
# `cargo test` runs with 256 cases.
#
# Raw output: every libFuzzer log goes to FUZZ_OUT (default target/fuzz-long/<UTC time>/),
# one file per target, plus summary.txt. A failing input is left under fuzz/artifacts/<target>/.
# Set FUZZ_NICE (default 19) to run at another priority.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

fuzz_tool() {
    # Prints the cargo invocation prefix for cargo-fuzz, or nothing if it is unavailable.
    cargo fuzz --version >/dev/null 2>&1 || return 0
    if [[ -n ${FUZZ_TOOLCHAIN:-} ]]; then
        echo "cargo +$FUZZ_TOOLCHAIN"
    else
        echo "cargo"
    fi
}

# run_target TARGET SECONDS LOG: one libFuzzer run; returns its status (non-zero on any
# failure libFuzzer reports) and leaves the full output in LOG.
run_target() {
    local target=$1 seconds=$2 log=$3 status=0
    (
        cd fuzz
        RUSTC_BOOTSTRAP=1 nice -n "${FUZZ_NICE:-19}" $CARGO fuzz run -O "$target" -- \
            -max_total_time="$seconds" -timeout="${FUZZ_INPUT_TIMEOUT:-10}" \
            -detect_leaks=1 -print_final_stats=1
    ) >"$log" 2>&1 || status=$?
    return "$status"
}

# Proves that each kind of libFuzzer failure, and a build error, fails a run.
self_test() {
    local out failed=0 mode status
    out=$(mktemp -d /tmp/fuzz-selftest.XXXXXX)
    (cd fuzz && RUSTC_BOOTSTRAP=1 $CARGO fuzz build -O selftest) >"$out/build.log" 2>&1 \
        || { cat "$out/build.log" >&2; echo "self-test: the selftest target does not build" >&2; exit 1; }
    for mode in none crash timeout oom leak; do
        status=0
        FUZZ_SELFTEST_MODE=$mode FUZZ_INPUT_TIMEOUT=2 run_target selftest 5 "$out/$mode.log" || status=$?
        rm -rf fuzz/artifacts/selftest
        local last
        last=$(grep -E '^==[0-9]+== ERROR|^SUMMARY|ALARM|out-of-memory|panicked' "$out/$mode.log" | head -1 || true)
        if [[ $mode == none ]]; then
            [[ $status == 0 ]] || { echo "self-test: a clean run failed ($status)" >&2; failed=1; }
            echo "self-test: clean run -> exit $status"
        else
            [[ $status != 0 ]] || { echo "self-test: $mode was not reported" >&2; failed=1; }
            echo "self-test: $mode -> exit $status (${last:-no message})"
        fi
    done
    status=0
    (cd fuzz && RUSTC_BOOTSTRAP=1 $CARGO fuzz build -O no_such_target) >"$out/build-error.log" 2>&1 || status=$?
    [[ $status != 0 ]] || { echo "self-test: a build error was not reported" >&2; failed=1; }
    echo "self-test: build error -> exit $status"
    rm -rf "$out"
    [[ $failed == 0 ]] || exit 1
    echo "self-test: every failure fails the run"
}

CARGO=$(fuzz_tool)
if [[ ${1:-} == --self-test ]]; then
    [[ -n $CARGO ]] || { echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 1; }
    self_test
    exit 0
fi
seconds="${1:-300}"

if [[ "${PROPTEST_ONLY:-0}" != 1 && -n $CARGO ]]; then
    out=${FUZZ_OUT:-$ROOT/target/fuzz-long/$(date -u +%Y%m%dT%H%M%SZ)}
    mkdir -p "$out"
    targets=${FUZZ_TARGETS:-"callback_body signed_data biz_id_query"}
    summary="$out/summary.txt"
    {
        echo "# scripts/fuzz-long.sh $seconds — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# $($CARGO --version), $(rustc --version), cargo-fuzz $(cargo fuzz --version | awk '{print $2}'), RUSTC_BOOTSTRAP=1, nice ${FUZZ_NICE:-19}"
        echo "# git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates fuzz || echo ' (modified)')"
    } | tee "$summary"
    echo "== building the fuzz targets" >&2
    (cd fuzz && RUSTC_BOOTSTRAP=1 nice -n "${FUZZ_NICE:-19}" $CARGO fuzz build -O) >"$out/build.log" 2>&1 \
        || { tail -30 "$out/build.log" >&2; echo "fuzz build failed (full log: $out/build.log)" >&2; exit 1; }
    total=0
    for target in $targets; do
        echo "== cargo fuzz run $target for ${seconds}s (log: $out/$target.log)" >&2
        status=0
        run_target "$target" "$seconds" "$out/$target.log" || status=$?
        units=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$out/$target.log" | tail -1)
        if [[ $status != 0 ]]; then
            grep -E '^==[0-9]+==|^SUMMARY|ALARM|out-of-memory|panicked|^Error|^error' "$out/$target.log" | head -20 >&2 || true
            echo "$target: FAILED (exit $status); input under fuzz/artifacts/$target/, log $out/$target.log" | tee -a "$summary" >&2
            exit 1
        fi
        [[ -n $units ]] || { echo "$target: no executed-units count in $out/$target.log" >&2; exit 1; }
        echo "$target: $units inputs, 0 failures, ${seconds}s, $(awk '/^stat::peak_rss_mb:/ {print $2}' "$out/$target.log" | tail -1) MB peak RSS" | tee -a "$summary"
        total=$((total + units))
    done
    echo "total: $total inputs, 0 failures" | tee -a "$summary"
else
    cases="${PROPTEST_CASES:-100000}"
    properties=$(grep -c '^    fn ' tests/faults/props.rs)
    echo "== cargo-fuzz missing (or PROPTEST_ONLY=1): $properties proptest properties x $cases cases"
    start=$(date +%s)
    PROPTEST_CASES="$cases" cargo test --locked --test faults props:: -- --test-threads=2
    echo "== $((properties * cases)) generated inputs, 0 failures, $(( $(date +%s) - start ))s"
fi
