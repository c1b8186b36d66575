//! Re-link tables: what `--redact identifiers` removed from one disclosure, kept by the
//! sender only, encrypted at rest.
//!
//! A redacted record leaves with a pseudonym (`p-` and 16 random hex digits) where the
//! patient's identifiers were. When the clinic abroad replies quoting that pseudonym, the
//! sender needs to know which of its patients it stands for: the re-link table holds every
//! removed element (SSN, MRN, phone numbers, address lines, next-of-kin) of the records in
//! that bundle, under the pseudonym.
//!
//! Because it holds exactly the identifiers the redaction kept from the recipient, the
//! table never exists in plaintext on disk: it is serialised in memory (wiped after use),
//! encrypted with age to this node's own X25519 key (the recipient on its card) and written
//! atomically to `HOME/relink/<pseudonym>.age` (mode 0600, directory 0700). Only this
//! node's keyring — current or retired keys, so a `key rotate` does not orphan old tables
//! — can read it back ([`RelinkTable::load`]). It is never sent, logged or audited.

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use dossier_bundle::{FacilityId, Keyring, Timestamp};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::NodeError;
use crate::fsutil::{create_private_dir, write_atomic};
use crate::home::NodeHome;

/// The format tag inside every table.
pub const RELINK_FORMAT: &str = "dossier-relink/v1";

/// Largest table read back (a table holds identifiers only; this bounds a damaged file).
pub const MAX_RELINK_BYTES: u64 = 64 * 1024 * 1024;

/// Prefix of every pseudonym this node generates.
pub const PSEUDONYM_PREFIX: &str = "p-";

const PSEUDONYM_HEX: usize = 16;

/// A fresh random pseudonym: `p-` followed by 16 lowercase hex digits (64 random bits).
pub fn new_pseudonym() -> Result<String, NodeError> {
    let mut b = [0u8; PSEUDONYM_HEX / 2];
    getrandom::getrandom(&mut b)
        .map_err(|e| NodeError::io("generating a pseudonym")(std::io::Error::other(e)))?;
    Ok(format!("{PSEUDONYM_PREFIX}{}", crate::statefile::hex(&b)))
}

/// Whether `text` has the form of a pseudonym from [`new_pseudonym`] (so it can name a
/// file without escaping `HOME/relink`).
pub fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix(PSEUDONYM_PREFIX).is_some_and(|hex| {
        hex.len() == PSEUDONYM_HEX
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// One removed or renamed element (see `dossier_fhir::RemovedItem`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelinkItem {
    /// The resource it came from, `Type/id` with the id before renaming.
    pub resource: String,
    /// Where in that resource (`identifier[0]`, `address[0].line[1]`, `id`, …).
    pub path: String,
    /// The removed fragment, as JSON or XML text.
    pub value: String,
}

impl fmt::Debug for RelinkItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelinkItem")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What was removed from one part of the bundle.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelinkPart {
    /// The part's name in the bundle.
    pub part: String,
    /// `json` or `xml`.
    pub format: String,
    /// Everything removed from it, in document order.
    pub removed: Vec<RelinkItem>,
}

impl fmt::Debug for RelinkPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelinkPart")
            .field("format", &self.format)
            .field("removed", &self.removed.len())
            .finish_non_exhaustive()
    }
}

/// The re-link table of one redacted disclosure.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelinkTable {
    /// [`RELINK_FORMAT`].
    pub format: String,
    /// The pseudonym the recipients see.
    pub pseudonym: String,
    /// When the redaction was made.
    pub created_at: Timestamp,
    /// Who made it.
    pub operator: String,
    /// The bundle that carried it, once sealed.
    #[serde(default)]
    pub bundle_id: Option<String>,
    /// Who it was for.
    pub recipients: Vec<FacilityId>,
    /// The redacted parts.
    pub parts: Vec<RelinkPart>,
}

impl fmt::Debug for RelinkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelinkTable")
            .field("pseudonym", &self.pseudonym)
            .field("bundle_id", &self.bundle_id)
            .field("parts", &self.parts.len())
            .finish_non_exhaustive()
    }
}

impl Drop for RelinkTable {
    fn drop(&mut self) {
        for part in &mut self.parts {
            part.part.zeroize();
            for item in &mut part.removed {
                item.resource.zeroize();
                item.path.zeroize();
                item.value.zeroize();
            }
        }
    }
}

impl RelinkTable {
    /// A new table for `pseudonym`.
    pub fn new(
        pseudonym: &str,
        operator: &str,
        recipients: Vec<FacilityId>,
        created_at: Timestamp,
    ) -> Self {
        Self {
            format: RELINK_FORMAT.to_owned(),
            pseudonym: pseudonym.to_owned(),
            created_at,
            operator: operator.to_owned(),
            bundle_id: None,
            recipients,
            parts: Vec::new(),
        }
    }

    /// Where the table of `pseudonym` lives.
    pub fn path(home: &NodeHome, pseudonym: &str) -> PathBuf {
        home.relink_dir().join(format!("{pseudonym}.age"))
    }

