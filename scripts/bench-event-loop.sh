#!/usr/bin/env bash
# Event-loop benchmark: BENCH_USERS (1,000) users' background loops at BENCH_INTERVAL_SECS
# (5, the floor) with nothing changing, over BENCH_SECONDS (30). Prints the Workers' CPU per
# idle tick against the same process's idle CPU without loops (same run), ticks per second
# and memory. Never asserts timings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/bootstrap.sh" >/dev/null
EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
  cargo run --release -q -p edge-sync-e2e --bin bench_event_loop
