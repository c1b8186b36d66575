//! Everything that can go wrong in a node operation, each with what to do next.
//!
//! [`NodeError::exit_class`] maps every error to the documented exit codes (0 success,
//! 1 error, 2 usage, 3 verification failed, 4 pinned key mismatch, 5 sender not a contact,
//! 6 refused by the disclosure policy).
//! Messages name facility ids and the paths the user typed, never record content, subjects,
//! part names or patient references.

use std::io;
use std::path::PathBuf;

use dossier_bundle::open::FailureClass;
use dossier_bundle::{
    CardError, FacilityId, Fingerprint, IdError, KeyringError, OpenError, SealError, Timestamp,
};

/// The documented exit codes, by meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitClass {
    /// 1: something failed; the message says what to do.
    Error = 1,
    /// 2: the command line was wrong.
    Usage = 2,
    /// 3: verification failed (tampered, truncated, bad signature, not for this node).
    Verification = 3,
    /// 4: a key differs from the pinned one, or its owner revoked it (docs/protocol.md §17).
    PinMismatch = 4,
    /// 5: the sender is not a pinned contact.
    UnknownSender = 5,
    /// 6: refused by the disclosure policy (`HOME/policy.toml`: destination country,
    /// unverified contact, minor's record abroad, missing consent); nothing was sent.
    PolicyRefused = 6,
}

