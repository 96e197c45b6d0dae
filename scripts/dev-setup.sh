#!/usr/bin/env bash
# The local Edge Sync stack: PostgreSQL, the provider sandbox (stands in for Keap and
# Shopify) and the three Workers in one workerd process (scripts/local-stack.mjs: Miniflare,
# as `wrangler dev` runs them, with service bindings in-process as on Cloudflare).
#
#   scripts/dev-setup.sh start-all   bootstrap, start everything, wait for green health, exit
#   scripts/dev-setup.sh stop-all    stop exactly the processes start-all started
#   scripts/dev-setup.sh status      what runs, and each /health
#   scripts/dev-setup.sh test-all    every test: native unit tests and end-to-end scenarios
#
# Ports (override with env): COORDINATOR_PORT=8787 SYNC_WORKER_PORT=8788
# WEBHOOK_HANDLER_PORT=8789 SANDBOX_PORT=8790 CRON_TRIGGER_PORT=8791. Logs, pids and persisted Worker state
# (Durable Objects, KV) live in .edge-sync/ and survive restarts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

COORDINATOR_PORT="${COORDINATOR_PORT:-8787}"
SYNC_WORKER_PORT="${SYNC_WORKER_PORT:-8788}"
WEBHOOK_HANDLER_PORT="${WEBHOOK_HANDLER_PORT:-8789}"
SANDBOX_PORT="${SANDBOX_PORT:-8790}"
CRON_TRIGGER_PORT="${CRON_TRIGGER_PORT:-8791}"
SANDBOX_SEED="${SANDBOX_SEED:-42}"
SANDBOX_KEAP_CONTACTS="${SANDBOX_KEAP_CONTACTS:-1000}"
SANDBOX_URL="http://127.0.0.1:$SANDBOX_PORT"
HEALTH_TIMEOUT_SECS="${HEALTH_TIMEOUT_SECS:-180}"
PIDS="$EDGE_SYNC_HOME/pids"
LOGS="$EDGE_SYNC_HOME/logs"

port_of() {
  case "$1" in
    sync-coordinator) echo "$COORDINATOR_PORT" ;;
    sync-worker) echo "$SYNC_WORKER_PORT" ;;
    webhook-handler) echo "$WEBHOOK_HANDLER_PORT" ;;
    provider-sandbox) echo "$SANDBOX_PORT" ;;
  esac
}

# Starts a command in its own process group (so stop-all can stop its children too).
start_process() {
  local name="$1"; shift
  if pid="$(our_pid "$name")"; then
    echo "$name already running (pid $pid)"; return
  fi
  local port; port="$(port_of "$name")"
  if port_in_use "$port"; then
    die "port $port for $name is taken by another process; set the port variable (see --help)"
  fi
  launch_detached "$name" "$@"
}

# Waits for a green /health of $1 at $2, while process $3 (default: $1) runs.
wait_healthy() {
  local name="$1" url="$2" process="${3:-$1}" deadline=$((SECONDS + HEALTH_TIMEOUT_SECS)) body code
  while [ $SECONDS -lt $deadline ]; do
    our_pid "$process" >/dev/null || { tail -n 30 "$LOGS/$process.log" >&2; die "$process exited during start-up (log: $LOGS/$process.log)"; }
    code="$(curl -s -o "$EDGE_SYNC_HOME/health-$name.json" -w '%{http_code}' "$url" 2>/dev/null || true)"
    if [ "$code" = 200 ]; then
      body="$(cat "$EDGE_SYNC_HOME/health-$name.json")"
      printf '  %-17s %s  %s\n' "$name" "$url" "$body"
      return
    fi
    sleep 1
  done
  cat "$EDGE_SYNC_HOME/health-$name.json" >&2 2>/dev/null || true
  die "$name not healthy after ${HEALTH_TIMEOUT_SECS}s (log: $LOGS/$name.log)"
}

