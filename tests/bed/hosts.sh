#!/usr/bin/env bash
# Several real hosts on one machine (TESTBED.md, "Several hosts on one machine"): each host is a
# network namespace on a test bridge with its own address, its own dockerd (own data root, exec
# root, pidfile, socket and bridge range) and, once a test starts it, its own `berth agent`.
# Traffic goes only between these namespaces and the bridge; nothing else is touched.
#
#   hosts.sh up DIR N [IMAGE...]  start hosts h1..hN under DIR (an empty directory, short path),
#                                 load each IMAGE from this machine's engine into every host's
#                                 engine; writes DIR/bed.env (BED_NET, BED_BRIDGE, BED_PREFIX)
#   hosts.sh down DIR             stop every process started under DIR and remove what up made
#                                 (namespaces, links, the FORWARD rule, mounts); safe to repeat
#   hosts.sh cut DIR NAME         partition NAME: its link down (it keeps running)
#   hosts.sh heal DIR NAME        bring NAME's link back
#   hosts.sh loss DIR NAME PCT    drop PCT% of NAME's packets each way; 0 removes it
#   hosts.sh run DIR NAME CMD...  run CMD in NAME's network namespace
#   hosts.sh stop-engine DIR NAME / start-engine DIR NAME
#
# Host hI has address ${BED_PREFIX}.I, its engine's socket is DIR/hI/d.sock. A bed claims a
# /24 in 10.213.0.0/16 by creating /run/berth-beds/<third octet> (so beds can run side by side).
set -euo pipefail

die() { echo "hosts.sh: $*" >&2; exit 1; }

load_env() {
    [ -f "$1/bed.env" ] || die "$1 has no bed (run: hosts.sh up $1 N)"
    # shellcheck disable=SC1091
    . "$1/bed.env"
}

ns_of() { echo "${BED_NS}-$1"; }

