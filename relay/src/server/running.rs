//! Starting a relay and the handle that stops it: what `dossier-relay serve`, `dossier demo`
//! and the tests hold.
//!
//! [`start`] returns once the UDP socket is bound and the store is open, so the caller can
//! print the address straight away. [`RunningRelay::shutdown`] stops it gracefully and
//! returns once the store is closed, so the same data directory can be opened again.
//! Dropping the handle without calling `shutdown` also stops the relay, without waiting.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::listener::{self, ListenerSettings};
use super::notices::Registry;
use super::shutdown::Shutdown;
use super::{Context, close_code, endpoint};
use crate::admin::{EnrollReport, RevokeReport, enroll_into, revoke_in};
use crate::config::RelayConfig;
use crate::data_dir::DataDir;
use crate::error::RelayError;
use crate::store::{RedbStore, RelayStore};

/// How to start a relay; the defaults come from `relay.json`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct StartOptions {
    /// Listen here instead of the configured address.
    pub listen: Option<SocketAddr>,
}

impl StartOptions {
    /// Listen on `addr` instead of the configured address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }
}

/// A relay serving in the background of the current tokio runtime.
pub struct RunningRelay {
    addr: SocketAddr,
    pin: String,
    dir: DataDir,
    store: RedbStore,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningRelay")
            .field("addr", &self.addr)
            .field("pin", &self.pin)
            .field("data_dir", &self.dir.root())
            .finish_non_exhaustive()
    }
}

/// Starts the relay initialised in `data_dir` with its configured settings.
pub async fn start(data_dir: &Path) -> Result<RunningRelay, RelayError> {
    start_with(data_dir, StartOptions::default()).await
}

/// Starts the relay initialised in `data_dir`: opens the store (tidying after a crash),
/// binds the endpoint, writes `serving.addr`, and serves in the background until
/// [`RunningRelay::shutdown`].
pub async fn start_with(
    data_dir: &Path,
    options: StartOptions,
) -> Result<RunningRelay, RelayError> {
    let dir = DataDir::new(data_dir);
    dir.require_initialised()?;
    let config = RelayConfig::load(&dir.config())?;
    let setup = endpoint::setup(&dir)?;
    let pin = setup.pin.clone();
    let store = {
        let root = data_dir.to_path_buf();
        let limits = config.store_limits();
        tokio::task::spawn_blocking(move || {
            RedbStore::open(&root, limits).map_err(|e| RelayError::from_store_open(&root, e))
        })
        .await
        .map_err(|e| RelayError::Task(e.to_string()))??
    };
    let recovery = store.recovery();
    tracing::info!(
        orphan_blobs_removed = recovery.orphan_blobs_removed,
        uploads_requeued = recovery.uploads_requeued,
        orphan_parts_removed = recovery.orphan_parts_removed,
        "store open"
    );
    let endpoint = endpoint::bind(setup, options.listen.unwrap_or(config.listen))?;
    let addr = endpoint
        .local_addr()
        .map_err(RelayError::io("reading the bound address of", dir.root()))?;
    dir.write_private(&dir.serving_addr(), format!("{addr}\n").as_bytes())?;

    let registry = Arc::new(Registry::default());
    let (drain_tx, drain_rx) = mpsc::channel(1);
    let ctx = Arc::new(Context {
        store: Arc::new(store.clone()),
        registry: Arc::clone(&registry),
        transfers: super::transfers::Transfers::new(),
        _drain: drain_tx,
    });
    let (stop, stop_rx) = watch::channel(false);
    let settings = ListenerSettings {
        max_connections: config.limits.max_connections as usize,
        expiry_every: Duration::from_secs(config.expiry_check_secs),
    };
    let task = tokio::spawn(listener::run(
        endpoint,
        ctx,
        drain_rx,
        Shutdown::new(stop_rx),
        settings,
    ));
    tracing::info!(%addr, %pin, "relay listening");
    Ok(RunningRelay {
        addr,
        pin,
        dir,
        store,
        registry,
        stop,
        task: Some(task),
    })
}

impl RunningRelay {
    /// The address the relay is bound to (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay's pin (`sha256:` + 64 hex digits).
    pub fn pin(&self) -> &str {
        &self.pin
    }

    /// Enrolls (or re-enrolls) the facility whose card file is `card_bytes`, while serving.
    pub async fn enroll(&self, card_bytes: Vec<u8>) -> Result<EnrollReport, RelayError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || enroll_into(&store as &dyn RelayStore, &card_bytes))
            .await
            .map_err(|e| RelayError::Task(e.to_string()))?
    }

    /// Revokes `facility` while serving, and closes its open connections at once.
    pub async fn revoke(&self, facility: &str) -> Result<RevokeReport, RelayError> {
        let store = self.store.clone();
        let id = facility.to_owned();
        let report = tokio::task::spawn_blocking(move || revoke_in(&store as &dyn RelayStore, &id))
            .await
            .map_err(|e| RelayError::Task(e.to_string()))??;
        let closed = self
            .registry
            .close_facility(facility, close_code::REVOKED, b"revoked");
        tracing::info!(%facility, closed, "enrollment revoked");
        Ok(report)
    }

    /// Stops accepting, lets requests in flight finish (at most a few seconds; uploads cut
    /// off are resumable), closes every connection and the store, and removes
    /// `serving.addr`.
    pub async fn shutdown(mut self) -> Result<(), RelayError> {
        let _ = self.stop.send(true);
        let result = match self.task.take() {
            Some(task) => task.await.map_err(|e| RelayError::Task(e.to_string())),
            None => Ok(()),
        };
        self.dir.remove(&self.dir.serving_addr())?;
        // The last handle on the store: close it off the async workers.
        let store = self.store.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        result
    }
}
