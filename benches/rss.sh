#!/usr/bin/env bash
# Agent idle RSS with 0 and with 50 running containers (target: under 20 MiB).
# Usage: benches/rss.sh   (needs root, the engine, the test image)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
start_bench_agent rss
trap stop_bench_agent EXIT
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/$AGENT/status; }
sleep 12   # two reconcile ticks
echo "idle, 0 containers:   $(rss)"
printf 'services:\n  web:\n    image: berth-test/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "50"\n' >"$WORK/rss.yml"
"$BERTH" deploy -f "$WORK/rss.yml" --name rss >/dev/null
sleep 12
echo "idle, 50 containers:  $(rss)"
