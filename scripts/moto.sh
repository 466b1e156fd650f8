#!/usr/bin/env bash
# Runs a moto server (AWS stand-in for the integration tests) on 127.0.0.1.
#
#   scripts/moto.sh start    start it (or reuse the one already running); prints the endpoint
#   scripts/moto.sh stop     stop it
#   scripts/moto.sh status   print the endpoint and exit 0 if it answers, else exit 1
#   scripts/moto.sh reset    drop all moto state (POST /moto-api/reset)
#
# Files: target/moto.endpoint (e.g. http://127.0.0.1:5000), target/moto.pid, target/moto.log,
# target/moto-calls.jsonl (IAM decisions for the functions' roles, see scripts/moto_server.py).
# Port: $MOTO_PORT if set, else 5000 if free, else any free port.
# Needs .venv-tools (scripts/tools.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/target"
ENDPOINT_FILE="$STATE/moto.endpoint"
PID_FILE="$STATE/moto.pid"
LOG_FILE="$STATE/moto.log"
CALLS_LOG="$STATE/moto-calls.jsonl"
VENV_BIN="$ROOT/.venv-tools/bin"
HOST=127.0.0.1
START_TIMEOUT_S="${MOTO_START_TIMEOUT_S:-30}"

log() { printf '[moto] %s\n' "$*" >&2; }

# answers URL: true if the moto server at URL responds to its own API.
answers() {
    "$VENV_BIN/python" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

# Pid from the pid file, only if that process is alive and is a moto server.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q moto_server || return 1
    echo "$pid"
}

port_free() {
    "$VENV_BIN/python" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

pick_port() {
    if [[ -n "${MOTO_PORT:-}" ]]; then
        echo "$MOTO_PORT"
    elif port_free 5000; then
        echo 5000
    else
        "$VENV_BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    fi
}

start() {
    if [[ ! -x "$VENV_BIN/moto_server" ]]; then
        log "error: $VENV_BIN/moto_server missing: run scripts/tools.sh first"
        exit 1
    fi
    mkdir -p "$STATE"
    local pid endpoint
    if pid="$(running_pid)" && [[ -f "$ENDPOINT_FILE" ]] && answers "$(cat "$ENDPOINT_FILE")"; then
        log "already running: pid $pid at $(cat "$ENDPOINT_FILE")"
        cat "$ENDPOINT_FILE"
        return 0
    fi
    if pid="$(running_pid)"; then
        log "pid $pid is a moto server that does not answer: stopping it"
        stop
    fi
    rm -f "$ENDPOINT_FILE" "$PID_FILE"

    local port
    port="$(pick_port)"
    endpoint="http://$HOST:$port"
    log "starting moto_server on $endpoint (log: ${LOG_FILE#"$ROOT"/})"
    printf '\n=== %s moto_server -H %s -p %s\n' "$(date -u +%FT%TZ)" "$HOST" "$port" >>"$LOG_FILE"
    # setsid: own process group, so it outlives this script and a Ctrl-C in the caller's shell.
    # scripts/moto_server.py: moto_server patched where the tests need AWS's behaviour (see the
    # file): DynamoDB isolation, CloudFormation of the template, IAM for the functions' roles.
    : >"$CALLS_LOG"
    TRAILWATCH_MOTO_CALLS_LOG="$CALLS_LOG" setsid "$VENV_BIN/python" "$ROOT/scripts/moto_server.py" -H "$HOST" -p "$port" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers "$endpoint"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "error: moto_server exited during start; last log lines:"
            tail -n 20 "$LOG_FILE" >&2
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "error: moto_server did not answer within ${START_TIMEOUT_S}s; stopping it"
            stop
            exit 1
        fi
        sleep 0.2
    done
    echo "$endpoint" >"$ENDPOINT_FILE"
    log "ready: pid $pid at $endpoint"
    echo "$endpoint"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PID_FILE" "$ENDPOINT_FILE"
        return 0
    fi
    log "stopping pid $pid"
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM: sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$ENDPOINT_FILE"
    log "stopped"
}

status() {
    local pid
    if pid="$(running_pid)" && [[ -f "$ENDPOINT_FILE" ]] && answers "$(cat "$ENDPOINT_FILE")"; then
        log "running: pid $pid"
        cat "$ENDPOINT_FILE"
    else
        log "not running"
        return 1
    fi
}

reset() {
    status >/dev/null
    "$VENV_BIN/python" - "$(cat "$ENDPOINT_FILE")" <<'EOF'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/moto-api/reset", method="POST"), timeout=5)
EOF
    log "state reset"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) reset ;;
    *)
        echo "usage: $0 start|stop|status|reset" >&2
        exit 2
        ;;
esac
