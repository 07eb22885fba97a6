#!/usr/bin/env bash
# Router throughput and latency, side by side in one run:
#   direct  - wrk straight to the backend
#   nginx   - wrk -> nginx (Debian) reverse proxy, keep-alive upstream -> the backend
#   berth   - wrk -> berth's HTTP router -> the same backend
#   nginx+log - the same nginx proxy writing its access log (combined, buffered)
#   berth+log - the same through a second agent's router with `[router] access_log = true`
#             (a line per request stored in the log store), to show what the access log costs
# The backend is nginx answering a small fixed response (busybox httpd forks per connection
# and would be the bottleneck). berth reaches it as a host-network service, the way it
# reaches any host-network instance (127.0.0.1:port). wrk: keep-alive, 64 connections.
# Both proxies add the same X-Forwarded-* headers.
#
# Run: benches/router.sh            (BENCH_SECONDS=10 per measurement, BENCH_ROUNDS=3)
# Prints one line per measurement and a summary (median round); CPU% is of one core. Last, each
# path's one-connection p99 per round, and whether a logging proxy's median round lies within
# the plain one's rounds (the noise the access log's cost is judged against).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v nginx >/dev/null 2>&1 || apt_install nginx
SECONDS_EACH=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ROUTER=$(free_port)
start_bench_agent bench-router --router-http "127.0.0.1:$ROUTER"
BACKEND=$(free_port)
PROXY=$(free_port)

nginx_conf() { # $1 name, $2 workers, $3 server block
    mkdir -p "$WORK/$1"
    cat >"$WORK/$1/nginx.conf" <<EOF
worker_processes $2;
daemon on;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/$1/body;
    proxy_temp_path $WORK/$1/proxy;
    fastcgi_temp_path $WORK/$1/fastcgi;
    uwsgi_temp_path $WORK/$1/uwsgi;
    scgi_temp_path $WORK/$1/scgi;
    keepalive_requests 10000000;
    $3
}
EOF
    nginx -p "$WORK/$1" -c "$WORK/$1/nginx.conf" -e "$WORK/$1/error.log"
}
nginx_conf backend 1 "server { listen 127.0.0.1:$BACKEND; location / { return 200 \"hello from the backend\n\"; } }"
nginx_conf proxy auto "upstream be { server 127.0.0.1:$BACKEND; keepalive 128; }
    server { listen 127.0.0.1:$PROXY; location / {
        proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header X-Forwarded-Host \$host; } }"
# The same proxy writing its access log (combined format, buffered as berth batches its own).
PROXY_LOG=$(free_port)
nginx_conf proxylog auto "upstream be { server 127.0.0.1:$BACKEND; keepalive 128; }
    server { listen 127.0.0.1:$PROXY_LOG;
        access_log $WORK/proxylog/access.log combined buffer=64k flush=1s;
        location / {
        proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header X-Forwarded-Host \$host; } }"
# A second agent whose router writes the access log.
ROUTER_LOG=$(free_port)
API_LOG=$(free_port)
printf '[router]\naccess_log = true\n' >"$WORK/log.toml"
"$BERTH" agent --config "$WORK/log.toml" --data-dir "$WORK/data-log" --listen "127.0.0.1:$API_LOG" \
    --node-name bench-router-log --router-http "127.0.0.1:$ROUTER_LOG" 2>"$WORK/agent-log.log" &