    /// Encrypts the table to `to` (this node's own age recipient) and writes it atomically
    /// to `HOME/relink/<pseudonym>.age`, replacing an earlier version. Returns the path.
    pub fn save(&self, home: &NodeHome, to: &age::x25519::Recipient) -> Result<PathBuf, NodeError> {
        if !is_pseudonym(&self.pseudonym) {
            return Err(NodeError::io("writing a re-link table")(
                std::io::Error::other("the pseudonym is not one this node generates"),
            ));
        }
        let dir = home.relink_dir();
        create_private_dir(&dir).map_err(NodeError::io(format!("creating {}", dir.display())))?;
        let plain =
            Zeroizing::new(serde_json::to_vec(self).map_err(|e| {
                NodeError::io("encoding a re-link table")(std::io::Error::other(e))
            })?);
        let encrypt = || -> std::io::Result<Vec<u8>> {
            let enc = age::Encryptor::with_recipients(std::iter::once(to as &dyn age::Recipient))
                .map_err(std::io::Error::other)?;
            let mut out = Vec::with_capacity(plain.len() + 512);
            let mut w = enc.wrap_output(&mut out)?;
            w.write_all(&plain)?;
            w.finish()?;
            Ok(out)
        };
        let ciphertext = encrypt().map_err(NodeError::io("encrypting a re-link table"))?;
        let path = Self::path(home, &self.pseudonym);
        write_atomic(&path, &ciphertext)
            .map_err(NodeError::io(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// Decrypts the table of `pseudonym` with this node's keyring (current or retired keys).
    pub fn load(home: &NodeHome, keyring: &Keyring, pseudonym: &str) -> Result<Self, NodeError> {
        if !is_pseudonym(pseudonym) {
            return Err(NodeError::Input {
                arg: PathBuf::from(pseudonym),
                problem: "is not a pseudonym of this node (p- followed by 16 hex digits)".into(),
            });
        }
        let path = Self::path(home, pseudonym);
        let file = std::fs::File::open(&path)
            .map_err(NodeError::io(format!("reading {}", path.display())))?;
        let damaged = || NodeError::CorruptState(path.clone(), "not a re-link table of this node");
        let decryptor =
            age::Decryptor::new_buffered(std::io::BufReader::new(file)).map_err(|_| damaged())?;
        let identities: Vec<&age::x25519::Identity> =
            keyring.all().map(|k| k.age_identity()).collect();
        let reader = decryptor
            .decrypt(identities.iter().map(|i| *i as &dyn age::Identity))
            .map_err(|_| damaged())?;
        let mut plain = Zeroizing::new(Vec::new());
        reader
            .take(MAX_RELINK_BYTES + 1)
            .read_to_end(&mut plain)
            .map_err(|_| damaged())?;
        if plain.len() as u64 > MAX_RELINK_BYTES {
            return Err(NodeError::CorruptState(path, "too large"));
        }
        let table: RelinkTable = serde_json::from_slice(&plain).map_err(|_| damaged())?;
        if table.format != RELINK_FORMAT {
            return Err(NodeError::CorruptState(
                path,
                "unknown format, probably from a newer dossier",
            ));
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_bundle::FacilityKeys;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pseudonyms_are_random_and_well_formed() {
        let a = new_pseudonym().unwrap();
        let b = new_pseudonym().unwrap();
        assert_ne!(a, b);
        assert!(is_pseudonym(&a), "{a}");
        assert_eq!(a.len(), 18);
        for bad in [
            "p-",
            "p-0123456789abcdeg",
            "x-0123456789abcdef",
            "p-../../etc/passwd1",
        ] {
            assert!(!is_pseudonym(bad), "{bad}");
        }
    }

    #[test]
    fn tables_are_encrypted_private_and_read_back_with_the_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let keys = FacilityKeys::generate().unwrap();
        let recipient: age::x25519::Recipient = keys.age_recipient().parse().unwrap();
        let ring = Keyring::new(keys);
        let p = new_pseudonym().unwrap();
        let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        let mut t = RelinkTable::new(
            &p,
            "dr.lee",
            vec![FacilityId::parse("th-bangkok-care").unwrap()],
            now,
        );
        t.parts.push(RelinkPart {
            part: "records/ips.json".into(),
            format: "json".into(),
            removed: vec![RelinkItem {
                resource: "Patient/x".into(),
                path: "identifier[0]".into(),
                value: "{\"value\":\"123-45-6789\"}".into(),
            }],
        });
        let path = t.save(&home, &recipient).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
        assert!(!bytes.windows(11).any(|w| w == b"123-45-6789"));
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&home.relink_dir()), 0o700);
        let back = RelinkTable::load(&home, &ring, &p).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{back:?}").contains("123-45-6789"));

        // Another node's keys cannot read it.
        let other = Keyring::new(FacilityKeys::generate().unwrap());
        assert!(matches!(
            RelinkTable::load(&home, &other, &p),
            Err(NodeError::CorruptState(..))
        ));
        assert!(RelinkTable::load(&home, &ring, "../keyring").is_err());
    }
}
