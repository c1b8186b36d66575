//! The dossier relay: a store-and-forward server trusted with availability only.
//!
//! It holds sealed bundles (age ciphertext), mailbox entries, delivery receipts and the
//! enrolled facilities' public cards — never a plaintext byte of a record. It links the
//! card and signature half of `dossier-bundle` only (no `sealing` feature), so the relay
//! binary contains no bundle decryptor at all. This crate is a library so that
//! `dossier demo` and the tests can embed it; `dossier-relay` is a thin binary over it.
//!
//! # Embedding
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, card: Vec<u8>) -> Result<(), dossier_relay::RelayError> {
//! let report = dossier_relay::init(dir, "127.0.0.1:0".parse().unwrap())?; // once
//! dossier_relay::enroll(dir, &card)?;               // while stopped
//! let relay = dossier_relay::start(dir).await?;     // serves in the background
//! println!("{} {}", relay.addr(), relay.pin());     // report.pin == relay.pin()
//! relay.shutdown().await?;                          // graceful; the store is closed after
//! # Ok(()) }
//! ```
//!
//! The protocol is docs/protocol.md §15–16; operating a relay is docs/operations.md.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admin;
mod clock;
pub mod config;
pub mod data_dir;
mod error;
pub mod server;
pub mod signal;
pub mod store;
mod tls;

pub use admin::{
    EnrollReport, InitReport, PreviousEnrollment, RevokeReport, enroll, init, init_with_config,
    revoke,
};
pub use config::RelayConfig;
pub use error::RelayError;
pub use server::{RunningRelay, StartOptions, start, start_with};
pub use tls::RELAY_SERVER_NAME;
