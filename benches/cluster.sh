#!/usr/bin/env bash
# Membership and state spread at 3, 10, 30 and 50 members (in one process, loopback):
# convergence, idle bandwidth, state spread, failure detection. See benches/cluster.rs.
# Usage: benches/cluster.sh [SIZES]   (default 3,10,30,50)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SIZES=${1:-3,10,30,50} cargo bench --quiet --bench cluster
