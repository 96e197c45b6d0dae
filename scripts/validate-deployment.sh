#!/usr/bin/env bash
# Checks a deployment of Edge Sync (or the local stack) and says plainly what is wrong.
#
#   scripts/validate-deployment.sh health-only   every Worker's /health is healthy, and the
#                                                coordinator is reachable from sync-worker and
#                                                webhook-handler (their service bindings)
#   scripts/validate-deployment.sh config-only   on the Cloudflare account: bindings, secrets
#                                                present, cron set, Durable Object migration,
#                                                Hyperdrive target not a pooler
#   scripts/validate-deployment.sh [full]        both, plus an authenticated round trip: the
#                                                status endpoints answer the admin token and a
#                                                signed test webhook is accepted and stored
#
# Worker URLs: COORDINATOR_URL, SYNC_WORKER_URL, WEBHOOK_HANDLER_URL when set (the local stack:
# http://127.0.0.1:8787, :8788, :8789), else the ones scripts/deploy.sh recorded
# (.edge-sync/deploy/urls.env). Tokens and account settings: the environment, else .env
# (--env-file F). Exit status 0 when every check passes, 1 otherwise.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=full
ENV_FILE="$ROOT/.env"
while [ $# -gt 0 ]; do
  case "$1" in
    health-only|config-only|full) MODE="$1" ;;
    --env-file) [ $# -ge 2 ] || die "--env-file needs a file"; ENV_FILE="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (health-only, config-only or full)" ;;
  esac
  shift
done
command -v curl >/dev/null || die "curl not found"
command -v node >/dev/null || die "node not found"

# Settings: environment first, then .env (values taken literally), then the deploy record.
declare -A CONF=()
load() {
  local file="$1" line name value
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in [A-Za-z_]*=*) ;; *) continue ;; esac
    name="${line%%=*}"; value="${line#*=}"
    case "$value" in \"*\") value="${value:1:${#value}-2}" ;; \'*\') value="${value:1:${#value}-2}" ;; esac
    [ -n "${CONF[$name]:-}" ] || CONF[$name]="$value"
  done < "$file"
}
load "$ENV_FILE"
load "$EDGE_SYNC_HOME/deploy/urls.env"
conf() { if [ -n "${!1:-}" ]; then printf '%s' "${!1}"; else printf '%s' "${CONF[$1]:-}"; fi; }

FAILURES=()
fail() { FAILURES+=("$*"); printf '  FAIL %s\n' "$*"; }
pass() { printf '  ok   %s\n' "$*"; }

PRIVATE="$(mktemp -d)"
trap 'rm -rf "$PRIVATE"' EXIT

# http METHOD URL [TOKEN] [extra curl args...]: body in $PRIVATE/body, prints the status
# (000 when unreachable). Tokens go in a mode-600 header file, never on the command line.
http() {
  local method="$1" url="$2" token="${3:-}"; shift 3 || shift $#
  local args=(-sS -m 20 -o "$PRIVATE/body" -w '%{http_code}' -X "$method")
  if [ -n "$token" ]; then
    (umask 077; printf 'Authorization: Bearer %s\n' "$token" > "$PRIVATE/auth")
    args+=(-H "@$PRIVATE/auth")
  fi
  curl "${args[@]}" "$@" "$url" 2>/dev/null || true
}
body_get() { node -e 'let v; try { v = process.argv[1].split(".").reduce((o, k) => o == null ? o : o[k], JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"))); } catch { v = undefined; } process.stdout.write(v === undefined || v === null ? "" : String(v))' "$1" "$PRIVATE/body"; }

urls_needed() {
  local name
  for name in COORDINATOR_URL SYNC_WORKER_URL WEBHOOK_HANDLER_URL; do
    [ -n "$(conf $name)" ] || die "$name is not set and no deployment is recorded (.edge-sync/deploy/urls.env): run scripts/deploy.sh, or set COORDINATOR_URL, SYNC_WORKER_URL and WEBHOOK_HANDLER_URL (local stack: http://127.0.0.1:8787, :8788, :8789)"
  done
}

check_health() {
  say "health"
  urls_needed
  local w url status
  for w in sync-coordinator sync-worker webhook-handler; do
    case "$w" in
      sync-coordinator) url="$(conf COORDINATOR_URL)" ;;
      sync-worker) url="$(conf SYNC_WORKER_URL)" ;;
      webhook-handler) url="$(conf WEBHOOK_HANDLER_URL)" ;;
    esac
    status="$(http GET "${url%/}/health" "")"
    if [ "$status" = 000 ]; then fail "$w: $url/health unreachable (is it deployed? curl -i $url/health)"; continue; fi
    if [ "$status" != 200 ] || [ "$(body_get status)" != healthy ]; then
      fail "$w: /health answered $status: $(head -c 300 "$PRIVATE/body")"
    else
      pass "$w: /health healthy"
    fi
    if [ "$w" != sync-coordinator ]; then
      if [ "$(body_get services.coordinator)" = true ]; then pass "$w: reaches the coordinator"
      else fail "$w: cannot reach the coordinator over its service binding (deploy sync-coordinator first; npx wrangler deployments list -c wrangler/$w.toml)"; fi
    fi
  done
}