# The three Workers in one workerd process (scripts/local-stack.mjs), each on its own port,
# service-binding calls in-process as on Cloudflare. Each Worker reads its own config
# directory (its wrangler file and a `.dev.vars` with only its own secrets); logs go to
# $LOGS/<worker>.log; the launcher fires the sync-worker's cron at its times.
start_workers() {
  local args=() worker
  if pid="$(our_pid local-stack)"; then
    echo "the Workers are already running (pid $pid)"; return
  fi
  for worker in "${WORKERS[@]}"; do
    args+=(--worker "$worker=$(local_worker_config "$worker" "$EDGE_SYNC_HOME/wrangler/$worker"):$(port_of "$worker")")
    if port_in_use "$(port_of "$worker")"; then
      die "port $(port_of "$worker") for $worker is taken by another process; set the port variable (see --help)"
    fi
  done
  if port_in_use "$CRON_TRIGGER_PORT"; then
    die "port $CRON_TRIGGER_PORT for the cron trigger is taken by another process; set CRON_TRIGGER_PORT"
  fi
  # The guard keeps the local Hyperdrive proxy alive while PostgreSQL is down.
  launch_detached local-stack env CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE="$DATABASE_URL_LOCAL" \
    node --import "file://$ROOT/scripts/wrangler-dev-guard.mjs" "$ROOT/scripts/local-stack.mjs" \
    --persist "$EDGE_SYNC_HOME/state/v3" --log-dir "$LOGS" --run-crons \
    --trigger-port "$CRON_TRIGGER_PORT" \
    --var "KEAP_AUTHORIZE_URL=$SANDBOX_URL/app/oauth/authorize" \
    --var "KEAP_TOKEN_URL=$SANDBOX_URL/token" \
    --var "KEAP_API_BASE_URL=$SANDBOX_URL/crm" \
    --var "SHOPIFY_ADMIN_BASE_URL=$SANDBOX_URL/shopify/{shop}" \
    --var "KEAP_REDIRECT_URI=http://127.0.0.1:$COORDINATOR_PORT/oauth/callback" \
    --var "SHOPIFY_REDIRECT_URI=http://127.0.0.1:$COORDINATOR_PORT/oauth/shopify/callback" \
    --var "KEAP_REST_V1_BASE_URL=$SANDBOX_URL/crm/rest/v1" \
    --var "WEBHOOK_BASE_URL=http://127.0.0.1:$WEBHOOK_HANDLER_PORT" \
    --var "ENABLE_TEST_ROUTES=true" \
    "${args[@]}"
}

start_all() {
  "$ROOT/scripts/bootstrap.sh"
  mkdir -p "$PIDS" "$LOGS" "$EDGE_SYNC_HOME/state"
  DATABASE_URL_LOCAL="$(hyperdrive_local_url "$(worker_database_url "$(cat "$EDGE_SYNC_HOME/database_url")")")"
  local sandbox_url="$SANDBOX_URL"

  say "starting the provider sandbox on $sandbox_url"
  start_process provider-sandbox "$ROOT/target/release/provider-sandbox" \
    --host 127.0.0.1 --port "$SANDBOX_PORT" --seed "$SANDBOX_SEED" \
    --keap-contacts "$SANDBOX_KEAP_CONTACTS" --state-file "$EDGE_SYNC_HOME/state/provider-sandbox.json"

  say "starting the Workers (one workerd process)"
  start_workers

  say "waiting for health"
  wait_healthy provider-sandbox "$sandbox_url/__sandbox/health"
  for worker in "${WORKERS[@]}"; do
    wait_healthy "$worker" "http://127.0.0.1:$(port_of "$worker")/health" local-stack
  done

  connect_sandbox_accounts
  sync_everything

  cat <<EOT

Edge Sync is running:
  sync-coordinator  http://127.0.0.1:$COORDINATOR_PORT   (/oauth/*, /coordinator/*, /health)
  dashboard         http://127.0.0.1:$COORDINATOR_PORT/dashboard   (sign in with ADMIN_TOKEN)
  sync-worker       http://127.0.0.1:$SYNC_WORKER_PORT   (/sync/*, /health)
  cron on demand    http://127.0.0.1:$CRON_TRIGGER_PORT/cdn-cgi/handler/scheduled?cron=*/30+*+*+*+*
  webhook-handler   http://127.0.0.1:$WEBHOOK_HANDLER_PORT   (/webhook*, /health)
  provider sandbox  $sandbox_url   (Keap, Shopify, GitHub, GitLab, Bitbucket and model stand-in; control API under /__sandbox)
  PostgreSQL        $(url_host "$DATABASE_URL_LOCAL")
Logs: $LOGS/<name>.log (one JSON line per request; tail -f them as you would wrangler tail;
      the launcher and workerd: $LOGS/local-stack.log)
Admin token: ADMIN_TOKEN in wrangler/.dev.vars
Stop with: scripts/dev-setup.sh stop-all
EOT
}

