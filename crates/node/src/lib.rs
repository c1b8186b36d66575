//! A dossier node's home on disk and the operations on it.
//!
//! The bundle crate knows formats; this crate knows *where things live* and keeps them
//! safe there: the passphrase-encrypted keyring, the node's own cards, the pinned contacts,
//! sealing from files and directories, and opening into a directory so that nothing appears
//! in it unless every check passed. Every file it writes goes through [`fsutil`]
//! (temporary file, fsync, rename, fsync the directory; mode 0600).
//!
//! Online exchange: [`relay_config`] pins the relay, [`relay_client`] speaks the relay
//! protocol over QUIC (TLS checked by [`relay_tls`]), [`outbox`] and [`inbox`] hold what was
//! sent and received with their delivery state, and [`sync`] moves bundles between them and
//! the relay: nothing enters the inbox unverified, nothing is acknowledged before it is
//! durable here, and every state file is written atomically.
//!
//! Safeguards: [`audit`] keeps the hash-chained trail of who did what (never record
//! content), and [`policy`] decides which disclosures the node's rules and the patients'
//! consents allow; [`gate`] applies it to every bundle before it is sealed (reading FHIR
//! records for patients' ages, redacting identifiers with `--redact identifiers` and keeping
//! the [`relink`] table encrypted at the sender).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod contacts;
pub mod disclosures;
pub mod error;
pub mod fsutil;
pub mod gate;
pub mod home;
pub mod identity;
pub mod inbox;
pub mod opening;
pub mod outbox;
pub mod policy;
pub mod relay_client;
pub mod relay_config;
pub mod relay_error;
pub mod relay_tls;
pub mod relink;
pub mod retention;
pub mod revocation;
pub mod sealing;
pub mod statefile;
pub mod sync;
pub mod transfer;

pub use audit::{AuditAction, AuditEvent, AuditLog, AuditOutcome, Operator};
pub use contacts::{AddOutcome, ContactBook, PinnedContact};
pub use error::{ExitClass, NodeError};
pub use home::NodeHome;
pub use policy::{ConsentRegister, DisclosureRequest, Policy, PolicyRefusal};
