#!/usr/bin/env bash
# Stop exactly what ci/engine-up.sh started: the processes recorded in
# $BUILDPILOT_ENGINE_STATE/{dockerd,registry,containerd}.pid and nothing else (NAME.start,
# when present, holds the recorded process's start time, to tell a recycled pid apart).
# Safe to run twice. Each process gets SIGTERM, then SIGKILL after
# $BUILDPILOT_ENGINE_STOP_TIMEOUT seconds (default 15); the script returns only once it
# is gone, and removes its pid file. A pid file whose process is gone, or whose pid now
# belongs to another program (pid reuse), is removed without signalling anything.
# Logs and registry data in the state directory are kept.
set -euo pipefail

STATE_DIR="${BUILDPILOT_ENGINE_STATE:-/tmp/buildpilot-engine}"
STOP_TIMEOUT="${BUILDPILOT_ENGINE_STOP_TIMEOUT:-15}"

log() { printf 'engine-down: %s\n' "$*" >&2; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
    local state
    state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# start_ticks PID: when the process started, in clock ticks since boot (field 22 of
# /proc/PID/stat); unlike wall-clock times this does not move when the clock is set.
start_ticks() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }

# is_ours PID NAME PROGRAM: the pid still belongs to the PROGRAM process that engine-up
# recorded: its argv[0] is PROGRAM and, when engine-up also wrote NAME.start, it started
# at that very tick (so a recycled pid that happens to run PROGRAM is not ours either).
is_ours() {
    local pid=$1 name=$2 program=$3 argv0 recorded
    argv0=$(tr '\0' '\n' 2>/dev/null < "/proc/$pid/cmdline" | head -n1) || return 1
    if [ "${argv0##*/}" != "$program" ]; then
        log "pid $pid in $name.pid is now '${argv0:-?}', not $program: leaving it alone"
        return 1
    fi
    if [ -f "$STATE_DIR/$name.start" ]; then
        recorded=$(tr -d '[:space:]' < "$STATE_DIR/$name.start")
        if [ "$(start_ticks "$pid")" != "$recorded" ]; then
            log "pid $pid ($program) is not the process engine-up started: leaving it alone"
            return 1
        fi
    fi
}

wait_gone() {  # wait_gone PID SECONDS
    local pid=$1 tenths=$(($2 * 10))
    while [ "$tenths" -gt 0 ]; do
        alive "$pid" || return 0
        sleep 0.1
        tenths=$((tenths - 1))
    done
    ! alive "$pid"
}

stop_one() {  # stop_one NAME PROGRAM: stop the PROGRAM process in $STATE_DIR/NAME.pid
    local name=$1 program=$2 pidfile="$STATE_DIR/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid=$(tr -d '[:space:]' < "$pidfile")
    if ! [[ "$pid" =~ ^[1-9][0-9]*$ ]]; then
        log "ignoring $pidfile: '$pid' is not a pid"
        rm -f "$pidfile" "$STATE_DIR/$name.start"
        return 0
    fi
    if ! alive "$pid"; then
        log "$name (pid $pid) is not running"
    elif is_ours "$pid" "$name" "$program"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
            log "$name (pid $pid) still running after ${STOP_TIMEOUT}s: sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            if ! wait_gone "$pid" 10; then
                log "$name (pid $pid) survived SIGKILL; keeping $pidfile"
                return 1
            fi
        fi
    fi
    rm -f "$pidfile" "$STATE_DIR/$name.start"
}

if [ ! -d "$STATE_DIR" ]; then
    log "no state directory $STATE_DIR: nothing to stop"
    exit 0
fi

status=0
# dockerd first (it talks to containerd and stops its containers on the way out),
# containerd last.
stop_one dockerd dockerd || status=1
stop_one registry docker-registry || status=1
stop_one containerd containerd || status=1
exit "$status"
