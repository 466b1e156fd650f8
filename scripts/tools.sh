#!/usr/bin/env bash
# Installs trailwatch's test and deploy tools into project-local virtualenvs (idempotent).
#
#   .venv-tools  moto[server], boto3, cargo-lambda (+ ziglang)   <- scripts/requirements-tools*.txt
#   .venv-sam    aws-sam-cli, cfn-lint                           <- scripts/requirements-sam*.txt
#   .venv-checkov  checkov (it pins boto3 and networkx versions the others cannot share)
#                                                                <- scripts/requirements-checkov*.txt
#
# Two venvs, because `sam build` (BuildMethod: rust-cargolambda) runs cargo-lambda, which finds zig
# through the first `python3` on PATH (`python3 -m ziglang`): the venv holding ziglang must come
# before SAM's venv. `source scripts/env.sh` sets that order.
#
# A venv is (re)built only when the stamp inside it does not match the hash of its requirement
# files and the interpreter, so a second run takes well under a second. The venvs are made and
# filled by uv (pinned, installed from the package registry into .venv-uv): from a cold cache
# the three take about a minute where pip took over ten (checkov's alone: 436 s with pip, 4 s
# with uv); the lock files are used as constraints either way.
#
# Usage: scripts/tools.sh [--force]      (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
FORCE=0
INSTALLED=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { printf '[tools] %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    log "error: $PYTHON not found (set PYTHON=...)" >&2
    exit 1
fi

# uv, the installer: pinned, so that a fresh clone resolves as this one did.
UV_VERSION=0.13.9
UV="$ROOT/.venv-uv/bin/uv"
# uv reads neither pip's configuration nor its variables: the same local wheels and CA bundle.
uv_args=()
[[ -n "${PIP_FIND_LINKS:-}" ]] && uv_args+=(--find-links "$PIP_FIND_LINKS")
if [[ -n "${PIP_CERT:-}" && -z "${SSL_CERT_FILE:-}" ]]; then
    export SSL_CERT_FILE="$PIP_CERT"
fi

ensure_uv() {
    if [[ -x "$UV" && "$("$UV" --version 2>/dev/null)" == "uv $UV_VERSION "* ]]; then
        return 0
    fi
    log "uv: installing uv==$UV_VERSION into .venv-uv"
    rm -rf "$ROOT/.venv-uv"
    "$PYTHON" -m venv "$ROOT/.venv-uv"
    "$ROOT/.venv-uv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
        "uv==$UV_VERSION"
}

# Hash of everything that decides a venv's contents.
venv_key() {
    local name="$1"
    {
        "$PYTHON" -c 'import sys; print(sys.version); print(sys.executable)'
        cat "$ROOT/scripts/requirements-$name.txt"
        if [[ -f "$ROOT/scripts/requirements-$name.lock.txt" ]]; then
            cat "$ROOT/scripts/requirements-$name.lock.txt"
        fi
    } | sha256sum | cut -d' ' -f1
}

# ensure_venv NAME DIR CHECK-COMMAND...
ensure_venv() {
    local name="$1" dir="$ROOT/$2"
    shift 2
    local req="$ROOT/scripts/requirements-$name.txt"
    local lock="$ROOT/scripts/requirements-$name.lock.txt"
    local stamp="$dir/.trailwatch-stamp"
    local key
    key="$(venv_key "$name")"

    if [[ $FORCE -eq 0 && -f "$stamp" && "$(cat "$stamp")" == "$key" && -x "$dir/bin/python" ]]; then
        log "$name: up to date in ${dir#"$ROOT"/} (stamp matches)"
        return 0
    fi

    local started=$SECONDS
    if [[ -d "$dir" ]]; then
        log "$name: requirements changed or venv incomplete: recreating ${dir#"$ROOT"/}"
        rm -rf "$dir"
    else
        log "$name: creating ${dir#"$ROOT"/} with $("$PYTHON" --version 2>&1)"
    fi
    ensure_uv
    # --seed: pip stays in the venv (the lock files are regenerated with its `pip freeze`).
    "$UV" venv --quiet --seed --python "$PYTHON" "$dir"

    local install_args=(--quiet --python "$dir/bin/python" "${uv_args[@]}" -r "$req")
    if [[ -f "$lock" ]]; then
        install_args+=(-c "$lock")
        log "$name: uv pip install -r ${req#"$ROOT"/} -c ${lock#"$ROOT"/}"
    else
        log "$name: uv pip install -r ${req#"$ROOT"/} (no lock file: transitive versions float)"
    fi
    "$UV" pip install "${install_args[@]}"

    # Prove the entry points run before stamping the venv as good.
    local cmd
    for cmd in "$@"; do
        log "$name: check: $cmd"
        (PATH="$dir/bin:$PATH"; eval "$cmd") >/dev/null
    done

    echo "$key" >"$stamp"
    INSTALLED=1
    log "$name: installed in $((SECONDS - started))s"
}

ensure_venv tools .venv-tools \
    "moto_server --help" \
    "python -c 'import boto3, moto'" \
    "cargo-lambda lambda --version" \
    "python -m ziglang version"
ensure_venv sam .venv-sam \
    "sam --version" \
    "cfn-lint --version"
ensure_venv checkov .venv-checkov \
    "checkov --version"

if [[ $INSTALLED -eq 1 ]]; then
    # shellcheck source=scripts/env.sh
    source "$ROOT/scripts/env.sh"
    log "versions: $(moto_server --version 2>/dev/null || echo "moto $(python -c 'import moto; print(moto.__version__)')")," \
    "$(cargo-lambda lambda --version 2>/dev/null | head -1), $(sam --version), cfn-lint $(cfn-lint --version | awk '{print $2}')"
fi
log "done: run 'source scripts/env.sh' to put the tools on PATH"