/// A failed node operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No home directory could be determined.
    #[error("cannot find a home directory for dossier; pass --home DIR or set $DOSSIER_HOME")]
    NoHome,
    /// `init` has not run.
    #[error(
        "no dossier identity in {0}; run `dossier init --id ID --name NAME --country CC` first (or pass the right --home)"
    )]
    NotInitialised(PathBuf),
    /// `init` already ran.
    #[error(
        "{0} already holds a dossier identity; use another --home, or `dossier key rotate` for new keys"
    )]
    AlreadyInitialised(PathBuf),
    /// Keyring problem (wrong passphrase, damaged).
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// A card was refused.
    #[error(transparent)]
    Card(#[from] CardError),
    /// An id, country or name was refused.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The passphrase was refused.
    #[error("{0}")]
    Passphrase(String),
    /// A state file in the home is damaged.
    #[error("{0} is damaged ({1}); restore it from backup")]
    CorruptState(PathBuf, &'static str),
    /// Local I/O.
    #[error("{what} failed: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// A contact's card carries different keys from the pinned ones.
    #[error(
        "the card for {id} has different keys from the pinned ones and is not signed by the pinned key.\n  \
         pinned:    {pinned}\n  presented: {presented}\n\
         Nothing was changed. Call {id} on a known number and compare fingerprints; if they really \
         re-installed, remove the old pin with `dossier contacts remove {id}` and add the new card"
    )]
    ContactKeyMismatch {
        /// Contact id.
        id: FacilityId,
        /// Pinned fingerprint.
        pinned: Fingerprint,
        /// Fingerprint on the new card.
        presented: Fingerprint,
    },
    /// The fingerprint typed does not match the card.
    #[error(
        "the fingerprint you gave does not match the card of {id}.\n  card:  {actual}\n\
         Nothing was marked verified. Read the fingerprint again with {id} over a trusted channel"
    )]
    FingerprintMismatch {
        /// Contact id.
        id: FacilityId,
        /// The card's real fingerprint.
        actual: Fingerprint,
    },
    /// Not a contact.
    #[error(
        "{0} is not one of your contacts; add their card first with `dossier contacts add CARD`"
    )]
    NotAContact(FacilityId),
    /// Tried to pin our own card.
    #[error("that is this node's own card; contacts are other facilities")]
    IsSelf,
    /// The seal output exists.
    #[error("{0} already exists; choose another output name or remove it first")]
    OutputExists(PathBuf),
    /// The open output directory is not empty.
    #[error(
        "{0} is not empty; open into a new or empty directory so received parts cannot overwrite files"
    )]
    OutputNotEmpty(PathBuf),
    /// An input path is unusable.
    #[error("input {arg}: {problem}")]
    Input {
        /// The path as given on the command line.
        arg: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Opening failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Refused without explicit confirmation.
    #[error("{0}")]
    NeedsConfirmation(&'static str),
    /// No relay configured yet.
    #[error(
        "no relay is configured for this node; run `dossier relay set ADDR --pin PIN` with the address and pin your relay's operator gave you (or use `dossier seal` for an offline file)"
    )]
    NoRelay,
    /// A relay address or pin typed by the user is malformed.
    #[error("the relay {what} is not valid: {problem}")]
    BadRelaySetting {
        /// `address` or `pin`.
        what: &'static str,
        /// What is wrong and what to do.
        problem: String,
    },
    /// Talking to the relay failed.
    #[error(transparent)]
    Relay(#[from] crate::relay_client::RelayError),
    /// `send` could not hand the bundle to the relay because the relay refused.
    #[error("{source}\nBundle {bundle_id} was NOT accepted by the relay. {next}")]
    SendRefused {
        /// The queued bundle.
        bundle_id: String,
        /// Why.
        source: crate::relay_client::RelayError,
        /// What happens to the bundle and what to do.
        next: &'static str,
    },
    /// No such bundle in the inbox or outbox.
    #[error(
        "no bundle {0} in this node's inbox or outbox; list them with `dossier inbox` and `dossier outbox` (or give the path of a bundle file)"
    )]
    UnknownBundle(String),
    /// The bundle was quarantined when it arrived.
    #[error("bundle {bundle_id} was quarantined when it arrived and is not opened: {reason}")]
    Quarantined {
        /// The bundle.
        bundle_id: String,
        /// Why it was quarantined (no record content).
        reason: String,
    },
    /// The operator name (`--operator`, `$DOSSIER_OPERATOR` or the OS user) is unusable.
    #[error(
        "the operator name {problem}; pass --operator NAME or set $DOSSIER_OPERATOR \
         (1-64 characters, no control characters or surrounding spaces)"
    )]
    BadOperator {
        /// What is wrong with it (the name itself is not repeated).
        problem: &'static str,
    },
    /// The audit trail is damaged or does not match its anchor, so nothing can be recorded
    /// and the operation was not done.
    #[error(
        "the audit trail in {dir} {problem}. Nothing was done. Run `dossier audit verify` to \
         find the first bad entry, keep {dir} unchanged as evidence, and tell your security officer"
    )]
    AuditBroken {
        /// `HOME/audit`.
        dir: PathBuf,
        /// What is wrong (no record content).
        problem: String,
    },
    /// `dossier audit verify` found the trail altered.
    #[error(
        "the audit trail in {dir} does not verify: {found}.\nKeep {dir} unchanged as \
         evidence and tell your security officer; no entry from this one on can be trusted"
    )]
    AuditTampered {
        /// `HOME/audit`.
        dir: PathBuf,
        /// The first bad entry and what is wrong with it.
        found: String,
    },
    /// `policy.toml` cannot be used.
    #[error(
        "{path} is not a valid disclosure policy: {problem}\nFix the setting named above (the \
         comments in the file explain each one) and run the command again"
    )]
    PolicyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
    /// The disclosure policy refused the operation.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyRefusal),
    /// A consent register request was refused.
    #[error(transparent)]
    Consent(#[from] crate::policy::ConsentError),
    /// The contact revoked the key it is pinned with (docs/protocol.md §17): nothing is
    /// sealed or sent to it until its new card is pinned.
    #[error(
        "{id} revoked its key at {at} (their reason: \"{reason}\"), so nothing was sealed or sent \
         to {id}. Get {id}'s new card, check its fingerprint with {id} on a number you already \
         trust, then run `dossier contacts remove {id}` and `dossier contacts add CARD --verified \
         FINGERPRINT`"
    )]
    ContactRevoked {
        /// Contact id.
        id: FacilityId,
        /// When the contact revoked the key (its signed time).
        at: Timestamp,
        /// The contact's one-line reason.
        reason: String,
    },
    /// A new card for a contact is rotation-signed by a key the contact revoked (or by a card
    /// such a key vouched for).
    #[error(
        "the new card for {id} (fingerprint {presented}) is vouched for by a key {id} revoked at \
         {revoked_at}; a revoked key cannot vouch for a new one, so the pin was not moved. Check \
         the new fingerprint with {id} on a number you already trust, then run `dossier contacts \
         remove {id}` and `dossier contacts add CARD --verified FINGERPRINT`"
    )]
    RotationByRevokedKey {
        /// Contact id.
        id: FacilityId,
        /// Fingerprint of the new card.
        presented: Fingerprint,
        /// When the contact revoked the key that signed it.
        revoked_at: Timestamp,
    },
    /// The card's own key was revoked by its holder.
    #[error(
        "this card of {id} carries the key {fingerprint}, which {id} revoked at {at}; it was not \
         pinned. Ask {id} for the card made by `dossier key rotate` and check its fingerprint \
         with {id} by phone"
    )]
    CardKeyRevoked {
        /// Contact id.
        id: FacilityId,
        /// Fingerprint of the revoked key.
        fingerprint: Fingerprint,
        /// When it was revoked.
        at: Timestamp,
    },
    /// This node revoked its own current key (`dossier key revoke`).
    #[error(
        "this node's key (fingerprint {fingerprint}) was revoked at {at} with `dossier key \
         revoke`, so it signs nothing any more. Run `dossier key rotate` to make new keys, ask \
         the relay operator to enroll your new card (`dossier card -o FILE`), and ask every \
         contact to check your new fingerprint with you by phone"
    )]
    OwnKeyRevoked {
        /// Fingerprint of the revoked key.
        fingerprint: Fingerprint,
        /// When it was revoked.
        at: Timestamp,
    },
    /// `key rotate` while the revocation of the current key has not reached the relay.
    #[error(
        "the revocation of this node's key has not reached the relay yet (it is kept in {0}); \
         run `dossier sync` once the relay is reachable, then `dossier key rotate`. Rotating \
         first would leave your contacts unaware that the old key was revoked"
    )]
    RevocationPending(PathBuf),
    /// A revocation could not be made or was refused.
    #[error(transparent)]
    Revocation(#[from] dossier_bundle::RevocationError),
}

