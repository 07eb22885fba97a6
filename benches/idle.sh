#!/usr/bin/env bash
# What an idle agent costs with N running containers: its own CPU, and the CPU it makes the
# engine (dockerd + containerd + shims) spend, against the engine with the agent stopped.
# Usage: benches/idle.sh [N] [SECONDS]   (needs root and the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
N=${1:-100}
S=${2:-60}
start_bench_agent idle
trap stop_bench_agent EXIT
deploy_idle idle "$N"
sleep 15
ticks() { # PID... -> user+system ticks (1/100 s)
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
engine_pids() { pidof dockerd containerd containerd-shim-runc-v2 2>/dev/null || true; }
# shellcheck disable=SC2046
e0=$(ticks $(engine_pids)); a0=$(ticks "$AGENT"); sleep "$S"
# shellcheck disable=SC2046
e1=$(ticks $(engine_pids)); a1=$(ticks "$AGENT")
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
sleep 5
# shellcheck disable=SC2046
b0=$(ticks $(engine_pids)); sleep "$S"
# shellcheck disable=SC2046
b1=$(ticks $(engine_pids))
pct() { awk -v t="$1" -v s="$S" 'BEGIN { printf "%.2f%%", t / s }'; } # ticks over S s -> % of a core
echo "containers: $N, window: ${S} s"
echo "agent running: the agent $(pct $((a1 - a0))) of a core, the engine $(pct $((e1 - e0)))"
echo "agent stopped: the engine $(pct $((b1 - b0)))"
echo "what the agent costs the engine: $(pct $(((e1 - e0) - (b1 - b0)))) of a core"
