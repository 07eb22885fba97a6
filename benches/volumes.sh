#!/usr/bin/env bash
# oss volume throughput and mount time: sequential write then read of a file (256 MiB by
# default) through an oss volume berth mounted (from inside a container, and on the host),
# side by side with s3fs mounted by hand with the same options, against one local S3 API
# server (moto). Page caches are dropped before each read.
# Usage: benches/volumes.sh [MIB]   (needs the engine, s3fs and moto: scripts/test installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
MIB=${1:-256}
ensure_volume_tools
MOTO=${BERTH_MOTO:-$HOME/.cache/berth-test/moto/bin/moto_server}
start_bench_agent volumes
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOTO" -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
HAND=$WORK/hand
cleanup() {
    "$BERTH" rm volb --volumes >/dev/null 2>&1 || true
    umount -l "$HAND" 2>/dev/null || true
    grep -o " $WORK/data/volumes/[^ ]*" /proc/self/mountinfo | xargs -r -n1 umount -l 2>/dev/null || true
    kill "$MOTO_PID" 2>/dev/null || true
    stop_bench_agent
}
trap cleanup EXIT
URL=http://127.0.0.1:$port
for _ in $(seq 100); do curl -fs -X PUT "$URL/bench" >/dev/null 2>&1 && break; sleep 0.2; done
cat >"$WORK/vol.yml" <<YML
services:
  io:
    image: berth-test/busybox
    command: ["sleep", "100000"]
    volumes: ["data:/data"]
volumes:
  data:
    driver: oss
    driver_opts:
      endpoint: $URL
      bucket: bench
      path: berth
      access_key: BENCHAK
      secret_key: BENCHSECRET
      other_opts: "-o use_path_request_style"
YML
"$BERTH" deploy -f "$WORK/vol.yml" --name volb >/dev/null
mp=$WORK/data/volumes/volb_data
berth_ms=$("$BERTH" events volb --json 2>/dev/null | grep -o 'mounted volume volb_data[^"]* in [0-9]* ms' | grep -o '[0-9]* ms' | head -1 || true)
[ -n "$berth_ms" ] || berth_ms=$("$BERTH" events | grep -o 'mounted volume volb_data.* in [0-9]* ms' | grep -o '[0-9]* ms$' | head -1)
# The same options berth gave its helper, for the hand mount (another key prefix).
# (s3fs rewrites its own argv: `bench:/berth` shows as `bench /berth`.)
line=$(pgrep -af "^s3fs bench./berth $mp" | head -1 | cut -d' ' -f2-)
opts=${line#*" $mp -f "}
opts=$(echo "$opts" | sed 's|-o passwd_file=[^ ]*||')
mkdir -p "$HAND"; printf 'bench:BENCHAK:BENCHSECRET\n' >"$WORK/pw"; chmod 600 "$WORK/pw"
s=$(date +%s%N)
# shellcheck disable=SC2086
s3fs bench:/hand "$HAND" -o passwd_file="$WORK/pw" $opts
until stat "$HAND" >/dev/null 2>&1 && grep -q " $HAND " /proc/self/mountinfo; do sleep 0.005; done
hand_ms=$(( ($(date +%s%N) - s) / 1000000 ))
echo "mount time: berth $berth_ms (helper start until the mount answers), s3fs by hand ${hand_ms} ms"
echo "options: $opts"
c=$(docker ps -q --filter label=berth.app=volb | head -1)
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
rate() { awk -v m="$MIB" -v a="$1" -v b="$2" 'BEGIN { printf "%.1f MiB/s (%.2f s)", m / ((b - a) / 1e9), (b - a) / 1e9 }'; }
run() { # LABEL WRITE_CMD READ_CMD
    local a b w r
    a=$(date +%s%N); eval "$2" >/dev/null 2>&1; b=$(date +%s%N); w=$(rate "$a" "$b")
    drop
    a=$(date +%s%N); eval "$3" >/dev/null 2>&1; b=$(date +%s%N); r=$(rate "$a" "$b")
    printf '%-34s write %-24s read %s\n' "$1" "$w" "$r"
}
run "berth oss volume, in a container" \
    "docker exec $c dd if=/dev/zero of=/data/big.c bs=1M count=$MIB conv=fsync" \
    "docker exec $c dd if=/data/big.c of=/dev/null bs=1M"
run "berth oss volume, on the host" \
    "dd if=/dev/zero of=$mp/big.h bs=1M count=$MIB conv=fsync" \
    "dd if=$mp/big.h of=/dev/null bs=1M"
run "s3fs mounted by hand, on the host" \
    "dd if=/dev/zero of=$HAND/big bs=1M count=$MIB conv=fsync" \
    "dd if=$HAND/big of=/dev/null bs=1M"
