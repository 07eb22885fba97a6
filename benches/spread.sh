#!/usr/bin/env bash
# Cluster II on the multi-host bed (tests/bed/hosts.sh: a network namespace and a dockerd per
# host), berth beside Docker Swarm mode on the same hosts in the same run:
#  1. a deploy of 30 replicas of a probed web service over 3 hosts, from the command to all
#     30 running, healthy and answering through the routers (berth: its router on every
#     host; Swarm: its ingress routing mesh);
#  2. a host lost (its agent killed and its engine stopped; for Swarm its engine stopped):
#     the time until its instances run healthy on the other hosts, from the moment it went
#     down and, for berth, from the moment the others declared it lost (berth moves only
#     services that ask for it, after `[cluster] reschedule_after`, here GRACE seconds).
# Usage: benches/spread.sh [GRACE]   (default 10; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
grace=${1:-10}
hosts=3
replicas=30
ensure_engine; ensure_images
cargo build --release --quiet
BERTH=$PWD/target/release/berth
DIR=$(mktemp -d /tmp/spreadXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    bash tests/bed/hosts.sh down "$DIR" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
bash tests/bed/hosts.sh up "$DIR" "$hosts" berth-test/busybox:latest >/dev/null
. "$DIR/bed.env"
on() { local i=$1; shift; nsenter --net="/run/netns/$BED_NS-h$i" "$@"; }
dk() { local i=$1; shift; docker -H "unix://$DIR/h$i/d.sock" "$@"; }
cli() {
    local i=$1; shift
    on "$i" env BERTH_API=http://127.0.0.1:7878 BERTH_TOKEN_FILE="$DIR/a$i/api.token" "$BERTH" "$@"
}
now() { date +%s.%N; }
since() { echo "scale=2; ($(now) - $1) / 1" | bc; }
# Distinct answers of /id through ADDR (Host header HOST) over N requests.
distinct() {
    local addr=$1 host=$2 n=$3
    for _ in $(seq "$n"); do
        curl -s -m 2 -H "Host: $host" "http://$addr/id" || true
        echo
    done | grep -v '^$' | sort -u | wc -l
}
WEB='hostname > /www/id; exec httpd -f -p 8080 -h /www'

echo "== berth: $hosts hosts, $replicas replicas"
start_agent() {
    local i=$1
    nsenter --net="/run/netns/$BED_NS-h$i" "$BERTH" agent --data-dir "$DIR/a$i" \
        --config "$DIR/a$i/berth.toml" --listen 127.0.0.1:7878 --node-name "h$i" \
        --docker-host "unix://$DIR/h$i/d.sock" 2>>"$DIR/a$i.log" &
    pids[$((i - 1))]=$!
}
for i in $(seq 1 "$hosts"); do
    mkdir -p "$DIR/a$i"
    printf '[cluster]\nbind = "%s.%s:7946"\nreschedule_after = "%ss"\n[router]\nhttp = "%s.%s:8080"\ndomain = "test.local"\n' \
        "$BED_PREFIX" "$i" "$grace" "$BED_PREFIX" "$i" >"$DIR/a$i/berth.toml"
    start_agent "$i"
done
for i in $(seq 1 "$hosts"); do
    for _ in $(seq 100); do cli "$i" apps >/dev/null 2>&1 && break; sleep 0.1; done
done
cli 1 cluster init >/dev/null
for i in $(seq 2 "$hosts"); do
    cli "$i" cluster join "$(cli 1 cluster token create --uses 1)" >/dev/null
done
until [ "$(cli 1 nodes --json | grep -c '"agent": "[0-9]')" -eq "$hosts" ]; do sleep 0.2; done
cat >"$DIR/web.yml" <<EOF
services:
  web:
    image: berth-test/busybox:latest
    command: ["sh", "-c", "$WEB"]
    stop_grace_period: 1s
    environment:
      - reschedule:on-node-failure
    labels:
      berth.scale: "$replicas"
      berth.probe.url: http://container:8080/id
      berth.routing.port_8080: web.test.local
EOF
t=$(now)
cli 1 deploy -f "$DIR/web.yml" --name web --timeout 300 >/dev/null
ran=$(since "$t")
until [ "$(distinct "$BED_PREFIX.2:8080" web.test.local $((replicas * 3)))" -ge "$replicas" ]; do :; done
echo "berth: deploy of $replicas over $hosts hosts: all running and healthy in $ran s, all answering through h2's router at $(since "$t") s"
for i in $(seq 1 "$hosts"); do
    echo "  h$i runs $(dk "$i" ps -q --filter label=berth.app=web | wc -l)"
done
healthy_off() {
    cli 1 ps web --json | tr -d ' \n' | grep -o '"node":"h[12]"[^}]*"health":"healthy"' | wc -l
}
# The clock starts as the host goes down: its agent killed, then its engine stopped (which
# stops its containers first, as a shutdown does).
t=$(now)
kill -9 "${pids[2]}"
bash tests/bed/hosts.sh stop-engine "$DIR" h3
until cli 1 nodes --json | tr -d ' \n' | grep -q '"name":"h3",[^}]*"state":"lost"'; do sleep 0.1; done
lost=$(since "$t")
tl=$(now)
until [ "$(healthy_off)" -ge "$replicas" ]; do sleep 0.2; done
echo "berth: h3 down -> lost in $lost s; -> all $replicas healthy on h1 and h2 at $(since "$t") s (grace $grace s; $(since "$tl") s after it was lost)"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
bash tests/bed/hosts.sh start-engine "$DIR" h3 >/dev/null
for i in $(seq 1 "$hosts"); do
    ids=$(dk "$i" ps -aq --filter label=berth.app=web)
    [ -z "$ids" ] || dk "$i" rm -f $ids >/dev/null
done

echo "== Docker Swarm mode on the same hosts ($(dk 1 version --format '{{.Server.Version}}'))"
if ! dk 1 swarm init --advertise-addr "$BED_PREFIX.1" --listen-addr "$BED_PREFIX.1:2377" >/dev/null 2>"$DIR/swarm.err"; then
    echo "swarm: does not start here: $(cat "$DIR/swarm.err")"
    exit 0
fi
tok=$(dk 1 swarm join-token -q worker)
for i in $(seq 2 "$hosts"); do
    dk "$i" swarm join --token "$tok" --advertise-addr "$BED_PREFIX.$i" "$BED_PREFIX.1:2377" >/dev/null
done
t=$(now)
if ! dk 1 service create --name web --replicas "$replicas" --publish 8081:8080 \
    --no-resolve-image --stop-grace-period 1s \
    --health-cmd 'wget -q -O- http://127.0.0.1:8080/id' --health-interval 2s --health-start-period 1s \
    berth-test/busybox:latest sh -c "$WEB" >/dev/null 2>"$DIR/svc.err"; then
    echo "swarm: service create failed: $(tail -3 "$DIR/svc.err")"
    exit 0
fi
ran=$(since "$t")
routed=""
for _ in $(seq 60); do
    if [ "$(distinct "$BED_PREFIX.2:8081" x $((replicas * 3)))" -ge "$replicas" ]; then routed=$(since "$t"); break; fi
done
echo "swarm: service create of $replicas over $hosts hosts: converged (running, healthy) in $ran s, all answering through h2's routing mesh at ${routed:-never (the ingress mesh does not route on this bed)} s"
for i in $(seq 1 "$hosts"); do
    echo "  h$i runs $(dk "$i" ps -q --filter label=com.docker.swarm.service.name=web | wc -l)"
done
swarm_healthy_off() {
    echo $(( $(dk 1 ps -q --filter label=com.docker.swarm.service.name=web --filter health=healthy | wc -l)
           + $(dk 2 ps -q --filter label=com.docker.swarm.service.name=web --filter health=healthy | wc -l) ))
}
t=$(now)
bash tests/bed/hosts.sh stop-engine "$DIR" h3
until dk 1 node ls --format '{{.Hostname}} {{.Status}}' | grep -q 'Down'; do sleep 0.1; done
lost=$(since "$t")
until [ "$(swarm_healthy_off)" -ge "$replicas" ]; do sleep 0.2; done
echo "swarm: h3 down -> Down in $lost s; -> all $replicas healthy on h1 and h2 at $(since "$t") s"
dk 1 service rm web >/dev/null || true
