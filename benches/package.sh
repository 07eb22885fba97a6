#!/usr/bin/env bash
# Packaging figures: stripped static binary size, .deb/.rpm sizes, and cold start to
# API-ready (exec of `berth agent` to the first 200 from /v1/health), on a fresh data dir
# (migrations, node id, token) and on an existing one. Engine binaries from the same host
# are listed beside the sizes for scale, and a second dockerd's cold start beside berth's.
#
#   benches/package.sh [RUNS]      (default 10; builds the packages first unless present)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
RUNS=${1:-10}
ensure_engine
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEB=target/dist/berth_${VERSION}_amd64.deb
RPM=target/dist/berth-${VERSION}-1.x86_64.rpm
BIN=target/x86_64-unknown-linux-gnu/dist/berth
[ -f "$DEB" ] && [ -f "$RPM" ] && [ -x "$BIN" ] || scripts/package >/dev/null

mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo "## sizes"
printf '%-36s %s\n' "berth (static, stripped)" "$(mib "$(stat -c %s "$BIN")")"
printf '%-36s %s\n' "$(basename "$DEB")" "$(mib "$(stat -c %s "$DEB")")"
printf '%-36s %s\n' "$(basename "$RPM")" "$(mib "$(stat -c %s "$RPM")")"
for ref in dockerd containerd docker; do
    p=$(command -v "$ref" || true)
    [ -n "$p" ] && printf '%-36s %s\n' "reference: $ref ($p)" "$(mib "$(stat -L -c %s "$p")")"
done

ready_ms() { # $1 data dir: prints ms from exec to the first healthy answer
    local port dir=$1 start end pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start=$(date +%s%N)
    "$BIN" agent --data-dir "$dir" --listen "127.0.0.1:$port" --node-name bench >/dev/null 2>&1 &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1; do sleep 0.002; done
    end=$(date +%s%N)
    kill -TERM "$pid"; wait "$pid" || true
    echo $(((end - start) / 1000000))
}
stats() { sort -n | awk '{a[NR]=$1} END { printf "median %d ms, min %d ms, max %d ms (n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR }'; }

# The reference daemon: a second dockerd on its own data root, exec root and socket (its own
# managed containerd), in a network namespace of its own, from exec to the first 200 from
# /_ping. (In the host's namespace it would take the host engine's docker0 with it: even with
# --bridge=none it deletes the default bridge it finds. `unshare --net`, not `ip netns exec`,
# which remounts /sys and hides the cgroups from it.)
dockerd_ready_ms() { # $1 scratch dir
    local d=$1 start end pid
    mkdir -p "$d"
    start=$(date +%s%N)
    unshare --net dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" \
        -H "unix://$d/d.sock" --iptables=false --ip6tables=false >"$d/log" 2>&1 &
    pid=$!
    until curl -fs --unix-socket "$d/d.sock" http://localhost/_ping >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "reference dockerd died: $(tail -3 "$d/log")" >&2; return 1; }
        sleep 0.002
    done
    end=$(date +%s%N)
    kill -TERM "$pid"; wait "$pid" || true
    grep " $d/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount 2>/dev/null || true
    echo $(((end - start) / 1000000))
}

echo "## cold start to API-ready"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$RUNS"); do ready_ms "$tmp/fresh-$i"; done | stats | sed 's/^/fresh data dir:    /'
ready_ms "$tmp/warm" >/dev/null
for i in $(seq "$RUNS"); do ready_ms "$tmp/warm"; done | stats | sed 's/^/existing data dir: /'
for i in $(seq "$RUNS"); do dockerd_ready_ms "$tmp/dockerd-$i"; done | stats | sed 's/^/reference dockerd, fresh data root (own netns): /'
