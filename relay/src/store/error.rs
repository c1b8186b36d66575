//! Why a store operation failed, and what the sender, recipient or operator should do.
//!
//! Variants before `Corrupt` are refusals caused by the request (the server relays them to
//! the peer with a matching refusal code); `Corrupt`, `Io` and `Db` are the relay's own
//! failures (the peer is told only "internal, retry later"; the operator sees the detail).
//! No message carries anything but ids, sizes and counts: the store holds nothing else.

use std::io;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The bundle is larger than the relay's `max_bundle_bytes`.
    #[error(
        "{length} bytes is over this relay's limit of {max} bytes; send the files in smaller \
         bundles, or ask the relay operator to raise the size limit"
    )]
    TooLarge {
        /// Size offered.
        length: u64,
        /// The limit.
        max: u64,
    },
    /// Accepting the deposit would take the sender over its quota.
    #[error(
        "facility {facility} has {used} of its {quota} bytes in use at this relay and this \
         deposit needs {requested} more; wait until recipients collect pending bundles, or ask \
         the relay operator to raise the quota"
    )]
    OverQuota {
        /// The sending facility.
        facility: String,
        /// Bytes already charged.
        used: u64,
        /// Bytes this deposit needs.
        requested: u64,
        /// The quota.
        quota: u64,
    },
    /// The bundle id is taken by a deposit with other content, sender or recipients.
    #[error(
        "the relay already holds a different bundle with id {bundle_id}; bundle ids must be \
         unique, so seal the records again to get a new id"
    )]
    Conflict {
        /// Bundle id.
        bundle_id: String,
    },
    /// The uploaded bytes do not hash to the announced SHA-256. The upload was discarded.
    #[error(
        "the uploaded bytes of bundle {bundle_id} do not match its announced SHA-256; the relay \
         discarded them, send the bundle again from the start"
    )]
    HashMismatch {
        /// Bundle id.
        bundle_id: String,
    },
    /// An upload ended short of, or tried to run past, the announced length.
    #[error(
        "bundle {bundle_id} was announced as {expected} bytes but the upload reached {received}; \
         resume the upload from the offset the relay reports"
    )]
    LengthMismatch {
        /// Bundle id.
        bundle_id: String,
        /// Announced length.
        expected: u64,
        /// Bytes received (or that would have been, for an overrun).
        received: u64,
    },
    /// No such bundle for this facility (never deposited, not addressed to it, delivered
    /// and forgotten, or expired).
    #[error(
        "bundle {bundle_id} is not waiting for you at this relay (unknown, not addressed to \
         you, or expired); run sync to refresh your mailbox"
    )]
    UnknownBundle {
        /// Bundle id.
        bundle_id: String,
    },
    /// The bundle expired undelivered; its id cannot be deposited again.
    #[error(
        "bundle {bundle_id} expired undelivered at this relay; send the records again as a new \
         bundle"
    )]
    Expired {
        /// Bundle id.
        bundle_id: String,
    },
    /// The facility is not enrolled at this relay.
    #[error(
        "facility {facility} is not enrolled at this relay; ask the relay operator to run \
         `dossier-relay enroll` with its card"
    )]
    NotEnrolled {
        /// Facility id.
        facility: String,
    },
    /// The facility's enrollment was revoked.
    #[error(
        "facility {facility}'s enrollment at this relay was revoked; contact the relay operator"
    )]
    Revoked {
        /// Facility id.
        facility: String,
    },
    /// Another connection resumed this upload (or it expired); this writer must stop.
    #[error(
        "the upload of bundle {bundle_id} was taken over by a newer connection or discarded; \
         continue on the newest connection"
    )]
    Superseded {
        /// Bundle id.
        bundle_id: String,
    },
    /// The data directory's file system is full (`ENOSPC`, or the disk quota of the relay's
    /// user): what was being written was not stored. Not the request's fault and not
    /// corruption: an upload cut short by it is discarded (its space and quota charge
    /// released), and the node keeps the bundle queued and retries.
    #[error(
        "the relay's storage is full (while {context}), so nothing was stored; a bundle being \
         deposited stays queued at the sending node, which retries at its next sync. The relay \
         operator must free space on the relay's data disk (space is also freed as recipients \
         collect held bundles)"
    )]
    StorageFull {
        /// What the store was doing.
        context: &'static str,
    },
    /// A malformed request: bad id, empty or oversized recipient list, and the like.
    #[error("malformed request: {0}")]
    Invalid(&'static str),
    /// The store's own data is inconsistent.
    #[error(
        "relay store is inconsistent ({0}); stop the relay and restore its data directory from \
         a backup (see docs/operations.md)"
    )]
    Corrupt(String),
    /// A file-system operation failed.
    #[error(
        "relay store I/O failed while {context}: {source}; check free space and permissions of \
         the data directory"
    )]
    Io {
        /// What the store was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The redb index failed.
    #[error(
        "relay index database failed: {0}; check free space and permissions of the data \
         directory, then restart the relay"
    )]
    Db(#[source] redb::Error),
}

impl StoreError {
    /// Wraps an I/O error with what the store was doing.
    /// A full file system becomes [`StoreError::StorageFull`].
    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| {
            if is_storage_full(&source) {
                StoreError::StorageFull { context }
            } else {
                StoreError::Io { context, source }
            }
        }
    }

    /// `true` when the relay itself failed (the peer should retry later), as opposed to a
    /// refusal of the request.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt(_) | StoreError::Io { .. } | StoreError::Db(_)
        )
    }
}

/// `ENOSPC` or `EDQUOT`: the data directory's file system (or its quota) is full.
pub(crate) fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

macro_rules! from_redb {
    ($($t:ty),+) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                match e.into() {
                    redb::Error::Io(io) if is_storage_full(&io) => StoreError::StorageFull {
                        context: "committing to the index",
                    },
                    other => {
                        if matches!(other, redb::Error::PreviousIo) {
                            super::index_db::note_previous_io();
                        }
                        StoreError::Db(other)
                    }
                }
            }
        }
    )+};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
