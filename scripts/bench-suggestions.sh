#!/usr/bin/env bash
# Suggestion benchmark: BENCH_EVENTS (500) signed Shopify deliveries through webhook-handler,
# each turned into a suggestion by the template generator in the user's Durable Object.
# Prints events processed per second and p50/p99 from acknowledgement to the suggestion row
# and to the WebSocket message; asserts only exactly-once (never timings).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh" >/dev/null
EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
  cargo run --release -q -p edge-sync-e2e --bin bench_suggestions
