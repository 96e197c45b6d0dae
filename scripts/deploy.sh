#!/usr/bin/env bash
# Deploys Edge Sync to your Cloudflare account: builds the Workers (release), creates or finds
# the KV namespace and the Hyperdrive configuration (direct connection, never the transaction
# pooler), writes per-deploy wrangler configs under .edge-sync/deploy/ (git-ignored: the
# repository never holds your ids or secrets), applies supabase/migrations, deploys the
# coordinator first, then the sync-worker and the webhook-handler, puts every secret, and
# prints the URLs to paste into Keap and Shopify. Re-running is safe: resources are found,
# not re-created, and a Worker whose bundle, config and secrets did not change is skipped.
#
#   cp .env.example .env && $EDITOR .env
#   scripts/deploy.sh               deploy
#   scripts/deploy.sh --dry-run     build and validate every bundle (wrangler deploy --dry-run),
#                                   print the plan and bundle sizes; touches no account
#   scripts/deploy.sh --skip-build  use the existing builds (workers/*/build)
#   scripts/deploy.sh --env-file F  read settings from F instead of .env
#
# CLOUDFLARE_API_BASE_URL (default https://api.cloudflare.com/client/v4) is honoured by wrangler
# and by this script (the offline tests point it at tests/cloudflare-api).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DRY_RUN=0
SKIP_BUILD=0
ENV_FILE="$ROOT/.env"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --env-file) [ $# -ge 2 ] || die "--env-file needs a file"; ENV_FILE="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see scripts/deploy.sh --help)" ;;
  esac
  shift
done

API="${CLOUDFLARE_API_BASE_URL:-https://api.cloudflare.com/client/v4}"
API="${API%/}"
DEPLOY_DIR="$EDGE_SYNC_HOME/deploy"
KV_TITLE="${KV_NAMESPACE_TITLE:-edge-sync-cache}"
HYPERDRIVE_NAME="${HYPERDRIVE_NAME:-edge-sync-db}"
# Workers Free allows 3 MB compressed per Worker, Workers Paid 10 MB
# (https://developers.cloudflare.com/workers/platform/limits/#worker-size).
FREE_LIMIT=$((3 * 1024 * 1024))
PAID_LIMIT=$((10 * 1024 * 1024))
WRANGLER="$ROOT/node_modules/.bin/wrangler"

# --- tools ------------------------------------------------------------------------------------
missing=()
for tool in node curl gzip sha256sum; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
[ -x "$WRANGLER" ] || missing+=("wrangler (run: npm ci)")
if [ "$DRY_RUN" -eq 0 ]; then command -v psql >/dev/null 2>&1 || missing+=("psql (PostgreSQL client, for migrations)"); fi
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]}"

