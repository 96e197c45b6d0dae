//! Deploying and checking a deployment, offline: `scripts/deploy.sh` against the local
//! stand-in of the Cloudflare API (`tests/cloudflare-api`, reached through
//! `CLOUDFLARE_API_BASE_URL`, which wrangler honours), and `scripts/validate-deployment.sh`
//! against the local stack and against broken configurations.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use edge_sync_e2e::{stack::repo_root, ScratchDatabase, Stack, WEBHOOK_SECRETS};
use serde_json::Value;

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

/// The stand-in, started on a port of its own; stopped on drop.
struct CloudflareApi {
    child: Child,
    base: String,
}

impl CloudflareApi {
    fn start() -> CloudflareApi {
        let root = repo_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "--release", "-q", "-p", "cloudflare-api"])
            .current_dir(&root)
            .status()
            .expect("cargo build -p cloudflare-api");
        assert!(built.success(), "the stand-in builds");
        let mut child = Command::new(root.join("target/release/cloudflare-api"))
            .args(["--port", "0"])
            .env("CF_STANDIN_ACCOUNT_ID", ACCOUNT)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Cloudflare API stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the stand-in prints its address");
        let base = line
            .split_whitespace()
            .last()
            .expect("address")
            .trim_end_matches("/client/v4")
            .to_owned();
        CloudflareApi { child, base }
    }

    fn api_url(&self) -> String {
        format!("{}/client/v4", self.base)
    }

    fn get(&self, route: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", &format!("{}{route}", self.base)])
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).expect("JSON from the stand-in")
    }

    fn calls(&self) -> Vec<Value> {
        self.get("/__stand-in/calls")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn state(&self) -> Value {
        self.get("/__stand-in/state")
    }
}

impl Drop for CloudflareApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A clean checkout: the repository's tracked files (as `git clone` gives), plus the
/// already-built Workers and node_modules (what `npm ci` and a build give), and no
/// `.edge-sync` state and no `.env`.
fn clean_checkout(dir: &Path) -> PathBuf {
    let root = repo_root();
    let checkout = dir.join("checkout");
    let files = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    for file in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = String::from_utf8_lossy(file).to_string();
        let from = root.join(&rel);
        if !from.is_file() {
            continue;
        }
        let to = checkout.join(&rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).expect("copy a tracked file");
    }
    std::os::unix::fs::symlink(root.join("node_modules"), checkout.join("node_modules"))
        .expect("link node_modules");
    for worker in ["sync-coordinator", "sync-worker", "webhook-handler"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(root.join(format!("workers/{worker}/build")))
            .arg(checkout.join(format!("workers/{worker}/build")))
            .status()
            .expect("cp");
        assert!(status.success(), "{worker} is built (scripts/bootstrap.sh)");
    }
    checkout
}

/// The secrets deploy puts, each on the Workers `wrangler/secrets.txt` names.
const DEPLOYED_SECRETS: [&str; 16] = [
    "ADMIN_TOKEN",
    "WEBHOOK_HANDLER_TOKEN",
    "SYNC_WORKER_TOKEN",
    "COORDINATOR_TOKEN",
    "TOKEN_ENCRYPTION_KEY",
    "KEAP_CLIENT_SECRET",
    "SHOPIFY_CLIENT_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "GITLAB_WEBHOOK_TOKEN",
    "BITBUCKET_WEBHOOK_SECRET",
    "SUPABASE_WEBHOOK_SECRET",
    "KEAP_WEBHOOK_SECRET",
    "STANDARD_WEBHOOK_SECRET_BILLING",
    "MODEL_API_KEY",
    "SUPABASE_JWT_SECRET",
    "REPO_WEBHOOK_SIGNING_KEY",
];

/// Every secret and setting deploy needs, with values unique enough to search for.
fn env_file(dir: &Path, database_url: &str) -> (PathBuf, Vec<(String, String)>) {
    let mut values: Vec<(String, String)> = vec![
        ("CLOUDFLARE_ACCOUNT_ID".into(), ACCOUNT.into()),
        (
            "CLOUDFLARE_API_TOKEN".into(),
            "stand-in-api-token-7f3a".into(),
        ),
        ("DATABASE_URL".into(), database_url.into()),
        ("ALLOWED_ORIGIN".into(), "https://admin.example.com".into()),
        ("KEAP_CLIENT_ID".into(), "keap-client-id-e2e".into()),
        ("SHOPIFY_CLIENT_ID".into(), "shopify-client-id-e2e".into()),
        ("MODEL_BASE_URL".into(), "https://api.openai.com/v1".into()),
        ("MODEL_NAME".into(), "gpt-4o-mini".into()),
    ];
    for name in DEPLOYED_SECRETS {
        values.push((
            name.into(),
            format!("secret-{}-d41d8cd9", name.to_lowercase()),
        ));
    }
    let path = dir.join("deploy.env");
    let text: String = values.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&path, text).expect("write .env");
    (path, values)
}

