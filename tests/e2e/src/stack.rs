//! [`Stack`]: one running Edge Sync system for one test.

use std::{
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long a stack may take to come up (workerd cold start on 2 cores).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// What to wait for before handing the stack to the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Every `/health` answers 200.
    Green,
    /// Every `/health` answers at all (for tests of degraded states).
    Responding,
}

/// Knobs a test can turn.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Replaces the Hyperdrive local connection string (e.g. to an unreachable server).
    pub hyperdrive_url: Option<String>,
    /// Extra arguments for the provider sandbox.
    pub sandbox_args: Vec<String>,
    /// What `start` waits for.
    pub readiness: Readiness,
    /// Extra Worker variables (`NAME`, `value`), e.g. shorter lifetimes for a test.
    pub vars: Vec<(String, String)>,
    /// Route Hyperdrive through a proxy the test can switch off ([`Stack::set_postgres_down`]).
    pub postgres_proxy: bool,
    /// Replace sync-worker's cron with this expression and let the launcher fire it at its
    /// times (`--run-crons`), as Cloudflare does; off by default, so no run starts in the
    /// middle of a scenario.
    pub scheduled_cron: Option<String>,
    /// Generate suggestions with the sandbox's OpenAI-compatible model endpoint
    /// (`MODEL_BASE_URL` etc.) instead of templates.
    pub model: bool,
}

/// The model the stack asks when [`StackOptions::model`] is set.
pub const SANDBOX_MODEL: &str = "gpt-4o-mini";

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            hyperdrive_url: None,
            sandbox_args: Vec::new(),
            readiness: Readiness::Green,
            vars: Vec::new(),
            postgres_proxy: false,
            scheduled_cron: None,
            model: false,
        }
    }
}

/// A running stack. Dropping it stops every process and drops its database.
#[derive(Debug)]
pub struct Stack {
    /// Base URL of sync-coordinator.
    pub coordinator: String,
    /// Base URL of sync-worker.
    pub sync_worker: String,
    /// Base URL of webhook-handler.
    pub webhook_handler: String,
    /// Base URL where sync-worker's cron runs on demand (`/cdn-cgi/handler/scheduled`).
    pub cron_trigger: String,
    /// Base URL of the provider sandbox.
    pub sandbox: String,
    /// URL of this stack's own database.
    pub database_url: String,
    /// `ADMIN_TOKEN` given to the Workers.
    pub admin_token: String,
    /// `WEBHOOK_HANDLER_TOKEN`: webhook-handler's credential at the coordinator.
    pub webhook_handler_token: String,
    /// `SYNC_WORKER_TOKEN`: sync-worker's credential at the coordinator.
    pub sync_worker_token: String,
    /// `COORDINATOR_TOKEN`: the coordinator's credential at sync-worker.
    pub coordinator_token: String,
    /// HTTP client for the test.
    pub http: reqwest::Client,
    /// 32-byte key (base64) the coordinator encrypts tokens with.
    pub token_encryption_key: String,
    pg_proxy: Option<crate::pg_proxy::PgProxy>,
    dir: tempfile::TempDir,
    options: StackOptions,
    ports: WorkerPorts,
    /// Dropped after the processes stop (fields drop after `Drop::drop`).
    database: ScratchDatabase,
    processes: Vec<(String, Child)>,
}

static STACK_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Webhook secrets every stack configures, so tests can sign deliveries as providers do.
#[derive(Debug)]
pub struct WebhookSecrets {
    /// `GITHUB_WEBHOOK_SECRET`.
    pub github: &'static str,
    /// `GITLAB_WEBHOOK_TOKEN`.
    pub gitlab: &'static str,
    /// `BITBUCKET_WEBHOOK_SECRET`.
    pub bitbucket: &'static str,
    /// `SUPABASE_WEBHOOK_SECRET`.
    pub supabase: &'static str,
    /// `KEAP_WEBHOOK_SECRET` (the seed's X-Hook-Signature).
    pub keap: &'static str,
    /// `STANDARD_WEBHOOK_SECRET_BILLING` (the Standard Webhooks libraries' test-vector secret).
    pub standard: &'static str,
    /// The Shopify app secret (the sandbox's default client secret).
    pub shopify: &'static str,
    /// `REPO_WEBHOOK_SIGNING_KEY`: connected repositories' webhook secrets derive from it.
    pub repo_key: &'static str,
}

