#!/usr/bin/env bash
# Real agents on the multi-host bed (tests/bed/hosts.sh: a network namespace and a dockerd per
# host): agent RSS with 5 members and 50 containers (target: under 20 MiB), 10 containers on
# each host, every host seeing all 50 instance records; then the time until a killed agent is
# lost on all the others and a change on one host is seen on all.
# Usage: benches/multihost.sh [HOSTS] [CONTAINERS_PER_HOST] [one]   (default 5 10; needs root)
#   one: all HOSTS x CONTAINERS_PER_HOST containers on h1, none on the others
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
hosts=${1:-5}
per=${2:-10}
where=${3:-each}
ensure_engine; ensure_images
cargo build --release --quiet
BERTH=$PWD/target/release/berth
DIR=$(mktemp -d /tmp/mhbenchXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash tests/bed/hosts.sh down "$DIR" || true
    rm -rf "$DIR"
}
trap cleanup EXIT
bash tests/bed/hosts.sh up "$DIR" "$hosts" berth-test/idle:latest
. "$DIR/bed.env"
on() { local i=$1; shift; nsenter --net="/run/netns/$BED_NS-h$i" "$@"; }
cli() {
    local i=$1; shift
    on "$i" env BERTH_API=http://127.0.0.1:7878 BERTH_TOKEN_FILE="$DIR/a$i/api.token" "$BERTH" "$@"
}
for i in $(seq 1 "$hosts"); do
    mkdir -p "$DIR/a$i"
    printf '[cluster]\nbind = "%s.%s:7946"\n' "$BED_PREFIX" "$i" >"$DIR/a$i/berth.toml"
    # nsenter execs the agent: $! is the agent's pid.
    nsenter --net="/run/netns/$BED_NS-h$i" "$BERTH" agent --data-dir "$DIR/a$i" --config "$DIR/a$i/berth.toml" \
        --listen 127.0.0.1:7878 --node-name "h$i" --docker-host "unix://$DIR/h$i/d.sock" \
        2>"$DIR/a$i.log" &
    pids+=($!)
done
for i in $(seq 1 "$hosts"); do
    for _ in $(seq 100); do cli "$i" apps >/dev/null 2>&1 && break; sleep 0.1; done
done
cli 1 cluster init >/dev/null
for i in $(seq 2 "$hosts"); do
    cli "$i" cluster join "$(cli 1 cluster token create --uses 1)" >/dev/null
done
total=$((hosts * per))
if [ "$where" = one ]; then
    printf 'services:\n  idle:\n    image: berth-test/idle\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "%s"\n' "$total" >"$DIR/idle.yml"
    cli 1 deploy -f "$DIR/idle.yml" --name idle1 --detach >/dev/null
    per=$total
else
    printf 'services:\n  idle:\n    image: berth-test/idle\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "%s"\n' "$per" >"$DIR/idle.yml"
    for i in $(seq 1 "$hosts"); do
        cli "$i" deploy -f "$DIR/idle.yml" --name "idle$i" --detach >/dev/null
    done
fi
for _ in $(seq 300); do
    n=$(cli 1 ps --json 2>/dev/null | grep -c '"state": "running"' || true)
    [ "$n" -ge "$total" ] && break
    sleep 1
done
echo "$hosts members, $total containers ($where: $per a host), each host lists $(cli "$hosts" ps --json | grep -c '"state": "running"') running instances"
sleep 30   # settle: a few passes, collection cycles and publishes
for i in $(seq 1 "$hosts"); do
    st=/proc/${pids[$((i-1))]}/status
    echo "h$i ($(cat "/proc/${pids[$((i-1))]}/comm")): RSS $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "$st"), peak $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "$st")"
done
# A change on h1 seen on every other host.
start=$(date +%s.%N)
cli 1 scale idle1 "idle=$((per - 1))" >/dev/null
for i in $(seq 2 "$hosts"); do
    until [ "$(cli "$i" ps --json | grep -c '"name": "idle1_')" -eq "$((per - 1))" ]; do sleep 0.05; done
done
echo "a scale on h1 listed right on all $hosts hosts after $(echo "$(date +%s.%N) - $start" | bc) s"
# h$hosts's agent killed: lost on all the others.
kill -9 "${pids[$((hosts-1))]}"
start=$(date +%s.%N)
for i in $(seq 1 $((hosts - 1))); do
    until cli "$i" nodes --json | tr -d ' \n' | grep -q "\"name\":\"h$hosts\",[^}]*\"state\":\"lost\""; do sleep 0.1; done
done
echo "h$hosts killed: lost on all others after $(echo "$(date +%s.%N) - $start" | bc) s"
