#!/usr/bin/env bash
# Lints template.yaml offline: cfn-lint (errors, warnings AND informational findings),
# `sam validate --lint` and checkov (every check passes or is skipped in the template with its
# reason). Exits non-zero on any finding. Needs .venv-sam and .venv-checkov (scripts/tools.sh).
#
# Usage: scripts/lint-template.sh [TEMPLATE]      (default: template.yaml at the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="${1:-$ROOT/template.yaml}"
SAM_BIN="$ROOT/.venv-sam/bin"

if [[ ! -x "$SAM_BIN/cfn-lint" || ! -x "$SAM_BIN/sam" ]]; then
    echo "[lint] error: $SAM_BIN/{cfn-lint,sam} missing: run scripts/tools.sh first" >&2
    exit 1
fi

# Nothing here talks to AWS: a dummy region and dummy credentials keep both tools from looking for
# a real profile, and HOME-level AWS config is ignored.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE
export SAM_CLI_TELEMETRY=0

status=0
echo "[lint] $SAM_BIN/cfn-lint ${TEMPLATE#"$ROOT"/} --include-checks I"
if ! "$SAM_BIN/cfn-lint" "$TEMPLATE" --include-checks I; then
    status=1
fi

echo "[lint] sam validate --lint --region us-east-1 --template-file ${TEMPLATE#"$ROOT"/}"
# sam validate prints findings but may still exit 0 on some of them: require its success line too.
out="$("$SAM_BIN/sam" validate --lint --region us-east-1 --template-file "$TEMPLATE" 2>&1)" || status=1
echo "$out"
grep -q "is a valid SAM Template" <<<"$out" || status=1

CHECKOV="$ROOT/.venv-checkov/bin/checkov"
[[ -x "$CHECKOV" ]] || { echo "[lint] error: $CHECKOV missing: run scripts/tools.sh first" >&2; exit 1; }
# --skip-download: no guideline download (the machines reach package registries only). It exits
# non-zero on a failed check; the summary line counts passed, failed and skipped ones.
echo "[lint] checkov -f ${TEMPLATE#"$ROOT"/} --framework cloudformation --skip-download"
"$CHECKOV" -f "$TEMPLATE" --framework cloudformation --skip-download --compact >"$ROOT/target/checkov.txt" 2>&1 || status=1
grep -E "^(Passed checks|Check:|\s+FAILED)" "$ROOT/target/checkov.txt" || tail -n 5 "$ROOT/target/checkov.txt"

if [[ $status -eq 0 ]]; then
    echo "[lint] OK: no findings"
else
    echo "[lint] FAILED" >&2
fi
exit $status
