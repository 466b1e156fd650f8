#!/usr/bin/env bash
# The README's "Invoke locally", run as written against moto, with each function's environment
# taken from template.yaml deployed into moto (scripts/moto_stack.py).
#
#   scripts/local-invoke.sh env     deploy a stack into the running moto (scripts/moto.sh start)
#                                   with the sample trail in its bucket; write each function's
#                                   environment to target/local-invoke/<binary>.env
#   scripts/local-invoke.sh cargo   `cargo lambda watch -p <crate>` per function, with no
#                                   settings (a dry run answered, the rest told why the function
#                                   cannot start), then with the stack's: `cargo lambda invoke
#                                   --data-file` of every payload in events/
#   scripts/local-invoke.sh sam     `sam local invoke` of every payload in a container, from
#                                   `sam build`'s output (target/sam-build, or SAM_BUILD_DIR);
#                                   needs Docker (scripts/docker.sh start); skipped, saying why,
#                                   without it
#
# Every invoke is bounded (INVOKE_TIMEOUT_S, default 120 s) and must answer: an SQS batch with
# no failed message, or the function's own JSON. Outputs: target/local-invoke/<how>/<payload>.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/local-invoke"
TIMEOUT="${INVOKE_TIMEOUT_S:-120}"
# The payloads name this bucket (events/select/*.json), as a user's trail would.
BUCKET=my-cloudtrail-bucket
FUNCTIONS=(select:trailwatch-select-fn:SelectFunction
           deliver:trailwatch-deliver-fn:DeliverFunction
           insights:trailwatch-insights-fn:InsightsFunction)

