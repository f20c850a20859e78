#!/usr/bin/env bash
# Install the deployed-stack harness's node tools (tests/harness: aws-local-stepfunctions, the
# independent ASL interpreter, and @cloud-copilot/iam-simulate, the IAM policy simulator) at the
# versions pinned in tests/harness/package-lock.json. Idempotent: reinstalls only when the lock
# file changes. Needs Node.js 20+ and the npm registry.
set -euo pipefail
cd "$(dirname "$0")/../tests/harness"
stamp=node_modules/.ferry-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
echo "$want" > "$stamp"
