#!/usr/bin/env bash
# Deploy latency: a 10-service template, from the command to every container running,
# berth vs docker-compose 1.29 on the same engine, same template, same run.
# Usage: benches/deploy.sh [ROUNDS]   (needs root, the engine, the test image)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROUNDS=${1:-5}
ensure_engine; ensure_images; apt_install docker-compose
cargo build --release --quiet
BERTH=$PWD/target/release/berth
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH" agent --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --node-name bench 2>"$WORK/agent.log" &
AGENT=$!
cleanup() {
    kill $AGENT 2>/dev/null || true
    docker ps -aq --filter label=berth.node="$(cat "$WORK/node" 2>/dev/null || echo none)" | xargs -r docker rm -f >/dev/null
    (cd "$WORK" && docker-compose -p benchcompose down -t 1 >/dev/null 2>&1) || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$WORK/data/api.token
for _ in $(seq 50); do curl -fs "$BERTH_API/v1/health" >"$WORK/health" 2>/dev/null && break; sleep 0.1; done
sed -n 's/.*"node_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/health" >"$WORK/node"

{
    echo 'version: "2"'
    echo 'services:'
    for i in $(seq 1 10); do
        printf '  s%s:\n    image: berth-test/busybox:latest\n    command: ["sleep", "3600"]\n    stop_grace_period: 1s\n' "$i"
    done
} >"$WORK/docker-compose.yml"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
berth_times=(); compose_times=()
for r in $(seq 1 "$ROUNDS"); do
    t0=$(now); "$BERTH" deploy -f "$WORK/docker-compose.yml" --name benchberth >/dev/null; t1=$(now)
    berth_times+=("$(echo "$t1 - $t0" | bc)")
    "$BERTH" rm benchberth >/dev/null
    t0=$(now); (cd "$WORK" && docker-compose -p benchcompose up -d >/dev/null 2>&1); t1=$(now)
    running=$(docker ps -q --filter label=com.docker.compose.project=benchcompose | wc -l)
    [ "$running" -eq 10 ] || { echo "compose started $running/10" >&2; exit 1; }
    compose_times+=("$(echo "$t1 - $t0" | bc)")
    (cd "$WORK" && docker-compose -p benchcompose down -t 1 >/dev/null 2>&1)
done
b=$(printf '%s\n' "${berth_times[@]}" | median)
c=$(printf '%s\n' "${compose_times[@]}" | median)
echo "deploy of 10 services to all running, median of $ROUNDS:"
echo "  berth deploy:          ${b}s   (runs: ${berth_times[*]})"
echo "  docker-compose up -d:  ${c}s   (runs: ${compose_times[*]})"
