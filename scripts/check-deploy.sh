#!/usr/bin/env bash
# Offline checks of ferry's deployable artefacts. Needs no AWS account and no network at run time
# (only on the first run, to install the pinned tools into project-local, gitignored directories):
#   .venv-deploy/lint  cfn-lint 1.51.x   (1.51 still checks the properties inside SAM resources)
#   .venv-deploy/sam   aws-sam-cli       (own venv: it pins its own cfn-lint for `sam validate --lint`)
#   .tools/node        asl-validator     (npm, independent Amazon States Language validator)
# and checks samconfig.toml against the template's parameters (infra/check_samconfig.py).
#
# Usage: scripts/check-deploy.sh [install|install-sam|cfn-lint|samconfig|sam-validate|asl|all]   (default: all)
# Each check prints its wall time; the script exits non-zero on the first failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.51.5}"
SAM_CLI_VERSION="${SAM_CLI_VERSION:-1.170.0}"
ASL_VALIDATOR_VERSION="${ASL_VALIDATOR_VERSION:-4.0.0}"
PYTHON="${PYTHON:-python3}"

LINT_VENV="$ROOT/.venv-deploy/lint"
SAM_VENV="$ROOT/.venv-deploy/sam"
NODE_DIR="$ROOT/.tools/node"

# `sam validate` wants a region and credentials to exist; it never calls AWS with them.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-AKIAFERRYOFFLINECHECK}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-offline-check-not-a-secret}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0
export SAM_CLI_CONTEXT=0 2>/dev/null || true

log() { printf '[check-deploy] %s\n' "$*" >&2; }

timed() {
    local name="$1"; shift
    local start end
    start=$(date +%s.%N)
    "$@"
    echo
    end=$(date +%s.%N)
    log "$name: ok ($(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.1f", e-s}') s)"
}

ensure_venv() { # dir, pip requirement...
    local dir="$1"; shift
    local stamp="$dir/.ferry-pins"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$*" ]]; then return 0; fi
    log "installing $* into ${dir#"$ROOT"/}"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" >"$stamp"
}

install_lint() { ensure_venv "$LINT_VENV" "cfn-lint==$CFN_LINT_VERSION"; }
install_sam() { ensure_venv "$SAM_VENV" "aws-sam-cli==$SAM_CLI_VERSION"; }
install_asl() {
    local stamp="$NODE_DIR/.ferry-pins"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "asl-validator@$ASL_VALIDATOR_VERSION" ]]; then return 0; fi
    log "installing asl-validator@$ASL_VALIDATOR_VERSION into ${NODE_DIR#"$ROOT"/}"
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name":"ferry-deploy-tools","private":true}' >"$NODE_DIR/package.json"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent --save-exact "asl-validator@$ASL_VALIDATOR_VERSION"
    echo "asl-validator@$ASL_VALIDATOR_VERSION" >"$stamp"
}

run_cfn_lint() { install_lint; timed "cfn-lint template.yaml infra/dashboard.yaml" "$LINT_VENV/bin/cfn-lint" template.yaml infra/dashboard.yaml; }
run_samconfig() { install_lint; timed "samconfig.toml vs template.yaml" "$LINT_VENV/bin/python" infra/check_samconfig.py; }
run_sam_validate() {
    install_sam
    timed "sam validate --lint" "$SAM_VENV/bin/sam" validate --lint --region "$AWS_DEFAULT_REGION" --template-file template.yaml
}
run_asl() {
    install_asl
    timed "asl-validator flow-run.asl.json" "$NODE_DIR/node_modules/.bin/asl-validator" --json-path statemachines/flow-run.asl.json
}

case "${1:-all}" in
    install) install_lint; install_sam; install_asl ;;
    install-sam) install_sam ;;
    cfn-lint) run_cfn_lint ;;
    sam-validate) run_sam_validate ;;
    asl) run_asl ;;
    samconfig) run_samconfig ;;
    all) run_cfn_lint; run_samconfig; run_sam_validate; run_asl ;;
    *) echo "usage: $0 [install|install-sam|cfn-lint|samconfig|sam-validate|asl|all]" >&2; exit 2 ;;
esac