dev_var() { grep -m1 "^$1=" "$ROOT/wrangler/.dev.vars" | cut -d= -f2-; }

# Follows one OAuth flow like a browser: start (admin) -> provider authorize (auto-approve
# in the sandbox) -> our callback. Prints the callback's page title on success.
oauth_dance() {
  local start_url="$1" admin location
  admin="$(dev_var ADMIN_TOKEN)"
  location="$(curl -s -o /dev/null -w '%{redirect_url}' -H "Authorization: Bearer $admin" "$start_url")"
  [ -n "$location" ] || die "no redirect from $start_url"
  location="$(curl -s -o /dev/null -w '%{redirect_url}' "$location")"
  [ -n "$location" ] || die "the sandbox did not redirect back"
  curl -sf "$location" | grep -o '<h1>[^<]*</h1>' | sed 's/<[^>]*>//g' \
    || die "OAuth callback failed: $(curl -s "$location")"
}

# Connects the sandbox's Keap account and Shopify shop through the real OAuth flows, unless
# they are already connected and active (state persists across restarts).
connect_sandbox_accounts() {
  local coordinator="http://127.0.0.1:$COORDINATOR_PORT" listing
  listing="$(curl -s -H "Authorization: Bearer $(dev_var ADMIN_TOKEN)" "$coordinator/coordinator/connections")"
  say "connecting the sandbox accounts through OAuth"
  local provider start
  for provider in keap shopify; do
    if node -e 'const [list, p] = process.argv.slice(1);
        process.exit(JSON.parse(list).connections.some(c => c.provider === p && c.status === "active") ? 0 : 1)' \
        "$listing" "$provider" 2>/dev/null; then
      echo "  $provider: already connected"
      continue
    fi
    case "$provider" in
      keap) start="$coordinator/oauth/initiate?user_id=local-dev" ;;
      shopify) start="$coordinator/oauth/shopify/install?user_id=local-dev&shop=edge-sync-dev.myshopify.com" ;;
    esac
    echo "  $provider: $(oauth_dance "$start")"
  done
  connect_demo_repositories
}

# Connects the sandbox's demo repository on GitHub, GitLab and Bitbucket (a fresh sandbox
# token each start: the sandbox keeps tokens in memory; connecting again replaces the token
# of the same connection) and starts local-dev's event loop, so repository events (stale
# pull requests and issues, new pull requests, failed CI runs) arrive without configuring
# anything.
connect_demo_repositories() {
  local coordinator="http://127.0.0.1:$COORDINATOR_PORT" admin body answer host api
  admin="$(dev_var ADMIN_TOKEN)"
  for host in github gitlab bitbucket; do
    case "$host" in
      github) api="$SANDBOX_URL/github" ;;
      gitlab) api="$SANDBOX_URL/gitlab/api/v4" ;;
      bitbucket) api="$SANDBOX_URL/bitbucket/2.0" ;;
    esac
    body="$(curl -sf -X POST "$SANDBOX_URL/__sandbox/$host/tokens" | node -e '
      let raw = ""; process.stdin.on("data", d => raw += d).on("end", () => process.stdout.write(JSON.stringify({
        provider: process.argv[1], user_id: "local-dev", repository: "edge-sync/demo-app",
        access_token: JSON.parse(raw).token, base_url: process.argv[2] })));' "$host" "$api")" \
      || die "the sandbox issued no $host token"
    answer="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $admin" \
      -H 'Content-Type: application/json' --data "$body" "$coordinator/coordinator/connections")"
    [ "$answer" = 201 ] || die "connecting the $host demo repository answered $answer"
    echo "  $host: edge-sync/demo-app connected (webhook registered, polled by local-dev's loop)"
  done
  answer="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' --data '{"interval_secs": 60}' \
    "$coordinator/coordinator/event-loop/local-dev/start")"
  [ "$answer" = 200 ] || die "starting local-dev's event loop answered $answer"
}

