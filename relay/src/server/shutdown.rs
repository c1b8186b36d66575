//! The shutdown signal every relay task listens for (the shape of mini-redis's
//! `shutdown.rs`).
//!
//! One `watch` channel carries "stop now" from [`RunningRelay`](crate::RunningRelay) to the
//! listener, the retention task and every connection. Dropping the sender counts as the
//! signal too, so a relay whose handle is dropped winds down instead of running orphaned.
//! Knowing when everything *has* stopped is the other half: every task holds an
//! `Arc<Context>`, whose drain sender closes only when the last task is gone (see
//! `server::Context`).

use tokio::sync::watch;

/// Listens for the shutdown signal.
#[derive(Clone, Debug)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A listener on `rx` (`true` means "shut down").
    pub(crate) fn new(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }

    /// Whether the signal was given (or its sender dropped).
    pub(crate) fn is_shutdown(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes when the signal is given; at once if it already was.
    pub(crate) async fn recv(&mut self) {
        // An error means the sender is gone, which is a shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