# --- settings ---------------------------------------------------------------------------------
# .env holds NAME=value lines (no shell evaluation: values are taken literally; surrounding
# quotes are removed). The environment wins over the file.
declare -A CONF=()
if [ -f "$ENV_FILE" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in [A-Za-z_]*=*) ;; *) continue ;; esac
    name="${line%%=*}"; value="${line#*=}"
    case "$value" in \"*\") value="${value:1:${#value}-2}" ;; \'*\') value="${value:1:${#value}-2}" ;; esac
    CONF[$name]="$value"
  done < "$ENV_FILE"
elif [ "$DRY_RUN" -eq 0 ]; then
  die "no $ENV_FILE: run  cp .env.example .env  and fill it in"
fi
for name in "${!CONF[@]}"; do
  if [ -n "${!name:-}" ]; then CONF[$name]="${!name}"; fi
done
conf() { printf '%s' "${CONF[$1]:-${!1:-}}"; }

REQUIRED=(CLOUDFLARE_ACCOUNT_ID CLOUDFLARE_API_TOKEN DATABASE_URL
  ADMIN_TOKEN WEBHOOK_HANDLER_TOKEN SYNC_WORKER_TOKEN COORDINATOR_TOKEN TOKEN_ENCRYPTION_KEY
  KEAP_CLIENT_ID KEAP_CLIENT_SECRET SHOPIFY_CLIENT_ID SHOPIFY_CLIENT_SECRET ALLOWED_ORIGIN)
# Secrets (wrangler/secrets.txt) a deploy puts when set; the required ones above must be set.
SECRET_NAMES=(ADMIN_TOKEN WEBHOOK_HANDLER_TOKEN SYNC_WORKER_TOKEN COORDINATOR_TOKEN
  TOKEN_ENCRYPTION_KEY KEAP_CLIENT_SECRET SHOPIFY_CLIENT_SECRET SHOPIFY_CLIENT_SECRET_PREVIOUS
  GITHUB_WEBHOOK_SECRET GITLAB_WEBHOOK_TOKEN BITBUCKET_WEBHOOK_SECRET SUPABASE_WEBHOOK_SECRET
  KEAP_WEBHOOK_SECRET MODEL_API_KEY SUPABASE_JWT_SECRET REPO_WEBHOOK_SIGNING_KEY)
for name in "${!CONF[@]}"; do
  case "$name" in STANDARD_WEBHOOK_SECRET_*) SECRET_NAMES+=("$name") ;; esac
done
# Plain settings copied into every Worker's [vars] when set in .env.
OPTIONAL_VARS=(KEAP_API_BASE_URL KEAP_REST_V1_BASE_URL KEAP_AUTHORIZE_URL KEAP_TOKEN_URL KEAP_HOOK_EVENT_KEYS
  SHOPIFY_ADMIN_BASE_URL SHOPIFY_API_VERSION SHOPIFY_SCOPES WEBHOOK_USER_ID
  KEAP_RATE_LIMIT_PER_MINUTE SHOPIFY_RATE_LIMIT_PER_MINUTE WEBHOOK_RATE_LIMIT_PER_MINUTE
  WEBHOOK_MAX_BODY_BYTES SYNC_PAGE_SIZE INVENTORY_LOW_THRESHOLD
  MODEL_BASE_URL MODEL_NAME MODEL_TIMEOUT_MS MODEL_FALLBACK AGENT_MAX_ATTEMPTS AGENT_RETRY_MAX_MS
  EVENT_LOOP_WATCHED_SCHEMAS)

if [ "$DRY_RUN" -eq 0 ]; then
  missing=()
  for name in "${REQUIRED[@]}"; do [ -n "$(conf "$name")" ] || missing+=("$name"); done
  [ ${#missing[@]} -eq 0 ] || die "missing in $ENV_FILE: ${missing[*]} (see .env.example)"
  if [ -n "$(conf MODEL_BASE_URL)" ]; then
    for name in MODEL_NAME MODEL_API_KEY; do
      [ -n "$(conf "$name")" ] || die "MODEL_BASE_URL is set but $name is not (see .env.example)"
    done
  fi
  for name in "${SECRET_NAMES[@]}"; do
    case "$(conf "$name")" in change-me*) die "$name in $ENV_FILE still has its example value; set a real one" ;; esac
  done
fi

# Hyperdrive must reach the database directly: the Supabase transaction pooler (port 6543,
# *.pooler.supabase.com) breaks the prepared statements Hyperdrive pools itself.
check_direct() {
  local url="$1" hostport
  hostport="$(url_host "$url")"; hostport="${hostport%%/*}"
  case "$url" in postgres://*|postgresql://*) ;; *) die "DATABASE_URL must be a postgres:// connection string" ;; esac
  if [[ "$hostport" == *:6543 ]] || [[ "$hostport" == *pooler.supabase.com* ]] || [[ "$url" == *pgbouncer=true* ]]; then
    die "DATABASE_URL points at a connection pooler ($hostport); use the DIRECT connection string (Supabase: Project Settings > Database > Connection string > Direct connection, db.<ref>.supabase.co:5432)"
  fi
}
if [ "$DRY_RUN" -eq 0 ]; then check_direct "$(conf DATABASE_URL)"; fi

mkdir -p "$DEPLOY_DIR"
chmod 700 "$DEPLOY_DIR"
PRIVATE="$(mktemp -d "$DEPLOY_DIR/.private.XXXXXX")"
chmod 700 "$PRIVATE"
trap 'rm -rf "$PRIVATE"' EXIT

# --- build ------------------------------------------------------------------------------------
# A build is fresh when its shim is newer than every source it depends on.
build_fresh() {
  local w="$1" shim="$ROOT/workers/$1/build/worker/shim.mjs"
  [ -f "$shim" ] || return 1
  [ -z "$(find "$ROOT/workers/$w" "$ROOT/workers/worker-kit" "$ROOT/shared" "$ROOT/Cargo.lock" \
      -path '*/build' -prune -o -path '*/target' -prune -o -type f -newer "$shim" -print -quit)" ]
}
for w in "${WORKERS[@]}"; do
  if [ "$SKIP_BUILD" -eq 1 ]; then
    [ -f "$ROOT/workers/$w/build/worker/shim.mjs" ] || die "--skip-build: $w is not built (run without --skip-build)"
  elif build_fresh "$w"; then
    echo "  $w: release build is up to date"
  else
    say "building $w (release)"
    command -v cargo >/dev/null 2>&1 || die "missing tool: cargo (run: scripts/bootstrap.sh)"
    command -v worker-build >/dev/null 2>&1 || die "missing tool: worker-build (run: scripts/bootstrap.sh)"
    worker_build_env
    (cd "$ROOT/workers/$w" && worker-build --release) || die "build of $w failed"
  fi
done

# --- Cloudflare API (curl; the token goes in a mode-600 header file, never on a command line) --
ACCOUNT="$(conf CLOUDFLARE_ACCOUNT_ID)"
if [ "$DRY_RUN" -eq 0 ]; then
  (umask 077; printf 'Authorization: Bearer %s\n' "$(conf CLOUDFLARE_API_TOKEN)" > "$PRIVATE/auth")
fi
# cf METHOD PATH [BODY_FILE]: prints the result of a successful call; dies with the API's
# errors otherwise.
cf() {
  local method="$1" path="$2" body="${3:-}" out status
  out="$PRIVATE/response.json"
  local args=(-sS -o "$out" -w '%{http_code}' -X "$method" -H "@$PRIVATE/auth")
  [ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$body")
  status="$(curl "${args[@]}" "$API$path")" || die "cannot reach the Cloudflare API at $API"
  node -e '
    const fs = require("fs");
    let r; try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch { r = null; }
    if (!r || !r.success) {
      const errs = (r && r.errors || []).map(e => `${e.code}: ${e.message}`).join("; ");
      console.error(`Cloudflare API ${process.argv[2]} ${process.argv[3]} failed (HTTP ${process.argv[4]}): ${errs || "no JSON answer"}`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify(r.result));' "$out" "$method" "$path" "$status"
}
json_get() { node -e 'const v = process.argv[2].split(".").reduce((o, k) => o == null ? o : o[k], JSON.parse(process.argv[1])); process.stdout.write(v == null ? "" : String(v))' "$1" "$2"; }

export CLOUDFLARE_ACCOUNT_ID="$ACCOUNT"
if [ "$DRY_RUN" -eq 0 ]; then
  # wrangler reads the token from the environment (never from its command line).
  CLOUDFLARE_API_TOKEN="$(conf CLOUDFLARE_API_TOKEN)"
  export CLOUDFLARE_API_TOKEN
  say "checking the API token"
  verify="$(cf GET /user/tokens/verify)" || die "the Cloudflare API token is invalid or expired (create one: My Profile > API Tokens, template 'Edit Cloudflare Workers' plus Hyperdrive Edit)"
  [ "$(json_get "$verify" status)" = active ] || die "the Cloudflare API token is not active"

  say "KV namespace $KV_TITLE"
  list="$(cf GET "/accounts/$ACCOUNT/storage/kv/namespaces?per_page=100")" || exit 1
  KV_ID="$(node -e 'const n = JSON.parse(process.argv[1]).find(n => n.title === process.argv[2]); process.stdout.write(n ? n.id : "")' "$list" "$KV_TITLE")"
  if [ -n "$KV_ID" ]; then echo "  found $KV_ID"; else
    node -e 'process.stdout.write(JSON.stringify({title: process.argv[1]}))' "$KV_TITLE" > "$PRIVATE/kv.json"
    KV_ID="$(json_get "$(cf POST "/accounts/$ACCOUNT/storage/kv/namespaces" "$PRIVATE/kv.json")" id)" || exit 1
    echo "  created $KV_ID"
  fi

  say "Hyperdrive configuration $HYPERDRIVE_NAME -> $(url_host "$(conf DATABASE_URL)")"
  list="$(cf GET "/accounts/$ACCOUNT/hyperdrive/configs")" || exit 1
  HYPERDRIVE_ID="$(node -e 'const c = JSON.parse(process.argv[1]).find(c => c.name === process.argv[2]); process.stdout.write(c ? c.id : "")' "$list" "$HYPERDRIVE_NAME")"
  [ -z "$HYPERDRIVE_ID" ] || echo "  found $HYPERDRIVE_ID"
  # The body (with the database password) goes through a mode-600 file.
  (umask 077; DATABASE_URL_VALUE="$(conf DATABASE_URL)" node -e '
      const u = new URL(process.env.DATABASE_URL_VALUE);
      process.stdout.write(JSON.stringify({name: process.argv[1], origin: {
        scheme: "postgres", host: u.hostname, port: Number(u.port || 5432),
        database: decodeURIComponent(u.pathname.slice(1)) || "postgres",
        user: decodeURIComponent(u.username), password: decodeURIComponent(u.password)}}))' \
      "$HYPERDRIVE_NAME" > "$PRIVATE/hyperdrive.json")
  # Changed DATABASE_URL (host, user, password...): update the existing config in place.
  db_sum="$(printf '%s' "$(conf DATABASE_URL)" | sha256sum | cut -d' ' -f1)"
  if [ -z "$HYPERDRIVE_ID" ]; then
    HYPERDRIVE_ID="$(json_get "$(cf POST "/accounts/$ACCOUNT/hyperdrive/configs" "$PRIVATE/hyperdrive.json")" id)" || exit 1
    echo "  created $HYPERDRIVE_ID"
    echo "$db_sum" > "$DEPLOY_DIR/hyperdrive.sha256"
  elif [ "$(cat "$DEPLOY_DIR/hyperdrive.sha256" 2>/dev/null)" != "$db_sum" ]; then
    cf PATCH "/accounts/$ACCOUNT/hyperdrive/configs/$HYPERDRIVE_ID" "$PRIVATE/hyperdrive.json" >/dev/null || exit 1
    echo "  updated its origin to $(url_host "$(conf DATABASE_URL)")"
    echo "$db_sum" > "$DEPLOY_DIR/hyperdrive.sha256"
  fi
  SUBDOMAIN="$(json_get "$(cf GET "/accounts/$ACCOUNT/workers/subdomain")" subdomain)" \
    || die "no workers.dev subdomain on the account: open Workers & Pages in the dashboard once to choose one"
else
  KV_ID="dry-run-kv-namespace-id"
  HYPERDRIVE_ID="dry-run-hyperdrive-id"
  SUBDOMAIN="<your-subdomain>"
fi

worker_url() { printf 'https://%s.%s.workers.dev' "$1" "$SUBDOMAIN"; }
COORDINATOR_URL_OUT="$(worker_url sync-coordinator)"
SYNC_WORKER_URL_OUT="$(worker_url sync-worker)"
WEBHOOK_URL_OUT="$(worker_url webhook-handler)"

# --- per-deploy configs -------------------------------------------------------------------------
# Worker $1's deployed config: the repository's, with the real ids, production vars, absolute
# paths; $2 = "noservices" leaves out the service bindings (first deploy of the coordinator,
# before the Worker it binds to exists).
write_config() {
  local w="$1" mode="${2:-full}" out="$DEPLOY_DIR/$1.toml" name value
  {
    echo "# Generated by scripts/deploy.sh from wrangler/$w.toml; do not edit or commit."
    awk -v root="$ROOT" -v kv="$KV_ID" -v hd="$HYPERDRIVE_ID" -v mode="$mode" '
      /^\[\[services\]\]/ && mode == "noservices" { skip = 1; next }
      /^\[/ { skip = 0 }
      skip { next }
      { gsub(/"\.\.\/workers\//, "\"" root "/workers/") }
      /^id = "edge-sync-cache-local"/ { print "id = \"" kv "\""; next }
      /^id = "edge-sync-hyperdrive-local"/ { print "id = \"" hd "\""; next }
      /^ENVIRONMENT = / { print "ENVIRONMENT = \"production\""; print "@EXTRA_VARS@"; next }
      { print }' "$ROOT/wrangler/$w.toml"
  } > "$out.tmp"
  {
    printf 'KEAP_CLIENT_ID = %s\n' "$(node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$(conf KEAP_CLIENT_ID)")"
    printf 'SHOPIFY_CLIENT_ID = %s\n' "$(node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$(conf SHOPIFY_CLIENT_ID)")"
    printf 'ALLOWED_ORIGIN = %s\n' "$(node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$(conf ALLOWED_ORIGIN)")"
    printf 'KEAP_REDIRECT_URI = "%s/oauth/callback"\n' "$COORDINATOR_URL_OUT"
    printf 'SHOPIFY_REDIRECT_URI = "%s/oauth/shopify/callback"\n' "$COORDINATOR_URL_OUT"
    printf 'WEBHOOK_BASE_URL = "%s"\n' "$WEBHOOK_URL_OUT"
    for name in "${OPTIONAL_VARS[@]}"; do
      value="$(conf "$name")"
      [ -z "$value" ] || printf '%s = %s\n' "$name" "$(node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$value")"
    done
  } > "$out.vars"
  awk -v vars="$out.vars" '/^@EXTRA_VARS@$/ { while ((getline l < vars) > 0) print l; next } { print }' "$out.tmp" > "$out"
  rm -f "$out.tmp" "$out.vars"
  printf '%s\n' "$out"
}

# --- bundles, sizes, plan -----------------------------------------------------------------------
say "validating the bundles (wrangler deploy --dry-run)"
printf '  %-18s %12s %12s   %s\n' WORKER BUNDLE GZIP "LIMITS (Free 3 MB / Paid 10 MB, compressed)"
declare -A BUNDLE_SUM=()
for w in "${WORKERS[@]}"; do
  config="$(write_config "$w")"
  out="$DEPLOY_DIR/bundle-$w"
  rm -rf "$out"
  if ! "$WRANGLER" deploy --dry-run --outdir "$out" -c "$config" > "$DEPLOY_DIR/dry-run-$w.log" 2>&1; then
    cat "$DEPLOY_DIR/dry-run-$w.log" >&2
    die "wrangler deploy --dry-run failed for $w"
  fi
  raw=0; gz=0
  while IFS= read -r -d '' f; do
    raw=$((raw + $(stat -c %s "$f")))
    gz=$((gz + $(gzip -9c "$f" | wc -c)))
  done < <(find "$out" -type f ! -name '*.map' ! -name 'README.md' -print0)
  if [ "$gz" -gt "$PAID_LIMIT" ]; then verdict="OVER the Paid limit"; fail_size=1
  elif [ "$gz" -gt "$FREE_LIMIT" ]; then verdict="needs Workers Paid (over Free)"
  else verdict="fits Free and Paid"; fi
  printf '  %-18s %10s KB %10s KB   %s\n' "$w" $((raw / 1024)) $((gz / 1024)) "$verdict"
  BUNDLE_SUM[$w]="$( (find "$out" -type f ! -name '*.map' ! -name README.md -print0 | sort -z | xargs -0 sha256sum | cut -d' ' -f1; sed 1d "$config") | sha256sum | cut -d' ' -f1)"
done
[ -z "${fail_size:-}" ] || die "a bundle is over the 10 MB compressed limit of Workers Paid"

echo
say "plan"
cat <<EOF
  1. KV namespace "$KV_TITLE" (binding SYNC_CACHE) and Hyperdrive "$HYPERDRIVE_NAME" (binding
     HYPERDRIVE, direct connection): found or created, ids written to $DEPLOY_DIR/*.toml
  2. migrations: scripts/migrate.sh applies supabase/migrations to DATABASE_URL
  3. deploy sync-coordinator (Durable Object SyncCoordinator, migration tag v1), then
     sync-worker (cron */30 * * * *), then webhook-handler
  4. secrets per Worker, as wrangler/secrets.txt assigns them (wrangler secret bulk)
EOF
if [ "$DRY_RUN" -eq 1 ]; then
  echo
  say "dry run: nothing was deployed; configs and bundles are in $DEPLOY_DIR"
  exit 0
fi

# --- migrations -------------------------------------------------------------------------------
say "applying supabase/migrations to $(url_host "$(conf DATABASE_URL)")"
"$ROOT/scripts/migrate.sh" "$(conf DATABASE_URL)"

# --- deploy + secrets -------------------------------------------------------------------------
exists() { cf GET "/accounts/$ACCOUNT/workers/services/$1" >/dev/null 2>&1; }
deploy_worker() {
  local w="$1" config="$2"
  say "deploying $w"
  "$WRANGLER" deploy -c "$config" > "$DEPLOY_DIR/deploy-$w.log" 2>&1 || {
    cat "$DEPLOY_DIR/deploy-$w.log" >&2
    die "wrangler deploy failed for $w (log: $DEPLOY_DIR/deploy-$w.log; see docs/manual-setup.md#troubleshooting)"
  }
}
put_secrets() {
  local w="$1" config="$2" file="$PRIVATE/secrets-$1.json" sum state="$DEPLOY_DIR/$1.secrets.sha256" names=()
  for name in "${SECRET_NAMES[@]}"; do
    [ -n "$(conf "$name")" ] || continue
    [[ " $(secret_holders "$name") " == *" $w "* ]] && names+=("$name")
  done
  # The values travel through a mode-600 file, never a command line.
  (umask 077; for name in "${names[@]}"; do printf '%s\0%s\0' "$name" "$(conf "$name")"; done \
    | node -e 'const p = require("fs").readFileSync(0, "utf8").split("\0"); const o = {};
        for (let i = 0; i + 1 < p.length; i += 2) o[p[i]] = p[i + 1];
        process.stdout.write(JSON.stringify(o))' > "$file")
  sum="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ -f "$state" ] && [ "$(cat "$state")" = "$sum" ]; then
    echo "  $w: secrets unchanged (${#names[@]})"
    return
  fi
  "$WRANGLER" secret bulk "$file" -c "$config" > "$DEPLOY_DIR/secrets-$w.log" 2>&1 || {
    cat "$DEPLOY_DIR/secrets-$w.log" >&2
    die "wrangler secret bulk failed for $w"
  }
  echo "$sum" > "$state"
  echo "  $w: ${#names[@]} secrets put: ${names[*]}"
}

first_deploy_without_services=0
if ! exists sync-worker; then first_deploy_without_services=1; fi
for w in "${WORKERS[@]}"; do
  config="$DEPLOY_DIR/$w.toml"
  state="$DEPLOY_DIR/$w.deployed.sha256"
  if [ "$w" = sync-coordinator ] && [ "$first_deploy_without_services" -eq 1 ]; then
    # First deploy: the coordinator binds to sync-worker, which does not exist yet; deploy it
    # without that binding now and again with it once sync-worker exists.
    deploy_worker "$w" "$(write_config "$w" noservices)"
    rm -f "$state"
  elif [ -f "$state" ] && [ "$(cat "$state")" = "${BUNDLE_SUM[$w]}" ] && exists "$w"; then
    echo "  $w: bundle and config unchanged, not redeployed"
  else
    deploy_worker "$w" "$config"
    echo "${BUNDLE_SUM[$w]}" > "$state"
  fi
  put_secrets "$w" "$config"
done
if [ "$first_deploy_without_services" -eq 1 ]; then
  write_config sync-coordinator >/dev/null
  deploy_worker sync-coordinator "$DEPLOY_DIR/sync-coordinator.toml"
  echo "${BUNDLE_SUM[sync-coordinator]}" > "$DEPLOY_DIR/sync-coordinator.deployed.sha256"
fi

cat > "$DEPLOY_DIR/urls.env" <<EOF
COORDINATOR_URL=$COORDINATOR_URL_OUT
SYNC_WORKER_URL=$SYNC_WORKER_URL_OUT
WEBHOOK_HANDLER_URL=$WEBHOOK_URL_OUT
EOF

echo
say "deployed"
cat <<EOF
Workers:
  coordinator      $COORDINATOR_URL_OUT
  sync-worker      $SYNC_WORKER_URL_OUT
  webhook-handler  $WEBHOOK_URL_OUT
OAuth redirect URLs (paste into the provider's app settings):
  Keap             $COORDINATOR_URL_OUT/oauth/callback
  Shopify          $COORDINATOR_URL_OUT/oauth/shopify/callback
Webhook URLs:
  Shopify          $WEBHOOK_URL_OUT/webhooks/shopify
  Keap             registered per hook by the coordinator under $WEBHOOK_URL_OUT/webhook/keap/<token>
  GitHub/GitLab/Bitbucket  $WEBHOOK_URL_OUT/webhooks/code-repo
  Standard Webhooks        $WEBHOOK_URL_OUT/webhooks/standard/<source>
  Supabase         $WEBHOOK_URL_OUT/webhook
Connect an account:  $COORDINATOR_URL_OUT/oauth/initiate?user_id=<you>
Check it:            scripts/validate-deployment.sh
EOF
