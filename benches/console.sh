#!/usr/bin/env bash
# The web console's first load and its cost to the agent, on a real agent and engine with
# 50 apps of 10 containers each (500 containers), in Debian's headless Chromium:
#  1. bytes transferred (compressed, as on the wire) and time to interactive for the first
#     load of the overview and of an app page, with a cold cache (interactive: the sign-in
#     done beforehand, the page's tables filled from the API);
#  2. the agent's CPU over 60 s with 5 tabs open on live pages (overview, an app, its logs,
#     events, metrics), nothing else happening.
# Usage: benches/console.sh [APPS] [REPLICAS]   (default 50 10; needs root and the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apps=${1:-50}
replicas=${2:-10}
ensure_engine; ensure_images; ensure_browser
cargo build --release --quiet
BERTH=$PWD/target/release/berth
DIR=$(mktemp -d /tmp/consoleXXXX)
PORT=7995
agent_pid=
node_id=
cleanup() {
    for a in $(seq 1 "$apps"); do
        BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token "$BERTH" rm "cb$a" >/dev/null 2>&1 || true
    done
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    # Whatever the agent had not removed yet.
    docker ps -aq --filter "label=berth.node=${node_id:-none}" | xargs -r docker rm -f >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
"$BERTH" agent --data-dir "$DIR" --listen 127.0.0.1:$PORT --node-name console-bench >"$DIR/agent.log" 2>&1 &
agent_pid=$!
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token
for _ in $(seq 50); do "$BERTH" apps >/dev/null 2>&1 && break; sleep 0.2; done
log "deploying $apps apps of $replicas containers"
cat >"$DIR/app.yml" <<YAML
services:
  web:
    image: berth-test/busybox:latest
    command: sleep 3600
    stop_grace_period: 1s
    labels:
      berth.scale: "$replicas"
YAML
for a in $(seq 1 "$apps"); do
    "$BERTH" deploy -f "$DIR/app.yml" --name "cb$a" -d >/dev/null
done
want=$((apps * replicas))
node_id=$(curl -s http://127.0.0.1:$PORT/v1/health | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_id"])')
# The engine of a 2-CPU VM starts about one container a second: up to 45 minutes.
for _ in $(seq 2700); do
    n=$(docker ps -q --filter "label=berth.node=$node_id" | wc -l)
    [ "$n" -ge "$want" ] && break
    sleep 1
done
log "$n containers running"
[ "$n" -ge "$want" ] || { log "not all $want containers run: the figures would not be of an idle agent"; exit 1; }
# Let the agent settle (versions turn normal, the first metrics minute fills).
sleep 70
log "measuring in Chromium"
(cd tests/ui && BERTH_URL=http://127.0.0.1:$PORT BERTH_TOKEN=$(cat "$DIR/api.token") AGENT_PID=$agent_pid APPS=$apps REPLICAS=$replicas \
    node ../../benches/console.mjs)
