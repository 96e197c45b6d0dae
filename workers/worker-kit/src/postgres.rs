//! Postgres through the Hyperdrive binding (Hyperdrive pools; each invocation connects).

use std::time::Duration;

use edge_sync_shared::bindings;
use tokio_postgres::Client;
use worker::{console_error, postgres_tls::PassthroughTls, Env, SecureTransport, Socket};

use crate::timeout::with_timeout;

/// How long to wait for a connection before calling the database unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why Postgres could not be used (details for logs; never contains the password).
#[derive(Debug)]
pub struct PostgresError(pub String);

impl std::fmt::Display for PostgresError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Opens a client through Hyperdrive; the connection task runs in the background.
pub async fn connect(env: &Env) -> Result<Client, PostgresError> {
    let hyperdrive = env
        .hyperdrive(bindings::HYPERDRIVE)
        .map_err(|e| PostgresError(format!("hyperdrive binding: {e}")))?;
    let config = hyperdrive
        .connection_string()
        .parse::<tokio_postgres::Config>()
        .map_err(|_| PostgresError("hyperdrive connection string does not parse".into()))?;
    let socket = Socket::builder()
        .secure_transport(SecureTransport::StartTls)
        .connect(hyperdrive.host(), hyperdrive.port())
        .map_err(|e| PostgresError(format!("socket: {e}")))?;
    let (client, connection) =
        with_timeout(CONNECT_TIMEOUT, config.connect_raw(socket, PassthroughTls))
            .await
            .ok_or_else(|| PostgresError("connect timed out".into()))?
            .map_err(|e| PostgresError(format!("connect: {e}")))?;
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(error) = connection.await {
            console_error!(
                "{{\"level\":\"error\",\"event\":\"postgres_connection\",\"reason\":\"{}\"}}",
                error.to_string().replace('"', "'")
            );
        }
    });
    Ok(client)
}

/// Whether Postgres answers `SELECT 1` within the timeout.
pub async fn ping(env: &Env) -> Result<(), PostgresError> {
    let client = connect(env).await?;
    with_timeout(CONNECT_TIMEOUT, client.simple_query("SELECT 1"))
        .await
        .ok_or_else(|| PostgresError("SELECT 1 timed out".into()))?
        .map_err(|e| PostgresError(format!("SELECT 1: {e}")))?;
    Ok(())
}