fn run(checkout: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(checkout.join(script));
    command.args(args).current_dir(checkout);
    for var in [
        "CLOUDFLARE_API_TOKEN",
        "CLOUDFLARE_ACCOUNT_ID",
        "DATABASE_URL",
        "EDGE_SYNC_HOME",
        "COORDINATOR_URL",
        "SYNC_WORKER_URL",
        "WEBHOOK_HANDLER_URL",
        "ADMIN_TOKEN",
        "GITHUB_WEBHOOK_SECRET",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().expect("run the script")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn binding<'a>(script: &'a Value, kind: &str, name: &str) -> &'a Value {
    script["metadata"]["bindings"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["type"] == kind && b["name"] == name))
        .unwrap_or_else(|| panic!("binding {name} ({kind}) in {}", script["metadata"]))
}

fn secret_holders(worker: &str) -> Vec<String> {
    DEPLOYED_SECRETS
        .iter()
        .filter(|n| {
            edge_sync_e2e::stack::secret_holders(n).is_some_and(|h| h.iter().any(|w| w == worker))
        })
        .map(|n| (*n).to_owned())
        .collect()
}

/// Proves: `scripts/deploy.sh`, run from a clean checkout against the Cloudflare API stand-in,
/// leaves the account as a real one should be: one KV namespace and one Hyperdrive config
/// (pointing at the direct database, the password never recorded), the three Workers
/// uploaded coordinator first with their bindings (Durable Object class SyncCoordinator with
/// migration tag v1, KV, Hyperdrive, service bindings, production vars and OAuth redirect
/// URLs), the sync-worker's cron `*/30 * * * *`, every secret on exactly the Workers
/// wrangler/secrets.txt names; migrations applied; the redirect and webhook URLs printed;
/// no secret value in a recorded call, the output or the generated files. A second run
/// creates nothing and uploads nothing; a changed DATABASE_URL only updates the Hyperdrive
/// origin in place; `validate-deployment.sh config-only` passes on the
/// result and fails on an empty account, naming what is missing.
#[test]
fn deploy_sets_up_the_account_once_and_rerunning_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let checkout = clean_checkout(dir.path());
    let api = CloudflareApi::start();
    let database = ScratchDatabase::create("deploy");
    let (env_path, values) = env_file(dir.path(), &database.url);
    let env_arg = env_path.to_string_lossy().to_string();
    let api_url = api.api_url();
    let env = [("CLOUDFLARE_API_BASE_URL", api_url.as_str())];

    let first = run(
        &checkout,
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &env_arg],
        &env,
    );
    let first_out = text(&first);
    assert!(first.status.success(), "deploy failed:\n{first_out}");
    for printed in [
        "https://sync-coordinator.edge-sync-stand-in.workers.dev/oauth/callback",
        "https://sync-coordinator.edge-sync-stand-in.workers.dev/oauth/shopify/callback",
        "https://webhook-handler.edge-sync-stand-in.workers.dev/webhooks/shopify",
        "https://sync-worker.edge-sync-stand-in.workers.dev",
        "fits Free and Paid",
    ] {
        assert!(
            first_out.contains(printed),
            "deploy prints {printed}:\n{first_out}"
        );
    }

    let state = api.state();
    let kv = state["kv_namespaces"].as_array().expect("namespaces");
    assert_eq!(kv.len(), 1, "one KV namespace: {kv:?}");
    let kv_id = kv[0]["id"].as_str().expect("kv id").to_owned();
    let hd = state["hyperdrive_configs"].as_array().expect("configs");
    assert_eq!(hd.len(), 1, "one Hyperdrive config: {hd:?}");
    let hd_id = hd[0]["id"].as_str().expect("hyperdrive id").to_owned();
    let (_, db_name) = database.url.rsplit_once('/').expect("db name");
    assert_eq!(
        hd[0]["origin"]["database"], db_name,
        "Hyperdrive targets the database"
    );
    assert_eq!(hd[0]["origin"]["host"], "127.0.0.1");
    assert_eq!(hd[0]["origin"]["scheme"], "postgres");

    let scripts = &state["scripts"];
    let coordinator = &scripts["sync-coordinator"];
    let sync_worker = &scripts["sync-worker"];
    let webhook_handler = &scripts["webhook-handler"];
    assert_eq!(
        binding(coordinator, "durable_object_namespace", "SYNC_COORDINATOR")["class_name"],
        "SyncCoordinator"
    );
    assert_eq!(
        coordinator["migration_tag"], "v1",
        "the Durable Object migration ran"
    );
    // The upload that created the class carried the SQLite migration (later ones need none).
    let migration = api
        .calls()
        .into_iter()
        .find_map(|c| {
            let m = c["metadata"]["migrations"].clone();
            (c["path"]
                .as_str()
                .is_some_and(|p| p.contains("/scripts/sync-coordinator"))
                && !m.is_null())
            .then_some(m)
        })
        .expect("an upload with the Durable Object migration");
    assert_eq!(migration["new_tag"], "v1");
    assert_eq!(
        migration["steps"][0]["new_sqlite_classes"][0],
        "SyncCoordinator"
    );
    assert_eq!(
        binding(coordinator, "service", "SYNC_WORKER")["service"],
        "sync-worker"
    );
    assert_eq!(
        binding(sync_worker, "service", "COORDINATOR")["service"],
        "sync-coordinator"
    );
    assert_eq!(
        binding(webhook_handler, "service", "COORDINATOR")["service"],
        "sync-coordinator"
    );
    for script in [coordinator, sync_worker, webhook_handler] {
        assert_eq!(
            binding(script, "kv_namespace", "SYNC_CACHE")["namespace_id"],
            kv_id.as_str()
        );
        assert_eq!(
            binding(script, "plain_text", "ENVIRONMENT")["text"],
            "production"
        );
        assert_eq!(
            binding(script, "plain_text", "KEAP_REDIRECT_URI")["text"],
            "https://sync-coordinator.edge-sync-stand-in.workers.dev/oauth/callback"
        );
        assert_eq!(
            binding(script, "plain_text", "KEAP_CLIENT_ID")["text"],
            "keap-client-id-e2e"
        );
        assert_eq!(script["metadata"]["compatibility_date"], "2026-04-20");
        assert_eq!(script["metadata"]["main_module"], "shim.js");
    }
    for script in [coordinator, sync_worker] {
        assert_eq!(
            binding(script, "hyperdrive", "HYPERDRIVE")["id"],
            hd_id.as_str()
        );
    }
    assert_eq!(sync_worker["schedules"][0]["cron"], "*/30 * * * *");
    for worker in ["sync-coordinator", "sync-worker", "webhook-handler"] {
        let mut set: Vec<String> = scripts[worker]["secrets"]
            .as_object()
            .expect("secrets")
            .keys()
            .cloned()
            .collect();
        set.sort();
        let mut want = secret_holders(worker);
        want.sort();
        assert_eq!(set, want, "{worker}'s secrets are exactly its own");
    }
    let migrated = Command::new("psql")
        .args([
            &database.url,
            "-qtAc",
            "SELECT count(*) FROM edge_sync_schema_migrations",
        ])
        .output()
        .expect("psql");
    let applied: usize = String::from_utf8_lossy(&migrated.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let files = std::fs::read_dir(repo_root().join("supabase/migrations"))
        .expect("migrations")
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|e| e == "sql"))
        })
        .count();
    assert_eq!(applied, files, "every migration applied");

    // Coordinator first: its first upload precedes the others'.
    let calls = api.calls();
    let uploads: Vec<String> = calls
        .iter()
        .filter(|c| {
            c["method"] == "PUT"
                && c["path"]
                    .as_str()
                    .is_some_and(|p| p.split('/').count() == 6 && p.contains("/workers/scripts/"))
        })
        .map(|c| {
            c["path"]
                .as_str()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        uploads.first().map(String::as_str),
        Some("sync-coordinator"),
        "uploads: {uploads:?}"
    );
    assert!(
        calls.iter().all(|c| c["authorized"] == true),
        "every call carries the token"
    );

    // No secret value in the recording, the generated files or the output.
    let recorded = serde_json::to_string(&calls).expect("json")
        + &serde_json::to_string(&state).expect("json");
    let generated: String = walk(&checkout.join(".edge-sync"))
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).to_string())
        .collect();
    for (name, value) in &values {
        if name.contains("SECRET") || name.ends_with("TOKEN") || name.ends_with("_KEY") {
            assert!(
                !recorded.contains(value.as_str()),
                "{name} recorded by the stand-in"
            );
            assert!(
                !generated.contains(value.as_str()),
                "{name} in .edge-sync files"
            );
            assert!(!first_out.contains(value.as_str()), "{name} printed");
        }
    }
    assert!(
        !recorded.contains("postgres:postgres@"),
        "the database password is not recorded"
    );
    let tracked = Command::new("grep")
        .args([
            "-rl",
            "--exclude-dir=.edge-sync",
            "--exclude-dir=node_modules",
            &kv_id,
            ".",
        ])
        .current_dir(&checkout)
        .output()
        .expect("grep");
    assert!(
        tracked.stdout.is_empty(),
        "resource ids only in .edge-sync: {}",
        String::from_utf8_lossy(&tracked.stdout)
    );

    // Second run: nothing created, nothing uploaded, no secret re-put.
    let before = calls.len();
    let second = run(
        &checkout,
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &env_arg],
        &env,
    );
    assert!(
        second.status.success(),
        "second deploy failed:\n{}",
        text(&second)
    );
    let state = api.state();
    assert_eq!(state["kv_namespaces"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        state["hyperdrive_configs"].as_array().map(Vec::len),
        Some(1)
    );
    let again: Vec<String> = api.calls()[before..]
        .iter()
        .filter(|c| c["method"] != "GET")
        .map(|c| format!("{} {}", c["method"], c["path"]))
        .collect();
    assert!(again.is_empty(), "a re-run changes nothing: {again:?}");
    assert!(text(&second).contains("unchanged"), "{}", text(&second));

    // A changed DATABASE_URL updates the Hyperdrive origin in place (no new config).
    let moved = std::fs::read_to_string(&env_path)
        .expect("read .env")
        .replace("@127.0.0.1:", "@localhost:");
    std::fs::write(&env_path, moved).expect("write .env");
    let before = api.calls().len();
    let third = run(
        &checkout,
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &env_arg],
        &env,
    );
    assert!(
        third.status.success(),
        "third deploy failed:\n{}",
        text(&third)
    );
    let state = api.state();
    assert_eq!(
        state["hyperdrive_configs"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        state["hyperdrive_configs"][0]["origin"]["host"],
        "localhost"
    );
    let changes: Vec<String> = api.calls()[before..]
        .iter()
        .filter(|c| c["method"] != "GET")
        .map(|c| format!("{} {}", c["method"], c["path"]))
        .collect();
    assert_eq!(
        changes,
        vec![format!(
            "\"PATCH\" \"/accounts/{ACCOUNT}/hyperdrive/configs/{hd_id}\""
        )]
    );

    // validate-deployment.sh config-only: passes here, fails on an empty account.
    let valid = run(
        &checkout,
        "scripts/validate-deployment.sh",
        &["config-only", "--env-file", &env_arg],
        &env,
    );
    assert!(
        valid.status.success(),
        "config-only on the deployed account:\n{}",
        text(&valid)
    );
    let empty = CloudflareApi::start();
    let empty_url = empty.api_url();
    let invalid = run(
        &checkout,
        "scripts/validate-deployment.sh",
        &["config-only", "--env-file", &env_arg],
        &[("CLOUDFLARE_API_BASE_URL", empty_url.as_str())],
    );
    assert!(
        !invalid.status.success(),
        "config-only on an empty account fails"
    );
    assert!(
        text(&invalid).contains("sync-coordinator is not deployed"),
        "{}",
        text(&invalid)
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with(".wrangler") {
                    out.extend(walk(&p));
                }
            } else if p.extension().is_none_or(|x| x != "wasm") {
                out.push(p);
            }
        }
    }
    out
}