/// The secrets of [`WebhookSecrets`].
pub const WEBHOOK_SECRETS: WebhookSecrets = WebhookSecrets {
    github: "e2e-github-secret",
    gitlab: "e2e-gitlab-token",
    bitbucket: "e2e-bitbucket-secret",
    supabase: "e2e-supabase-secret",
    keap: "e2e-keap-hook-secret",
    standard: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    shopify: "sandbox-shopify-client-secret",
    repo_key: "e2e-repo-webhook-signing-key",
};

/// The three Workers.
pub const WORKERS: [&str; 3] = ["sync-coordinator", "sync-worker", "webhook-handler"];

/// The one process that runs the three Workers (`scripts/local-stack.mjs`: one workerd,
/// service bindings in-process as on Cloudflare); its own output is `local-stack.log`, each
/// Worker's log lines go to `<worker>.log`.
pub const WORKERS_PROCESS: &str = "local-stack";

/// The process that runs `name`: the Workers share [`WORKERS_PROCESS`].
fn process_of(name: &str) -> &str {
    if WORKERS.contains(&name) {
        WORKERS_PROCESS
    } else {
        name
    }
}

/// Ports chosen once per stack, so a restart comes back on the same URLs.
#[derive(Debug, Clone, Copy)]
struct WorkerPorts {
    coordinator: u16,
    sync_worker: u16,
    webhook_handler: u16,
    cron_trigger: u16,
}

impl WorkerPorts {
    fn set(&mut self, worker: &str, port: u16) {
        match worker {
            "sync-coordinator" => self.coordinator = port,
            "sync-worker" => self.sync_worker = port,
            _ => self.webhook_handler = port,
        }
    }

    fn of(&self, worker: &str) -> u16 {
        match worker {
            "sync-coordinator" => self.coordinator,
            "sync-worker" => self.sync_worker,
            _ => self.webhook_handler,
        }
    }
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate lives at tests/e2e")
        .to_path_buf()
}