impl NodeError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> NodeError {
        let what = what.into();
        move |source| NodeError::Io { what, source }
    }

    /// The exit code class for this error.
    pub fn exit_class(&self) -> ExitClass {
        match self {
            NodeError::Open(e) => match e.class() {
                FailureClass::Verification => ExitClass::Verification,
                FailureClass::PinMismatch => ExitClass::PinMismatch,
                FailureClass::UnknownSender => ExitClass::UnknownSender,
                FailureClass::Local => ExitClass::Error,
            },
            NodeError::ContactKeyMismatch { .. }
            | NodeError::FingerprintMismatch { .. }
            | NodeError::ContactRevoked { .. }
            | NodeError::RotationByRevokedKey { .. }
            | NodeError::CardKeyRevoked { .. } => ExitClass::PinMismatch,
            NodeError::Revocation(dossier_bundle::RevocationError::BadReason(_)) => {
                ExitClass::Usage
            }
            NodeError::Card(CardError::BadSignature) => ExitClass::Verification,
            NodeError::Id(_)
            | NodeError::NeedsConfirmation(_)
            | NodeError::BadRelaySetting { .. } => ExitClass::Usage,
            NodeError::Quarantined { .. } => ExitClass::Verification,
            NodeError::BadOperator { .. } => ExitClass::Usage,
            NodeError::AuditBroken { .. } | NodeError::AuditTampered { .. } => {
                ExitClass::Verification
            }
            NodeError::Policy(e) if e.is_usage() => ExitClass::Usage,
            NodeError::Policy(_) => ExitClass::PolicyRefused,
            NodeError::Consent(e) if e.is_usage() => ExitClass::Usage,
            _ => ExitClass::Error,
        }
    }
}
