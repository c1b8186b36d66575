//! dossier's age layer on its own, for files that are age files but not bundles.
//!
//! Why this module exists: third-party age test vectors (the C2SP CCTV set, run by
//! `tests/tests/cctv_age.rs`) are raw age files whose payloads are not dossier containers.
//! To check them against *our* open path rather than against the `age` crate alone, this
//! module exposes the exact code [`crate::open`] decrypts a bundle with — the bounded header
//! (`MAX_AGE_HEADER_BYTES`), the refusal of passphrase files, the key sets of a [`Keyring`]
//! tried current first, the same [`OpenError`] for every failure — and the same rule about
//! releasing plaintext: nothing is handed out until the whole payload, final chunk
//! included, has authenticated.
//!
//! It is two passes, like opening a bundle (docs/protocol.md §11):
//!
//! 1. [`open_age_file`] parses the header and unwraps the file key (checks 1-4 of §11.1);
//!    [`AgePayload::verify`] then decrypts the payload to its authenticated end, hashing
//!    and discarding it (check 5). Only it makes a [`VerifiedPayload`].
//! 2. [`AgePayload::extract`] decrypts a second reading of the file into a sink and checks
//!    that the bytes are the verified ones.
//!
//! [`decrypt_passphrase_file`] is the other age layer dossier has: the one that opens the
//! node's keyring (§6), scrypt with a bounded work factor.

use std::io::{self, Read, Write};

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::identity::{Keyring, KeyringError, MAX_KEYRING_BYTES};
use crate::open::{OpenError, PayloadStream, decrypt_payload, payload_read_error};

/// Largest scrypt work factor (log2 N) a passphrase file may demand: N = 2^16, r = 8 is
/// 64 MiB, the node's memory budget. The keyring is written with
/// [`crate::identity::KEYRING_SCRYPT_LOG_N`] (15); without this bound the `age` crate
/// accepts up to about 16 s of work on the machine at hand, gigabytes of memory on a fast
/// one.
pub const MAX_PASSPHRASE_LOG_N: u8 = 16;

/// An age file whose header parsed and whose file key one of the keyring's key sets
/// unwrapped. Its payload is not trusted yet and can only be verified or, with proof of
/// verification, extracted.
pub struct AgePayload<R: Read> {
    stream: PayloadStream<R>,
}

/// Proof that a payload decrypted and authenticated to its end: its length and SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPayload {
    length: u64,
    sha256: [u8; 32],
}

impl VerifiedPayload {
    /// Length of the plaintext, in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }
    /// SHA-256 of the plaintext.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

/// Pass 1, header: reads the bounded age header and unwraps the file key with `keyring`,
/// exactly as opening a bundle does. Reads nothing of the payload beyond its first buffer.
pub fn open_age_file<R: Read>(input: R, keyring: &Keyring) -> Result<AgePayload<R>, OpenError> {
    Ok(AgePayload {
        stream: decrypt_payload(input, keyring)?,
    })
}

impl<R: Read> AgePayload<R> {
    /// Pass 1, payload: decrypts to the authenticated end, hashing and discarding every
    /// byte. Fails on the first chunk that does not authenticate, on truncation and on data
    /// after the final chunk.
    pub fn verify(mut self) -> Result<VerifiedPayload, OpenError> {
        self.copy_hashed(&mut io::sink())
    }

    /// Pass 2: decrypts into `sink`, then checks that the plaintext is the one `verified`
    /// describes (the input may have been swapped since pass 1). On an error `sink` may
    /// hold a prefix; as with bundles, the caller releases its content only on `Ok`.
    pub fn extract(
        mut self,
        verified: &VerifiedPayload,
        sink: &mut dyn Write,
    ) -> Result<(), OpenError> {
        if &self.copy_hashed(sink)? != verified {
            return Err(OpenError::Tampered(
                "the file changed between verification and extraction".into(),
            ));
        }
        Ok(())
    }

    fn copy_hashed(&mut self, sink: &mut dyn Write) -> Result<VerifiedPayload, OpenError> {
        let mut hash = Sha256::new();
        let mut length = 0u64;
        let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
        loop {
            let n = match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(payload_read_error(e)),
            };
            hash.update(&buf[..n]);
            length += n as u64;
            sink.write_all(&buf[..n]).map_err(OpenError::Sink)?;
        }
        sink.flush().map_err(OpenError::Sink)?;
        Ok(VerifiedPayload {
            length,
            sha256: hash.finalize().into(),
        })
    }
}