/// Proves: `deploy.sh --dry-run` (what CI runs) validates every bundle with
/// `wrangler deploy --dry-run`, prints the plan and each bundle's gzip size against the
/// Workers Free and Paid limits, needs no `.env`, and makes no call to the Cloudflare API.
#[test]
fn dry_run_validates_bundles_without_touching_an_account() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = CloudflareApi::start();
    let api_url = api.api_url();
    let home = dir.path().join("home");
    let home_s = home.to_string_lossy().to_string();
    let missing = dir.path().join("no.env").to_string_lossy().to_string();
    let out = run(
        &repo_root(),
        "scripts/deploy.sh",
        &["--dry-run", "--skip-build", "--env-file", &missing],
        &[
            ("CLOUDFLARE_API_BASE_URL", api_url.as_str()),
            ("EDGE_SYNC_HOME", home_s.as_str()),
        ],
    );
    let printed = text(&out);
    assert!(out.status.success(), "dry run failed:\n{printed}");
    for w in ["sync-coordinator", "sync-worker", "webhook-handler"] {
        assert!(
            printed
                .lines()
                .any(|l| l.contains(w) && l.contains("KB") && l.contains("Free")),
            "{w}'s size:\n{printed}"
        );
        assert!(
            home.join(format!("deploy/bundle-{w}/shim.js")).is_file(),
            "{w} bundled"
        );
    }
    assert!(
        printed.contains("plan") && printed.contains("nothing was deployed"),
        "{printed}"
    );
    assert!(
        api.calls().is_empty(),
        "a dry run calls no API: {:?}",
        api.calls()
    );
}

