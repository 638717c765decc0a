#!/usr/bin/env bash
# The per-callback SQLite baseline (`faceid-loadgen sqlite-baseline`, one callback per
# transaction) with one connection per loop (as notify.sh ran it through session 11) against
# all loops sharing one connection, alternating, on a fresh migrated file each run.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
bin=$root/target/release
work=$(mktemp -d)
echo "# $(date -u +%FT%TZ), git $(git rev-parse --short HEAD), uptime: $(uptime)"
for c in ${CONCURRENCY:-16 64}; do
  for rep in $(seq "${PAIRS:-4}"); do
    for conns in "$c" 1; do
      rm -f "$work"/b.db*
      APP__DATABASE__URL="sqlite://$work/b.db?mode=rwc" APP_ENVIRONMENT=development "$bin/faceid-receiver" migrate >/dev/null
      out=$("$bin/faceid-loadgen" sqlite-baseline --path "$work/b.db" --concurrency "$c" --connections "$conns" --duration "${SECONDS_PER_RUN:-8}" 2>"$work/err")
      echo "concurrency=$c connections=$conns rep=$rep errors=$(grep -c 'database is locked' "$work/err" || true) $out"
    done
  done
done
rm -rf "$work"
