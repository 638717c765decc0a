#!/usr/bin/env bash
# Runs tests/push/standardwebhooks_check.py with the official Standard Webhooks library
# (PyPI `standardwebhooks`, pinned below), the independent verifier of our push signatures.
# Used by `cargo test --test push` (tests/push/official_verifier.rs); reads the cases as JSON
# on stdin and writes the verdicts as JSON on stdout.
#
# The library is installed into target/standardwebhooks-venv on first use. Exit status 77
# means "cannot install it here" (no python3, no venv module, PyPI unreachable): the test
# then skips loudly, or fails when CI is set.
set -euo pipefail

cd "$(dirname "$0")/.."
VERSION="1.1.0"
VENV="target/standardwebhooks-venv"
STAMP="$VENV/.standardwebhooks-$VERSION"

install() {
    command -v python3 >/dev/null 2>&1 || { echo "python3 is not installed" >&2; return 77; }
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2 || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; return 77; }
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==$VERSION" >&2 \
        || { echo "pip could not install standardwebhooks==$VERSION" >&2; return 77; }
    touch "$STAMP"
}

mkdir -p target
# Two test processes may get here at once: one installs, the other waits.
exec 9>target/standardwebhooks-venv.lock
flock 9
if [[ ! -e "$STAMP" ]]; then
    status=0
    install || status=$?
    if [[ $status -ne 0 ]]; then
        exit "$status"
    fi
fi
flock -u 9
exec "$VENV/bin/python" tests/push/standardwebhooks_check.py
