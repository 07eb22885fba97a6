#!/usr/bin/env bash
# Cold start from zero through the router, beside the engine's own floor, in one run:
#  1. berth: a small HTTP service (busybox httpd, http probe) scaled to zero; a request
#     through the router, timed to its first byte; CYCLES times (p50, p99);
#  2. `docker start` of an equivalent stopped container, timed until it answers HTTP;
#  3. `docker run` of the image, timed until it answers HTTP (the floor with a create).
# berth's own share is its time minus the `docker start` one (same engine, same image).
# Usage: benches/coldstart.sh [CYCLES]   (default 20; needs root and the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
cycles=${1:-20}
ensure_engine; ensure_images
cargo build --release --quiet
BERTH=$PWD/target/release/berth
DIR=$(mktemp -d /tmp/coldXXXX)
PORT=7996
ROUTER=18996
agent_pid=
cleanup() {
    BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token "$BERTH" rm cold >/dev/null 2>&1 || true
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
    docker rm -f coldbench-start coldbench-run >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
cat >"$DIR/berth.toml" <<TOML
[router]
http = "127.0.0.1:$ROUTER"
TOML
"$BERTH" agent --config "$DIR/berth.toml" --data-dir "$DIR" --listen 127.0.0.1:$PORT --node-name cold-bench >"$DIR/agent.log" 2>&1 &
agent_pid=$!
export BERTH_API=http://127.0.0.1:$PORT BERTH_TOKEN_FILE=$DIR/api.token
for _ in $(seq 50); do "$BERTH" apps >/dev/null 2>&1 && break; sleep 0.2; done
CMD='echo hello > /www/index.html; exec httpd -f -p 8080 -h /www'
cat >"$DIR/app.yml" <<YAML
services:
  web:
    image: berth-test/busybox:latest
    command: sh -c '$CMD'
    stop_grace_period: 1s
    labels:
      berth.probe.url: http://container:8080/index.html
      berth.routing.port_8080: cold.bench
      berth.auto_scaling.min_instances: "0"
      berth.auto_scaling.max_instances: "1"
YAML
"$BERTH" deploy -f "$DIR/app.yml" --name cold >/dev/null

# Milliseconds from now until `curl` gets a first byte from URL (with Host header H).
first_byte_ms() {
    curl -s -o /dev/null -H "Host: $2" -w '%{time_starttransfer}' --max-time 60 "$1" |
        awk '{printf "%d", $1 * 1000}'
}
# Milliseconds from before CMD... until http://IP:8080/ answers.
until_answers_ms() {
    local start ip
    start=$(date +%s%N)
    "$@" >/dev/null
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${NAME}")
    until curl -s -o /dev/null --max-time 1 "http://$ip:8080/index.html"; do sleep 0.005; done
    echo $((($(date +%s%N) - start) / 1000000))
}
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; print a[i]}'; }

log "berth: $cycles cold starts through the router"
: >"$DIR/berth.ms"
for _ in $(seq "$cycles"); do
    "$BERTH" scale cold web=0 >/dev/null
    for _ in $(seq 200); do
        [ -z "$(docker ps -q --filter label=berth.app=cold)" ] && break
        sleep 0.1
    done
    sleep 1
    first_byte_ms "http://127.0.0.1:$ROUTER/" cold.bench >>"$DIR/berth.ms"
    echo >>"$DIR/berth.ms"
done

# The router's own share: its wait after the instance turned ready (from the agent's
# events), plus what a warm request costs through it over going to the instance directly.
grep -ho 'held [0-9]* ms, [0-9]* µs of it in the router' "$DIR/agent.log" |
    awk '{print $4}' >"$DIR/after_ready.us"
c=$(docker ps -q --filter label=berth.app=cold | head -1)
direct=$(docker port "$c" 8080/tcp | head -1)
warm() { for _ in $(seq 200); do curl -s -o /dev/null -w '%{time_starttransfer}\n' "$@"; done | awk '{print int($1 * 1000000)}' | pct 50; }
w_router=$(warm -H 'Host: cold.bench' "http://127.0.0.1:$ROUTER/index.html")
w_direct=$(warm "http://$direct/index.html")

log "docker start of a stopped equivalent container, $cycles times"
NAME=coldbench-start
docker create --name $NAME berth-test/busybox:latest sh -c "$CMD" >/dev/null
: >"$DIR/start.ms"
for _ in $(seq "$cycles"); do
    docker stop -t 1 $NAME >/dev/null
    until_answers_ms docker start $NAME >>"$DIR/start.ms"
done
docker rm -f $NAME >/dev/null

log "docker run of the image, $cycles times"
NAME=coldbench-run
: >"$DIR/run.ms"
for _ in $(seq "$cycles"); do
    docker rm -f $NAME >/dev/null 2>&1 || true
    until_answers_ms docker run -d --name $NAME berth-test/busybox:latest sh -c "$CMD" >>"$DIR/run.ms"
done
docker rm -f $NAME >/dev/null

b50=$(grep . "$DIR/berth.ms" | pct 50); b99=$(grep . "$DIR/berth.ms" | pct 99)
s50=$(pct 50 <"$DIR/start.ms"); s99=$(pct 99 <"$DIR/start.ms")
r50=$(pct 50 <"$DIR/run.ms"); r99=$(pct 99 <"$DIR/run.ms")
echo
echo "| cold start ($cycles cycles) | p50 ms | p99 ms |"
echo "|---|---|---|"
echo "| berth: request through the router to first byte, from zero instances | $b50 | $b99 |"
echo "| docker start of a stopped container until it answers | $s50 | $s99 |"
echo "| docker run of the image until it answers | $r50 | $r99 |"
echo "| berth's share (berth - docker run: the count stored, a pass, the probe's 200 ms cadence, the table) | $((b50 - r50)) | $((b99 - r99)) |"
a50=$(pct 50 <"$DIR/after_ready.us"); a99=$(pct 99 <"$DIR/after_ready.us")
echo
echo "| the router's own share | p50 µs | p99 µs |"
echo "|---|---|---|"
echo "| a held request, from the table swap that made the instance ready to its pick | $a50 | $a99 |"
echo "| a warm request's first byte through the router, less direct to the instance (p50 of 200) | $((w_router - w_direct)) | |"
grep -h "cold start of cold/web: the first request" "$DIR/agent.log" | tail -3 || true
