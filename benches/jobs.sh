#!/usr/bin/env bash
# Jobs (issue 21), in one run:
#  1. Scheduling precision: a job on a 1-second schedule (`* * * * * *`, its task `true`)
#     runs RUNS times; lateness = when the run started minus its due time (p50, p99, max).
#     Beside it, in the same run, a plain `sleep 1` loop (what a shell "cron" does): its
#     lateness is each iteration's time minus (first + i seconds).
#  2. JOBS cron jobs registered (a schedule far from now), the agent idle for 60 s: its CPU
#     (percent of one core) and RSS.
# Usage: benches/jobs.sh [RUNS] [JOBS]   (default 100 and 1000; needs root and the engine)
# The agent measured is the binary users install: the packaged one (glibc-static, profile
# dist), built as scripts/package builds it; BERTH_BIN=PATH measures another.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
runs=${1:-100}
njobs=${2:-1000}
ensure_engine; ensure_images
if [ -z "${BERTH_BIN:-}" ]; then
    TARGET=x86_64-unknown-linux-gnu
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --profile dist --target "$TARGET" --locked --bin berth --quiet
    BERTH_BIN=$PWD/target/$TARGET/dist/berth
fi
BERTH=$BERTH_BIN
if ldd "$BERTH" 2>&1 | grep -qE "statically linked|not a dynamic executable"; then
    echo "agent: $BERTH (static)"
else
    echo "agent: $BERTH (dynamic)"
fi
DIR=$(mktemp -d /tmp/jobsXXXX)
PORT=7993
agent_pid=
node=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    sleep 1
    docker ps -aq --filter label=berth.app=tick | xargs -r docker rm -f >/dev/null 2>&1 || true
    # Each app has its network: a thousand left behind would use up the engine's address pools.
    if [ -n "$node" ]; then
        docker ps -aq --filter label=berth.node="$node" | xargs -r docker rm -f >/dev/null 2>&1 || true
        docker network ls -q --filter label=berth.node="$node" | xargs -r docker network rm >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}
trap cleanup EXIT
# A run killed outright (SIGKILL skips the trap) leaves its containers: this file names its node.
STALE=/tmp/berth-jobs-bench.node
if [ -s "$STALE" ]; then
    old=$(cat "$STALE")
    docker ps -aq --filter label=berth.node="$old" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network ls -q --filter label=berth.node="$old" | xargs -r docker network rm >/dev/null 2>&1 || true
fi
: >"$DIR/berth.toml"
"$BERTH" agent --config "$DIR/berth.toml" --data-dir "$DIR" --listen 127.0.0.1:$PORT --node-name jobs-bench >"$DIR/agent.log" 2>&1 &
agent_pid=$!
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token
for _ in $(seq 50); do "$BERTH" apps >/dev/null 2>&1 && break; sleep 0.2; done
node=$(curl -fs "$BERTH_API/v1/health" | sed -n 's/.*"node_id": *"\([0-9a-f]*\)".*/\1/p')
[ -n "$node" ] && echo "$node" >"$STALE"

pct() { # FILE P -> the P-th percentile of the numbers in FILE (one per line)
    sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; print a[i]}'
}

if [ "$runs" -gt 0 ]; then
echo "== 1. lateness of $runs runs of a 1-second schedule"
cat >"$DIR/tick.yml" <<YAML
labels:
  aliyun.project_type: batch
  aliyun.schedule: "* * * * * *"
  aliyun.schedule.history: "100"
services:
  tick:
    image: berth-test/busybox:latest
    command: ["true"]
YAML
"$BERTH" deploy -f "$DIR/tick.yml" --name tick >/dev/null
# The sleep loop, at the same time, on the same host.
( t0=$(date +%s%N); for i in $(seq 0 $((runs - 1))); do
    now=$(date +%s%N); echo $(( (now - t0) / 1000000 - i * 1000 )); sleep 1
  done >"$DIR/sleep.txt" ) &
loop_pid=$!
until [ "$("$BERTH" runs tick --json | jq '[.[] | select(.state == "finished")] | length')" -ge "$runs" ]; do
    sleep 2
done
wait "$loop_pid"
"$BERTH" job suspend tick >/dev/null
"$BERTH" runs tick --json | jq -r '.[] | select(.state == "finished") | .started_ms - .due_ms' | head -n "$runs" >"$DIR/berth.txt"
waited=$("$BERTH" runs tick --json | jq '[.[] | select(.state == "finished" and (.started_ms - .due_ms) > 900)] | length')
printf '%-28s %8s %8s %8s\n' "" "p50 ms" "p99 ms" "max ms"
printf '%-28s %8s %8s %8s\n' "berth (run start - due)" "$(pct "$DIR/berth.txt" 50)" "$(pct "$DIR/berth.txt" 99)" "$(pct "$DIR/berth.txt" 100)"
printf '%-28s %8s %8s %8s\n' "sleep 1 loop (drift)" "$(pct "$DIR/sleep.txt" 50)" "$(pct "$DIR/sleep.txt" 99)" "$(pct "$DIR/sleep.txt" 100)"
echo "(berth runs that waited behind the previous one, over 900 ms: $waited)"
"$BERTH" rm tick >/dev/null
fi

echo "== 2. $njobs cron jobs registered, agent idle"
start=$(date +%s)
for i in $(seq 1 "$njobs"); do
    cat >"$DIR/c.yml" <<YAML
labels:
  aliyun.project_type: batch
  aliyun.schedule: "0 $((i % 60)) 3 * * *"
services:
  task:
    image: berth-test/busybox:latest
    command: ["true"]
YAML
    "$BERTH" deploy -f "$DIR/c.yml" --name "cron$i" >/dev/null
done
echo "registered in $(( $(date +%s) - start )) s; $("$BERTH" jobs --json | jq length) jobs listed"
sleep 10
clk=$(getconf CLK_TCK)
t1=$(awk '{print $14 + $15}' /proc/$agent_pid/stat)
sleep 60
t2=$(awk '{print $14 + $15}' /proc/$agent_pid/stat)
rss=$(awk '/VmRSS/ {print $2}' /proc/$agent_pid/status)
awk -v a="$t1" -v b="$t2" -v c="$clk" 'BEGIN {printf "idle CPU: %.2f%% of one core over 60 s\n", (b - a) / c / 60 * 100}'
awk -v r="$rss" 'BEGIN {printf "RSS: %.1f MiB\n", r / 1024}'
# Where it goes: anonymous memory (heap, stacks) against mapped files (the binary's text).
awk '/^Rss(Anon|File|Shmem):/ {printf "%s %.1f MiB  ", $1, $2 / 1024} END {print ""}' /proc/$agent_pid/status
# One command wakes every loop once (the jobs re-read, a reconcile pass): still idle after.
"$BERTH" job run cron1 >/dev/null
sleep 5
t3=$(awk '{print $14 + $15}' /proc/$agent_pid/stat)
sleep 30
t4=$(awk '{print $14 + $15}' /proc/$agent_pid/stat)
awk -v a="$t3" -v b="$t4" -v c="$clk" 'BEGIN {printf "after a command, idle CPU: %.2f%% of one core over 30 s\n", (b - a) / c / 30 * 100}'
awk -v r="$(awk '/VmRSS/ {print $2}' /proc/$agent_pid/status)" 'BEGIN {printf "RSS: %.1f MiB\n", r / 1024}'
