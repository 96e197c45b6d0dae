#!/usr/bin/env bash
# Webhook benchmark: genuinely signed Shopify deliveries against webhook-handler (the three
# Workers in one workerd) versus a no-op Rust Worker launched the same way, in the same run.
# Prints requests/s, p50/p99, the ratio to the no-op Worker, CPU time per request of the
# Workers' process (handler and coordinator share it), memory, and
# checks accepted == stored. BENCH_SECONDS (10), BENCH_CONCURRENCY (16).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh" >/dev/null
worker_build_env
(cd tests/noop-worker && worker-build --release >/dev/null 2>&1) || die "building the no-op baseline Worker failed"
EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
  cargo run --release -q -p edge-sync-e2e --bin bench_webhooks
