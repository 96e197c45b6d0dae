# Shared helpers for the Edge Sync scripts. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# Everything the scripts create at run time lives here (git-ignored): logs, pids, state.
EDGE_SYNC_HOME="${EDGE_SYNC_HOME:-$ROOT/.edge-sync}"
export EDGE_SYNC_HOME
WORKERS=(sync-coordinator sync-worker webhook-handler)
# Local database the stack uses; DATABASE_URL (when it answers) takes precedence.
DEFAULT_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/edge_sync"
export PATH="$HOME/.cargo/bin:$PATH"
# Keep wrangler quiet and offline-friendly.
export WRANGLER_SEND_METRICS=false
export WRANGLER_SEND_ERROR_REPORTS=false
export CI="${CI:-}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command as root (directly, or through sudo when available).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    die "need root to run: $*"; fi
}

# Version of a package as locked in Cargo.lock.
locked_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# The database URL with its database name replaced (to reach the maintenance database).
with_database() {
  local url="$1" db="$2"
  printf '%s\n' "${url%/*}/$db"
}

# Host, port and database of a connection URL, for messages: never its user or password.
url_host() {
  local rest="${1#*://}"
  rest="${rest##*@}"
  printf '%s\n' "${rest%%\?*}"
}

# True when psql can run a query against $1.
pg_answers() { psql "$1" -qtAc 'SELECT 1' >/dev/null 2>&1; }

# Paths of the binaries worker-build must use instead of downloading its own.
worker_build_env() {
  export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
  export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
  export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
}

# The Workers that hold secret $1 according to wrangler/secrets.txt (empty: not a secret).
secret_holders() {
  awk -v n="$1" '!/^#/ && NF > 1 {
      p = $1; prefix = substr(p, 1, length(p) - 1)
      if (p == n || (p ~ /\*$/ && index(n, prefix) == 1)) { $1 = ""; print; exit }
    }' "$ROOT/wrangler/secrets.txt"
}

# Copies the NAME=value lines of stdin that Worker $1 may hold (settings, and the secrets
# wrangler/secrets.txt gives it).
worker_vars() {
  local worker="$1" line holders
  while IFS= read -r line; do
    case "$line" in [A-Za-z_]*=*) ;; *) continue ;; esac
    holders="$(secret_holders "${line%%=*}")"
    if [ -z "$holders" ] || [[ " $holders " == *" $worker "* ]]; then printf '%s\n' "$line"; fi
  done
}

# Writes Worker $1's wrangler config into directory $2 beside a .dev.vars holding only its
# own secrets (wrangler reads .dev.vars from the config's directory); prints the config path.
local_worker_config() {
  local worker="$1" dir="$2"
  mkdir -p "$dir"
  sed "s#\"\.\./workers/#\"$ROOT/workers/#" "$ROOT/wrangler/$worker.toml" > "$dir/$worker.toml"
  (umask 077; worker_vars "$worker" < "$ROOT/wrangler/.dev.vars" > "$dir/.dev.vars")
  printf '%s\n' "$dir/$worker.toml"
}

# A pid file ($PIDS/<name>.pid) names a process we started; it is ours only if that pid
# still runs the command we started (pids get reused), recognised by "$name" in its command
# line.
our_pid() {
  local name="$1" pid
  [ -f "$PIDS/$name.pid" ] || return 1
  pid="$(cat "$PIDS/$name.pid")"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -qaF "$(cat "$PIDS/$name.cmd")" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Runs a command (whose command line names "$1") in a session and process group of its own,
# output appended to $LOGS/<name>.log, and records its pid for our_pid. `setsid` forks when
# its caller leads a process group (as a background job does in a shell with job control),
# so `$!` may name a process that exits at once: the process records its own pid instead,
# after setsid and before exec, so the pid file names the process that runs the command
# from the first instant.
launch_detached() {
  local name="$1"; shift
  printf '%s' "$name" > "$PIDS/$name.cmd"
  rm -f "$PIDS/$name.pid"
  setsid --fork bash -c 'echo $$ > "$0"; exec "$@"' "$PIDS/$name.pid" "$@" \
    >>"$LOGS/$name.log" 2>&1 < /dev/null
  local _
  for _ in $(seq 1 100); do [ -s "$PIDS/$name.pid" ] && return; sleep 0.05; done
  die "$name did not start (log: $LOGS/$name.log)"
}

# Frees nothing, guesses nothing: a port is free when nothing accepts on it.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The URL the Workers use for database $1: the same database as the least-privileged login
# role edge_sync_worker (created by bootstrap), or $1 itself when that role is not set up.
worker_database_url() {
  local url="$1" password_file="$EDGE_SYNC_HOME/worker_db_password" rest
  [ -s "$password_file" ] || { printf '%s\n' "$url"; return; }
  rest="${url#*://}"; rest="${rest##*@}"
  printf '%s://edge_sync_worker:%s@%s\n' "${url%%://*}" "$(cat "$password_file")" "$rest"
}

# wrangler's local Hyperdrive insists on a password in the URL; trust-auth servers ignore it.
hyperdrive_local_url() {
  local url="$1" scheme rest userinfo
  scheme="${url%%://*}"; rest="${url#*://}"
  case "$rest" in
    *@*) userinfo="${rest%%@*}"
         case "$userinfo" in *:*) printf '%s\n' "$url" ;; *) printf '%s://%s:local@%s\n' "$scheme" "$userinfo" "${rest#*@}" ;; esac ;;
    *) printf '%s://postgres:local@%s\n' "$scheme" "$rest" ;;
  esac
}
