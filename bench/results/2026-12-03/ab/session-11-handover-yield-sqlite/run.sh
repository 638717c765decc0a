# SQLite A/B of the hand-over yield: /tmp/binsB/base -> /tmp/bins/final (6786e49), /tmp/binsB/final -> /tmp/bins/hyy (the prototype, see README.txt)
#!/usr/bin/env bash
# SQLite side by side: /tmp/binsB/base (67419a0) and /tmp/binsB/final (6786e49), each serving a
# fresh SQLite file with bench/notify.sh's server settings; alternating 6 s runs of
# faceid-loadgen http (from /tmp/binsB/final) at SQAB_CONCURRENCY (default "16 64") connections,
# SQAB_PAIRS (default 5) pairs each.
set -euo pipefail
W=$(mktemp -d)
declare -A PID PORT
for side in base final; do
    PORT[$side]=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    APP__DATABASE__URL="sqlite://$W/$side.db?mode=rwc" APP_ENVIRONMENT=development /tmp/binsB/$side/faceid-receiver migrate >/dev/null
    env APP_ENVIRONMENT=development APP__DATABASE__URL="sqlite://$W/$side.db?mode=rwc" \
        APP__SERVER__LISTEN="127.0.0.1:${PORT[$side]}" APP__SERVER__RATE_LIMIT_PER_SECOND=0 \
        APP__MEGVII__BASE_URL="http://127.0.0.1:9" APP__TELEMETRY__FORMAT=json APP__TELEMETRY__FILTER=info \
        /tmp/binsB/$side/faceid-receiver serve >"$W/$side.log" 2>&1 &
    PID[$side]=$!
done
trap 'kill ${PID[base]} ${PID[final]} 2>/dev/null; rm -rf $W' EXIT
for side in base final; do
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${PORT[$side]}/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for c in ${SQAB_CONCURRENCY:-16 64}; do
    for pair in $(seq ${SQAB_PAIRS:-5}); do
        order="base final"; (( pair % 2 == 0 )) && order="final base"
        for side in $order; do
            before=$(cpu ${PID[$side]})
            out=$(/tmp/binsB/final/faceid-loadgen http --url "http://127.0.0.1:${PORT[$side]}/faceid/notify" --concurrency $c --duration 6)
            after=$(cpu ${PID[$side]})
            python3 -c '
import json,sys
o=json.loads(sys.argv[1]); ticks=int(sys.argv[3])-int(sys.argv[2])
print(json.dumps({"side":sys.argv[4],"concurrency":int(sys.argv[5]),"pair":int(sys.argv[6]),"rate":o["rate"],"p50_ms":o["p50_ms"],"ok":o["ok"],"failures":o["failures"],"cpu_ms_per_request":ticks*10/o["ok"]}))' "$out" "$before" "$after" $side $c $pair
        done
    done
done
