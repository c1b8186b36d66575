//! A dossier node's home on disk and the operations on it.
//!
//! The bundle crate knows formats; this crate knows *where things live* and keeps them
//! safe there: the passphrase-encrypted keyring, the node's own cards, the pinned contacts,
//! sealing from files and directories, and opening into a directory so that nothing appears
//! in it unless every check passed. Every file it writes goes through [`fsutil`]
//! (temporary file, fsync, rename, fsync the directory; mode 0600).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod contacts;
pub mod error;
pub mod fsutil;
pub mod home;
pub mod identity;
pub mod opening;
pub mod sealing;

pub use contacts::{AddOutcome, ContactBook, PinnedContact};
pub use error::{ExitClass, NodeError};
pub use home::NodeHome;
