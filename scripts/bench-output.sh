#!/usr/bin/env bash
# Output figures: transform + encode throughput per format on 1,000,000 sample records with
# peak memory, then the 1,000,000-record / 64 MB file-sizing run on the embedded engine.
set -euo pipefail
cd "$(dirname "$0")/.."
nice -n 5 cargo bench -p ferry --bench output
nice -n 5 cargo test --release -p ferry-tests --test output_e2e -- --ignored --nocapture one_million_records_in_64_mb_files
