//! Least privilege and secrecy: Supabase's API roles cannot touch any table, every Worker
//! credential is refused outside its routes, and no secret reaches a log.

use edge_sync_e2e::{
    flows::{
        connect_keap, connect_shopify, request_token, run_ids, sandbox_control, sandbox_get,
        start_sync, wait_runs,
    },
    stack::{secret_holders, worker_database_url},
    ScratchDatabase, Stack, WEBHOOK_SECRETS,
};
use serde_json::json;
use tokio_postgres::error::SqlState;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// Proves: on a database prepared as Supabase prepares one (the `anon` and `authenticated`
/// roles, and default privileges granting them every new table in `public`), after the
/// migrations neither role can read or write any table, while the Workers' role
/// `edge_sync_app` reads and writes rows but cannot change the schema.
#[tokio::test]
async fn supabase_api_roles_cannot_read_or_write_any_table() {
    let db = ScratchDatabase::create("supabase");
    // Roles are cluster-wide: create them once, tolerating another test doing it too.
    for role in ["anon", "authenticated"] {
        db.psql(&format!(
            "DO $$ BEGIN CREATE ROLE {role} NOLOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .expect("API role");
    }
    db.psql(
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated; \
         GRANT USAGE ON SCHEMA public TO anon, authenticated",
    )
    .expect("Supabase's default privileges");
    db.migrate();

    let client = connect(&db.url).await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.len() >= 12 && tables.iter().any(|t| t == "keap_contacts"),
        "the migrations created the project's tables: {tables:?}"
    );
    client
        .execute(
            "INSERT INTO keap_contacts (connection_id, provider_id, raw) VALUES ('c1', '1', '{}')",
            &[],
        )
        .await
        .expect("the owner writes a row");

    for role in ["anon", "authenticated"] {
        for table in &tables {
            for statement in [
                format!("SELECT * FROM public.{table} LIMIT 1"),
                format!("INSERT INTO public.{table} DEFAULT VALUES"),
                format!(
                    "UPDATE public.{table} SET {} = {0}",
                    first_column(&client, table).await
                ),
                format!("DELETE FROM public.{table}"),
            ] {
                let outcome = client
                    .batch_execute(&format!(
                        "BEGIN; SET LOCAL ROLE {role}; {statement}; COMMIT"
                    ))
                    .await;
                let error = outcome.expect_err(&format!("{role} ran `{statement}`"));
                assert_eq!(
                    error.code(),
                    Some(&SqlState::INSUFFICIENT_PRIVILEGE),
                    "{role} on `{statement}`: {error}"
                );
                client.batch_execute("ROLLBACK").await.expect("rollback");
            }
        }
    }

    // The Workers' role sees and changes rows, and nothing more.
    client
        .batch_execute("BEGIN; SET LOCAL ROLE edge_sync_app")
        .await
        .expect("become edge_sync_app");
    let seen: i64 = client
        .query_one("SELECT count(*) FROM keap_contacts", &[])
        .await
        .expect("edge_sync_app reads")
        .get(0);
    assert_eq!(
        seen, 1,
        "row level security lets edge_sync_app see every row"
    );
    client
        .execute("UPDATE keap_contacts SET email = 'a@example.com'", &[])
        .await
        .expect("edge_sync_app writes");
    let ddl = client.batch_execute("DROP TABLE keap_contacts").await;
    assert!(ddl.is_err(), "edge_sync_app cannot drop a table");
    client.batch_execute("ROLLBACK").await.expect("rollback");
}

/// The name of `table`'s first column (for an UPDATE that changes nothing).
async fn first_column(client: &tokio_postgres::Client, table: &str) -> String {
    client
        .query_one(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position LIMIT 1",
            &[&table],
        )
        .await
        .expect("a column")
        .get(0)
}

/// One route and the credentials that may use it.
struct Route {
    worker: Worker,
    method: &'static str,
    path: &'static str,
    allowed: &'static [&'static str],
}

#[derive(Clone, Copy)]
enum Worker {
    Coordinator,
    SyncWorker,
}

impl Worker {
    /// Whether this Worker holds the credential `name` (per wrangler/secrets.txt).
    fn holds(self, name: &str) -> bool {
        let secret = match name {
            ADMIN => "ADMIN_TOKEN",
            HANDLER => "WEBHOOK_HANDLER_TOKEN",
            SYNC => "SYNC_WORKER_TOKEN",
            _ => "COORDINATOR_TOKEN",
        };
        let worker = match self {
            Worker::Coordinator => "sync-coordinator",
            Worker::SyncWorker => "sync-worker",
        };
        secret_holders(secret)
            .expect("a listed secret")
            .iter()
            .any(|w| w == worker)
    }
}

