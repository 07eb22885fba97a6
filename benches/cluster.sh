#!/usr/bin/env bash
# Membership and state spread at 3, 10, 30 and 50 members (in one process, loopback):
# convergence, idle and busy bandwidth, false lost, state spread, failure detection.
# See benches/cluster.rs.
# Usage: benches/cluster.sh [--loss PCT] [SIZES]   (default sizes 3,10,30,50)
#   --loss PCT: run in a network namespace of its own whose loopback drops PCT% of the UDP
#   datagrams it receives (iptables' random match; this machine's kernel has no netem).
set -euo pipefail
cd "$(dirname "$0")/.."
loss=0
if [ "${1:-}" = --loss ]; then loss=$2; shift 2; fi
sizes=${1:-3,10,30,50}
cargo bench --quiet --bench cluster --no-run
bench=$(ls -t target/release/deps/cluster-* | grep -v '\.d$' | head -1)
if [ "$loss" = 0 ]; then
    BENCH_SIZES=$sizes "$bench" --bench
    exit 0
fi
ns=berth-bench-loss-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
p=$(awk -v x="$loss" 'BEGIN { printf "%.4f", x / 100 }')
ip netns exec "$ns" iptables -A INPUT -i lo -p udp -m statistic --mode random --probability "$p" -j DROP
echo "(in network namespace $ns: ${loss}% of UDP datagrams on loopback dropped)"
BENCH_SIZES=$sizes nsenter --net="/run/netns/$ns" "$bench" --bench
