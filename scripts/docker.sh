#!/usr/bin/env bash
# A Docker daemon of the project's own, for `sam local invoke` (scripts/local-invoke.sh sam).
#
#   scripts/docker.sh start    install docker.io and busybox-static from Debian's packages when
#                              missing (root only), start dockerd on its own socket, data and
#                              exec roots (no bridge, no iptables: containers use the host
#                              network, where moto listens); reuse it when it answers
#   scripts/docker.sh stop     stop it
#   scripts/docker.sh host     print its DOCKER_HOST
#   scripts/docker.sh why      print why it does not answer (for a skip message)
#   scripts/docker.sh image    build (once) and print the Lambda base image: a root filesystem
#                              of this machine's static busybox, glibc and CA bundle, imported;
#                              SAM adds its aws-lambda-rie on top. Nothing is pulled.
#
# Files: target/dockerd.log; the daemon's state under /var/lib/trailwatch-docker.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOCK=/run/trailwatch-docker.sock
HOST="unix://$SOCK"
PID_FILE=/run/trailwatch-docker.pid
DATA=/var/lib/trailwatch-docker
EXEC=/run/trailwatch-docker
LOG="$ROOT/target/dockerd.log"
IMAGE=trailwatch/lambda-provided:local
START_TIMEOUT_S="${DOCKER_START_TIMEOUT_S:-60}"

log() { printf '[docker] %s\n' "$*" >&2; }

answers() { DOCKER_HOST="$HOST" timeout 10 docker info >/dev/null 2>&1; }

why() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: dockerd needs root"
    elif ! command -v dockerd >/dev/null; then
        echo "dockerd is not installed (apt-get install docker.io failed or was not run)"
    elif ! answers; then
        echo "dockerd does not answer on $HOST; last lines of ${LOG#"$ROOT"/}: $(tail -n 3 "$LOG" 2>/dev/null | tr '\n' ' ')"
    else
        echo "dockerd answers on $HOST"
    fi
}

install() {
    command -v dockerd >/dev/null && [[ -x /bin/busybox ]] && return 0
    [[ $(id -u) -eq 0 ]] || return 1
    log "installing docker.io and busybox-static (Debian's packages)"
    local started=$SECONDS
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io busybox-static >>"$LOG" 2>&1 \
        || { apt-get update -q >>"$LOG" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io busybox-static >>"$LOG" 2>&1; }
    log "installed in $((SECONDS - started)) s"
}

start() {
    mkdir -p "$(dirname "$LOG")"
    if answers; then
        log "already running on $HOST"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]] || ! install; then
        log "cannot start: $(why)"
        return 1
    fi
    mkdir -p "$DATA" "$EXEC"
    log "starting dockerd on $HOST (log: ${LOG#"$ROOT"/})"
    setsid dockerd --host "$HOST" --data-root "$DATA" --exec-root "$EXEC" --pidfile "$PID_FILE" \
        --bridge none --iptables=false --ip-masq=false --storage-driver overlay2 \
        >>"$LOG" 2>&1 </dev/null &
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers; do
        if ((SECONDS >= deadline)); then
            log "dockerd did not answer within ${START_TIMEOUT_S}s: $(why)"
            return 1
        fi
        sleep 0.5
    done
    log "ready on $HOST"
}

stop() {
    [[ -f "$PID_FILE" ]] || { log "not running"; return 0; }
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dockerd.*$SOCK"; then
        kill "$pid" 2>/dev/null || true
        local i
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopped"
}

image() {
    if DOCKER_HOST="$HOST" docker image inspect "$IMAGE" >/dev/null 2>&1; then
        echo "$IMAGE"
        return 0
    fi
    local rootfs
    rootfs="$(mktemp -d)"
    mkdir -p "$rootfs"/{bin,lib64,lib/x86_64-linux-gnu,tmp,var/task,var/runtime,opt,etc}
    cp /bin/busybox "$rootfs/bin/busybox"
    local tool
    for tool in sh mv chmod cp ls cat mkdir rm ln env; do ln -s busybox "$rootfs/bin/$tool"; done
    # The functions are glibc binaries (cargo lambda's x86_64-unknown-linux-gnu): the loader and
    # the libraries they link, from this machine.
    cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/lib64/"
    local lib
    # libnss_*/libresolv: glibc resolves names (even 127.0.0.1 goes through getaddrinfo) with them.
    for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 \
        libnss_files.so.2 libnss_dns.so.2 libresolv.so.2; do
        cp -L "/lib/x86_64-linux-gnu/$lib" "$rootfs/lib/x86_64-linux-gnu/"
    done
    # The CA bundle where Amazon Linux keeps it (the SDK's TLS loads the native roots).
    mkdir -p "$rootfs/etc/pki/tls/certs" "$rootfs/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/pki/tls/certs/ca-bundle.crt"
    ln -s /etc/pki/tls/certs/ca-bundle.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
    echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
    chmod 1777 "$rootfs/tmp"
    tar -C "$rootfs" -c . | DOCKER_HOST="$HOST" docker import - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "built $IMAGE from this machine's busybox and glibc"
    echo "$IMAGE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    host) echo "$HOST" ;;
    why) why ;;
    image) image ;;
    *)
        echo "usage: $0 start|stop|host|why|image" >&2
        exit 2
        ;;
esac