const ADMIN: &str = "admin";
const HANDLER: &str = "webhook-handler";
const SYNC: &str = "sync-worker";
const COORDINATOR: &str = "coordinator";
const CONNECTION: &str = "/coordinator/connections/keap_000000000000000000000000";

/// Every authenticated route and who may call it: the list a reviewer checks.
fn routes() -> Vec<Route> {
    use Worker::{Coordinator as C, SyncWorker as S};
    let route = |worker, method, path, allowed| Route {
        worker,
        method,
        path,
        allowed,
    };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        route(C, "GET", "/coordinator/ping", &[ADMIN, HANDLER, SYNC]),
        route(C, "GET", "/coordinator/connections", &[ADMIN]),
        route(C, "POST", "/coordinator/connections", &[ADMIN]),
        route(C, "GET", "/coordinator/sync-targets", &[SYNC]),
        route(C, "GET", "/coordinator/lookup?provider=keap", &[HANDLER]),
        route(C, "GET", CONNECTION, &[ADMIN, SYNC]),
        route(C, "DELETE", CONNECTION, &[ADMIN]),
        route(C, "POST", leak(format!("{CONNECTION}/token")), &[SYNC]),
        route(
            C,
            "POST",
            leak(format!("{CONNECTION}/webhooks/ensure")),
            &[ADMIN, SYNC],
        ),
        route(C, "GET", leak(format!("{CONNECTION}/sync")), &[ADMIN, SYNC]),
        route(
            C,
            "GET",
            leak(format!("{CONNECTION}/sync/contacts")),
            &[ADMIN, SYNC],
        ),
        route(
            C,
            "POST",
            leak(format!("{CONNECTION}/sync/contacts/lease")),
            &[SYNC],
        ),
        route(
            C,
            "DELETE",
            leak(format!("{CONNECTION}/sync/contacts/lease")),
            &[SYNC],
        ),
        route(
            C,
            "PUT",
            leak(format!("{CONNECTION}/sync/contacts/cursor")),
            &[SYNC],
        ),
        route(
            C,
            "PUT",
            leak(format!("{CONNECTION}/sync/contacts/run")),
            &[SYNC],
        ),
        route(
            C,
            "POST",
            leak(format!("{CONNECTION}/budget/take")),
            &[SYNC],
        ),
        route(
            C,
            "POST",
            leak(format!("{CONNECTION}/budget/penalize")),
            &[SYNC],
        ),
        route(C, "POST", "/coordinator/events", &[HANDLER]),
        route(C, "GET", "/coordinator/events", &[ADMIN]),
        route(
            C,
            "POST",
            "/coordinator/events/replay?since=2026-01-01T00:00:00Z",
            &[ADMIN],
        ),
        route(
            C,
            "POST",
            "/coordinator/events/evt_unknown/replay",
            &[ADMIN],
        ),
        route(C, "GET", "/coordinator/hooks/hk_unknown_token", &[HANDLER]),
        route(
            C,
            "POST",
            "/coordinator/hooks/hk_unknown_token/verified",
            &[HANDLER],
        ),
        route(C, "GET", "/coordinator/privacy/requests", &[ADMIN]),
        route(C, "GET", "/coordinator/privacy/requests/unknown", &[ADMIN]),
        route(C, "POST", "/coordinator/event-loop/u1/start", &[ADMIN]),
        route(C, "POST", "/coordinator/event-loop/u1/stop", &[ADMIN]),
        route(C, "GET", "/coordinator/event-loop/u1", &[ADMIN]),
        route(C, "POST", "/coordinator/event-loop/start-all", &[ADMIN]),
        route(C, "GET", "/coordinator/users/u1/preferences", &[ADMIN]),
        route(C, "PUT", "/coordinator/users/u1/preferences", &[ADMIN]),
        route(C, "POST", "/coordinator/users/u1/live/ticket", &[ADMIN]),
        route(C, "GET", "/coordinator/suggestions?user_id=u1", &[ADMIN]),
        route(
            C,
            "GET",
            "/coordinator/suggestions/00000000-0000-4000-8000-000000000000",
            &[ADMIN],
        ),
        route(
            C,
            "POST",
            "/coordinator/suggestions/00000000-0000-4000-8000-000000000000/accept",
            &[ADMIN],
        ),
        route(
            C,
            "POST",
            "/coordinator/suggestions/00000000-0000-4000-8000-000000000000/dismiss",
            &[ADMIN],
        ),
        route(C, "GET", "/coordinator/agent-runs", &[ADMIN]),
        route(
            C,
            "POST",
            "/coordinator/agent-runs/00000000-0000-4000-8000-000000000000/retry",
            &[ADMIN],
        ),
        route(C, "GET", "/oauth/initiate?user_id=u1", &[ADMIN]),
        route(
            C,
            "GET",
            "/oauth/shopify/install?user_id=u1&shop=x.myshopify.com",
            &[ADMIN],
        ),
        route(S, "POST", "/sync/continue", &[COORDINATOR]),
        route(S, "POST", "/sync/hook", &[COORDINATOR]),
        route(
            S,
            "POST",
            "/sync/full?connection=keap_000000000000000000000000",
            &[ADMIN],
        ),
        route(
            S,
            "POST",
            "/sync/contacts?connection=keap_000000000000000000000000",
            &[ADMIN],
        ),
        route(S, "GET", "/sync/status", &[ADMIN]),
    ]
}