/// A port that is free now, chosen below Linux's ephemeral range (32768+), where workerd,
/// node and every outgoing connection take their own ports: a port picked there can be
/// taken by someone else before our process binds it.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = u32::try_from(rand_u128() % 10_000).unwrap_or(0);
    for _ in 0..2_000 {
        let offset = (seed + NEXT.fetch_add(7, Ordering::Relaxed)) % 12_000;
        let port = u16::try_from(20_000 + offset).unwrap_or(20_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A database of its own for a test that needs PostgreSQL but no Workers; dropped with it.
#[derive(Debug)]
pub struct ScratchDatabase {
    /// URL of the database (as the maintenance database's user, a superuser locally).
    pub url: String,
    name: String,
    admin_url: String,
}

impl ScratchDatabase {
    /// Creates an empty database named after `label` and the process.
    pub fn create(label: &str) -> ScratchDatabase {
        let admin_url = admin_database_url();
        let n = STACK_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("edge_sync_e2e_{label}_{}_{n}", std::process::id());
        psql(
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .and_then(|()| psql(&admin_url, &format!("CREATE DATABASE {name}")))
        .unwrap_or_else(|e| {
            panic!("cannot create the test database (is PostgreSQL running?): {e}")
        });
        let (prefix, _) = admin_url.rsplit_once('/').expect("URL with path");
        ScratchDatabase {
            url: format!("{prefix}/{name}"),
            name,
            admin_url,
        }
    }

    /// Runs SQL (several statements allowed) against the database; `Err` with psql's message.
    pub fn psql(&self, sql: &str) -> Result<(), String> {
        psql(&self.url, sql)
    }

    /// Applies the project's migrations with scripts/migrate.sh.
    pub fn migrate(&self) {
        let output = Command::new(repo_root().join("scripts/migrate.sh"))
            .arg(&self.url)
            .output()
            .expect("run scripts/migrate.sh");
        assert!(
            output.status.success(),
            "migrations failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `database_url` as the login role `edge_sync_worker` (row access only) that
/// scripts/bootstrap.sh creates, or `database_url` itself when bootstrap could not create it.
pub fn worker_database_url(database_url: &str) -> String {
    let password = fs::read_to_string(repo_root().join(".edge-sync/worker_db_password"))
        .ok()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let Some(password) = password else {
        return database_url.to_owned();
    };
    let (scheme, rest) = database_url.split_once("://").expect("URL with a scheme");
    let host_and_db = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://edge_sync_worker:{password}@{host_and_db}")
}

/// The Workers that hold secret `name` according to `wrangler/secrets.txt` (`None`: not a
/// secret, every Worker may read it).
pub fn secret_holders(name: &str) -> Option<Vec<String>> {
    let manifest =
        fs::read_to_string(repo_root().join("wrangler/secrets.txt")).expect("wrangler/secrets.txt");
    manifest
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| {
            fields.len() > 1
                && match fields[0].strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => fields[0] == name,
                }
        })
        .map(|fields| fields[1..].iter().map(|s| s.to_string()).collect())
}

fn random_token(label: &str) -> String {
    format!("{label}-{:032x}", rand_u128())
}

/// A fresh 32-byte token encryption key, as 64 hex characters (accepted like base64).
fn random_key_hex() -> String {
    let mut raw = [0u8; 32];
    let mut file = fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut file, &mut raw).expect("random bytes");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn rand_u128() -> u128 {
    // Not security-relevant: distinct tokens per stack. Mix time and a counter.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    nanos
        ^ (u128::from(std::process::id()) << 64)
        ^ u128::from(STACK_COUNTER.load(Ordering::Relaxed)) << 96
}

/// The maintenance database URL: `EDGE_SYNC_ADMIN_DATABASE_URL`, else the one bootstrap
/// settled on (with its database swapped for `postgres`), else the local default.
fn admin_database_url() -> String {
    if let Ok(url) = std::env::var("EDGE_SYNC_ADMIN_DATABASE_URL") {
        return url;
    }
    let recorded = fs::read_to_string(repo_root().join(".edge-sync/database_url")).ok();
    let base = recorded
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("postgres://postgres:postgres@127.0.0.1:5432/edge_sync");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/postgres")
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([url, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl Stack {
    /// Starts a stack with default options and waits until it is green.
    pub async fn start() -> Stack {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts a stack with `options`.
    pub async fn start_with(options: StackOptions) -> Stack {
        capture_panic_messages();
        let root = repo_root();
        for worker in ["sync-coordinator", "sync-worker", "webhook-handler"] {
            let shim = root.join(format!("workers/{worker}/build/worker/shim.mjs"));
            assert!(
                shim.exists(),
                "{worker} is not built: run scripts/bootstrap.sh first"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("edge-sync-e2e-")
            .tempdir()
            .expect("temp dir");
        let database = ScratchDatabase::create("stack");
        let database_url = database.url.clone();

        let ports = WorkerPorts {
            coordinator: free_port(),
            sync_worker: free_port(),
            webhook_handler: free_port(),
            cron_trigger: free_port(),
        };
        let mut stack = Stack {
            coordinator: format!("http://127.0.0.1:{}", ports.coordinator),
            sync_worker: format!("http://127.0.0.1:{}", ports.sync_worker),
            webhook_handler: format!("http://127.0.0.1:{}", ports.webhook_handler),
            cron_trigger: format!("http://127.0.0.1:{}", ports.cron_trigger),
            sandbox: String::new(),
            database_url: database_url.clone(),
            admin_token: random_token("admin"),
            webhook_handler_token: random_token("webhook-handler"),
            sync_worker_token: random_token("sync-worker"),
            coordinator_token: random_token("coordinator"),
            token_encryption_key: random_key_hex(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            pg_proxy: None,
            dir,
            options: options.clone(),
            ports,
            database,
            processes: Vec::new(),
        };

        stack.database.migrate();

        // The Workers connect as the least-privileged role bootstrap set up, as in production.
        let workers_url = worker_database_url(&database_url);
        if options.postgres_proxy {
            let (_, rest) = workers_url
                .split_once('@')
                .expect("user@host in the database URL");
            let (host_port, db) = rest.split_once('/').expect("database in the URL");
            let proxy = crate::pg_proxy::PgProxy::start(host_port.to_owned()).await;
            let (userinfo, _) = workers_url.split_once('@').expect("userinfo");
            stack.options.hyperdrive_url =
                Some(format!("{userinfo}@127.0.0.1:{}/{db}", proxy.port));
            stack.pg_proxy = Some(proxy);
        }
        if stack.options.hyperdrive_url.is_none() {
            stack.options.hyperdrive_url = Some(workers_url);
        }
        stack.start_sandbox(&options);
        stack.start_workers().await;
        stack.wait_ready(options.readiness).await;
        stack
    }

    /// Starts the three Workers (one process) and waits until each answers HTTP. A start
    /// that dies because a port was taken in the meantime (other stacks pick ephemeral ports
    /// too) is retried on fresh ports.
    async fn start_workers(&mut self) {
        for attempt in 1..=3 {
            let log_before = self.log(WORKERS_PROCESS).len();
            match self.try_start_workers().await {
                Ok(()) => return,
                Err(status) => {
                    let log = self.log(WORKERS_PROCESS);
                    let fresh = log[log_before.min(log.len())..].to_ascii_lowercase();
                    let port_taken =
                        fresh.contains("eaddrinuse") || fresh.contains("address already in use");
                    assert!(
                        attempt < 3 && port_taken,
                        "the Workers exited during start-up ({status})\n{}",
                        self.log_tail(WORKERS_PROCESS)
                    );
                    self.processes.retain(|(name, _)| name != WORKERS_PROCESS);
                    for worker in WORKERS {
                        self.ports.set(worker, free_port());
                    }
                    self.ports.cron_trigger = free_port();
                    self.refresh_urls();
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Stops the three Workers and starts them again on the same ports and persisted state
    /// (Durable Objects, KV), as a deploy or a crash would.
    pub async fn restart_workers(&mut self) {
        self.stop_processes(|name| name == WORKERS_PROCESS);
        self.start_workers().await;
        // With the database switched off, health is rightly degraded: wait for answers only.
        let readiness = if self.pg_proxy.as_ref().is_some_and(|p| p.is_down()) {
            Readiness::Responding
        } else {
            Readiness::Green
        };
        self.wait_ready(readiness).await;
    }

    /// Starts another Worker (e.g. a benchmark baseline) from its own wrangler file in a
    /// launcher of its own, the same way the stack's Workers run, and returns its URL.
    pub async fn start_extra_worker(&mut self, name: &str, config: &Path) -> String {
        let port = free_port();
        let mut command = launcher(
            &self.dir.path().join(format!("state-{name}")),
            self.dir.path(),
        );
        command
            .arg("--worker")
            .arg(format!("{name}={}:{port}", config.display()));
        self.spawn(name, &mut command);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        while self.http.get(&base).send().await.is_err() {
            self.assert_running(name);
            assert!(
                Instant::now() < deadline,
                "{name} did not start\n{}",
                self.log_tail(name)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        base
    }

    /// Process-group id of the process that runs `name` (the Workers share one).
    pub fn process_group(&self, name: &str) -> Option<u32> {
        let process = process_of(name);
        self.processes
            .iter()
            .find(|(n, _)| n == process)
            .map(|(_, c)| c.id())
    }

    /// Makes PostgreSQL unreachable for this stack's Workers (or reachable again).
    pub fn set_postgres_down(&self, down: bool) {
        self.pg_proxy
            .as_ref()
            .expect("started with postgres_proxy")
            .set_down(down);
    }

    /// The directory where workerd persists Durable Object and KV state.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn stop_processes(&mut self, which: impl Fn(&str) -> bool) {
        let (stopping, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.processes)
            .into_iter()
            .partition(|(name, _)| which(name));
        self.processes = keep;
        stop_all(stopping);
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn spawn(&mut self, name: &str, command: &mut Command) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            // Own process group, so teardown also stops wrangler's workerd children.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        if let Ok(mut groups) = LIVE_GROUPS.lock() {
            groups.push(child.id());
        }
        self.processes.push((name.to_owned(), child));
    }

    fn start_sandbox(&mut self, options: &StackOptions) {
        let bin = std::env::var("EDGE_SYNC_SANDBOX_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join("target/release/provider-sandbox"));
        assert!(
            bin.exists(),
            "provider sandbox not built at {}: run scripts/bootstrap.sh",
            bin.display()
        );
        let port = free_port();
        let state_file = self.dir.path().join("sandbox-state.json");
        let mut command = Command::new(bin);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--state-file")
            .arg(state_file)
            .args(&options.sandbox_args);
        self.spawn("provider-sandbox", &mut command);
        self.sandbox = format!("http://127.0.0.1:{port}");
    }

    /// Writes the stack's copy of a wrangler file (same bindings; `main` made absolute) next
    /// to a `.dev.vars` holding this stack's secrets, so the secrets never appear on a
    /// command line or in wrangler's binding table, and a developer's own `.dev.vars` is
    /// never read.
    fn stack_config(&self, worker: &str) -> PathBuf {
        let root = repo_root();
        // One directory per Worker: wrangler reads `.dev.vars` beside the config, so each
        // Worker gets only the secrets wrangler/secrets.txt gives it.
        let config_dir = self.dir.path().join("wrangler").join(worker);
        fs::create_dir_all(&config_dir).expect("config dir");
        let original = fs::read_to_string(root.join(format!("wrangler/{worker}.toml")))
            .expect("wrangler file");
        let workers_dir = root.join("workers");
        let mut config =
            original.replace("\"../workers/", &format!("\"{}/", workers_dir.display()));
        assert_ne!(
            config, original,
            "wrangler/{worker}.toml: main is not under ../workers/"
        );
        if let (Some(cron), "sync-worker") = (&self.options.scheduled_cron, worker) {
            let scheduled = config.replace(
                "crons = [\"*/30 * * * *\"]",
                &format!("crons = [\"{cron}\"]"),
            );
            assert_ne!(scheduled, config, "wrangler/sync-worker.toml: no */30 cron");
            config = scheduled;
        }
        let path = config_dir.join(format!("{worker}.toml"));
        fs::write(&path, config).expect("write config");
        let coordinator = &self.coordinator;
        let sandbox = &self.sandbox;
        let webhook_handler = &self.webhook_handler;
        let mut dev_vars = format!(
            "ADMIN_TOKEN={admin}\nWEBHOOK_HANDLER_TOKEN={handler}\nSYNC_WORKER_TOKEN={sync}\n\
             COORDINATOR_TOKEN={coordinator_token}\nTOKEN_ENCRYPTION_KEY={key}\n\
             KEAP_CLIENT_ID=sandbox-keap-client-id\nKEAP_CLIENT_SECRET=sandbox-keap-client-secret\n\
             SHOPIFY_CLIENT_ID=sandbox-shopify-client-id\nSHOPIFY_CLIENT_SECRET=sandbox-shopify-client-secret\n\
             KEAP_AUTHORIZE_URL={sandbox}/app/oauth/authorize\nKEAP_TOKEN_URL={sandbox}/token\n\
             KEAP_API_BASE_URL={sandbox}/crm\nSHOPIFY_ADMIN_BASE_URL={sandbox}/shopify/{{shop}}\n\
             KEAP_REDIRECT_URI={coordinator}/oauth/callback\n\
             SHOPIFY_REDIRECT_URI={coordinator}/oauth/shopify/callback\n\
             ALLOWED_ORIGIN=http://localhost:3000\n\
             KEAP_REST_V1_BASE_URL={sandbox}/crm/rest/v1\nWEBHOOK_BASE_URL={webhook_handler}\n\
             ENABLE_TEST_ROUTES=true\nGITHUB_WEBHOOK_SECRET={github}\nGITLAB_WEBHOOK_TOKEN={gitlab}\n\
             BITBUCKET_WEBHOOK_SECRET={bitbucket}\nSUPABASE_WEBHOOK_SECRET={supabase}\n\
             KEAP_WEBHOOK_SECRET={keap}\nSTANDARD_WEBHOOK_SECRET_BILLING={standard}\n\
             REPO_WEBHOOK_SIGNING_KEY={repo_key}\n",
            repo_key = WEBHOOK_SECRETS.repo_key,
            github = WEBHOOK_SECRETS.github,
            gitlab = WEBHOOK_SECRETS.gitlab,
            bitbucket = WEBHOOK_SECRETS.bitbucket,
            supabase = WEBHOOK_SECRETS.supabase,
            keap = WEBHOOK_SECRETS.keap,
            standard = WEBHOOK_SECRETS.standard,
            admin = self.admin_token,
            handler = self.webhook_handler_token,
            sync = self.sync_worker_token,
            coordinator_token = self.coordinator_token,
            key = self.token_encryption_key,
        );
        if self.options.model {
            dev_vars.push_str(&format!(
                "MODEL_BASE_URL={sandbox}/openai/v1\nMODEL_NAME={SANDBOX_MODEL}\n\
                 MODEL_API_KEY=sandbox-openai-key\n"
            ));
        }
        for (name, value) in &self.options.vars {
            dev_vars.push_str(&format!("{name}={value}\n"));
        }
        let own: String = dev_vars
            .lines()
            .filter(|line| {
                let name = line.split('=').next().unwrap_or_default();
                secret_holders(name).is_none_or(|holders| holders.iter().any(|h| h == worker))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        fs::write(config_dir.join(".dev.vars"), own).expect("write .dev.vars");
        path
    }

    fn refresh_urls(&mut self) {
        self.coordinator = format!("http://127.0.0.1:{}", self.ports.coordinator);
        self.sync_worker = format!("http://127.0.0.1:{}", self.ports.sync_worker);
        self.webhook_handler = format!("http://127.0.0.1:{}", self.ports.webhook_handler);
        self.cron_trigger = format!("http://127.0.0.1:{}", self.ports.cron_trigger);
    }

    /// One start attempt; `Err` with the exit status when the process died during start-up.
    async fn try_start_workers(&mut self) -> Result<(), std::process::ExitStatus> {
        let hyperdrive_url = self
            .options
            .hyperdrive_url
            .clone()
            .unwrap_or_else(|| self.database_url.clone());
        let mut command = launcher(&self.state_dir(), self.dir.path());
        command
            .arg("--trigger-port")
            .arg(self.ports.cron_trigger.to_string());
        if self.options.scheduled_cron.is_some() {
            command.arg("--run-crons");
        }
        command.env(
            "CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE",
            hyperdrive_url,
        );
        for worker in WORKERS {
            let config = self.stack_config(worker);
            command.arg("--worker").arg(format!(
                "{worker}={}:{}",
                config.display(),
                self.ports.of(worker)
            ));
        }
        self.spawn(WORKERS_PROCESS, &mut command);
        let deadline = Instant::now() + START_TIMEOUT;
        for worker in WORKERS {
            let base = format!("http://127.0.0.1:{}", self.ports.of(worker));
            loop {
                if let Some(status) = self.exited(WORKERS_PROCESS) {
                    return Err(status);
                }
                let probe = self
                    .http
                    .get(format!("{base}/health"))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                if probe.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{worker} did not answer after {START_TIMEOUT:?}\n{}",
                    self.log_tail(WORKERS_PROCESS)
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }

    async fn wait_ready(&mut self, readiness: Readiness) {
        let deadline = Instant::now() + START_TIMEOUT;
        let targets = [
            (
                "provider-sandbox",
                format!("{}/__sandbox/health", self.sandbox),
            ),
            ("sync-coordinator", format!("{}/health", self.coordinator)),
            ("sync-worker", format!("{}/health", self.sync_worker)),
            (
                "webhook-handler",
                format!("{}/health", self.webhook_handler),
            ),
        ];
        for (name, url) in targets {
            loop {
                self.assert_running(name);
                let answer = self
                    .http
                    .get(&url)
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == 200 => break,
                    Ok(_) if readiness == Readiness::Responding => break,
                    _ => {}
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not ready after {START_TIMEOUT:?}\n{}",
                    self.log_tail(name)
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    fn exited(&mut self, name: &str) -> Option<std::process::ExitStatus> {
        let process = process_of(name).to_owned();
        self.processes
            .iter_mut()
            .find(|(n, _)| *n == process)
            .and_then(|(_, child)| child.try_wait().ok().flatten())
    }

    fn assert_running(&mut self, name: &str) {
        if let Some(status) = self.exited(name) {
            panic!(
                "{name} exited during start-up ({status})\n{}",
                self.log_tail(name)
            );
        }
    }

    /// Process-group ids of the Workers' process (the launcher and its workerd child).
    pub fn worker_process_groups(&self) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|(name, _)| name == WORKERS_PROCESS)
            .map(|(_, child)| child.id())
            .collect()
    }

    /// The last lines a process wrote.
    pub fn log_tail(&self, name: &str) -> String {
        let text = self.log(name);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(120);
        format!(
            "--- {name} log (last lines) ---\n{}",
            lines[start..].join("\n")
        )
    }

    /// Everything a process wrote so far.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// The JSON log lines (`wrangler tail` output) a Worker wrote so far.
    pub fn json_log_lines(&self, worker: &str) -> Vec<Value> {
        self.log(worker)
            .lines()
            .filter_map(|line| line.find('{').map(|i| &line[i..]))
            .filter_map(|json| serde_json::from_str::<Value>(json).ok())
            .filter(|v| v.get("worker").is_some())
            .collect()
    }

    /// A client connected to this stack's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// GET `url` with the admin bearer token.
    pub async fn admin_get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, _) in &self.processes {
                eprintln!("{}", self.log_tail(name));
            }
            for worker in WORKERS {
                eprintln!("{}", self.log_tail(worker));
            }
            // Repeated below the logs, where a reader of the tail of the output finds it.
            if let Some(message) = take_panic_message() {
                eprintln!("--- the test failed: {message}");
            }
        }
        stop_all(std::mem::take(&mut self.processes));
    }
}

/// The last panic message of each thread, kept so [`Stack`]'s `Drop` can repeat it after
/// the (long) process logs.
static PANIC_MESSAGES: std::sync::Mutex<Vec<(std::thread::ThreadId, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Installs (once) a panic hook that records the message and then runs the default hook
/// (and, where a panic aborts, stops the stacks' processes).
fn capture_panic_messages() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if let Ok(mut messages) = PANIC_MESSAGES.lock() {
                let id = std::thread::current().id();
                messages.retain(|(thread, _)| *thread != id);
                messages.push((id, format!("{payload}{location}")));
            }
            default_hook(info);
            // Built to abort on panic (the benchmarks, in the release profile), no `Drop`
            // runs: stop every stack's processes here, or they outlive the program.
            if cfg!(panic = "abort") {
                for group in LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default() {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{group}")])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }));
    });
}

fn take_panic_message() -> Option<String> {
    let id = std::thread::current().id();
    let mut messages = PANIC_MESSAGES.lock().ok()?;
    let index = messages.iter().position(|(thread, _)| *thread == id)?;
    Some(messages.swap_remove(index).1)
}

/// Process groups of every running stack's processes (see [`capture_panic_messages`]).
static LIVE_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Stops processes and their process groups (the launcher's workerd child): TERM, then KILL
/// whatever is left after 10 s.
fn stop_all(mut processes: Vec<(String, Child)>) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
        groups.retain(|group| !processes.iter().any(|(_, child)| child.id() == *group));
    }
    for (_, child) in &mut processes {
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, child) in &mut processes {
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let group = format!("-{}", child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = child.wait();
    }
}

/// The Workers' launcher (`scripts/local-stack.mjs`) persisting to `state` and writing each
/// Worker's log lines to `<log_dir>/<worker>.log`; add `--worker` arguments. The guard keeps
/// the local Hyperdrive proxy alive when PostgreSQL is down (scripts/wrangler-dev-guard.mjs).
fn launcher(state: &Path, log_dir: &Path) -> Command {
    let root = repo_root();
    let mut command = Command::new("node");
    command
        .arg("--import")
        .arg(format!(
            "file://{}",
            root.join("scripts/wrangler-dev-guard.mjs").display()
        ))
        .arg(root.join("scripts/local-stack.mjs"))
        .current_dir(log_dir)
        .env("WRANGLER_SEND_METRICS", "false")
        .arg("--persist")
        .arg(state)
        .arg("--log-dir")
        .arg(log_dir);
    command
}
