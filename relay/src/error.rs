//! What can go wrong when an operator (or an embedding program) initialises, administers or
//! runs a relay — each variant says what to do next.
//!
//! These are the operator's errors. What a *peer* is told about a refused request is decided
//! separately (`server::refusal`), from the store's own errors; nothing here is sent over
//! the wire. No message carries more than paths, addresses, ids and counts.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::StoreError;

/// A relay operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// `init` found a relay already initialised in the directory.
    #[error(
        "{dir} already holds an initialised relay (relay.json exists); use it with `dossier-relay \
         serve --data {dir}`, or choose an empty directory for a new relay"
    )]
    AlreadyInitialised {
        /// The data directory.
        dir: PathBuf,
    },
    /// A command other than `init` found no relay in the directory.
    #[error(
        "{dir} is not an initialised relay data directory (no relay.json); run `dossier-relay \
         init --data {dir} --listen ADDR` first, or pass the right --data"
    )]
    NotInitialised {
        /// The data directory.
        dir: PathBuf,
    },
    /// Another process (normally the running relay) has the store open.
    #[error(
        "the relay store in {dir} is in use by another process, normally the running relay; \
         stop the relay (e.g. `systemctl stop dossier-relay`), run this command again, then \
         start the relay"
    )]
    StoreBusy {
        /// The data directory.
        dir: PathBuf,
    },
    /// `relay.json` is unreadable or holds an invalid setting.
    #[error("{path}: {problem}; fix the file (see docs/operations.md, \"Running a relay\")")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The relay's TLS key or certificate is unusable.
    #[error(
        "the relay's TLS identity in {dir} is unusable ({problem}); restore relay-key.der and \
         relay-cert.der from a backup (a new key means a new pin for every node)"
    )]
    TlsIdentity {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The card given to `enroll` is not a valid, self-signed dossier card.
    #[error("{0}")]
    Card(#[from] dossier_bundle::CardError),
    /// `enroll` was given a card whose key its holder revoked (docs/protocol.md §17).
    #[error(
        "the key on this card of {facility} (fingerprint {fingerprint}) was revoked by its \
         holder (relay time {revoked_at}); ask {facility} for the new card made by `dossier key \
         rotate`, check its fingerprint with them by phone, and enroll that"
    )]
    KeyRevoked {
        /// The facility id.
        facility: String,
        /// Fingerprint of the revoked key.
        fingerprint: String,
        /// When the relay stored the revocation (Unix seconds).
        revoked_at: i64,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The UDP socket could not be bound.
    #[error(
        "could not listen on {addr} ({source}); choose a free address with --listen, or stop \
         the process that uses it"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file-system operation outside the store failed.
    #[error("{context} {path} failed ({source}); check the path, free space and permissions")]
    Io {
        /// What the relay was doing.
        context: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A relay task ended abnormally (a bug: please report it with the log).
    #[error("a relay task failed ({0}); restart the relay and report the log")]
    Task(String),
}

impl RelayError {
    /// Wraps an I/O error with what was being done to which file.
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RelayError::Io {
            context,
            path,
            source,
        }
    }

    /// Wraps a store error, recognising "another process has the database open".
    pub(crate) fn from_store_open(dir: &std::path::Path, e: StoreError) -> Self {
        match e {
            StoreError::Db(redb::Error::DatabaseAlreadyOpen) => RelayError::StoreBusy {
                dir: dir.to_path_buf(),
            },
            other => RelayError::Store(other),
        }
    }
}
