#!/usr/bin/env bash
# The fault campaign, full size: seeded schedules of crashes (before and after every side
# effect of every step), lost responses, transient failures, duplicate step deliveries, source
# throttling and 5xx, and racing triggers, on the embedded engine across the sample, rest,
# Zendesk and Salesforce sources (tests/src/campaign.rs); then the deployed-stack campaign
# (real binaries, IAM-enforced roles, the independent ASL interpreter; tests/src/stack).
# Prints: schedules run, faults injected by kind, runs committed, runs failed cleanly, records
# lost (must be 0), records duplicated in committed output (must be 0).
#
# Usage: scripts/faults.sh [SCHEDULES=1000] [DEPLOYED_SCHEDULES=40]
# Builds with the test profile (the suite's build, shared); FERRY_FAULTS_RELEASE=1 for release.
# Env: FERRY_FAULT_P (per-call fault probability, default 0.05), FERRY_FAULT_RUNS (faulty runs
# per schedule before the settling run, default 3), FERRY_FAULT_SEED (first seed, default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
deployed="${2:-40}"
scripts/setup-venv.sh
scripts/setup-harness.sh
export FERRY_TEST_PYTHON="$PWD/.venv/bin/python" FERRY_MOTO_SERVER="$PWD/.venv/bin/moto_server"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export FERRY_FAULT_P="${FERRY_FAULT_P:-0.05}"
profile=()
if [ "${FERRY_FAULTS_RELEASE:-0}" = 1 ]; then
  profile=(--release)
  cargo build --release --workspace --features ferry-cli/remote --bins
  export FERRY_HARNESS_BIN_DIR="$PWD/target/release"
else
  # The deployed campaign runs the functions' binaries the test build makes.
  cargo test --workspace --features ferry-cli/remote --no-run >/dev/null 2>&1 || cargo test --workspace --features ferry-cli/remote --no-run
fi
echo "=== embedded engine: $n schedules"
FERRY_FAULT_SCHEDULES="$n" cargo test "${profile[@]}" --workspace --test integration -- --nocapture \
  faults::seeded_fault_schedules_commit_every_record_exactly_once
if [ "$deployed" -gt 0 ]; then
  echo "=== deployed stack: $deployed schedules"
  FERRY_DEPLOYED_FAULT_SCHEDULES="$deployed" \
    cargo test "${profile[@]}" --workspace --test integration -- --nocapture faults::deployed
fi
