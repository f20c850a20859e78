#!/usr/bin/env bash
# Create ./.venv with the pinned test-time Python tools (moto server, pyarrow, duckdb).
# Idempotent: reinstalls only when scripts/python-requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/python-requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