/// Proves: each credential (the operator's and each Worker's own) is answered 403 on every
/// route outside its list and is let through on the routes in it; an unknown token gets 401.
/// Above all, the internet-facing webhook-handler's credential can neither take a plaintext
/// provider token nor list, create or delete connections.
#[tokio::test]
async fn every_credential_is_refused_outside_its_routes() {
    let stack = Stack::start().await;
    let credentials = [
        (ADMIN, stack.admin_token.clone()),
        (HANDLER, stack.webhook_handler_token.clone()),
        (SYNC, stack.sync_worker_token.clone()),
        (COORDINATOR, stack.coordinator_token.clone()),
        ("unknown", "not-a-credential".to_owned()),
    ];
    let mut failures = Vec::new();
    for route in routes() {
        let base = match route.worker {
            Worker::Coordinator => &stack.coordinator,
            Worker::SyncWorker => &stack.sync_worker,
        };
        for (name, token) in &credentials {
            let method = reqwest::Method::from_bytes(route.method.as_bytes()).expect("method");
            let response = stack
                .http
                .request(method, format!("{base}{}", route.path))
                .bearer_auth(token)
                .header("Accept", "application/json")
                .json(&json!({}))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let expected_ok = route.allowed.contains(name);
            let verdict = match (*name, expected_ok) {
                ("unknown", _) => status == 401,
                (_, true) => status != 401 && status != 403,
                // A Worker holds only the credentials of its own callers
                // (wrangler/secrets.txt): one it does not hold is as unknown to it as any
                // other string, so 401; one it holds but outside the route's list, 403.
                (_, false) if !route.worker.holds(name) => status == 401,
                (_, false) => status == 403,
            };
            if !verdict {
                failures.push(format!(
                    "{} {} as {name}: {status} (allowed: {:?})",
                    route.method, route.path, route.allowed
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "wrong answers:\n{}",
        failures.join("\n")
    );
}

/// Every delivery the sandbox reports was answered 200 (and there was at least one).
fn assert_all_accepted(answer: &serde_json::Value) {
    let deliveries = answer["deliveries"].as_array().expect("deliveries");
    assert!(!deliveries.is_empty(), "nothing delivered: {answer}");
    for delivery in deliveries {
        assert_eq!(delivery["status"], 200, "delivery refused: {answer}");
    }
}

/// Proves: after a scenario that connects Keap and Shopify through OAuth, syncs both and has
/// the sandbox deliver Keap REST hooks (whose URLs carry the per-hook token) and Shopify
/// webhooks, no log file of any process holds an access token, a refresh token, a hook token,
/// a client secret, a webhook secret, a Worker credential or the database password.
#[tokio::test]
async fn no_secret_reaches_any_log() {
    let stack = Stack::start().await;
    let keap = connect_keap(&stack, "log-user").await;
    let shopify = connect_shopify(&stack, "log-user", "log-shop.myshopify.com").await;
    let (status, started) = start_sync(&stack, "/sync/full").await;
    assert_eq!(status, 202, "{started}");
    wait_runs(&stack, &run_ids(&started)).await;

    let hooks = sandbox_get(&stack, "keap/hooks").await;
    let hook_urls: Vec<String> = hooks["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .map(|h| h["hookUrl"].as_str().expect("hookUrl").to_owned())
        .collect();
    assert!(
        !hook_urls.is_empty(),
        "the coordinator registered Keap hooks"
    );
    let delivered = sandbox_control(
        &stack,
        "keap/hooks/deliver",
        json!({"event_key": "contact.edit", "ids": ["1", "2"], "signature_secret": WEBHOOK_SECRETS.keap}),
    )
    .await;
    assert_all_accepted(&delivered);
    let products = sandbox_get(&stack, "shopify/products").await;
    let delivered = sandbox_control(
        &stack,
        "shopify/webhooks/deliver",
        json!({"shop": "log-shop.myshopify.com", "topic": "products/update",
               "ids": [products["ids"][0].clone()]}),
    )
    .await;
    assert_all_accepted(&delivered);

    let mut secrets: Vec<(String, String)> = vec![
        ("admin token".into(), stack.admin_token.clone()),
        (
            "webhook-handler credential".into(),
            stack.webhook_handler_token.clone(),
        ),
        (
            "sync-worker credential".into(),
            stack.sync_worker_token.clone(),
        ),
        (
            "coordinator credential".into(),
            stack.coordinator_token.clone(),
        ),
        (
            "token encryption key".into(),
            stack.token_encryption_key.clone(),
        ),
        (
            "Keap client secret".into(),
            "sandbox-keap-client-secret".into(),
        ),
        (
            "Shopify client secret".into(),
            WEBHOOK_SECRETS.shopify.into(),
        ),
        ("GitHub secret".into(), WEBHOOK_SECRETS.github.into()),
        ("GitLab token".into(), WEBHOOK_SECRETS.gitlab.into()),
        ("Bitbucket secret".into(), WEBHOOK_SECRETS.bitbucket.into()),
        ("Supabase secret".into(), WEBHOOK_SECRETS.supabase.into()),
        ("Keap hook secret".into(), WEBHOOK_SECRETS.keap.into()),
        (
            "Standard Webhooks secret".into(),
            WEBHOOK_SECRETS.standard.into(),
        ),
    ];
    let workers_url = worker_database_url(&stack.database_url);
    if let Some((userinfo, _)) = workers_url.split_once('@') {
        if let Some((_, password)) = userinfo.rsplit_once(':') {
            secrets.push(("database password".into(), password.to_owned()));
        }
    }
    for url in &hook_urls {
        let token = url.rsplit('/').next().expect("hook token");
        secrets.push(("Keap hook token".into(), token.to_owned()));
    }
    let issued = sandbox_get(&stack, "keap/tokens/issued").await;
    for token in issued["tokens"].as_array().expect("issued tokens") {
        for field in ["access_token", "refresh_token"] {
            if let Some(value) = token[field].as_str() {
                secrets.push((format!("Keap {field}"), value.to_owned()));
            }
        }
    }
    for connection in [&keap, &shopify] {
        let id = connection["id"].as_str().expect("connection id");
        let (status, body) = request_token(&stack, id).await;
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().expect("access token");
        secrets.push((format!("access token of {id}"), token.to_owned()));
    }
    assert!(
        secrets
            .iter()
            .filter(|(what, _)| what.contains("refresh_token"))
            .count()
            >= 1,
        "the sandbox listed the Keap refresh token"
    );

    let mut leaks = Vec::new();
    for process in [
        "sync-coordinator",
        "sync-worker",
        "webhook-handler",
        "provider-sandbox",
    ] {
        let log = stack.log(process);
        if process != "provider-sandbox" {
            assert!(
                log.contains("\"route\""),
                "{process}'s log holds its request lines"
            );
        }
        for (what, value) in &secrets {
            if process == "provider-sandbox" {
                // The sandbox plays the providers, which know their own tokens; it must
                // still never see ours.
                if !matches!(
                    what.as_str(),
                    "admin token"
                        | "webhook-handler credential"
                        | "sync-worker credential"
                        | "coordinator credential"
                        | "token encryption key"
                        | "database password"
                ) {
                    continue;
                }
            }
            if log.contains(value.as_str()) {
                leaks.push(format!("{process} logged the {what}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in logs:\n{}", leaks.join("\n"));
    assert!(
        stack
            .log("webhook-handler")
            .contains("/webhook/keap/[redacted]"),
        "hook deliveries are logged with the token redacted"
    );
}

/// Proves: scripts/migrate.sh names an unreachable database by host, port and database only,
/// never its user or password.
#[test]
fn migrate_names_a_database_without_its_credentials() {
    let output =
        std::process::Command::new(edge_sync_e2e::stack::repo_root().join("scripts/migrate.sh"))
            .arg("postgres://someone:pa55w0rd-not-to-print@127.0.0.1:1/nowhere")
            .output()
            .expect("run scripts/migrate.sh");
    assert!(!output.status.success(), "an unreachable database fails");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.contains("127.0.0.1:1/nowhere"), "{printed}");
    assert!(!printed.contains("pa55w0rd-not-to-print"), "{printed}");
    assert!(!printed.contains("someone"), "{printed}");
}
