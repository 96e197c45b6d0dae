#!/usr/bin/env bash
# Propagation benchmark: BENCH_PRODUCTS (200) products created at a user's shop A, delivered
# as signed Shopify webhooks BENCH_CONCURRENCY (8) at a time, each propagated to the user's
# shop B. Prints propagations per second against the sandbox's own productSet rate (same run)
# and p50/p99 from the source webhook's acknowledgement to the write at the target. Never
# asserts timings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh" >/dev/null
EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
  cargo run --release -q -p edge-sync-e2e --bin bench_propagation