AGENT_LOG=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$API_LOG/v1/health" >"$WORK/health-log" 2>/dev/null && break; sleep 0.1; done
NODE_LOG=$(sed -n 's/.*"node_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/health-log")
cleanup() {
    for n in backend proxy proxylog; do [ -f "$WORK/$n/nginx.pid" ] && kill "$(cat "$WORK/$n/nginx.pid")" 2>/dev/null || true; done
    kill "$AGENT_LOG" 2>/dev/null || true
    docker ps -aq --filter label=berth.node="${NODE_LOG:-none}" | xargs -r docker rm -f >/dev/null
    stop_bench_agent
}
trap cleanup EXIT

cat >"$WORK/app.yml" <<EOF
services:
  backend:
    image: berth-test/idle:latest
    network_mode: host
    labels:
      berth.routing.port_$BACKEND: bench.example.com
EOF
"$BERTH" deploy -f "$WORK/app.yml" --name routerbench --timeout 60 >/dev/null
# Another app name: both agents share the engine, and container names are the engine's.
BERTH_API=http://127.0.0.1:$API_LOG BERTH_TOKEN_FILE=$WORK/data-log/api.token \
    "$BERTH" deploy -f "$WORK/app.yml" --name routerlog --timeout 60 >/dev/null
# (Not a .local name: those are the apps' internal routes, not served on public listeners.)
for r in "$ROUTER" "$ROUTER_LOG"; do
    code=
    for _ in $(seq 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.example.com' "http://127.0.0.1:$r/")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "the router on :$r answers $code, not 200" >&2; exit 1; }
done

TCK=$(getconf CLK_TCK)
cpu_ticks() { # summed utime+stime of the given pids
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
# measure NAME PORT PIDS... -> "rps p50_ms p99_ms cpu%"  (CONNS connections, default 64)
measure() {
    local name=$1 port=$2; shift 2
    local conns=${CONNS:-64} threads=2
    [ "$conns" -ge 2 ] || threads=1
    wrk -t$threads -c"$conns" -d2s -H 'Host: bench.example.com' "http://127.0.0.1:$port/" >/dev/null
    local before out
    before=$(cpu_ticks "$@")
    out=$(wrk -t$threads -c"$conns" -d"${SECONDS_EACH}s" --latency -H 'Host: bench.example.com' "http://127.0.0.1:$port/")
    local cpu
    cpu=$(( ( $(cpu_ticks "$@") - before ) * 100 / (TCK * SECONDS_EACH) ))
    local errors
    errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print; exit}')
    [ -z "$errors" ] || echo "warning: $name: $errors" >&2
    echo "$out" | awk -v cpu="$cpu" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, cpu }'
}

BACKEND_PID=$(pgrep -P "$(cat "$WORK/backend/nginx.pid")" | head -1)
PROXY_PIDS=$(pgrep -P "$(cat "$WORK/proxy/nginx.pid")" | tr '\n' ' ')
PROXY_LOG_PIDS=$(pgrep -P "$(cat "$WORK/proxylog/nginx.pid")" | tr '\n' ' ')
echo "router bench: $(nproc) CPUs, wrk -t2 -c64 keep-alive, ${SECONDS_EACH}s x $ROUNDS rounds"
declare -A RESULTS
for r in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    for target in "direct $BACKEND $BACKEND_PID" "nginx $PROXY $PROXY_PIDS" "nginx+log $PROXY_LOG $PROXY_LOG_PIDS" "berth $ROUTER $AGENT" "berth+log $ROUTER_LOG $AGENT_LOG"; do
        set -- $target
        line=$(measure "$@")
        RESULTS[$1]+="$line"$'\n'
        printf 'round %d %-7s rps=%s p50=%sms p99=%sms cpu=%s%%\n' "$r" "$1" $line
    done
done

median() { printf '%s' "${RESULTS[$1]}" | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
read -r d_rps d_p50 d_p99 d_cpu <<<"$(median direct)"
read -r n_rps n_p50 n_p99 n_cpu <<<"$(median nginx)"
read -r m_rps m_p50 m_p99 m_cpu <<<"$(median nginx+log)"
read -r b_rps b_p50 b_p99 b_cpu <<<"$(median berth)"
read -r g_rps g_p50 g_p99 g_cpu <<<"$(median berth+log)"
echo
echo "| path | requests/s | p50 ms | p99 ms | p99 added ms | proxy CPU% |"
echo "|---|---|---|---|---|---|"
printf '| direct to backend | %s | %s | %s | - | - |\n' "$d_rps" "$d_p50" "$d_p99"
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
printf '| nginx reverse proxy | %s | %s | %s | %s | %s |\n' "$n_rps" "$n_p50" "$n_p99" "$(calc "$n_p99 - $d_p99")" "$n_cpu"
printf '| nginx, access log on | %s | %s | %s | %s | %s |\n' "$m_rps" "$m_p50" "$m_p99" "$(calc "$m_p99 - $d_p99")" "$m_cpu"
printf '| berth router | %s | %s | %s | %s | %s |\n' "$b_rps" "$b_p50" "$b_p99" "$(calc "$b_p99 - $d_p99")" "$b_cpu"
printf '| berth router, access log on | %s | %s | %s | %s | %s |\n' "$g_rps" "$g_p50" "$g_p99" "$(calc "$g_p99 - $d_p99")" "$g_cpu"
printf '\nberth / nginx requests/s: %s%% (target >= 80%%)\n' "$(calc "$b_rps * 100 / $n_rps")"
printf 'nginx with / without its access log, requests/s: %s%%\n' "$(calc "$m_rps * 100 / $n_rps")"
access_counts=$(curl -s -H "Authorization: Bearer $(cat "$WORK/data-log/api.token")" "http://127.0.0.1:$API_LOG/metrics")
printf 'berth with / without the access log, requests/s: %s%%; lines stored: %s, dropped: %s\n' "$(calc "$g_rps * 100 / $b_rps")" \
    "$(echo "$access_counts" | awk '/^berth_router_access_log_lines_total/ {print $2}')" \
    "$(echo "$access_counts" | awk '/^berth_router_access_log_dropped_total/ {print $2}')"

# Latency a proxy adds when the CPUs are not saturated: one connection, one request at a time,
# the paths taken in turn for ROUNDS rounds (a p99 from one 10 s run scatters by ~0.2 ms), the
# median round shown.
echo
echo "one connection (latency added by each hop, CPUs not saturated; median of $ROUNDS rounds):"
declare -A ONE
for r in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    for target in "direct $BACKEND $BACKEND_PID" "nginx $PROXY $PROXY_PIDS" "nginx+log $PROXY_LOG $PROXY_LOG_PIDS" "berth $ROUTER $AGENT" "berth+log $ROUTER_LOG $AGENT_LOG"; do
        set -- $target
        line=$(CONNS=1 measure "$@")
        ONE[$1]+="$line"$'\n'
        printf 'round %d %-9s one connection: rps=%s p50=%sms p99=%sms cpu=%s%%\n' "$r" "$1" $line
    done
done
# The median round by p99 (the figure this table is for).
median_p99() { printf '%s' "${ONE[$1]}" | sort -n -k3 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
echo "| path | requests/s | p50 ms | p99 ms | p50 added ms | p99 added ms |"
echo "|---|---|---|---|---|---|"
read -r l_rps l_p50 l_p99 _ <<<"$(median_p99 direct)"
printf '| direct to backend | %s | %s | %s | - | - |\n' "$l_rps" "$l_p50" "$l_p99"
for name in nginx nginx+log berth berth+log; do
    read -r x_rps x_p50 x_p99 _ <<<"$(median_p99 "$name")"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$x_rps" "$x_p50" "$x_p99" "$(calc "$x_p50 - $l_p50")" "$(calc "$x_p99 - $l_p99")"
done
# The access log's cost against the noise: each path's p99 over the rounds, and whether the
# logging proxy's median round lies within the plain one's rounds.
p99s() { printf '%s' "${ONE[$1]}" | awk '{print $3}' | sort -n | paste -sd' '; }
verdict() { # PLAIN LOGGING
    local m
    m=$(median_p99 "$2" | awk '{print $3}')
    p99s "$1" | awk -v a="$1" -v b="$2" -v m="$m" '{
        if (m <= $NF) printf "%s: median p99 %.3f ms, within %s'\''s rounds (%.3f-%.3f)\n", b, m, a, $1, $NF
        else printf "%s: median p99 %.3f ms, %.3f ms above %s'\''s slowest round (%.3f-%.3f)\n", b, m, m - $NF, a, $1, $NF }'
}
echo
echo "one connection p99 per round (ms): nginx $(p99s nginx); nginx+log $(p99s nginx+log); berth $(p99s berth); berth+log $(p99s berth+log)"
verdict nginx nginx+log
verdict berth berth+log
