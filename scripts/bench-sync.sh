#!/usr/bin/env bash
# Sync benchmark: a full sync of BENCH_CONTACTS (default 100,000) sandbox Keap contacts
# through the Workers (one workerd, scripts/local-stack.mjs) into local Postgres, against what
# is measured in the same run: the sandbox's page serving, the native page-by-page path
# (same pages, parser and SQL) and the database's ceiling (COPY + one upsert). Prints
# figures; asserts only correctness (zero loss), never timings. BENCH_PAGES_PER_INVOCATION
# (default 8, the Free-plan default of SYNC_MAX_PAGES_PER_INVOCATION) tunes the Worker side.
# Then, in the same run, a shop of BENCH_SHOPIFY_PRODUCTS products (default 50,000; 0 skips
# it) synced in full through a bulk operation and through pages: times, requests and ratio.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh" >/dev/null
EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
  cargo run --release -q -p edge-sync-e2e --bin bench_sync
