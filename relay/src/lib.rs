//! The dossier relay: a store-and-forward server trusted with availability only.
//!
//! It holds sealed bundles (age ciphertext), mailbox entries, delivery receipts and the
//! enrolled facilities' public cards — never a plaintext byte of a record. This crate is a
//! library so that `dossier demo` and the tests can embed it; `dossier-relay` is a thin
//! binary over it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod store;
