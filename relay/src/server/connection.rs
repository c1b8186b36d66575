//! One node's connection: handshake, authentication, then one task per request stream until
//! the node leaves or the relay shuts down (docs/protocol.md §15.2–15.3).
//!
//! Requests run concurrently (a large upload does not hold up a mailbox listing); QUIC's
//! stream limit caps how many. On shutdown the handler stops accepting streams, gives the
//! requests in flight [`DRAIN_TIMEOUT`] to finish — an interrupted upload is resumable, so
//! this bounds the wait rather than the data — and closes the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::shutdown::Shutdown;
use super::{Context, auth, close_code, request};

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may run on after the shutdown signal.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one incoming connection. `_permit` is its slot under the connection cap.
pub(crate) async fn serve(
    incoming: quinn::Incoming,
    ctx: Arc<Context>,
    mut shutdown: Shutdown,
    _permit: OwnedSemaphorePermit,
) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "handshake timed out");
            return;
        }
    };
    let facility = tokio::select! {
        f = auth::authenticate(&conn, &ctx) => f,
        () = shutdown.recv() => None,
    };
    let Some(verified) = facility else {
        if shutdown.is_shutdown() {
            conn.close(close_code::SHUTDOWN, b"relay shutting down");
        }
        return;
    };
    let facility: Arc<str> = Arc::from(verified.facility.as_str());
    let _registration = ctx.registry.register(&facility, &conn);
    if !verified.welcome(&conn).await {
        return;
    }
    let mut requests = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    requests.spawn(request::handle(
                        Arc::clone(&ctx),
                        Arc::clone(&facility),
                        send,
                        recv,
                    ));
                }
                Err(e) => {
                    tracing::info!(%facility, %remote, reason = %e, "connection ended");
                    break;
                }
            },
            Some(done) = requests.join_next(), if !requests.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(%facility, error = %e, "request task failed");
                }
            }
            () = shutdown.recv() => break,
        }
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while requests.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(%facility, open = requests.len(), "requests cut off at shutdown");
        requests.shutdown().await;
    }
    if shutdown.is_shutdown() {
        conn.close(close_code::SHUTDOWN, b"relay shutting down");
    }
}
