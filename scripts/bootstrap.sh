#!/usr/bin/env bash
# Prepares a machine to run Edge Sync locally. Idempotent: every step checks first and does
# only what is missing, so re-running is cheap.
#   1. Rust target wasm32-unknown-unknown
#   2. worker-build and wasm-bindgen-cli at the versions in Cargo.lock
#   3. npm packages from package-lock.json (wrangler, miniflare, binaryen's wasm-opt, esbuild,
#      playwright-core), and Debian's Chromium for the dashboard's browser tests
#   4. PostgreSQL: $DATABASE_URL if it answers, else a local server (installed and started
#      when absent), and the edge_sync database
#   5. migrations, wrangler/.dev.vars (random local secrets), the three Workers, the
#      provider sandbox and the Cloudflare API stand-in
# Writes the database URL it settled on to .edge-sync/database_url for the other scripts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$EDGE_SYNC_HOME"

# --- 1. Rust ---------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding Rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# Installs a cargo binary at an exact version unless `$check` already prints it.
cargo_tool() {
  local crate="$1" version="$2" bin="$3"
  if command -v "$bin" >/dev/null && "$bin" --version 2>/dev/null | grep -qF "$version"; then
    return
  fi
  say "installing $crate $version (cargo install; a few minutes the first time)"
  # --locked uses the tool's own lock file; when a locked dependency is no longer
  # available from the registry, fall back to a fresh resolution.
  cargo install "$crate" --version "=$version" --locked \
    || cargo install "$crate" --version "=$version" --force
}
cargo_tool worker-build "$(locked_version worker)" worker-build
# The wasm-bindgen CLI must match the library version exactly (pinned in Cargo.toml).
cargo_tool wasm-bindgen-cli "$(locked_version wasm-bindgen)" wasm-bindgen

# --- 2. npm ------------------------------------------------------------------------------
command -v npm >/dev/null || die "npm not found: install Node.js 20 or newer"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
fi

# --- 2b. Chromium (the dashboard's browser tests drive it with playwright-core) -----------
if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium (apt-get) for the dashboard's browser tests"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

# --- 3. PostgreSQL ---------------------------------------------------------------------
ensure_local_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "installing PostgreSQL (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || die "PostgreSQL is installed but no cluster exists (pg_createcluster)"
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  # Local development uses trust auth on loopback for the postgres role.
  for _ in $(seq 1 30); do pg_answers "$(with_database "$DEFAULT_DATABASE_URL" postgres)" && return; sleep 1; done
  die "PostgreSQL did not start; see /var/log/postgresql/"
}

database_url="${DATABASE_URL:-}"
if [ -n "$database_url" ] && pg_answers "$(with_database "$database_url" postgres)"; then
  :
elif [ -n "$database_url" ] && pg_answers "$database_url"; then
  :
else
  [ -z "$database_url" ] || warn "DATABASE_URL does not answer; using a local PostgreSQL instead"
  database_url="$DEFAULT_DATABASE_URL"
  pg_answers "$(with_database "$database_url" postgres)" || ensure_local_postgres
fi
if ! pg_answers "$database_url"; then
  db="${database_url##*/}"; db="${db%%\?*}"
  say "creating database $db"
  psql "$(with_database "$database_url" postgres)" -qc "CREATE DATABASE \"$db\""
fi
printf '%s\n' "$database_url" > "$EDGE_SYNC_HOME/database_url"
"$ROOT/scripts/migrate.sh" "$database_url"

# The Workers connect as `edge_sync_worker`, a login role in the group role `edge_sync_app`
# (row access to Edge Sync's tables only; see the lock-down migration). Its password lives in
# $EDGE_SYNC_HOME/worker_db_password; `worker_database_url` builds the Workers' URL from it.
password_file="$EDGE_SYNC_HOME/worker_db_password"
[ -s "$password_file" ] || (umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$password_file")
if ! psql "$database_url" -qX -v ON_ERROR_STOP=1 -v pw="$(cat "$password_file")" >/dev/null 2>&1 <<'SQL'
SELECT 'CREATE ROLE edge_sync_worker LOGIN'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'edge_sync_worker') \gexec
ALTER ROLE edge_sync_worker WITH LOGIN PASSWORD :'pw';
GRANT edge_sync_app TO edge_sync_worker;
SQL
then
  warn "cannot create the role edge_sync_worker; the Workers connect as the DATABASE_URL user"
  rm -f "$password_file"
fi

# --- 4. Local secrets ----------------------------------------------------------------------
# Every `change-me` value becomes a fresh random one; other values are local defaults.
render_var() {
  case "$1" in
    [A-Z]*=change-me-base64-key) printf '%s=%s\n' "${1%%=*}" "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" ;;
    [A-Z]*=change-me*) printf '%s=%s\n' "${1%%=*}" "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" ;;
    *) printf '%s\n' "$1" ;;
  esac
}
umask 077
if [ ! -f wrangler/.dev.vars ]; then
  say "writing wrangler/.dev.vars with fresh random local secrets"
  while IFS= read -r line; do render_var "$line"; done < wrangler/.dev.vars.example > wrangler/.dev.vars
else
  # Settings added to the example since .dev.vars was written are appended; existing values
  # (above all TOKEN_ENCRYPTION_KEY, which stored tokens depend on) are never replaced.
  while IFS= read -r line; do
    case "$line" in
      [A-Z]*=*) grep -q "^${line%%=*}=" wrangler/.dev.vars || { say "adding ${line%%=*} to wrangler/.dev.vars"; render_var "$line" >> wrangler/.dev.vars; } ;;
    esac
  done < wrangler/.dev.vars.example
fi
umask 022

# --- 5. Build ----------------------------------------------------------------------------
# A Worker is rebuilt only when its inputs changed (worker-build always re-runs
# wasm-bindgen and wasm-opt, which takes tens of seconds).
inputs_digest() {
  # The dashboard's page, script and styles are compiled into the coordinator (include_str!).
  { cat Cargo.lock Cargo.toml; find shared workers -type f \( -name '*.rs' -o -name Cargo.toml \
      -o -path 'workers/sync-coordinator/dashboard/*' \) -not -path '*/build/*' | sort | xargs cat; } \
    | sha256sum | cut -d' ' -f1
}
digest="$(inputs_digest)"
worker_build_env
for worker in "${WORKERS[@]}"; do
  stamp="workers/$worker/build/.edge-sync-inputs"
  if [ -f "workers/$worker/build/worker/shim.mjs" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    continue
  fi
  say "building $worker (worker-build --release)"
  (cd "workers/$worker" && worker-build --release) || die "build of $worker failed"
  printf '%s\n' "$digest" > "$stamp"
done
say "building the test stand-ins (provider sandbox, Cloudflare API)"
cargo build --release -q -p provider-sandbox -p cloudflare-api
say "bootstrap done (database: $(url_host "$database_url"))"