/// The age layer of [`Keyring::read_encrypted`]: an age file with exactly one `scrypt`
/// stanza, decrypted with `passphrase`, the work factor bounded by
/// [`MAX_PASSPHRASE_LOG_N`], the plaintext by 1 MiB (§6). The whole
/// plaintext is read and authenticated before it is returned.
///
/// Errors: not a passphrase file, malformed, work factor too high, plaintext too large or
/// damaged → [`KeyringError::Corrupt`]; the passphrase does not unwrap the file key →
/// [`KeyringError::WrongPassphrase`]; reading failed → [`KeyringError::Io`].
pub fn decrypt_passphrase_file<R: Read>(
    input: R,
    passphrase: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let decryptor = age::Decryptor::new(input).map_err(|_| KeyringError::Corrupt)?;
    if !decryptor.is_scrypt() {
        return Err(KeyringError::Corrupt);
    }
    let mut identity = age::scrypt::Identity::new(passphrase.clone());
    identity.set_max_work_factor(MAX_PASSPHRASE_LOG_N);
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => KeyringError::WrongPassphrase,
            age::DecryptError::Io(e) => KeyringError::Io(e),
            _ => KeyringError::Corrupt,
        })?;
    let mut plain = Zeroizing::new(Vec::new());
    reader
        .take(MAX_KEYRING_BYTES + 1)
        .read_to_end(&mut plain)
        .map_err(|_| KeyringError::Corrupt)?;
    if plain.len() as u64 > MAX_KEYRING_BYTES {
        return Err(KeyringError::Corrupt);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FacilityKeys;

    fn keyring() -> Keyring {
        Keyring::new(FacilityKeys::generate().unwrap())
    }

    fn encrypt_to(keys: &Keyring, plain: &[u8]) -> Vec<u8> {
        let to: age::x25519::Recipient = keys.current().age_recipient().parse().unwrap();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&to as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(plain).unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn verify_then_extract_releases_exactly_the_verified_bytes() {
        let keys = keyring();
        let plain = vec![7u8; 200_000];
        let file = encrypt_to(&keys, &plain);
        let verified = open_age_file(&file[..], &keys).unwrap().verify().unwrap();
        assert_eq!(verified.length(), plain.len() as u64);
        let mut out = Vec::new();
        open_age_file(&file[..], &keys)
            .unwrap()
            .extract(&verified, &mut out)
            .unwrap();
        assert_eq!(out, plain);
        // A different file with the same keys does not pass as the verified one.
        let other = encrypt_to(&keys, &plain[1..]);
        let e = open_age_file(&other[..], &keys)
            .unwrap()
            .extract(&verified, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(e, OpenError::Tampered(_)), "{e}");
    }

    #[test]
    fn a_damaged_last_chunk_fails_verification() {
        let keys = keyring();
        let mut file = encrypt_to(&keys, &[1u8; 100_000]);
        let last = file.len() - 1;
        file[last] ^= 1;
        let e = open_age_file(&file[..], &keys)
            .unwrap()
            .verify()
            .unwrap_err();
        assert!(matches!(e, OpenError::Tampered(_)), "{e}");
    }

    #[test]
    fn scrypt_work_factor_over_the_memory_budget_is_refused() {
        // N = 2^17 is 128 MiB: over the node's budget. Before MAX_PASSPHRASE_LOG_N the bound
        // was the age crate's default (about 16 s of work here, gigabytes of memory on a
        // fast machine) and this file opened.
        let pass = SecretString::from("correct horse battery".to_owned());
        let file = |log_n: u8| {
            let mut recipient = age::scrypt::Recipient::new(pass.clone());
            recipient.set_work_factor(log_n);
            let enc =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .unwrap();
            let mut out = Vec::new();
            let mut w = enc.wrap_output(&mut out).unwrap();
            w.write_all(b"{}").unwrap();
            w.finish().unwrap();
            out
        };
        let within = file(MAX_PASSPHRASE_LOG_N - 6);
        assert_eq!(
            &decrypt_passphrase_file(&within[..], &pass).unwrap()[..],
            b"{}"
        );
        let over = file(MAX_PASSPHRASE_LOG_N + 1);
        assert!(matches!(
            decrypt_passphrase_file(&over[..], &pass),
            Err(KeyringError::Corrupt)
        ));
    }
}
