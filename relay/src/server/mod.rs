//! The relay server: a thin async shell over the store (STYLE.md practice 2).
//!
//! - `endpoint` — the QUIC endpoint: TLS identity, transport limits, bind;
//! - `listener` — accepts connections under a cap, starts retention, runs the shutdown;
//! - `connection` — one node: authenticate (`auth`), then one task per request stream;
//! - `request`, `deposit`, `fetch` — the requests of docs/protocol.md §15.3;
//! - `revocation` — key revocations posted by nodes and served to them (§17);
//! - `notices` — who is connected, and pushing `new_mail` / `expired` to them (§15.4);
//! - `expiry` — the retention task;
//! - `shutdown` — the stop signal; `running` — the handle an embedding program holds.
//!
//! Every store call is synchronous and goes through [`blocking`], so no async worker ever
//! waits on a disk. Every task holds an `Arc<Context>`; the context owns the sending half of
//! the drain channel, so the listener knows all tasks have finished when its receiver sees
//! the channel close.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::store::{RelayStore, StoreError};

mod auth;
mod connection;
mod deposit;
mod endpoint;
mod expiry;
mod fetch;
mod framing;
mod listener;
mod notices;
mod refusal;
mod request;
mod revocation;
mod running;
mod shutdown;
mod transfers;

pub use running::{RunningRelay, StartOptions, start, start_with};

/// What every task of a running relay shares.
pub(crate) struct Context {
    /// The durable state.
    pub store: Arc<dyn RelayStore>,
    /// Authenticated connections by facility, for notices and revocation.
    pub registry: Arc<notices::Registry>,
    /// Permits for body transfers, relay-wide and per facility.
    pub transfers: transfers::Transfers,
    /// Closed when the last task holding the context is gone.
    _drain: mpsc::Sender<()>,
}

/// Runs a synchronous store call on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Io {
            context: "running a store task",
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// The card of `facility` as currently enrolled (not revoked); `NotEnrolled` otherwise.
/// What a signed object posted by an authenticated node is checked against. Blocking.
pub(crate) fn enrolled_card(
    store: &dyn RelayStore,
    facility: &str,
) -> Result<dossier_bundle::FacilityCard, StoreError> {
    store
        .enrollment(facility)?
        .filter(|e| e.revoked_at.is_none())
        .and_then(|e| dossier_bundle::FacilityCard::parse(&e.card).ok())
        .ok_or_else(|| StoreError::NotEnrolled {
            facility: facility.to_owned(),
        })
}

/// QUIC application close codes the relay uses for whole connections.
pub mod close_code {
    use quinn::VarInt;

    /// The relay is shutting down; reconnect later.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// Authentication was refused (the reason is the refusal code, e.g. `revoked`).
    pub const AUTH_REFUSED: VarInt = VarInt::from_u32(1);
    /// The facility's enrollment was revoked while it was connected.
    pub const REVOKED: VarInt = VarInt::from_u32(2);
}

/// QUIC stream error codes the relay uses to stop or reset a request stream.
pub mod stream_code {
    use quinn::VarInt;

    /// The request was refused or abandoned; the answer frame (if any) says why.
    pub const REFUSED: VarInt = VarInt::from_u32(1);
}
