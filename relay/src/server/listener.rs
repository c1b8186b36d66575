//! The accept loop and the orderly stop (the shape of mini-redis's `server.rs`).
//!
//! A semaphore caps simultaneous connections: a node arriving when all permits are taken
//! is refused at once (QUIC `CONNECTION_REFUSED`) rather than left hanging, and tries again
//! later. On the shutdown signal the loop stops accepting, the endpoint stops answering new
//! handshakes, every connection finishes or cuts off its requests in flight, and [`run`]
//! returns only when every task holding the context — connections, requests, notices,
//! retention — has ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::shutdown::Shutdown;
use super::{Context, close_code, connection, expiry};

/// How long closing connections may take to reach their nodes at the very end.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What the listener needs besides the endpoint.
pub(crate) struct ListenerSettings {
    pub max_connections: usize,
    pub expiry_every: Duration,
}

/// Accepts connections until shutdown, then waits for every task to end.
pub(crate) async fn run(
    endpoint: quinn::Endpoint,
    ctx: Arc<Context>,
    mut drained: mpsc::Receiver<()>,
    mut shutdown: Shutdown,
    settings: ListenerSettings,
) {
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    tokio::spawn(expiry::run(
        Arc::clone(&ctx),
        shutdown.clone(),
        settings.expiry_every,
    ));
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(connection::serve(
                            incoming,
                            Arc::clone(&ctx),
                            shutdown.clone(),
                            permit,
                        ));
                    }
                    Err(_) => {
                        tracing::warn!(
                            remote = %incoming.remote_address(),
                            max = settings.max_connections,
                            "connection refused: connection limit reached"
                        );
                        incoming.refuse();
                    }
                }
            }
            () = shutdown.recv() => break,
        }
    }
    tracing::info!(
        connected = ctx.registry.len(),
        "shutting down: no new connections, finishing requests in flight"
    );
    endpoint.set_server_config(None);
    drop(ctx);
    // Every task holds the context; the channel closes when the last one is gone.
    let _ = drained.recv().await;
    endpoint.close(close_code::SHUTDOWN, b"relay shutting down");
    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
    tracing::info!("relay stopped");
}
