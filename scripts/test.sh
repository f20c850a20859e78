#!/usr/bin/env bash
# The whole test suite: what the README's second command and CI (.ci/run) run.
#
# 1. Installs the pinned test-time Python tools into ./.venv (moto server, pyarrow, duckdb).
#    Tests that talk to AWS APIs start their own moto server on 127.0.0.1 from that venv and
#    stop it when they end; nothing needs to be started by hand.
# 2. Installs the deployed-stack harness's node tools (scripts/setup-harness.sh): an independent
#    ASL interpreter and an IAM policy simulator, pinned in tests/harness/package-lock.json.
# 3. Runs the offline deployment checks when their script exists (cfn-lint, sam validate,
#    ASL validator).
# 4. Builds and runs every Rust test in the workspace (cargo-nextest when installed), with the
#    CLI's `remote` feature (the deployed-stack tests drive `ferry --remote`).
# 5. Runs clippy over the library and every binary (not their tests): the crate roots deny
#    `unwrap_used` and `expect_used`, so a panic-on-error outside tests fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "==> test-time Python tools (.venv)"
scripts/setup-venv.sh
export FERRY_TEST_PYTHON="$root/.venv/bin/python"
export FERRY_MOTO_SERVER="$root/.venv/bin/moto_server"
# Dummy credentials: AWS adapters only ever reach the local moto server in tests.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_PROFILE || true

echo "==> deployed-stack harness tools (tests/harness/node_modules)"
scripts/setup-harness.sh

if [ -x scripts/check-deploy.sh ]; then
  echo "==> offline deployment checks"
  scripts/check-deploy.sh
fi

echo "==> cargo tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --features ferry-cli/remote --no-fail-fast --failure-output final "$@"
else
  cargo test --workspace --features ferry-cli/remote --no-fail-fast "$@"
fi

echo "==> clippy: no unwrap/expect outside tests"
cargo clippy --workspace --lib --bins --features ferry-cli/remote --quiet -- -A clippy::all
