//! `provider-sandbox`: runs the sandbox and prints
//! `provider-sandbox listening on http://127.0.0.1:<port>` once it accepts connections.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use provider_sandbox::config::{RuntimeConfig, KEAP_REFRESH_TOKEN_TTL_SECS};
use provider_sandbox::{serve, SandboxConfig, Secret};

/// A native server that behaves like Keap's and Shopify's APIs, for local runs and e2e tests.
#[derive(Debug, Parser)]
#[command(name = "provider-sandbox", version)]
struct Cli {
    /// Address to bind.
    #[arg(long, env = "SANDBOX_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free port.
    #[arg(long, env = "SANDBOX_PORT", default_value_t = 0)]
    port: u16,
    /// Seed of the generated data.
    #[arg(long, env = "SANDBOX_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of Keap contacts to generate.
    #[arg(long, env = "SANDBOX_KEAP_CONTACTS", default_value_t = 1000)]
    keap_contacts: usize,
    /// Number of Keap opportunities to generate.
    #[arg(long, env = "SANDBOX_KEAP_OPPORTUNITIES", default_value_t = 200)]
    keap_opportunities: usize,
    /// Number of Keap orders to generate.
    #[arg(long, env = "SANDBOX_KEAP_ORDERS", default_value_t = 200)]
    keap_orders: usize,
    /// Number of Keap tasks to generate.
    #[arg(long, env = "SANDBOX_KEAP_TASKS", default_value_t = 200)]
    keap_tasks: usize,
    /// Number of Shopify products to generate (1 to 3 variants each).
    #[arg(long, env = "SANDBOX_SHOPIFY_PRODUCTS", default_value_t = 100)]
    shopify_products: usize,
    /// Number of Shopify orders to generate.
    #[arg(long, env = "SANDBOX_SHOPIFY_ORDERS", default_value_t = 100)]
    shopify_orders: usize,
    /// Number of Shopify customers to generate.
    #[arg(long, env = "SANDBOX_SHOPIFY_CUSTOMERS", default_value_t = 100)]
    shopify_customers: usize,
    /// Keap OAuth client id to accept.
    #[arg(long, env = "SANDBOX_KEAP_CLIENT_ID", default_value = provider_sandbox::config::DEFAULT_KEAP_CLIENT_ID)]
    keap_client_id: String,
    /// Keap OAuth client secret to accept.
    #[arg(long, env = "SANDBOX_KEAP_CLIENT_SECRET", default_value = provider_sandbox::config::DEFAULT_KEAP_CLIENT_SECRET, hide_env_values = true)]
    keap_client_secret: String,
    /// Keap API key accepted in `X-Keap-API-Key` (none by default).
    #[arg(long, env = "SANDBOX_KEAP_API_KEY", hide_env_values = true)]
    keap_api_key: Option<String>,
    /// Keap tenant (app) id reported in `x-keap-tenant-id` and the token scope.
    #[arg(long, env = "SANDBOX_KEAP_TENANT_ID", default_value = "sandbox")]
    keap_tenant_id: String,
    /// Shopify app client id (API key) to accept.
    #[arg(long, env = "SANDBOX_SHOPIFY_CLIENT_ID", default_value = provider_sandbox::config::DEFAULT_SHOPIFY_CLIENT_ID)]
    shopify_client_id: String,
    /// Shopify app client secret to accept; it also signs the OAuth redirect's `hmac`.
    #[arg(long, env = "SANDBOX_SHOPIFY_CLIENT_SECRET", default_value = provider_sandbox::config::DEFAULT_SHOPIFY_CLIENT_SECRET, hide_env_values = true)]
    shopify_client_secret: String,
    /// Sign Keap REST Hook deliveries with `X-Hook-Signature` (hex HMAC-SHA256 of the body)
    /// using this secret (real Keap signs nothing).
    #[arg(long, env = "SANDBOX_KEAP_WEBHOOK_SECRET", hide_env_values = true)]
    keap_webhook_secret: Option<String>,
    /// Bearer key the OpenAI-compatible endpoint (`/openai/v1`) accepts.
    #[arg(long, env = "SANDBOX_OPENAI_API_KEY", default_value = provider_sandbox::config::DEFAULT_OPENAI_API_KEY, hide_env_values = true)]
    openai_api_key: String,
    /// Access-token lifetime in seconds (Keap: 24 h).
    #[arg(long, env = "SANDBOX_ACCESS_TOKEN_TTL_SECS", default_value_t = 86_400)]
    access_token_ttl_secs: u64,
    /// Refresh-token lifetime in seconds (Keap: 45 days).
    #[arg(long, env = "SANDBOX_REFRESH_TOKEN_TTL_SECS", default_value_t = KEAP_REFRESH_TOKEN_TTL_SECS)]
    refresh_token_ttl_secs: u64,
    /// Enforced Keap REST calls per minute (default: not enforced).
    #[arg(long, env = "SANDBOX_RATE_LIMIT_PER_MINUTE")]
    rate_limit_per_minute: Option<u32>,
    /// File that keeps OAuth tokens and runtime settings across restarts.
    #[arg(long, env = "SANDBOX_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// Do not log requests to stderr.
    #[arg(long, env = "SANDBOX_QUIET")]
    quiet: bool,
}

impl Cli {
    fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            host: self.host,
            port: self.port,
            seed: self.seed,
            keap_contacts: self.keap_contacts,
            keap_opportunities: self.keap_opportunities,
            keap_orders: self.keap_orders,
            keap_tasks: self.keap_tasks,
            shopify_products: self.shopify_products,
            shopify_orders: self.shopify_orders,
            shopify_customers: self.shopify_customers,
            keap_client_id: self.keap_client_id,
            keap_client_secret: Secret::new(self.keap_client_secret),
            keap_api_key: self.keap_api_key.map(Secret::new),
            keap_tenant_id: self.keap_tenant_id,
            shopify_client_id: self.shopify_client_id,
            shopify_client_secret: Secret::new(self.shopify_client_secret),
            keap_webhook_secret: self.keap_webhook_secret.map(Secret::new),
            openai_api_key: Secret::new(self.openai_api_key),
            runtime: RuntimeConfig {
                access_token_ttl_secs: self.access_token_ttl_secs,
                refresh_token_ttl_secs: self.refresh_token_ttl_secs,
                rate_limit_per_minute: self.rate_limit_per_minute,
                ..RuntimeConfig::default()
            },
            state_file: self.state_file,
            log_requests: !self.quiet,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Cli::parse().into_config();
    let seeding = std::time::Instant::now();
    let sandbox = match serve(config).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("provider-sandbox: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Start-up cost (data generation): a figure for benchmarks to read, not an assertion.
    eprintln!(
        "provider-sandbox: generated its data and bound in {} ms",
        seeding.elapsed().as_millis()
    );
    // Tests wait for exactly this line, so print it once and flush at once.
    let mut stdout = std::io::stdout().lock();
    let announced = writeln!(
        stdout,
        "provider-sandbox listening on {}",
        sandbox.base_url()
    )
    .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = announced {
        eprintln!("provider-sandbox: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    let stop = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("provider-sandbox: cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    match sandbox.run_until(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provider-sandbox: server error: {e}");
            ExitCode::FAILURE
        }
    }
}
