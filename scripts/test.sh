#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), starts moto on 127.0.0.1 and a
# Docker daemon of its own, runs every test (Rust unit and integration tests, the moto-backed
# end-to-end tests on template.yaml deployed into moto), the lints (rustfmt, clippy, cfn-lint,
# sam validate --lint, checkov), the README's local invokes (cargo lambda watch/invoke of every
# payload in events/), `sam build`, and `sam local invoke` of every payload in a container
# (skipped, saying why, where the machine cannot run one), then stops moto and Docker.
#
#   scripts/test.sh                     everything
#   TRAILWATCH_SKIP_SAM_BUILD=1 scripts/test.sh   all but `sam build` and the container invokes
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started=$SECONDS
# Each step's start, and at the end what each one cost (the CI budget is ~45 min on 2 cores).
costs=()
step_name="" step_started=$SECONDS
step() {
    [[ -n "$step_name" ]] && costs+=("$(printf '%6d s  %s' "$((SECONDS - step_started))" "$step_name")")
    step_name="$*" step_started=$SECONDS
    printf '\n== [%4d s] %s\n' "$((SECONDS - started))" "$*"
}

# CI builds once from a clean clone: incremental caches (about 0.9 GB of target/debug here) would
# only cost disk.
if [[ -n "${CI:-}" ]]; then
    export CARGO_INCREMENTAL=0
fi

step "tools (project-local virtualenvs)"
scripts/tools.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh

step "moto server on 127.0.0.1"
scripts/moto.sh stop >/dev/null 2>&1 || true
scripts/moto.sh start
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true; scripts/docker.sh stop >/dev/null 2>&1 || true' EXIT
TRAILWATCH_TEST_ENDPOINT="$(cat target/moto.endpoint)"
export TRAILWATCH_TEST_ENDPOINT

step "Docker daemon (for sam local invoke)"
# Installs docker.io from Debian's packages when missing; a machine that cannot run it is said
# so here and the container invokes are skipped with the reason.
scripts/docker.sh start || echo "no Docker: $(scripts/docker.sh why); sam local invoke will be skipped"

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
cargo test --workspace --quiet 2>&1 | tee target/test-output.txt
grep -q "test result: ok" target/test-output.txt

step "template lint"
scripts/lint-template.sh

step "local invokes: cargo lambda watch + cargo lambda invoke of every payload in events/"
scripts/local-invoke.sh cargo

if [[ "${TRAILWATCH_SKIP_SAM_BUILD:-0}" != 1 ]]; then
    step "sam build (cargo-lambda, release)"
    # The release builds need about 1.1 GB more; the debug build (tests, clippy: 2.4 GB without
    # incremental caches) is not used again, so in CI, or when the disk is short, it goes
    # first. A CI run once failed here with "No space left on device" while both builds were
    # on disk.
    free_mb=$(($(df -Pk target | awk 'NR == 2 { print $4 }') / 1024))
    if [[ -d target/debug && ( -n "${CI:-}" || free_mb -lt 8192 ) ]]; then
        debug_mb=$(du -sm target/debug | cut -f1)
        rm -rf target/debug
        echo "removed target/debug (${debug_mb} MB; ${free_mb} MB were free${CI:+, CI is set})"
    fi
    sam build --template-file template.yaml --build-dir target/sam-build

    step "local invokes: sam local invoke of every payload in events/, in a container"
    scripts/local-invoke.sh sam
fi

step "done in $((SECONDS - started)) s"
printf '%s\n' "${costs[@]}"
