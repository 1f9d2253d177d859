#!/usr/bin/env bash
# Install (when missing) and start a Docker engine with the containerd image store,
# buildx, and an OCI registry on 127.0.0.1:5000. Safe to run twice: what is already
# running is left alone. What this script starts is recorded in $BUILDPILOT_ENGINE_STATE
# so that ci/engine-down.sh stops exactly that and nothing else.
set -euo pipefail

STATE_DIR="${BUILDPILOT_ENGINE_STATE:-/tmp/buildpilot-engine}"
REGISTRY_ADDR="${BUILDPILOT_REGISTRY_ADDR:-127.0.0.1:5000}"
BASE_IMAGE="${BUILDPILOT_BASE_IMAGE:-local/debian:bookworm-slim}"
CONTAINERD_SOCK=/run/containerd/containerd.sock
mkdir -p "$STATE_DIR"

log() { printf 'engine-up: %s\n' "$*" >&2; }

have_buildx() { docker buildx version >/dev/null 2>&1; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }
registry_answers() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }
containerd_answers() {
    if command -v ctr >/dev/null 2>&1; then
        timeout 10 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1
    else
        [ -S "$CONTAINERD_SOCK" ]
    fi
}
base_image_exists() { docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; }

# record NAME PID: write NAME.pid for ci/engine-down.sh, and NAME.start, the process's
# start time in clock ticks since boot, so engine-down can tell a recycled pid apart.
record() {
    echo "$2" > "$STATE_DIR/$1.pid"
    awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$2/stat" > "$STATE_DIR/$1.start" 2>/dev/null \
        || rm -f "$STATE_DIR/$1.start"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq "$seconds"); do
        if "$@"; then return 0; fi
        sleep 1
    done
    log "$what did not come up within ${seconds}s"
    return 1
}

install_packages() {  # install_packages PACKAGE...
    log "installing from Debian packages: $*"
    if [ ! -f /etc/apt/sources.list.d/trixie.list ]; then
        echo 'deb http://deb.debian.org/debian trixie main' > /etc/apt/sources.list.d/trixie.list
        printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# missing_packages: the packages to install, and only those. A component that is
# already running (a Docker engine with buildx, e.g. docker-ce or Docker Desktop; a
# registry; the base image) needs nothing installed: installing docker.io next to
# docker-ce would make apt remove docker-ce.
missing_packages() {
    local pkgs=()
    command -v curl >/dev/null 2>&1 || pkgs+=(curl)
    command -v ssh-agent >/dev/null 2>&1 || pkgs+=(openssh-client)
    [ -x /bin/busybox ] || pkgs+=(busybox-static)
    command -v docker >/dev/null 2>&1 || pkgs+=(docker-cli/trixie)
    have_buildx || pkgs+=(docker-buildx/trixie)
    if ! engine_answers; then
        command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io/trixie)
        command -v containerd >/dev/null 2>&1 || pkgs+=(containerd/trixie)
    fi
    if ! command -v docker-registry >/dev/null 2>&1 && ! registry_answers; then
        pkgs+=(docker-registry/trixie)
    fi
    if ! command -v mmdebstrap >/dev/null 2>&1 && ! base_image_exists; then
        pkgs+=(mmdebstrap)
    fi
    echo "${pkgs[@]}"
}

start_engine() {
    if engine_answers; then
        log "a Docker engine already answers; using it"
        return
    fi
    local running
    running=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [[ "$running" =~ ^[0-9]+$ ]] && kill -0 "$running" 2>/dev/null; then
        # A second dockerd would fail on the /var/run/docker.pid lock: wait for this one.
        log "dockerd (pid $running) is running but does not answer yet; waiting for it"
        wait_for 60 dockerd engine_answers
        return
    fi
    mkdir -p /etc/docker
    if [ ! -f /etc/docker/daemon.json ]; then
        echo '{"features": {"containerd-snapshotter": true}}' > /etc/docker/daemon.json
    elif ! grep -q '"containerd-snapshotter": *true' /etc/docker/daemon.json; then
        log "warning: /etc/docker/daemon.json does not enable the containerd image store"
    fi
    # `setsid CMD &` from a script without job control: the background child is not a
    # process group leader, so setsid execs CMD without forking and $! is CMD's pid.
    if ! containerd_answers; then
        log "starting containerd"
        setsid containerd 9>&- >"$STATE_DIR/containerd.log" 2>&1 < /dev/null &
        record containerd $!
        wait_for 30 containerd containerd_answers
    fi
    log "starting dockerd"
    setsid dockerd --containerd="$CONTAINERD_SOCK" 9>&- \
        >"$STATE_DIR/dockerd.log" 2>&1 < /dev/null &
    record dockerd $!
    wait_for 60 dockerd engine_answers
}

start_registry() {
    if registry_answers; then
        log "a registry already answers on $REGISTRY_ADDR; using it"
        return
    fi
    log "starting registry on $REGISTRY_ADDR"
    mkdir -p "$STATE_DIR/registry-data"
    cat > "$STATE_DIR/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $STATE_DIR/registry-data}
  delete: {enabled: true}
http: {addr: $REGISTRY_ADDR}
YML
    setsid docker-registry serve "$STATE_DIR/registry.yml" 9>&- \
        >"$STATE_DIR/registry.log" 2>&1 < /dev/null &
    record registry $!
    wait_for 30 registry registry_answers
}

make_base_image() {
    if base_image_exists; then
        return
    fi
    log "making $BASE_IMAGE from a Debian root filesystem (about 20 s)"
    mmdebstrap --quiet --variant=minbase \
        --include=ca-certificates,python3,python3-pip,python3-venv \
        bookworm - | docker import - "$BASE_IMAGE" >/dev/null
}

# One engine-up at a time: two concurrent runs would both start a dockerd. The daemons
# started below must not inherit fd 9 (9>&-), or the lock would outlive this script.
exec 9>"$STATE_DIR/engine-up.lock"
flock 9

read -r -a packages <<< "$(missing_packages)"
if [ "${#packages[@]}" -gt 0 ]; then
    install_packages "${packages[@]}"
fi
start_engine
start_registry
make_base_image
log "ready: $(docker version --format 'engine {{.Server.Version}}') / $(docker buildx version | cut -d' ' -f1-2) / registry $REGISTRY_ADDR"
