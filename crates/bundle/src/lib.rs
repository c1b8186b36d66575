//! The dossier bundle format and facility identity.
//!
//! This crate is the ground floor of dossier: it knows what a facility card, a fingerprint,
//! a manifest and a sealed bundle *are*, and how to make and check them. It performs no I/O
//! beyond the `Read`/`Write` values it is handed and never reads a clock (time is a
//! parameter), so every rule here can be unit-tested and fuzzed without a disk or network.
//!
//! The format is specified normatively in `docs/protocol.md`; each parser names the section
//! it implements. In short:
//!
//! * A [`card::FacilityCard`] is a self-signed JSON envelope carrying a facility's id, name,
//!   country, kind, age X25519 recipient and Ed25519 verifying key.
//! * A [`fingerprint::KeyId`] is the SHA-256 of both public keys; its
//!   [`fingerprint::Fingerprint`] is six groups of five digits a person can read aloud.
//! * A sealed bundle is a standard age v1 file whose plaintext is a POSIX (ustar) tar stream:
//!   `parts/...` entries, then `manifest.json`, then `manifest.sig` (a detached Ed25519
//!   signature over the manifest bytes). See [`seal`] and [`open`].
//! * A [`revocation::SignedRevocation`] is a facility's statement, signed by the key itself,
//!   that one of its keys must no longer be trusted.
//!
//! Security policy for this crate: no `unsafe`; secret key material lives in types that
//! zeroize on drop and have no `Debug`/`Display`/`Clone`; error messages never contain record
//! content, subjects, part names or patient references.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "sealing")]
pub mod age_file;
pub mod card;
#[cfg(feature = "sealing")]
pub mod container;
pub mod fingerprint;
#[cfg(feature = "sealing")]
pub mod identity;
pub mod ids;
pub mod limits;
pub mod manifest;
pub mod media;
#[cfg(feature = "sealing")]
pub mod open;
pub mod receipt;
pub mod relay_auth;
pub mod revocation;
#[cfg(feature = "sealing")]
pub mod seal;
pub mod sig;
#[cfg(all(test, feature = "sealing"))]
mod test_support;
pub mod timestamp;

pub use card::{CardError, FacilityCard, PartyKind};
pub use fingerprint::{Fingerprint, KeyId};
#[cfg(feature = "sealing")]
pub use identity::{FacilityKeys, Keyring, KeyringError, RetiredKeys};
pub use ids::{BundleId, CountryCode, FacilityId, IdError};
pub use manifest::{BundleKind, Manifest, ManifestError, PartEntry, PartPath, PartyRef};
#[cfg(feature = "sealing")]
pub use open::{OpenError, PartSink, SenderDirectory, SenderLookupError, VerifiedBundle};
pub use revocation::{Revocation, RevocationError, SignedRevocation};
#[cfg(feature = "sealing")]
pub use seal::{PartSource, SealError, SealRequest, SealedBundle};
pub use timestamp::Timestamp;
