#!/usr/bin/env bash
# Deploy latency: a 10-service template, from the command to every container running,
# berth vs docker-compose 1.29 on the same engine, same template, same run.
# Usage: benches/deploy.sh [ROUNDS]   (needs root, the engine, the test image)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROUNDS=${1:-5}
apt_install docker-compose bc
start_bench_agent bench
cleanup() {
    (cd "$WORK" && docker-compose -p benchcompose down -t 1 >/dev/null 2>&1) || true
    stop_bench_agent
}
trap cleanup EXIT

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
