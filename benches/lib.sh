# Shared by the bench scripts: set up the host, build release, start an agent on a free port
# with a temp data dir. Sets BERTH, WORK, AGENT, NODE and exports BERTH_API, BERTH_TOKEN_FILE.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

start_bench_agent() { # NAME [more agent flags...]
    local name=$1; shift
    ensure_engine; ensure_images
    cargo build --release --quiet
    BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
    WORK=$(mktemp -d)
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$BERTH" agent --data-dir "$WORK/data" --listen "127.0.0.1:$port" --node-name "$name" "$@" 2>"$WORK/agent.log" &
    AGENT=$!
    export BERTH_API=http://127.0.0.1:$port BERTH_TOKEN_FILE=$WORK/data/api.token
    for _ in $(seq 100); do curl -fs "$BERTH_API/v1/health" >"$WORK/health" 2>/dev/null && break; sleep 0.1; done
    NODE=$(sed -n 's/.*"node_id": *"\([0-9a-f]*\)".*/\1/p' "$WORK/health")
}

# Removes the bench agent's containers and stops it.
stop_bench_agent() {
    kill "$AGENT" 2>/dev/null || true
    docker ps -aq --filter label=berth.node="${NODE:-none}" | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter label=berth.node="${NODE:-none}" | xargs -r docker network rm >/dev/null 2>&1 || true
    rm -rf "$WORK"
}

# Deploys N idle containers as app NAME through the bench agent and waits until they run.
deploy_idle() { # NAME N
    local name=$1 n=$2
    printf 'services:\n  idle:\n    image: berth-test/idle\n    stop_grace_period: 1s\n    labels:\n      berth.scale: "%s"\n' "$n" >"$WORK/$name.yml"
    "$BERTH" deploy -f "$WORK/$name.yml" --name "$name" --detach >/dev/null
    for _ in $(seq 600); do
        [ "$(docker ps -q --filter label=berth.app="$name" | wc -l)" -ge "$n" ] && break
        sleep 1
    done
}
