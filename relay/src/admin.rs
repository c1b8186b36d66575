//! Operator commands that work on a stopped relay: `init`, `enroll`, `revoke`.
//!
//! Deny by default (invariant 4): a relay serves only facilities its operator enrolled, and
//! enrolling checks the card's self-signature before anything is stored, so a corrupted or
//! forged card file is refused at the operator's desk rather than at the first connection.
//!
//! redb lets one process open the store at a time. While the relay runs, these commands say
//! so ([`RelayError::StoreBusy`]); a program that embeds the relay uses
//! [`RunningRelay::enroll`](crate::RunningRelay::enroll) and
//! [`RunningRelay::revoke`](crate::RunningRelay::revoke) instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use dossier_bundle::FacilityCard;

use crate::clock::now_unix;
use crate::config::RelayConfig;
use crate::data_dir::DataDir;
use crate::error::RelayError;
use crate::store::{RedbStore, RelayStore};
use crate::tls;

/// What `init` made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitReport {
    /// The relay's pin (`sha256:` + 64 hex digits): give it to every node operator.
    pub pin: String,
    /// The configured listen address.
    pub listen: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
}

/// What `enroll` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollReport {
    /// The facility id from the card.
    pub facility: String,
    /// The card's fingerprint (six groups of five digits), to compare with the facility.
    pub fingerprint: String,
    /// Whether the facility was enrolled before, and how.
    pub previous: PreviousEnrollment,
}

/// The state of a facility before `enroll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousEnrollment {
    /// Not enrolled: newly admitted.
    None,
    /// Enrolled: its card was replaced by this one.
    Replaced,
    /// Enrolled and revoked: re-admitted with this card (the revocation is lifted).
    Reinstated,
}

/// What `revoke` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeReport {
    /// The facility id.
    pub facility: String,
    /// When it was revoked (Unix seconds; the first revocation's time if it already was).
    pub revoked_at: i64,
    /// It was already revoked: nothing changed.
    pub already_revoked: bool,
}

/// Creates a relay in `data_dir` listening on `listen`, with default limits.
pub fn init(data_dir: &Path, listen: SocketAddr) -> Result<InitReport, RelayError> {
    init_with_config(data_dir, &RelayConfig::new(listen))
}

/// Creates a relay in `data_dir` with `config`: the directory (0700), the TLS key (0600)
/// and self-signed certificate, the store, and `relay.json` last (its presence means the
/// directory is initialised). Refuses a directory that already holds a relay.
pub fn init_with_config(data_dir: &Path, config: &RelayConfig) -> Result<InitReport, RelayError> {
    let dir = DataDir::new(data_dir);
    if dir.config().exists() {
        return Err(RelayError::AlreadyInitialised {
            dir: data_dir.to_path_buf(),
        });
    }
    config.check().map_err(|problem| RelayError::Config {
        path: dir.config(),
        problem,
    })?;
    dir.create()?;
    let identity = tls::generate(&dir)?;
    dir.write_private(&dir.tls_key(), &identity.key_der)?;
    dir.write_private(&dir.tls_cert(), &identity.cert_der)?;
    let store = RedbStore::open(data_dir, config.store_limits())
        .map_err(|e| RelayError::from_store_open(data_dir, e))?;
    drop(store);
    dir.write_private(&dir.config(), &config.to_bytes())?;
    Ok(InitReport {
        pin: tls::pin_of(&dir)?,
        listen: config.listen,
        data_dir: data_dir.to_path_buf(),
    })
}

/// Admits the facility whose card file is `card_bytes` (self-signature checked), or
/// replaces its card. The relay must be stopped (see the module docs).
pub fn enroll(data_dir: &Path, card_bytes: &[u8]) -> Result<EnrollReport, RelayError> {
    let store = open_stopped(data_dir)?;
    enroll_into(&store, card_bytes)
}

/// Revokes `facility`'s enrollment. The relay must be stopped (see the module docs).
pub fn revoke(data_dir: &Path, facility: &str) -> Result<RevokeReport, RelayError> {
    let store = open_stopped(data_dir)?;
    revoke_in(&store, facility)
}

/// Opens the store of an initialised, stopped relay.
fn open_stopped(data_dir: &Path) -> Result<RedbStore, RelayError> {
    let dir = DataDir::new(data_dir);
    dir.require_initialised()?;
    let config = RelayConfig::load(&dir.config())?;
    RedbStore::open(data_dir, config.store_limits())
        .map_err(|e| RelayError::from_store_open(data_dir, e))
}

/// Enrolls through any store handle (the stopped relay's, or a running relay's).
pub(crate) fn enroll_into(
    store: &dyn RelayStore,
    card_bytes: &[u8],
) -> Result<EnrollReport, RelayError> {
    let card = FacilityCard::parse(card_bytes)?;
    let facility = card.id().as_str();
    // A key its holder revoked (docs/protocol.md §17) stays refused: enrolling the same
    // card again would only make every connection fail.
    if let Some(r) = store.key_revocation(facility, &card.key_id().to_hex())? {
        return Err(RelayError::KeyRevoked {
            facility: facility.to_owned(),
            fingerprint: card.fingerprint().to_string(),
            revoked_at: r.posted_at,
        });
    }
    let previous = match store.enrollment(facility)? {
        None => PreviousEnrollment::None,
        Some(e) if e.revoked_at.is_some() => PreviousEnrollment::Reinstated,
        Some(_) => PreviousEnrollment::Replaced,
    };
    store.enroll(facility, card_bytes, now_unix())?;
    Ok(EnrollReport {
        facility: facility.to_owned(),
        fingerprint: card.fingerprint().to_string(),
        previous,
    })
}

/// Revokes through any store handle.
pub(crate) fn revoke_in(
    store: &dyn RelayStore,
    facility: &str,
) -> Result<RevokeReport, RelayError> {
    let already_revoked = store
        .enrollment(facility)?
        .is_some_and(|e| e.revoked_at.is_some());
    let e = store.revoke(facility, now_unix())?;
    Ok(RevokeReport {
        facility: e.facility,
        revoked_at: e.revoked_at.unwrap_or_default(),
        already_revoked,
    })
}
