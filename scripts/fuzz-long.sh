#!/usr/bin/env bash
# The long fuzzing run behind the figure in BENCHMARKS.md.
#
#   scripts/fuzz-long.sh [SECONDS_PER_TARGET]   (default 300)
#
# With cargo-fuzz and a nightly toolchain: each target in fuzz/ under libFuzzer for that long,
# printing libFuzzer's own count of inputs executed. Without them (or with PROPTEST_ONLY=1):
# the proptest properties of tests/faults/props.rs with PROPTEST_CASES cases each (default
# 100000), which is what `cargo test` runs with 256 cases.
# A crash fails the script: libFuzzer leaves the input under fuzz/artifacts/, proptest prints
# the minimal failing input and saves it in tests/faults/props.proptest-regressions.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"

if [[ "${PROPTEST_ONLY:-0}" != 1 ]] && rustup toolchain list | grep -q nightly \
    && cargo +nightly fuzz --version >/dev/null 2>&1; then
    for target in callback_body signed_data biz_id_query; do
        echo "== cargo fuzz: $target for ${seconds}s"
        (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 2>&1) \
            | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|.*(panicked|ERROR|crash))' || true
        # libFuzzer exits non-zero on a crash; pipefail would hide nothing, but check artifacts too.
        if compgen -G "fuzz/artifacts/$target/crash-*" >/dev/null; then
            echo "crash found for $target: see fuzz/artifacts/$target/" >&2
            exit 1
        fi
    done
else
    cases="${PROPTEST_CASES:-100000}"
    properties=$(grep -c '^    fn ' tests/faults/props.rs)
    echo "== cargo-fuzz or nightly missing (or PROPTEST_ONLY=1): $properties proptest properties x $cases cases"
    start=$(date +%s)
    PROPTEST_CASES="$cases" cargo test --test faults props:: -- --test-threads=2
    echo "== $((properties * cases)) generated inputs, 0 failures, $(( $(date +%s) - start ))s"
fi
