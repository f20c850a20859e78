#!/usr/bin/env bash
# Build the five Lambda functions for arm64 (provided.al2023) into .aws-sam/build with `sam build`.
#
# Installs, on first use, into the project-local (gitignored) .venv-deploy/build venv:
#   cargo-lambda   the `cargo lambda` subcommand SAM's rust-cargolambda builder runs
#   ziglang        the cross linker cargo-lambda uses for aarch64-unknown-linux-gnu
# and uses aws-sam-cli from .venv-deploy/sam (scripts/check-deploy.sh install).
# Needs rustup's aarch64-unknown-linux-gnu target (added here if rustup is present).
#
# A cold build compiles the whole dependency tree (arrow, parquet, the AWS SDK) for aarch64:
# expect tens of minutes on a 2-core machine; later builds are incremental.
#
# Usage: scripts/sam-build.sh [extra sam build args]
#   CARGO_TARGET_DIR=/somewhere scripts/sam-build.sh   keeps the cross build out of ./target
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_LAMBDA_VERSION="${CARGO_LAMBDA_VERSION:-1.9.2}"
ZIGLANG_VERSION="${ZIGLANG_VERSION:-0.14.1}"
PYTHON="${PYTHON:-python3}"
BUILD_VENV="$ROOT/.venv-deploy/build"
STEPS=(start-run fetch-page transform-batch write-s3 finalize)

log() { printf '[sam-build] %s\n' "$*" >&2; }

pins="cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION"
if [[ ! -f "$BUILD_VENV/.ferry-pins" || "$(cat "$BUILD_VENV/.ferry-pins")" != "$pins" ]]; then
    log "installing $pins into .venv-deploy/build"
    rm -rf "$BUILD_VENV"
    "$PYTHON" -m venv "$BUILD_VENV"
    # shellcheck disable=SC2086
    "$BUILD_VENV/bin/pip" install --quiet --disable-pip-version-check $pins
    echo "$pins" >"$BUILD_VENV/.ferry-pins"
fi
"$ROOT/scripts/check-deploy.sh" install-sam

# cargo-lambda finds zig through the ziglang package's `python -m ziglang`, or a `zig` on PATH.
export PATH="$BUILD_VENV/bin:$PATH"
if ! command -v zig >/dev/null; then
    zigdir="$("$BUILD_VENV/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')"
    export PATH="$zigdir:$PATH"
fi
if command -v rustup >/dev/null; then
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        rustup target add aarch64-unknown-linux-gnu
fi

export SAM_CLI_TELEMETRY=0
start=$(date +%s)
# SAM runs one `cargo lambda build --release --arm64 --bin <step>` per function (in
# functions/<step>); a first build of all five in one cargo invocation shares the work and the
# jobserver, and leaves SAM's five builds with nothing to compile.
bin_args=()
for s in "${STEPS[@]}"; do bin_args+=(--package "$s"); done
log "cargo lambda build --release --arm64 ${bin_args[*]}"
cargo lambda build --release --arm64 "${bin_args[@]}"
log "sam build"
"$ROOT/.venv-deploy/sam/bin/sam" build "$@"

for s in "${STEPS[@]}"; do
    id="$(echo "$s" | sed -E 's/(^|-)([a-z0-9])/\U\2/g')Function"   # start-run -> StartRunFunction
    f=".aws-sam/build/$id/bootstrap"
    [[ -f "$f" ]] || { log "missing $f"; exit 1; }
    desc="$(file -b "$f" 2>/dev/null || true)"
    if [[ -n "$desc" && "$desc" != *aarch64* ]]; then log "$f is not aarch64: $desc"; exit 1; fi
    log "$f: $(du -h "$f" | cut -f1) ${desc%%,*}"
done
log "done in $(( $(date +%s) - start )) s"
