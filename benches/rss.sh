#!/usr/bin/env bash
# Agent idle RSS with 0 and with 50 running containers (target: under 20 MiB).
# Usage: benches/rss.sh   (needs root, the engine, the test image)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_engine; ensure_images
cargo build --release --quiet
BERTH=$PWD/target/release/berth
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH" agent --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --node-name rss 2>"$WORK/agent.log" &
AGENT=$!
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$WORK/data/api.token
cleanup() { "$BERTH" rm rss >/dev/null 2>&1 || true; kill $AGENT 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 50); do curl -fs "$BERTH_API/v1/health" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$AGENT/status; }
sleep 12   # two reconcile ticks
echo "idle, 0 containers:   $(rss)"
printf 'services:\n  web:\n    image: berth-test/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "50"\n' >"$WORK/rss.yml"
"$BERTH" deploy -f "$WORK/rss.yml" --name rss >/dev/null
sleep 12
echo "idle, 50 containers:  $(rss)"
