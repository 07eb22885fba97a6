#!/usr/bin/env bash
# Collection cost per cycle for 100 running containers: berth's cgroup collector vs the
# engine's stats API (one-shot, per container), same run, same containers.
# Usage: benches/collect.sh [N]   (needs root and the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
N=${1:-100}
start_bench_agent collect
trap stop_bench_agent EXIT
deploy_idle collect "$N"
sleep 5
# The agent only deploys: stopped, its own loops do not load the engine while measuring.
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
BENCH_APP=collect cargo bench --quiet --bench collect