# --- config (Cloudflare API) ------------------------------------------------------------------
API="${CLOUDFLARE_API_BASE_URL:-https://api.cloudflare.com/client/v4}"; API="${API%/}"
cf() {
  local status
  status="$(http GET "$API$1" "$(conf CLOUDFLARE_API_TOKEN)")"
  node -e 'let r; try { r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); } catch {}
    if (!r || !r.success) { console.error(((r && r.errors) || []).map(e => `${e.code}: ${e.message}`).join("; ") || `HTTP ${process.argv[2]}`); process.exit(1); }
    process.stdout.write(JSON.stringify(r.result));' "$PRIVATE/body" "$status"
}
has() { node -e 'const r = JSON.parse(process.argv[1]); process.exit(eval(process.argv[2]) ? 0 : 1)' "$1" "$2"; }

check_config() {
  say "configuration on the Cloudflare account"
  local account token settings scripts w
  account="$(conf CLOUDFLARE_ACCOUNT_ID)"; token="$(conf CLOUDFLARE_API_TOKEN)"
  [ -n "$account" ] && [ -n "$token" ] || { fail "config checks need CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN (.env)"; return; }
  if ! cf /user/tokens/verify >/dev/null 2>"$PRIVATE/err"; then
    fail "the API token is invalid or expired: $(cat "$PRIVATE/err")"; return
  fi
  scripts="$(cf "/accounts/$account/workers/scripts" 2>"$PRIVATE/err")" || { fail "cannot list Workers: $(cat "$PRIVATE/err")"; return; }
  for w in "${WORKERS[@]}"; do
    if ! has "$scripts" "r.some(s => s.id === '$w')"; then
      fail "$w is not deployed (run scripts/deploy.sh)"; continue
    fi
    settings="$(cf "/accounts/$account/workers/scripts/$w/settings" 2>"$PRIVATE/err")" || { fail "$w: cannot read settings: $(cat "$PRIVATE/err")"; continue; }
    local want=("kv_namespace SYNC_CACHE")
    case "$w" in
      sync-coordinator) want+=("durable_object_namespace SYNC_COORDINATOR" "hyperdrive HYPERDRIVE" "service SYNC_WORKER") ;;
      sync-worker) want+=("hyperdrive HYPERDRIVE" "service COORDINATOR") ;;
      webhook-handler) want+=("service COORDINATOR") ;;
    esac
    local b missing=()
    for b in "${want[@]}"; do
      has "$settings" "r.bindings.some(b => b.type === '${b% *}' && b.name === '${b#* }')" || missing+=("${b#* } (${b% *})")
    done
    if [ ${#missing[@]} -eq 0 ]; then pass "$w: bindings"; else fail "$w: missing bindings: ${missing[*]}"; fi
    # Secrets this Worker must hold (wrangler/secrets.txt; the optional ones are not required).
    local name secrets_missing=()
    for name in ADMIN_TOKEN WEBHOOK_HANDLER_TOKEN SYNC_WORKER_TOKEN COORDINATOR_TOKEN TOKEN_ENCRYPTION_KEY KEAP_CLIENT_SECRET SHOPIFY_CLIENT_SECRET; do
      [[ " $(secret_holders "$name") " == *" $w "* ]] || continue
      has "$settings" "r.bindings.some(b => b.type === 'secret_text' && b.name === '$name')" || secrets_missing+=("$name")
    done
    # A model endpoint needs its key.
    if [ "$w" = sync-coordinator ] && has "$settings" "r.bindings.some(b => b.type === 'plain_text' && b.name === 'MODEL_BASE_URL')" \
      && ! has "$settings" "r.bindings.some(b => b.type === 'secret_text' && b.name === 'MODEL_API_KEY')"; then
      secrets_missing+=("MODEL_API_KEY")
    fi
    if [ ${#secrets_missing[@]} -eq 0 ]; then pass "$w: secrets present"; else fail "$w: secrets not set: ${secrets_missing[*]} (scripts/deploy.sh puts them)"; fi
    if [ "$w" = sync-coordinator ]; then
      if has "$scripts" "r.some(s => s.id === '$w' && s.migration_tag === 'v1')"; then pass "$w: Durable Object migration v1 applied"
      else fail "$w: Durable Object migration v1 not applied (wrangler deploy -c .edge-sync/deploy/sync-coordinator.toml)"; fi
    fi
    if [ "$w" = sync-worker ]; then
      local schedules
      schedules="$(cf "/accounts/$account/workers/scripts/$w/schedules" 2>/dev/null || echo '{}')"
      if has "$schedules" "(r.schedules || []).some(s => s.cron === '*/30 * * * *')"; then pass "$w: cron */30 * * * *"
      else fail "$w: cron trigger */30 * * * * not set"; fi
    fi
    if has "$settings" "r.bindings.some(b => b.type === 'hyperdrive')"; then
      local id config
      id="$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).bindings.find(b => b.type === "hyperdrive").id)' "$settings")"
      if config="$(cf "/accounts/$account/hyperdrive/configs/$id" 2>"$PRIVATE/err")"; then
        if has "$config" "String(r.origin.port) === '6543' || /pooler\\.supabase\\.com/.test(r.origin.host)"; then
          fail "$w: Hyperdrive $id points at a connection pooler; use the direct connection (docs/manual-setup.md)"
        else pass "$w: Hyperdrive targets the direct connection"; fi
      else
        fail "$w: Hyperdrive config $id not found: $(cat "$PRIVATE/err")"
      fi
    fi
  done
}

check_round_trip() {
  say "authenticated round trip"
  urls_needed
  local admin status secret body sig delivery url
  admin="$(conf ADMIN_TOKEN)"
  [ -n "$admin" ] || { fail "ADMIN_TOKEN is not set (.env or environment)"; return; }
  status="$(http GET "$(conf COORDINATOR_URL)/coordinator/connections" "$admin")"
  [ "$status" = 200 ] && pass "coordinator: /coordinator/connections answers the admin token" \
    || fail "coordinator: /coordinator/connections answered $status (wrong ADMIN_TOKEN?)"
  # A user's background loop lives in its Durable Object: the status read reaches one.
  status="$(http GET "$(conf COORDINATOR_URL)/coordinator/event-loop/validate-deployment" "$admin")"
  [ "$status" = 200 ] && pass "coordinator: /coordinator/event-loop/{user} answers (background loops)" \
    || fail "coordinator: /coordinator/event-loop/validate-deployment answered $status"
  # Real-time propagation: the backlog and the last hour's results, from Postgres.
  status="$(http GET "$(conf COORDINATOR_URL)/realtime-sync/health" "$admin")"
  if [ "$status" = 200 ] && [ "$(body_get status)" = ok ]; then
    pass "coordinator: /realtime-sync/health ok (no change waiting to propagate, no dead letters in the last hour)"
  elif [ "$status" = 200 ]; then
    fail "coordinator: /realtime-sync/health is $(body_get status): see GET /realtime-sync/status/{connection_id}"
  else
    fail "coordinator: /realtime-sync/health answered $status"
  fi
  # The dashboard: served with its own-origin policy; the operator's token opens a session
  # whose cookie is HttpOnly, Secure and SameSite=Strict (signed out again at once).
  status="$(http GET "$(conf COORDINATOR_URL)/dashboard" "" -D "$PRIVATE/headers")"
  if [ "$status" = 200 ] && grep -qi "^content-security-policy: default-src 'none'" "$PRIVATE/headers"; then
    (umask 077; ADMIN="$admin" node -e 'process.stdout.write(JSON.stringify({token: process.env.ADMIN}))' > "$PRIVATE/signin.json")
    status="$(http POST "$(conf COORDINATOR_URL)/dashboard/session" "" -D "$PRIVATE/headers" \
      -H 'Content-Type: application/json' --data-binary "@$PRIVATE/signin.json")"
    cookie="$(grep -i '^set-cookie:' "$PRIVATE/headers" | head -n 1)"
    if [ "$status" = 200 ] && [[ "$cookie" == *HttpOnly* && "$cookie" == *Secure* && "$cookie" == *SameSite=Strict* ]]; then
      csrf="$(body_get csrf)"
      session="$(printf '%s' "$cookie" | sed -E 's/^[Ss]et-[Cc]ookie: *([^;]*).*/\1/' | tr -d '\r')"
      http POST "$(conf COORDINATOR_URL)/dashboard/logout" "" -H "Cookie: $session" -H "X-CSRF-Token: $csrf" >/dev/null
      pass "coordinator: /dashboard serves the page and signs the operator in (HttpOnly, Secure, SameSite=Strict)"
    else
      fail "coordinator: /dashboard/session answered $status (cookie: ${cookie:-none})"
    fi
  else
    fail "coordinator: /dashboard answered $status without its content security policy"
  fi
  # Connected repositories: a token the host refused needs a new connection.
  status="$(http GET "$(conf COORDINATOR_URL)/coordinator/connections" "$admin")"
  if [ "$status" = 200 ]; then
    local refused
    refused="$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).repositories || [];
      process.stdout.write(r.filter(x => x.status !== "active").map(x => x.repository + " (" + x.status + ")").join(", "))' "$PRIVATE/body")"
    [ -z "$refused" ] && pass "coordinator: every connected repository's token works" \
      || fail "coordinator: repositories needing a new token: $refused (POST /coordinator/connections again)"
  fi
  # A repository webhook's secret derives from REPO_WEBHOOK_SIGNING_KEY: signed with the key
  # given here, a delivery for a connection that does not exist passes verification (then
  # 404); a 401 means webhook-handler holds another key.
  local repo_key
  repo_key="$(conf REPO_WEBHOOK_SIGNING_KEY)"
  if [ -n "$repo_key" ]; then
    local fake="github_000000000000000000000000"
    printf '%s' '{"zen":"validate-deployment","hook_id":0}' > "$PRIVATE/ping.json"
    sig="$(KEY="$repo_key" ID="$fake" node -e 'const c = require("crypto");
      const secret = c.createHmac("sha256", process.env.KEY).update("edge-sync repository webhook\n" + process.env.ID).digest("hex");
      process.stdout.write("sha256=" + c.createHmac("sha256", secret).update(require("fs").readFileSync(process.argv[1])).digest("hex"))' "$PRIVATE/ping.json")"
    status="$(http POST "$(conf WEBHOOK_HANDLER_URL)/webhooks/code-repo/$fake" "" -H "X-GitHub-Event: ping" \
      -H "X-GitHub-Delivery: validate-$$" -H "X-Hub-Signature-256: $sig" -H 'Content-Type: application/json' \
      --data-binary "@$PRIVATE/ping.json")"
    case "$status" in
      404|200) pass "webhook-handler: repository webhooks verify with REPO_WEBHOOK_SIGNING_KEY" ;;
      401) fail "webhook-handler: a repository webhook signed with REPO_WEBHOOK_SIGNING_KEY was refused: the Worker holds another key" ;;
      *) fail "webhook-handler: repository webhook route answered $status: $(head -c 300 "$PRIVATE/body")" ;;
    esac
  fi
  status="$(http GET "$(conf SYNC_WORKER_URL)/sync/status" "$admin")"
  [ "$status" = 200 ] && pass "sync-worker: /sync/status answers the admin token" \
    || fail "sync-worker: /sync/status answered $status (wrong ADMIN_TOKEN?)"
  secret="$(conf GITHUB_WEBHOOK_SECRET)"
  [ -n "$secret" ] || { fail "GITHUB_WEBHOOK_SECRET is not set: the test webhook needs it"; return; }
  delivery="validate-$(date +%s)-$$"
  body="{\"ref\":\"refs/heads/validate\",\"after\":\"$(printf '%040d' 0)\",\"repository\":{\"full_name\":\"edge-sync/validate-deployment\"},\"commits\":[]}"
  printf '%s' "$body" > "$PRIVATE/webhook.json"
  sig="$(SECRET="$secret" node -e 'const c = require("crypto"); process.stdout.write("sha256=" + c.createHmac("sha256", process.env.SECRET).update(require("fs").readFileSync(process.argv[1])).digest("hex"))' "$PRIVATE/webhook.json")"
  url="$(conf WEBHOOK_HANDLER_URL)/webhooks/code-repo"
  status="$(http POST "$url" "" -H "X-GitHub-Event: push" -H "X-GitHub-Delivery: $delivery" \
    -H "X-Hub-Signature-256: $sig" -H 'Content-Type: application/json' --data-binary "@$PRIVATE/webhook.json")"
  if [ "$status" = 200 ] && [ "$(body_get status)" = stored ]; then pass "webhook-handler: signed test webhook accepted and stored ($delivery)"
  elif [ "$status" = 401 ]; then fail "webhook-handler: test webhook rejected (401): signature check failed; GITHUB_WEBHOOK_SECRET differs from the Worker's secret"
  else fail "webhook-handler: test webhook answered $status: $(head -c 300 "$PRIVATE/body")"; fi
}

case "$MODE" in
  health-only) check_health ;;
  config-only) check_config ;;
  full)
    check_health
    # The local stack has no Cloudflare account: its configuration is wrangler/*.toml itself.
    if [ -z "$(conf CLOUDFLARE_API_TOKEN)" ] && [[ "$(conf COORDINATOR_URL)" =~ ^http://(127\.0\.0\.1|localhost)[:/] ]]; then
      say "configuration: skipped (local stack, no CLOUDFLARE_API_TOKEN)"
    else
      check_config
    fi
    check_round_trip ;;
esac

echo
if [ ${#FAILURES[@]} -gt 0 ]; then
  printf 'deployment check FAILED (%d):\n' "${#FAILURES[@]}" >&2
  printf '  - %s\n' "${FAILURES[@]}" >&2
  exit 1
fi
say "deployment check passed ($MODE)"
