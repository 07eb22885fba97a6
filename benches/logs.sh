#!/usr/bin/env bash
# Log ingestion: containers print as fast as they can; sustained lines/s from the engine into
# berth's store (with checkpoints), and the agent's peak RSS meanwhile.
# Usage: benches/logs.sh [CONTAINERS] [LINES_EACH]   (defaults 4 x 500000; needs the engine)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
K=${1:-4}
L=${2:-500000}
start_bench_agent logs
trap stop_bench_agent EXIT
total() { curl -fs "$BERTH_API/metrics" -H "Authorization: Bearer $(cat "$BERTH_TOKEN_FILE")" | awk '/^berth_log_lines_total / {print $2}'; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$AGENT/status; }
printf 'services:\n  spew:\n    image: berth-test/busybox\n    command: ["sh", "-c", "seq 1 %s; exec sleep 100000"]\n    labels:\n      berth.scale: "%s"\n' "$L" "$K" >"$WORK/logs.yml"
want=$((K * L))
"$BERTH" deploy -f "$WORK/logs.yml" --name spew --detach >/dev/null
peak=0; first=""; t_first=0
while :; do
    n=$(total); now=$(date +%s.%N); r=$(rss_kib)
    [ "$r" -gt "$peak" ] && peak=$r
    if [ -z "$first" ] && [ "${n%.*}" -gt 0 ]; then first=${n%.*}; t_first=$now; fi
    [ "${n%.*}" -ge "$want" ] && break
    sleep 0.2
done
t_end=$(date +%s.%N)
awk -v n="$want" -v f="$first" -v a="$t_first" -v b="$t_end" -v p="$peak" -v k="$K" 'BEGIN {
    printf "containers: %d, lines: %d\n", k, n
    printf "stored %d lines in %.1f s after the first: %.0f lines/s\n", n - f, b - a, (n - f) / (b - a)
    printf "agent peak RSS: %.1f MiB\n", p / 1024 }'
# The engine alone: how fast it hands back one container's log (the ceiling for a follower).
id=$(docker ps -q --filter label=berth.app=spew | head -1)
s=$(date +%s.%N); lines=$(curl -s --unix-socket /var/run/docker.sock "http://localhost/containers/$id/logs?stdout=1&timestamps=1" | wc -l); e=$(date +%s.%N)
awk -v n="$lines" -v a="$s" -v b="$e" 'BEGIN { printf "engine log API alone, one container read back: %d lines in %.2f s = %.0f lines/s\n", n, b - a, n / (b - a) }'