# The main job, end to end: a full sync of every connected account into Postgres, then a
# summary of rows per table and the time it took.
sync_everything() {
  local worker="http://127.0.0.1:$SYNC_WORKER_PORT" admin started deadline status
  admin="$(dev_var ADMIN_TOKEN)"
  say "running a full sync of the sandbox accounts"
  started=$SECONDS
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $admin" "$worker/sync/full"
  deadline=$((SECONDS + ${SYNC_TIMEOUT_SECS:-600}))
  while :; do
    status="$(curl -s -H "Authorization: Bearer $admin" "$worker/sync/status")"
    if node -e 'const s = JSON.parse(process.argv[1]);
        const rs = s.connections.flatMap(c => c.resources);
        process.exit(rs.length > 0 && rs.every(r => r.state !== "running") ? 0 : 1)' "$status" 2>/dev/null; then
      break
    fi
    [ $SECONDS -lt $deadline ] || { warn "sync still running after ${SYNC_TIMEOUT_SECS:-600}s; see scripts/dev-setup.sh status"; break; }
    sleep 1
  done
  node -e 'const s = JSON.parse(process.argv[1]);
    for (const c of s.connections) for (const r of c.resources)
      console.log(`  ${c.connection.provider}/${r.resource}: ${r.state}, ${r.records ?? 0} records in ${r.pages ?? 0} pages${r.error ? " (" + r.error + ")" : ""}`);' "$status"
  echo "  rows in Postgres:"
  psql "$(cat "$EDGE_SYNC_HOME/database_url")" -qtAX -F ' ' -c "
    SELECT format('    %-26s %s', t, n) FROM (
      SELECT 'keap_contacts' t, count(*) n FROM keap_contacts UNION ALL
      SELECT 'keap_opportunities', count(*) FROM keap_opportunities UNION ALL
      SELECT 'keap_orders', count(*) FROM keap_orders UNION ALL
      SELECT 'keap_tasks', count(*) FROM keap_tasks UNION ALL
      SELECT 'shopify_products', count(*) FROM shopify_products UNION ALL
      SELECT 'shopify_orders', count(*) FROM shopify_orders UNION ALL
      SELECT 'shopify_customers', count(*) FROM shopify_customers UNION ALL
      SELECT 'shopify_inventory_levels', count(*) FROM shopify_inventory_levels) x"
  echo "  full sync took $((SECONDS - started))s"
}

stop_all() {
  local any=0
  # (webhook-handler, sync-worker, sync-coordinator: pid files of stacks started before the
  # Workers shared one process.)
  for name in local-stack webhook-handler sync-worker sync-coordinator provider-sandbox; do
    if pid="$(our_pid "$name")"; then
      any=1
      # The process group holds the launcher's children (workerd).
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid" "$PIDS/$name.cmd"
  done
  [ "$any" = 1 ] || echo "nothing was running"
}

status() {
  for name in provider-sandbox "${WORKERS[@]}"; do
    local url="http://127.0.0.1:$(port_of "$name")/health"
    [ "$name" = provider-sandbox ] && url="http://127.0.0.1:$SANDBOX_PORT/__sandbox/health"
    local process="$name"
    [ "$name" = provider-sandbox ] || process=local-stack
    if pid="$(our_pid "$process")"; then
      printf '%-17s running (pid %s)  %s\n' "$name" "$pid" "$(curl -s --max-time 10 "$url" || echo 'no answer')"
    else
      printf '%-17s stopped\n' "$name"
    fi
  done
}

test_all() {
  "$ROOT/scripts/bootstrap.sh"
  say "running every test (native unit tests, simulations, end-to-end scenarios)"
  # End-to-end tests start whole stacks (a sandbox and one workerd process each); two at a
  # time fit a 2-core machine. Unit tests are instant either way.
  EDGE_SYNC_SANDBOX_BIN="$ROOT/target/release/provider-sandbox" \
    cargo test --workspace -- --test-threads="${E2E_TEST_THREADS:-2}"
}

case "${1:-}" in
  start-all) start_all ;;
  stop-all) stop_all ;;
  status) status ;;
  test-all) test_all ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
