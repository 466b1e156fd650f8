#!/usr/bin/env bash
# Lints template.yaml offline: cfn-lint (errors, warnings AND informational findings) and
# `sam validate --lint`. Exits non-zero on any finding. Needs .venv-sam (scripts/tools.sh).
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

if [[ $status -eq 0 ]]; then
    echo "[lint] OK: no findings"
else
    echo "[lint] FAILED" >&2
fi
exit $status
