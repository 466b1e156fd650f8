# Source me: puts trailwatch's tool venvs on PATH (after scripts/tools.sh installed them).
#
#   source scripts/env.sh
#
# Order matters: .venv-tools (cargo-lambda + ziglang) comes BEFORE .venv-sam. cargo-lambda finds
# zig by running `python3 -m ziglang` with the first python3 on PATH; if SAM's venv were first,
# `sam build` with BuildMethod rust-cargolambda fails with "Zig is not installed".
# The venvs are not "activated": nothing else in the shell changes. Safe to source repeatedly.

_trailwatch_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
for _trailwatch_bin in "$_trailwatch_root/.venv-sam/bin" "$_trailwatch_root/.venv-tools/bin"; do
    # Remove any earlier copy, then prepend: the last one prepended ends up first.
    PATH=":$PATH:"
    PATH="${PATH//:$_trailwatch_bin:/:}"
    PATH="${PATH#:}"
    PATH="${PATH%:}"
    PATH="$_trailwatch_bin:$PATH"
done
export PATH
# SAM CLI: no telemetry, no update checks (the machines here reach package registries only).
export SAM_CLI_TELEMETRY=0
unset _trailwatch_root _trailwatch_bin
