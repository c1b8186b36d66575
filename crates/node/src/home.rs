//! Where a node keeps its state, and the fixed layout inside it.
//!
//! ```text
//! HOME/
//!   keyring.age      current + retired secret keys, age scrypt-encrypted to the passphrase
//!   card.json        this node's current public card
//!   cards/KEYID.json this node's earlier cards (after `key rotate`), to check old bundles
//!   contacts.json    pinned contacts
//!   relay.json       the relay's address and pin, the overdue window (`dossier relay set`)
//!   sync.json        position in the relay's receipt log
//!   outbox/          sent bundles (ciphertext) and their delivery records (see `outbox`)
//!   inbox/           verified received bundles (ciphertext) and records; incoming/ holds
//!                    downloads in progress (see `inbox`)
//!   quarantine/      received bundles that failed verification, with the reason
//!   audit/           the hash-chained audit trail and its anchor (see `audit`)
//!   policy.toml      the disclosure policy (see `policy`)
//!   consent.json     the consent register: grants per patient and country (see `policy`)
//!   revocations/     this node's own key revocations (kept until the relay has them), the
//!                    position in the relay's revocation list, and revocations of facilities
//!                    not pinned yet (see `revocation`)
//!   relink/          re-link tables of redacted disclosures, age-encrypted to this node
//!                    (see `relink`); redacting/ holds redacted copies while sealing
//! ```

use std::path::{Path, PathBuf};

use crate::error::NodeError;

/// Environment variable naming the home directory.
pub const HOME_ENV: &str = "DOSSIER_HOME";

/// A node's home directory.
#[derive(Clone, Debug)]
pub struct NodeHome {
    root: PathBuf,
}

impl NodeHome {
    /// `--home`, else `$DOSSIER_HOME`, else the platform data directory.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, NodeError> {
        if let Some(p) = explicit {
            return Ok(Self::at(p));
        }
        if let Some(p) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(Path::new(&p)));
        }
        directories::ProjectDirs::from("org", "dossier", "dossier")
            .map(|d| Self::at(d.data_dir()))
            .ok_or(NodeError::NoHome)
    }

    /// A home at exactly `root`.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Encrypted keyring.
    pub fn keyring_path(&self) -> PathBuf {
        self.root.join("keyring.age")
    }

    /// Current public card.
    pub fn card_path(&self) -> PathBuf {
        self.root.join("card.json")
    }

    /// Directory of this node's retired cards.
    pub fn retired_cards_dir(&self) -> PathBuf {
        self.root.join("cards")
    }

    /// Pinned contacts.
    pub fn contacts_path(&self) -> PathBuf {
        self.root.join("contacts.json")
    }

    /// Whether `dossier init` has run here.
    pub fn is_initialised(&self) -> bool {
        self.keyring_path().exists()
    }

    /// The audit trail's directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// The disclosure policy.
    pub fn policy_path(&self) -> PathBuf {
        self.root.join("policy.toml")
    }

    /// The consent register.
    pub fn consent_path(&self) -> PathBuf {
        self.root.join("consent.json")
    }

    /// Re-link tables of redacted disclosures (`--redact identifiers`), encrypted.
    pub fn relink_dir(&self) -> PathBuf {
        self.root.join("relink")
    }

    /// Redacted copies of the inputs while a bundle is sealed (deleted afterwards).
    pub fn redacting_dir(&self) -> PathBuf {
        self.root.join("redacting")
    }
}