start_engine() {
    local dir=$1 name=$2 i=${2#h}
    local h=$dir/$name
    mkdir -p "$h/docker" "$h/exec"
    # Its own bridge range per host, away from this machine's engine's ranges; a test
    # registry on the bed's bridge is reached over plain HTTP.
    nsenter --net="/run/netns/$(ns_of "$name")" \
        dockerd --data-root "$h/docker" --exec-root "$h/exec" --pidfile "$h/d.pid" \
        -H "unix://$h/d.sock" --bip "172.31.$((i * 8)).1/21" \
        --default-address-pool "base=172.30.$((i * 8)).0/21,size=24" \
        --insecure-registry 10.213.0.0/16 \
        --userland-proxy=false --log-level warn >"$h/dockerd.log" 2>&1 &
    echo $! >"$h/dockerd.pid"
}

wait_engine() {
    local h=$1
    for _ in $(seq 1 120); do
        docker -H "unix://$h/d.sock" version >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    tail -20 "$h/dockerd.log" >&2
    die "the engine in $h did not answer within 30 s"
}

stop_engine() {
    local h=$1
    local pid
    pid=$(cat "$h/dockerd.pid" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$h/dockerd.pid"
}

cmd_up() {
    local dir=$1 n=$2
    shift 2
    [ -d "$dir" ] || die "$dir is not a directory"
    dir=$(cd "$dir" && pwd)
    [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "between 1 and 9 hosts"
    mkdir -p /run/berth-beds /run/netns
    local octet=""
    for o in $(seq 1 250); do
        if mkdir "/run/berth-beds/$o" 2>/dev/null; then octet=$o; break; fi
    done
    [ -n "$octet" ] || die "no free /24 in 10.213.0.0/16 (stale beds in /run/berth-beds?)"
    echo "$dir" >"/run/berth-beds/$octet/dir"
    cat >"$dir/bed.env" <<EOF
BED_OCTET=$octet
BED_PREFIX=10.213.$octet
BED_NET=10.213.$octet.0/24
BED_BRIDGE=bbed$octet
BED_NS=berthbed$octet
BED_HOSTS=$n
EOF
    load_env "$dir"
    ip link add "$BED_BRIDGE" type bridge
    ip addr add "$BED_PREFIX.254/24" dev "$BED_BRIDGE"
    ip link set "$BED_BRIDGE" up
    # This machine's engine sets FORWARD to DROP; allow the bed's own bridge, nothing more.
    iptables -I FORWARD -i "$BED_BRIDGE" -o "$BED_BRIDGE" -j ACCEPT
    for i in $(seq 1 "$n"); do
        local name=h$i ns
        ns=$(ns_of "$name")
        mkdir -p "$dir/$name"
        # Serialised: beds starting together must not both make /run/netns a mount point
        # (the first `ip netns add` on a machine does), which stacks two mounts there and
        # can leave a namespace's name over the wrong one.
        flock /run/berth-beds/.netns ip netns add "$ns"
        # The /24 was free, so a link of this name is a stale one of an earlier bed's.
        ip link del "vb${octet}h$i" 2>/dev/null || true
        ip link add "vb${octet}h$i" type veth peer name "vn${octet}h$i"
        ip link set "vb${octet}h$i" master "$BED_BRIDGE" up
        ip link set "vn${octet}h$i" netns "$ns"
        ip -n "$ns" link set "vn${octet}h$i" name eth0
        ip -n "$ns" addr add "$BED_PREFIX.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        start_engine "$dir" "$name"
    done
    for i in $(seq 1 "$n"); do wait_engine "$dir/h$i"; done
    # What the agents will see: each namespace, entered as they enter it, has its address.
    for i in $(seq 1 "$n"); do
        local ns
        ns=$(ns_of "h$i")
        nsenter --net="/run/netns/$ns" ip -4 -o addr show dev eth0 | grep -q " $BED_PREFIX.$i/" || {
            nsenter --net="/run/netns/$ns" ip -4 -o addr >&2 || true
            grep -F /run/netns /proc/self/mountinfo >&2 || true
            die "host h$i's namespace $ns has no address $BED_PREFIX.$i"
        }
    done
    for img in "$@"; do
        docker save "$img" >"$dir/image.tar"
        for i in $(seq 1 "$n"); do
            docker -H "unix://$dir/h$i/d.sock" load -q -i "$dir/image.tar" >/dev/null
        done
        rm -f "$dir/image.tar"
    done
}

cmd_down() {
    local dir=$1
    [ -f "$dir/bed.env" ] || return 0
    load_env "$dir"
    # Agents (and anything else) started in the namespaces first, then the engines.
    for i in $(seq 1 "$BED_HOSTS"); do
        local ns
        ns=$(ns_of "h$i")
        [ -e "/run/netns/$ns" ] || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
                dockerd|containerd*) ;;
                *) kill -9 "$pid" 2>/dev/null || true ;;
            esac
        done
    done
    for i in $(seq 1 "$BED_HOSTS"); do
        local h=$dir/h$i
        if [ -S "$h/d.sock" ]; then
            local ids
            ids=$(docker -H "unix://$h/d.sock" ps -aq 2>/dev/null || true)
            [ -z "$ids" ] || docker -H "unix://$h/d.sock" rm -f $ids >/dev/null 2>&1 || true
        fi
        stop_engine "$h"
    done
    for i in $(seq 1 "$BED_HOSTS"); do
        local ns
        ns=$(ns_of "h$i")
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        mkdir -p /run/berth-beds && flock /run/berth-beds/.netns ip netns del "$ns" 2>/dev/null || true
        # Gone with the namespace unless something still held it.
        ip link del "vb${BED_OCTET}h$i" 2>/dev/null || true
    done
    # The engines share this machine's mount table: unmount what they left under DIR.
    { grep -F " $dir/" /proc/self/mounts || true; } | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    iptables -D FORWARD -i "$BED_BRIDGE" -o "$BED_BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link del "$BED_BRIDGE" 2>/dev/null || true
    rm -rf "/run/berth-beds/$BED_OCTET"
    rm -f "$dir/bed.env"
}

main() {
    local verb=${1:-}
    shift || true
    case "$verb" in
        up) [ $# -ge 2 ] || die "usage: hosts.sh up DIR N [IMAGE...]"
            # A failed start leaves nothing behind. Not `if ! cmd_up`: inside a condition bash
            # ignores `set -e`, so a failed step went on to the next (an engine started in a
            # namespace without its link), and `die` exited before any clean-up ran.
            UP_DIR=$1
            trap 'rc=$?; if [ "$rc" -ne 0 ]; then cmd_down "$UP_DIR" || true; fi' EXIT
            cmd_up "$@" ;;
        down) [ $# -eq 1 ] || die "usage: hosts.sh down DIR"; cmd_down "$1" ;;
        cut|heal)
            [ $# -eq 2 ] || die "usage: hosts.sh $verb DIR NAME"
            load_env "$1"
            local state=down
            [ "$verb" = heal ] && state=up
            ip -n "$(ns_of "$2")" link set eth0 "$state" ;;
        loss)
            [ $# -eq 3 ] || die "usage: hosts.sh loss DIR NAME PCT"
            load_env "$1"
            local ns
            ns=$(ns_of "$2")
            # netem is not in every kernel (not in this machine's): iptables' random match
            # drops the same share of packets, both ways.
            ip netns exec "$ns" iptables -F INPUT
            ip netns exec "$ns" iptables -F OUTPUT
            if [ "$3" != 0 ]; then
                local p
                p=$(awk -v x="$3" 'BEGIN { printf "%.4f", x / 100 }')
                ip netns exec "$ns" iptables -A INPUT -i eth0 -m statistic --mode random --probability "$p" -j DROP
                ip netns exec "$ns" iptables -A OUTPUT -o eth0 -m statistic --mode random --probability "$p" -j DROP
            fi ;;
        run)
            [ $# -ge 3 ] || die "usage: hosts.sh run DIR NAME CMD..."
            load_env "$1"
            local ns
            ns=$(ns_of "$2")
            shift 2
            exec nsenter --net="/run/netns/$ns" "$@" ;;
        stop-engine) load_env "$1"; stop_engine "$1/$2" ;;
        start-engine) load_env "$1"; start_engine "$1" "$2"; wait_engine "$1/$2" ;;
        *) die "usage: hosts.sh up|down|cut|heal|loss|run|stop-engine|start-engine DIR ..." ;;
    esac
}

main "$@"
