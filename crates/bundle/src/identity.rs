//! A facility's secret keys and the passphrase-encrypted keyring that holds them.
//!
//! [`FacilityKeys`] pairs an age X25519 identity (to decrypt bundles) with an Ed25519
//! signing key (to sign cards and manifests). Both zeroize on drop; neither type implements
//! `Debug`, `Display` or `Clone`, and key material leaves only through
//! [`FacilityKeys::export_age_identity`], which callers must ask for by name.
//!
//! A [`Keyring`] is the current key set plus every retired one (so bundles sealed to an old
//! key still open after `dossier key rotate`). At rest it is an age file encrypted to the
//! user's passphrase with scrypt (docs/protocol.md §6).

use std::io::{self, Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::fingerprint::KeyId;
use crate::sig::{self, SigContext};
use crate::timestamp::Timestamp;

/// scrypt work factor (log2 N) for the keyring at rest: N = 2^15, r = 8 uses 32 MiB and
/// about 0.1 s here. Chosen so unlocking fits the node's 64 MiB memory budget; the
/// passphrase length rule carries the rest (docs/threat-model.md, "Keys at rest").
pub const KEYRING_SCRYPT_LOG_N: u8 = 15;

/// Largest decrypted keyring accepted, in bytes (a keyring with hundreds of rotations).
pub(crate) const MAX_KEYRING_BYTES: u64 = 1024 * 1024;

/// Why a keyring could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The passphrase did not decrypt the keyring.
    #[error("wrong passphrase for this node's keyring; try again, or check $DOSSIER_PASSPHRASE")]
    WrongPassphrase,
    /// The file is not a keyring or was damaged.
    #[error("keyring file is damaged or not a dossier keyring; restore it from backup")]
    Corrupt,
    /// The keyring was written by a newer dossier.
    #[error("keyring is from a newer dossier version; upgrade dossier")]
    UnknownVersion,
    /// The operating system's random generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// Reading or writing failed.
    #[error("keyring I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// One facility key set: age X25519 identity + Ed25519 signing key.
pub struct FacilityKeys {
    age: age::x25519::Identity,
    signing: SigningKey,
}

impl FacilityKeys {
    /// Fresh keys from the operating system's generator.
    pub fn generate() -> Result<Self, KeyringError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(KeyringError::Random)?;
        Ok(Self {
            age: age::x25519::Identity::generate(),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// Keys from their text forms: an `AGE-SECRET-KEY-1...` string and a base64 Ed25519 seed.
    /// Used for the keyring and for fixed-key test vectors.
    pub fn from_secrets(age_identity: &str, signing_seed_b64: &str) -> Result<Self, KeyringError> {
        let age =
            age::x25519::Identity::from_str(age_identity).map_err(|_| KeyringError::Corrupt)?;
        let seed = Zeroizing::new(
            B64.decode(signing_seed_b64)
                .map_err(|_| KeyringError::Corrupt)?,
        );
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| KeyringError::Corrupt)?;
        Ok(Self {
            age,
            signing: SigningKey::from_bytes(seed),
        })
    }

    /// The age recipient (`age1...`) others encrypt to.
    pub fn age_recipient(&self) -> String {
        self.age.to_public().to_string()
    }

    /// The Ed25519 verifying key others check signatures with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The id (and so the fingerprint) of this key set.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self.verifying_key().as_bytes(), &self.age_recipient())
    }

    /// The age identity, for decrypting bundles.
    pub fn age_identity(&self) -> &age::x25519::Identity {
        &self.age
    }

    /// The X25519 secret as a standard `AGE-SECRET-KEY-1...` identity string, for
    /// `dossier key export-age`. The caller owns keeping it secret.
    pub fn export_age_identity(&self) -> SecretString {
        self.age.to_string()
    }

    pub(crate) fn sign(&self, context: SigContext, message: &[u8]) -> [u8; 64] {
        sig::sign(&self.signing, context, message)
    }

    fn to_stored(&self) -> StoredKeys {
        StoredKeys {
            age_identity: Zeroizing::new(self.age.to_string().expose_secret().to_owned()),
            signing_seed: Zeroizing::new(B64.encode(self.signing.to_bytes())),
            retired_at: None,
        }
    }
}

/// A key set that was replaced by `dossier key rotate`, kept to open older bundles.
pub struct RetiredKeys {
    /// The retired keys.
    pub keys: FacilityKeys,
    /// When they were retired.
    pub retired_at: Timestamp,
}

/// The node's current keys and all retired ones.
pub struct Keyring {
    current: FacilityKeys,
    retired: Vec<RetiredKeys>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeyring {
    format: String,
    current: StoredKeys,
    retired: Vec<StoredKeys>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKeys {
    age_identity: Zeroizing<String>,
    signing_seed: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retired_at: Option<Timestamp>,
}

const KEYRING_FORMAT: &str = "dossier-keyring/v1";

impl Keyring {
    /// A keyring holding only `current`.
    pub fn new(current: FacilityKeys) -> Self {
        Self {
            current,
            retired: Vec::new(),
        }
    }

    /// The keys in use.
    pub fn current(&self) -> &FacilityKeys {
        &self.current
    }

    /// Keys retired by rotation, oldest first.
    pub fn retired(&self) -> &[RetiredKeys] {
        &self.retired
    }

    /// Every key set, current first; these are tried in turn to decrypt a bundle.
    pub fn all(&self) -> impl Iterator<Item = &FacilityKeys> {
        std::iter::once(&self.current).chain(self.retired.iter().rev().map(|r| &r.keys))
    }

    /// Makes `next` current and retires the present keys at `now`.
    pub fn rotate(&mut self, next: FacilityKeys, now: Timestamp) {
        let old = std::mem::replace(&mut self.current, next);
        self.retired.push(RetiredKeys {
            keys: old,
            retired_at: now,
        });
    }

    /// Writes the keyring as an age file encrypted to `passphrase` (scrypt,
    /// [`KEYRING_SCRYPT_LOG_N`]).
    pub fn write_encrypted<W: Write>(
        &self,
        passphrase: &SecretString,
        out: W,
    ) -> Result<(), KeyringError> {
        let stored = StoredKeyring {
            format: KEYRING_FORMAT.to_owned(),
            current: self.current.to_stored(),
            retired: self
                .retired
                .iter()
                .map(|r| StoredKeys {
                    retired_at: Some(r.retired_at),
                    ..r.keys.to_stored()
                })
                .collect(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&stored).map_err(|_| KeyringError::Corrupt)?);
        let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
        recipient.set_work_factor(KEYRING_SCRYPT_LOG_N);
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|_| KeyringError::Corrupt)?;
        let mut w = encryptor.wrap_output(out)?;
        w.write_all(&plain)?;
        w.finish()?;
        Ok(())
    }

    /// Decrypts and parses a keyring written by [`Keyring::write_encrypted`].
    pub fn read_encrypted<R: Read>(
        input: R,
        passphrase: &SecretString,
    ) -> Result<Self, KeyringError> {
        // The age layer, with the scrypt work factor bounded (crate::age_file).
        let plain = crate::age_file::decrypt_passphrase_file(input, passphrase)?;
        #[derive(serde::Deserialize)]
        struct FormatOnly {
            format: String,
        }
        match serde_json::from_slice::<FormatOnly>(&plain) {
            Ok(f) if f.format != KEYRING_FORMAT && f.format.starts_with("dossier-keyring/") => {
                return Err(KeyringError::UnknownVersion);
            }
            _ => {}
        }
        let stored: StoredKeyring =
            serde_json::from_slice(&plain).map_err(|_| KeyringError::Corrupt)?;
        if stored.format != KEYRING_FORMAT {
            return Err(if stored.format.starts_with("dossier-keyring/") {
                KeyringError::UnknownVersion
            } else {
                KeyringError::Corrupt
            });
        }
        let current =
            FacilityKeys::from_secrets(&stored.current.age_identity, &stored.current.signing_seed)?;
        let retired = stored
            .retired
            .iter()
            .map(|k| {
                Ok(RetiredKeys {
                    keys: FacilityKeys::from_secrets(&k.age_identity, &k.signing_seed)?,
                    retired_at: k.retired_at.ok_or(KeyringError::Corrupt)?,
                })
            })
            .collect::<Result<_, KeyringError>>()?;
        Ok(Self { current, retired })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn keyring_round_trip_with_rotation() {
        let mut ring = Keyring::new(FacilityKeys::generate().unwrap());
        let first = ring.current().key_id();
        ring.rotate(
            FacilityKeys::generate().unwrap(),
            Timestamp::from_unix(1_800_000_000).unwrap(),
        );
        let mut buf = Vec::new();
        ring.write_encrypted(&pass("correct horse battery"), &mut buf)
            .unwrap();
        let back = Keyring::read_encrypted(&buf[..], &pass("correct horse battery")).unwrap();
        assert_eq!(back.current().key_id(), ring.current().key_id());
        assert_eq!(back.retired().len(), 1);
        assert_eq!(back.retired()[0].keys.key_id(), first);
        assert!(matches!(
            Keyring::read_encrypted(&buf[..], &pass("wrong horse battery")),
            Err(KeyringError::WrongPassphrase)
        ));
    }

    #[test]
    fn keyring_does_not_contain_plain_secrets() {
        let ring = Keyring::new(FacilityKeys::generate().unwrap());
        let mut buf = Vec::new();
        ring.write_encrypted(&pass("correct horse battery"), &mut buf)
            .unwrap();
        let secret = ring.current().export_age_identity();
        let needle = secret.expose_secret().as_bytes();
        assert!(!buf.windows(needle.len()).any(|w| w == needle));
        assert!(buf.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(
            Keyring::read_encrypted(&b"hello"[..], &pass("x")),
            Err(KeyringError::Corrupt)
        ));
    }
}
