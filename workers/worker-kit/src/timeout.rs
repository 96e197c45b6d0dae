//! Bounding the time an await may take (health checks must answer even when a backend hangs).

use std::{future::Future, time::Duration};

use futures::{future::Either, pin_mut};

/// Runs `future` for at most `limit`; `None` when the limit passed first.
pub async fn with_timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let delay = worker::Delay::from(limit);
    pin_mut!(future);
    match futures::future::select(future, delay).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}
