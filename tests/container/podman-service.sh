#!/usr/bin/env bash
# Serve the Docker Engine API from podman for the container tests (no dockerd needed).
#   podman-service.sh start SOCKET   install podman + runc if missing (root with apt-get), start the
#                                    service on unix://SOCKET, wait until the socket exists
#   podman-service.sh stop SOCKET    stop the service this script started
# Uses tests/container/containers.conf (runc, cgroupfs, file events: FACTS.md), never the system's, unless
# CONTAINERS_CONF names another test-made one (the cluster tests' nodes add mounts to it).
set -euo pipefail
action=${1:?start|stop}
sock=${2:?socket path}
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

case "$action" in
start)
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "installing podman and runc with apt-get" >&2
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
        else
            echo "podman is not installed (install podman and runc, or set DOCKER_HOST)" >&2
            exit 3
        fi
    fi
    mkdir -p "$(dirname "$sock")"
    rm -f "$sock"
    setsid podman system service --time=0 "unix://$sock" >"$sock.log" 2>&1 </dev/null &
    echo $! >"$sock.pid"
    for _ in $(seq 100); do
        [ -S "$sock" ] && exit 0
        sleep 0.2
    done
    echo "podman system service did not create $sock: $(tail -n 3 "$sock.log")" >&2
    exit 4
    ;;
stop)
    if [ -f "$sock.pid" ]; then
        kill "$(cat "$sock.pid")" 2>/dev/null || true
        rm -f "$sock.pid"
    fi
    rm -f "$sock"
    ;;
*)
    echo "usage: $0 start|stop SOCKET" >&2
    exit 2
    ;;
esac
