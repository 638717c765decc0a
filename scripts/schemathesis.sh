#!/usr/bin/env bash
# Property-based API testing of /api/v1 against its own OpenAPI document, with Schemathesis.
#
# Builds and starts faceid-receiver (SQLite in a temp dir, a free port, a fixed token with the
# admin and pii scopes, so every route is reached past its scope check), stores a few signed
# callbacks so the list and get endpoints have data, waits for /readyz,
# runs Schemathesis against GET /api/v1/openapi.json with a bearer token, and stops the
# server. Exit status is Schemathesis's.
#
# Checks: no 5xx (not_a_server_error), documented status codes, content types and response
# schemas. Bounded: EXAMPLES cases per operation (default 50) and MAX_TIME seconds overall.
#
#   scripts/schemathesis.sh                 # debug build, 50 examples per operation
#   EXAMPLES=200 scripts/schemathesis.sh    # more
#
# Schemathesis is installed into target/schemathesis-venv on first use (PyPI), with every
# dependency pinned by scripts/schemathesis-constraints.txt (`pip freeze` of a working venv), so
# a new Hypothesis release cannot change what CI runs.
#
# One worker thread: CPython 3.11 before 3.11.8 shares the ast module's recursion counter
# between threads (python/cpython#106905), and Hypothesis calls ast.parse to describe lambdas;
# with two workers, CI once failed with "SystemError: AST constructor recursion depth mismatch",
# an error in the test tool, not in the API. The machine has Python 3.11.7.
set -euo pipefail

cd "$(dirname "$0")/.."
EXAMPLES="${EXAMPLES:-50}"
MAX_TIME="${MAX_TIME:-300}"
SEED="${SEED:-20261123}"
TOKEN="schemathesis-token"
SECRET="schemathesis-secret"
VENV="target/schemathesis-venv"
CONSTRAINTS="scripts/schemathesis-constraints.txt"

# A venv from before the constraints file (or from another one) is rebuilt.
if [[ ! -x "$VENV/bin/st" ]] || ! cmp -s "$CONSTRAINTS" "$VENV/constraints.txt"; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --constraint "$CONSTRAINTS" "schemathesis==4.32.5"
    cp "$CONSTRAINTS" "$VENV/constraints.txt"
fi

cargo build --quiet --bin faceid-receiver
BIN="target/debug/faceid-receiver"

WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" || echo "server exited with status $?" >&2
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

env -i PATH="$PATH" \
    APP_CONFIG_DIR="$PWD/config" \
    APP__SERVER__LISTEN="127.0.0.1:$PORT" \
    APP__DATABASE__URL="sqlite://$WORK/db.sqlite?mode=rwc" \
    APP__API__TOKENS="$TOKEN:admin+pii" \
    APP__MEGVII__API_SECRET="$SECRET" \
    APP__MEGVII__BASE_URL="http://127.0.0.1:9" \
    APP__TELEMETRY__FILTER="warn" \
    APP__TELEMETRY__FORMAT="json" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# Wait for readiness: bounded polling, no blind sleeps.
ready=""
for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null; then
        ready=1
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/server.log" >&2
        echo "server exited before becoming ready" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    cat "$WORK/server.log" >&2
    echo "server not ready after 30s" >&2
    exit 1
fi

# A few signed notifies, so lists and records are not all empty.
now="$(date +%s)"
for i in 1 2 3; do
    data="{\"request_id\":\"$now,req-$i\",\"status\":\"OK\",\"biz_info\":{\"biz_id\":\"$now,st-$i\",\"biz_no\":\"order-$i\",\"biz_extra_data\":\"\"},\"liveness_result\":{\"result\":\"PASS\"},\"verify_result\":{\"result_faceid\":{\"confidence\":80.5,\"thresholds\":{\"1e-3\":62}}},\"time_used\":12}"
    sign="$(printf '%s%s' "$SECRET" "$data" | sha1sum | cut -d' ' -f1)"
    curl -fsS -o /dev/null --data-urlencode "data=$data" --data-urlencode "sign=$sign" "$BASE/faceid/notify"
done
# One pending record (an unsigned return GET).
curl -sS -o /dev/null "$BASE/faceid/return?biz_id=$now,st-pending"

status=0
"$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
    --url "$BASE" \
    --header "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$EXAMPLES" \
    --max-time "$MAX_TIME" \
    --seed "$SEED" \
    --workers 1 \
    --generation-database none \
    --report junit --report-dir target/schemathesis-report \
    --no-color || status=$?

# A 5xx is already a failure above; this also shows errors logged without one.
if grep -q '"level":"ERROR"' "$WORK/server.log"; then
    echo "--- errors in the server log ---" >&2
    grep '"level":"ERROR"' "$WORK/server.log" | head -20 >&2
fi
exit "$status"
