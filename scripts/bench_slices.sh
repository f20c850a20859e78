#!/usr/bin/env bash
# Slices on the embedded engine (scripts/bench.sh slices): a backfill of RECORDS sample accounts
# (default 5,000,000) into Parquet with 1, 2, 4 and 8 slices (source.slice.count = parallelism),
# each run in a fresh FERRY_HOME; prints records/s and the process's peak RSS. Then the same
# backfill in 5,000 chunks of 1,000 records (8 slices): the engine enforces AWS's 25,000 history
# events per execution and 256 KiB per state, so its success shows no execution nears them.
# Figures are printed, never asserted (docs/output.md, "Slices").
# Usage: scripts/bench_slices.sh [RECORDS] [SLICES...]
#        PROFILE=debug uses the test build's binary (quick looks only; figures in docs are release);
#        CHUNKS5000=0 skips the 5,000-chunk run; FERRY_BIN=path uses that ferry binary.
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-5000000}"
shift || true
counts=("$@")
[ ${#counts[@]} -eq 0 ] && counts=(1 2 4 8)
if [ -n "${FERRY_BIN:-}" ]; then
  ferry="$FERRY_BIN"   # a ferry binary already built (e.g. the quickstart's release build)
elif [ "${PROFILE:-release}" = debug ]; then
  cargo build -p ferry-cli --bins
  ferry="$PWD/target/debug/ferry"
else
  cargo build --release -p ferry-cli --bins   # the embedded engine needs no AWS SDK
  ferry="$PWD/target/release/ferry"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The data set is pinned (as_of) and the window holds all of it: every run reads the same rows.
flow() { # name slices chunk_records
  local page=$(( $3 < 10000 ? $3 : 10000 ))
  cat > "$work/$1.yaml" <<YAML
name: $1
source:
  connector: sample
  entity: accounts
  properties: { records: $records, page_size: $page, as_of: 2026-01-01T00:00:00Z }
  incremental: { field: updated_at }
  chunk: { records: $3 }
  slice: { count: $2 }
  parallelism: $2
destination:
  local: out
  format: parquet
  compression: zstd
trigger:
  on_demand: {}
YAML
}

run() { # name slices chunk_records
  flow "$1" "$2" "$3"
  local home="$work/home-$1"
  mkdir -p "$home"
  local start end
  start=$(date +%s.%N)
  ( cd "$work" && FERRY_HOME="$home" /usr/bin/time -f "%M" -o "$work/$1.rss" \
      "$ferry" run "$1.yaml" --from 2025-10-01T00:00:00Z --to 2026-01-01T00:00:00Z >"$work/$1.log" 2>&1 ) \
    || { cat "$work/$1.log"; exit 1; }
  end=$(date +%s.%N)
  python3 - "$records" "$start" "$end" "$(cat "$work/$1.rss")" "$2" "$3" <<'PY'
import sys
records, start, end, rss_kb, slices, chunk = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
secs = end - start
print(f"slices={slices:>2}  chunks={records // chunk:>5}  {secs:7.1f} s  {records / secs:>10,.0f} records/s  peak RSS {rss_kb / 1024:7.0f} MB")
PY
  rm -rf "$work/out" "$home"
}

echo "sample accounts: $records records, Parquet zstd, $(nproc) cores, ${PROFILE:-release} build"
for n in "${counts[@]}"; do
  run "s$n" "$n" 250000
done
if [ "${CHUNKS5000:-1}" != 0 ]; then
  echo "--- 5,000 chunks under the enforced limits"
  run "chunks5000" 8 $((records / 5000))
fi