/// Proves: `deploy.sh` refuses, with a message naming the problem, an `.env` missing values
/// and a database URL that is Supabase's transaction pooler, before touching anything.
#[test]
fn deploy_refuses_missing_settings_and_the_pooler() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = CloudflareApi::start();
    let api_url = api.api_url();
    let home = dir.path().join("home").to_string_lossy().to_string();
    let env = [
        ("CLOUDFLARE_API_BASE_URL", api_url.as_str()),
        ("EDGE_SYNC_HOME", home.as_str()),
    ];
    let partial = dir.path().join("partial.env");
    std::fs::write(&partial, "CLOUDFLARE_ACCOUNT_ID=abc\n").expect("write");
    let out = run(
        &repo_root(),
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &partial.to_string_lossy()],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("missing in")
            && text(&out).contains("CLOUDFLARE_API_TOKEN")
            && text(&out).contains("ADMIN_TOKEN"),
        "{}",
        text(&out)
    );

    let (pooled, _) = env_file(
        dir.path(),
        "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
    );
    let out = run(
        &repo_root(),
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &pooled.to_string_lossy()],
        &env,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("DIRECT connection string"),
        "{}",
        text(&out)
    );
    let none = dir.path().join("absent.env");
    let out = run(
        &repo_root(),
        "scripts/deploy.sh",
        &["--skip-build", "--env-file", &none.to_string_lossy()],
        &env,
    );
    assert!(
        !out.status.success() && text(&out).contains("cp .env.example .env"),
        "{}",
        text(&out)
    );
    assert!(api.calls().is_empty(), "nothing touched: {:?}", api.calls());
}

