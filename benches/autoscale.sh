#!/usr/bin/env bash
# Autoscaling reaction time: from the moment load starts (every instance burns its CPU
# limit) to the moment the router sends a request to the new instance, for
#  1. the default settings (metrics every 10 s, periods of 60 s, 3 in a row), and
#  2. the shortest allowed (metrics every 1 s, one period of 5 s, no cool-down).
# Usage: benches/autoscale.sh [default|shortest|both]   (default both; needs root and the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
which=${1:-both}
ensure_engine; ensure_images
cargo build --release --quiet
BERTH=$PWD/target/release/berth
PORT=7997
ROUTER=18997

# run NAME INTERVAL PERIOD PERIODS COOLDOWN: prints the reaction time in seconds.
run() {
    local name=$1 interval=$2 period=$3 periods=$4 cooldown=$5 dir agent_pid start
    dir=$(mktemp -d /tmp/autoscaleXXXX)
    cat >"$dir/berth.toml" <<TOML
[router]
http = "127.0.0.1:$ROUTER"
[metrics]
interval = "$interval"
TOML
    "$BERTH" agent --config "$dir/berth.toml" --data-dir "$dir" --listen 127.0.0.1:$PORT --node-name "as-$name" >"$dir/agent.log" 2>&1 &
    agent_pid=$!
    export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$dir/api.token
    for _ in $(seq 50); do "$BERTH" apps >/dev/null 2>&1 && break; sleep 0.2; done
    cat >"$dir/app.yml" <<YAML
services:
  web:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "hostname > /www/id; httpd -p 8080 -h /www; while true; do if [ -f /ctl/burn ]; then i=0; while [ \$\$i -lt 20000 ]; do i=\$\$((i+1)); done; else sleep 0.2; fi; done"]
    cpus: 0.25
    stop_grace_period: 1s
    volumes: ["ctl:/ctl"]
    labels:
      berth.probe.url: http://container:8080/id
      berth.routing.port_8080: as.bench
      berth.auto_scaling.min_instances: "1"
      berth.auto_scaling.max_instances: "2"
      berth.auto_scaling.max_cpu: "70"
      berth.auto_scaling.period_seconds: "$period"
      berth.auto_scaling.periods: "$periods"
      berth.auto_scaling.cooldown_seconds: "$cooldown"
volumes:
  ctl: {}
YAML
    "$BERTH" deploy -f "$dir/app.yml" --name asb >/dev/null
    local first
    first=$(curl -s -H 'Host: as.bench' "http://127.0.0.1:$ROUTER/id")
    # Let the first figures in (one metrics cycle at least) before the load starts.
    sleep $((${interval%s} + 2))
    start=$(date +%s%N)
    docker exec asb_web_1 touch /ctl/burn
    local secs=
    for _ in $(seq 3000); do
        id=$(curl -s -H 'Host: as.bench' "http://127.0.0.1:$ROUTER/id" || true)
        if [ -n "$id" ] && [ "$id" != "$first" ]; then
            secs=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN {printf "%.1f", ns / 1e9}')
            break
        fi
        sleep 0.1
    done
    "$BERTH" rm asb >/dev/null 2>&1 || true
    kill "$agent_pid" 2>/dev/null || true
    wait "$agent_pid" 2>/dev/null || true
    docker volume rm -f "$(docker volume ls -q | grep asb | head -1)" >/dev/null 2>&1 || true
    rm -rf "$dir"
    echo "${secs:-no scale-out in 5 minutes}"
}

echo "| settings | load to the new instance serving (s) |"
echo "|---|---|"
if [ "$which" = default ] || [ "$which" = both ]; then
    log "default settings (about 3 minutes)"
    echo "| default: metrics 10 s, 3 periods of 60 s, cool-down 15 s | $(run default 10s 60 3 15) |"
fi
if [ "$which" = shortest ] || [ "$which" = both ]; then
    log "shortest settings"
    echo "| shortest: metrics 1 s, 1 period of 5 s, no cool-down | $(run shortest 1s 5 1 0) |"
fi
