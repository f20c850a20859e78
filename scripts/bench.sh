#!/usr/bin/env bash
# ferry's benchmarks, with figures printed (never asserted in tests):
#   transform        task pipeline on 1,000,000 sample records (records/s, MB/s)
#   output           transform + encode per format on 1,000,000 records, peak memory
#   decode           response pages to Arrow: schema::scan against arrow-json alone, a flat
#                    and a nested page (ms/page, MB/s, records/s)
#   rest_throughput  rest connector vs the mock SaaS server, 1/4/16 requests in flight
#   sizing           the 1,000,000-record run in 64 MB files on the embedded engine
#   lambda-memory    each function's peak memory at the default chunk budget, release binaries
#                    behind the deployed-stack harness (docs/deploy.md, "Function sizing")
#   e2e              ferry's rest connector vs dlt's rest_api source against the same fast local
#                    API (bench-api), 1,000,000 records, cursor and offset paging, interleaved,
#                    rows checked: records/s, MB/s, CPU %, peak RSS, ferry ÷ dlt
#                    (scripts/bench_e2e.py; docs/performance.md)
#   slices           a 5,000,000-record backfill of the sample connector on the embedded engine
#                    with 1, 2, 4 and 8 slices (records/s, peak RSS), then the same backfill in
#                    5,000 chunks of 1,000 records under the engine's enforced AWS limits
#                    (scripts/bench_slices.sh; docs/output.md, "Slices")
# Usage: scripts/bench.sh [transform|output|decode|rest_throughput|sizing|lambda-memory|e2e|slices ...]
#        (default: all but e2e)
# Always --workspace (but e2e, which builds the quickstart's binary): building a single package changes feature unification and rebuilds the
# AWS SDK crates.
set -euo pipefail
cd "$(dirname "$0")/.."
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(transform output decode rest_throughput sizing lambda-memory)
for b in "${which[@]}"; do
  echo "=== $b"
  case "$b" in
    sizing)
      cargo test --release --workspace --test integration -- --ignored --nocapture output_e2e::one_million_records_in_64_mb_files ;;
    lambda-memory)
      scripts/setup-venv.sh && scripts/setup-harness.sh
      cargo build --release --workspace --features ferry-cli/remote --bins
      FERRY_HARNESS_BIN_DIR="$PWD/target/release" FERRY_TEST_PYTHON="$PWD/.venv/bin/python" \
        FERRY_MOTO_SERVER="$PWD/.venv/bin/moto_server" \
        cargo test --workspace --features ferry-cli/remote --test integration -- --nocapture stack_sizing:: ;;
    e2e)
      scripts/setup-venv.sh
      .venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/bench-requirements.txt
      # ferry as the quickstart builds it (no AWS SDK) but optimised, and the bench API
      # (its own small package, bench/).
      cargo build --release
      cargo build --release -p ferry-bench
      .venv/bin/python scripts/bench_e2e.py ;;
    slices)
      scripts/bench_slices.sh ;;
    transform|output|decode|rest_throughput)
      cargo bench --workspace --bench "$b" ;;
    *) echo "unknown bench '$b' (transform | output | decode | rest_throughput | sizing | lambda-memory | e2e | slices)" >&2; exit 2 ;;
  esac
done