/// Proves: `validate-deployment.sh` finds the Workers from COORDINATOR_URL, SYNC_WORKER_URL
/// and WEBHOOK_HANDLER_URL and passes on the local stack (health-only, and full: status
/// endpoints with the admin token, a signed test webhook stored); it fails with a plain
/// message naming the fault for an unreachable Worker, a wrong admin token and a wrong
/// webhook secret.
#[tokio::test(flavor = "multi_thread")]
async fn validate_deployment_passes_on_the_local_stack_and_names_broken_setups() {
    let stack = Stack::start().await;
    let root = repo_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let no_env = dir.path().join("none.env").to_string_lossy().to_string();
    let home = dir.path().join("home").to_string_lossy().to_string();
    let base = |admin: &'static str, github: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("COORDINATOR_URL", stack.coordinator.clone()),
            ("SYNC_WORKER_URL", stack.sync_worker.clone()),
            ("WEBHOOK_HANDLER_URL", stack.webhook_handler.clone()),
            (
                "ADMIN_TOKEN",
                if admin.is_empty() {
                    stack.admin_token.clone()
                } else {
                    admin.to_owned()
                },
            ),
            ("GITHUB_WEBHOOK_SECRET", github.to_owned()),
            ("EDGE_SYNC_HOME", home.clone()),
        ]
    };
    let go = |mode: &str, env: Vec<(&'static str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(
            &root,
            "scripts/validate-deployment.sh",
            &[mode, "--env-file", &no_env],
            &env,
        )
    };
    let health =
        tokio::task::block_in_place(|| go("health-only", base("", WEBHOOK_SECRETS.github)));
    assert!(
        health.status.success(),
        "health-only on the local stack:\n{}",
        text(&health)
    );
    let full = tokio::task::block_in_place(|| go("full", base("", WEBHOOK_SECRETS.github)));
    assert!(
        full.status.success(),
        "full on the local stack:\n{}",
        text(&full)
    );
    assert!(
        text(&full).contains("accepted and stored"),
        "{}",
        text(&full)
    );

    let mut dead = base("", WEBHOOK_SECRETS.github);
    dead[1].1 = "http://127.0.0.1:9".into();
    let out = tokio::task::block_in_place(|| go("health-only", dead));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("sync-worker: http://127.0.0.1:9/health unreachable"),
        "{}",
        text(&out)
    );

    let out = tokio::task::block_in_place(|| {
        go("full", base("wrong-admin-token", WEBHOOK_SECRETS.github))
    });
    assert!(!out.status.success());
    assert!(text(&out).contains("wrong ADMIN_TOKEN"), "{}", text(&out));

    let out = tokio::task::block_in_place(|| go("full", base("", "not-the-github-secret")));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("signature check failed"),
        "{}",
        text(&out)
    );
}
