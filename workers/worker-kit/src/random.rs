//! Randomness from the runtime's CSPRNG (`crypto.getRandomValues`): the one source of ids,
//! secret tokens, nonces and backoff jitter in the Workers.

use worker::Error;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> worker::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::RustError(format!("randomness: {e}")))?;
    Ok(bytes)
}

/// 16 random bytes as 32 hex digits: request ids, batch ids.
pub fn hex_id() -> worker::Result<String> {
    bytes::<16>().map(hex::encode)
}

/// An unguessable token of `N` random bytes as hex (for example a Keap hook's URL token).
pub fn secret_hex<const N: usize>() -> worker::Result<String> {
    bytes::<N>().map(hex::encode)
}

/// A random UUID (version 4), for rows whose key is a Postgres `uuid`.
pub fn uuid_v4() -> worker::Result<String> {
    bytes::<16>().map(|b| {
        uuid::Builder::from_random_bytes(b)
            .into_uuid()
            .hyphenated()
            .to_string()
    })
}

/// A number in [0, 1) for backoff jitter; 0.5 if the runtime has no randomness (jitter only
/// spreads retries, nothing depends on it being random).
pub fn unit_interval() -> f64 {
    bytes::<4>().map_or(0.5, |b| {
        f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
    })
}
