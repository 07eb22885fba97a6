#!/usr/bin/env bash
# The web console's Logs page at about 2,000 lines a second (issue 19: "stays smooth at
# 2,000 lines/s"): a release agent, one container printing 200 lines every 100 ms, the page
# followed in Debian's headless Chromium for 20 s (benches/logs-page.mjs): lines a second
# reaching the page, how far behind it is, frame gaps and long tasks.
# Usage: benches/logs-page.sh   (needs root, the engine and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_engine; ensure_images; ensure_browser
cargo build --release --quiet
BERTH=$PWD/target/release/berth
DIR=$(mktemp -d /tmp/logspageXXXX)
PORT=7992
agent_pid=
cleanup() {
    BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token "$BERTH" rm flood >/dev/null 2>&1 || true
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
"$BERTH" agent --data-dir "$DIR" --listen 127.0.0.1:$PORT --node-name logs-bench >"$DIR/agent.log" 2>&1 &
agent_pid=$!
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token
for _ in $(seq 50); do "$BERTH" apps >/dev/null 2>&1 && break; sleep 0.2; done
cat >"$DIR/flood.yml" <<'YAML'
services:
  flood:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "i=0; while true; do j=0; while [ $$j -lt 200 ]; do echo \"line $$i-$$j of the flood\"; j=$$((j+1)); done; i=$$((i+1)); usleep 100000; done"]
    stop_grace_period: 1s
YAML
"$BERTH" deploy -f "$DIR/flood.yml" --name flood >/dev/null
sleep 15
n=$("$BERTH" logs flood --since 10s --json | wc -l)
log "the container prints and the agent stores $(( n / 10 )) lines/s"
(cd tests/ui && BERTH_URL=http://127.0.0.1:$PORT BERTH_TOKEN=$(cat "$DIR/api.token") node ../../benches/logs-page.mjs)