log() { printf '[local-invoke] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

endpoint() {
    [[ -f target/moto.endpoint ]] || die "no moto: run scripts/moto.sh start"
    cat target/moto.endpoint
}

# env: the stack, the sample trail in its bucket, one env file per function.
write_env() {
    local ep stack
    ep="$(endpoint)"
    stack="local-$(date +%s)-$$"
    mkdir -p "$OUT"
    log "deploying template.yaml into moto as $stack (EventBridge ingest on: the payloads carry records)"
    "$ROOT/.venv-sam/bin/python" scripts/moto_stack.py deploy --endpoint "$ep" --stack "$stack" \
        --bucket "$BUCKET" --param IngestFromEventBridge=true --param "TrailConfig=$(tr -d '\n' <events/trail-config.json)" \
        >"$OUT/stack.json"
    "$ROOT/.venv-tools/bin/python" - "$ep" "$OUT" <<'EOF'
import json, pathlib, sys
import boto3

endpoint, out = sys.argv[1], pathlib.Path(sys.argv[2])
stack = json.loads((out / "stack.json").read_text())
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
for path in pathlib.Path("events/sample-trail").rglob("*.json.gz"):
    s3.upload_file(str(path), "my-cloudtrail-bucket", str(path.relative_to("events/sample-trail")))
binaries = {"SelectFunction": "trailwatch-select", "DeliverFunction": "trailwatch-deliver",
            "InsightsFunction": "trailwatch-insights"}
# What Lambda puts in the environment besides the template's variables (region, credentials),
# and the endpoint that points every client at moto.
lambda_env = {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
              "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_ENDPOINT_URL": endpoint, "AWS_LAMBDA_LOG_FORMAT": "JSON"}
for logical, function in stack["functions"].items():
    env = {k: str(v) for k, v in function["environment"].items()}
    env.update(lambda_env)
    # Double-quoted, so that JSON values (the trail configuration) read back unchanged.
    quoted = lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    (out / f"{binaries[logical]}.env").write_text(
        "".join(f"{k}={quoted(v)}\n" for k, v in env.items()))
    (out / f"{binaries[logical]}.json").write_text(
        json.dumps({logical: env}))
EOF
    log "environments: $OUT/<binary>.env (cargo lambda watch --env-file), $OUT/<binary>.json (sam local invoke --env-vars)"
}

# check HOW PAYLOAD OUTPUT: the answer must be JSON, with no failed message for SQS batches.
check() {
    local how="$1" payload="$2" output="$3"
    "$ROOT/.venv-tools/bin/python" - "$output" "$how $payload" <<'EOF' || return 1
import json, sys
path, what = sys.argv[1], sys.argv[2]
text = open(path).read().strip()
# SAM prints the answer as the last line after its own logs.
line = text.splitlines()[-1] if text else ""
try:
    answer = json.loads(line)
except ValueError:
    sys.exit(f"{what}: no JSON answer: {text[-400:]!r}")
if isinstance(answer, dict) and ("errorMessage" in answer or "errorType" in answer):
    sys.exit(f"{what}: the function failed: {answer}")
if isinstance(answer, dict) and answer.get("batchItemFailures"):
    sys.exit(f"{what}: messages failed: {answer['batchItemFailures']}")
print(f"{what}: ok {line[:160]}")
EOF
}

payloads_of() { ls "events/$1"/*.json; }

# expect_cannot_start WHAT OUTPUT: the invoke failed at once with the function's start-up reason.
expect_cannot_start() {
    if grep -q "cannot start" "$2" && grep -q "trailwatch.Configuration" "$2"; then
        log "$1: ok, answered with why it cannot start: $(grep -m1 -o 'cannot start: [^(]*' "$2")"
    else
        log "FAILED: $1: expected the start-up reason (trailwatch.Configuration), got:"
        tail -n 5 "$2" >&2
        return 1
    fi
}

# start_watch NAME CRATE PORT [ENV-FILE]: `cargo lambda watch` in the background (its process
# group in WATCH_PID), once it listens. Without an env file, the function runs with no region,
# credentials or settings, as from a bare shell.
start_watch() {
    local name="$1" crate="$2" port="$3" env_file="${4:-}" log_file
    local args=(-p "$crate" -A 127.0.0.1 -P "$port" --timeout "$TIMEOUT")
    local bare=()
    if [[ -n "$env_file" ]]; then
        args+=(--env-file "$env_file")
        log_file="$OUT/cargo/watch-$name.log"
    else
        bare=(env -u AWS_REGION -u AWS_DEFAULT_REGION -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY
              -u AWS_SESSION_TOKEN -u AWS_PROFILE -u AWS_ENDPOINT_URL)
        log_file="$OUT/cargo/watch-$name-bare.log"
    fi
    log "cargo lambda watch ${args[*]}"
    setsid "${bare[@]}" cargo lambda watch "${args[@]}" >"$log_file" 2>&1 </dev/null &
    WATCH_PID=$!
    # cargo lambda watch listens before the function is built; a dead watch ends the wait.
    local deadline=$((SECONDS + 60))
    until "$ROOT/.venv-tools/bin/python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
        if ! kill -0 "$WATCH_PID" 2>/dev/null || ((SECONDS > deadline)); then
            log "FAILED: cargo lambda watch did not start:"
            tail -n 5 "$log_file" >&2
            return 1
        fi
        sleep 0.5
    done
}

stop_watch() {
    kill -- "-$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
}

# lambda_invoke NAME PORT PAYLOAD OUTPUT: `cargo lambda invoke`, bounded.
lambda_invoke() {
    timeout "$TIMEOUT" cargo lambda invoke "trailwatch-$1" -A 127.0.0.1 -P "$2" \
        --data-file "$3" >"$4" 2>&1
}

# build_function CRATE BINARY: `cargo build -p`, saying which dependencies it compiled again
# after the workspace build (features resolved for one package differ: workspace-hack/Cargo.toml).
build_function() {
    log "cargo build -p $1 --bin $2"
    cargo build -q -p "$1" --bin "$2" --message-format json >"$OUT/cargo/build-$2.json"
    "$ROOT/.venv-tools/bin/python" - "$OUT/cargo/build-$2.json" <<'EOF' >&2
import json, sys
rebuilt = set()
for line in open(sys.argv[1]):
    m = json.loads(line)
    # Dependencies from a registry: the workspace's own crates may differ in features by design.
    if m.get("reason") == "compiler-artifact" and not m["fresh"] and "registry" in m["package_id"]:
        rebuilt.add(m["target"]["name"])
if rebuilt:
    print(f"[local-invoke] note: compiled again for this package's features (add them to "
          f"workspace-hack/Cargo.toml): {', '.join(sorted(rebuilt))}")
EOF
}

invoke_cargo() {
    source scripts/env.sh
    local failed=0 port=9600 entry name crate logical payload output first
    mkdir -p "$OUT/cargo"
    for entry in "${FUNCTIONS[@]}"; do
        IFS=: read -r name crate logical <<<"$entry"
        [[ -f "$OUT/trailwatch-$name.env" ]] || write_env
        port=$((port + 1))
        # Built first: `cargo run -p` (what watch runs) must find it built, or watch's
        # --timeout would kill a build that an invoke started.
        build_function "$crate" "trailwatch-$name" || return 1

        # No settings at all: a selector dry run is answered; anything else fails at once,
        # saying why (never a wait).
        start_watch "$name" "$crate" "$port" || return 1
        if [[ "$name" == select ]]; then
            output="$OUT/cargo/bare-dry-run.json"
            if ! lambda_invoke "$name" "$port" events/select/dry-run.json "$output" \
                || ! check "cargo (no settings)" events/select/dry-run.json "$output"; then
                failed=1
            fi
        fi
        first="$(payloads_of "$name" | grep -v dry-run | head -n 1)"
        output="$OUT/cargo/bare-$(basename "$first")"
        lambda_invoke "$name" "$port" "$first" "$output" || true
        expect_cannot_start "cargo (no settings) $first" "$output" || failed=1
        stop_watch

        start_watch "$name" "$crate" "$port" "$OUT/trailwatch-$name.env" || return 1
        for payload in $(payloads_of "$name"); do
            output="$OUT/cargo/$(basename "$payload")"
            if ! lambda_invoke "$name" "$port" "$payload" "$output"; then
                log "FAILED: cargo lambda invoke trailwatch-$name --data-file $payload (exit $?):"
                tail -n 5 "$output" >&2
                tail -n 5 "$OUT/cargo/watch-$name.log" >&2
                failed=1
            elif ! check cargo "$payload" "$output"; then
                failed=1
            fi
        done
        stop_watch
    done
    return $failed
}

invoke_sam() {
    source scripts/env.sh
    if ! DOCKER_HOST="$(scripts/docker.sh host)" docker info >/dev/null 2>&1; then
        log "SKIPPED: no Docker daemon answers ($(scripts/docker.sh why)); sam local invoke needs one"
        return 0
    fi
    export DOCKER_HOST
    DOCKER_HOST="$(scripts/docker.sh host)"
    local build="${SAM_BUILD_DIR:-target/sam-build}"
    [[ -f "$build/template.yaml" ]] || die "no $build: run sam build --build-dir target/sam-build"
    local image failed=0 entry name crate logical payload output
    image="$(scripts/docker.sh image)"
    mkdir -p "$OUT/sam"
    for entry in "${FUNCTIONS[@]}"; do
        IFS=: read -r name crate logical <<<"$entry"
        [[ -f "$OUT/trailwatch-$name.json" ]] || write_env
        for payload in $(payloads_of "$name"); do
            output="$OUT/sam/$(basename "$payload")"
            # Host networking: moto listens on 127.0.0.1 (scripts/sam_local.py makes SAM's
            # --docker-network host do that, and passes AWS_ENDPOINT_URL in). The image is built
            # on this machine (scripts/docker.sh image); SAM would otherwise pull public.ecr.aws.
            if ! AWS_ENDPOINT_URL="$(endpoint)" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
                timeout "$TIMEOUT" "$ROOT/.venv-sam/bin/python" scripts/sam_local.py local invoke "$logical" \
                --template "$build/template.yaml" \
                --event "$payload" --env-vars "$OUT/trailwatch-$name.json" \
                --docker-network host --skip-pull-image --invoke-image "$image" \
                --region us-east-1 >"$output" 2>"$output.log"; then
                log "FAILED: sam local invoke $logical --event $payload (exit $?):"
                tail -n 8 "$output.log" >&2
                failed=1
            elif ! check sam "$payload" "$output"; then
                failed=1
            fi
        done
    done
    return $failed
}

case "${1:-}" in
    env) write_env ;;
    cargo) write_env && invoke_cargo ;;
    sam) write_env && invoke_sam ;;
    *)
        echo "usage: $0 env|cargo|sam" >&2
        exit 2
        ;;
esac
