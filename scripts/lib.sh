# Shared setup for scripts/run and scripts/test: installs and starts what berth needs.
# Idempotent; safe to source from CI (no stdin, CI=true).
set -euo pipefail

log() { printf "==> %s %s\n" "$(date +%H:%M:%S)" "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
}

engine_answers() { curl -fsS --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }

# Make sure a Docker engine answers on /var/run/docker.sock: install Debian's docker.io when
# there is no dockerd, start it in the background when nothing runs (no systemd here).
ensure_engine() {
    apt_install curl ca-certificates
    if engine_answers; then return 0; fi
    command -v dockerd >/dev/null 2>&1 || apt_install docker.io
    log "starting dockerd"
    nohup dockerd >/var/log/berth-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        engine_answers && return 0
        sleep 0.5
    done
    echo "dockerd did not answer within 30s; see /var/log/berth-dockerd.log" >&2
    tail -20 /var/log/berth-dockerd.log >&2 || true
    return 1
}

# Build an image from Debian's static busybox (nothing can be pulled here).
# $1 = image name, $2 = its default command as JSON (default: a shell); a www/index.html is
# included so `httpd -f -p 8080 -h /www` serves a page.
build_busybox_image() {
    local name=$1 cmd=${2:-'["/bin/sh"]'}
    if docker image inspect "$name" >/dev/null 2>&1; then return 0; fi
    apt_install busybox-static
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/www" "$dir/tmp" "$dir/etc" "$dir/var/log"
    cp /bin/busybox "$dir/bin/busybox"
    for applet in $("$dir/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    echo 'hello from berth' >"$dir/www/index.html"
    echo 'stand-in license' >"$dir/www/license.txt"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/etc/passwd"
    echo 'root:x:0:' >"$dir/etc/group"
    tar -C "$dir" -c . | docker import -c "CMD $cmd" -c 'ENV PATH=/bin' - "$name" >/dev/null
    rm -rf "$dir"
    log "built image $name"
}

# busybox plus Debian's socat (with the shared libraries it links), for a UDP server: busybox's
# nc has no UDP mode. The lb.port_N udp:// test runs one behind the router.
build_udp_image() {
    local name=berth-test/udp:latest
    if docker image inspect "$name" >/dev/null 2>&1; then return 0; fi
    apt_install busybox-static socat
    local dir socat lib
    dir=$(mktemp -d)
    mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"
    cp /bin/busybox "$dir/bin/busybox"
    for applet in $("$dir/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
    done
    socat=$(command -v socat)
    cp "$socat" "$dir/bin/socat"
    for lib in $(ldd "$socat" | grep -o '/[^ ]*'); do
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/etc/passwd"
    echo 'root:x:0:' >"$dir/etc/group"
    tar -C "$dir" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$name" >/dev/null
    rm -rf "$dir"
    log "built image $name"
}

ensure_images() {
    build_busybox_image berth-test/busybox:latest
    build_udp_image
    # Stands in for the images the brief's example templates name (they keep running).
    build_busybox_image berth-test/idle:latest '["sleep", "2147483647"]'
    # Stands in for web images whose probes fetch http://container/license.txt.
    build_busybox_image berth-test/web:latest '["httpd", "-f", "-p", "80", "-h", "/www"]'
    # The demo app's image.
    if ! docker image inspect berth/hello:latest >/dev/null 2>&1; then
        docker tag berth-test/busybox:latest berth/hello:latest
    fi
}

# The metric back ends the tests write to and scrape from: InfluxDB 1.6 and Prometheus
# (with promtool), both from Debian. The tests start their own instances on free ports.
ensure_backends() {
    apt_install influxdb prometheus
}

# The peer the compose corpus is compared with (tests/wild_compose.rs): Debian's 1.29.
ensure_compose_peer() {
    # docker-compose 1.29 for the compose corpus; python3-yaml (libyaml) for the YAML one.
    apt_install docker-compose python3-yaml
}

# Volumes: the FUSE helper for object storage, the NFS mount helper, and a local S3 API
# server (moto, from PyPI) in a venv of its own for the tests.
ensure_volume_tools() {
    # nfs-ganesha-vfs + rpcbind: a userspace NFS server for the nas test; libnfs-utils checks it.
    apt_install s3fs fuse3 nfs-common python3-venv rpcbind nfs-ganesha nfs-ganesha-vfs libnfs-utils
    local venv="${HOME}/.cache/berth-test/moto"
    if [ ! -x "$venv/bin/moto_server" ]; then
        log "installing moto_server into $venv"
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'moto[server]'
    fi
}

# The private registry test (tests/e2e/registry.rs): Debian's registry (distribution) and
# htpasswd for its basic auth. The package's own service is not used: the test starts one.
ensure_registry() {
    apt_install docker-registry apache2-utils
}

# The console test (tests/e2e/console.rs): Debian's headless Chromium, Node.js, and the
# test's npm packages (playwright-core, pinned in tests/ui/package-lock.json; it drives the
# system Chromium, so no browser is downloaded).
ensure_browser() {
    apt_install chromium firefox-esr
    # A Node.js with npm may come from elsewhere (its own package): only when none answers
    # is Debian's installed.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    if [ ! -d tests/ui/node_modules/playwright-core ] || [ ! -d tests/ui/node_modules/puppeteer-core ]; then
        log "installing the console test's npm packages (tests/ui)"
        (cd tests/ui && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 && return 0
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    return 1
}
