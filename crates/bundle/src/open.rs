//! Opening: verify everything, then release the parts — in that order, always.
//!
//! Opening is two passes over the ciphertext (docs/protocol.md §11):
//!
//! 1. [`verify`] decrypts the bundle, hashes every part without keeping it, and checks the
//!    manifest signature against the sender's pinned key, the recipient list and every hash.
//!    Only it can construct a [`VerifiedBundle`]. A bundle that fails any check never puts a
//!    plaintext byte on disk.
//! 2. [`extract`] requires that `VerifiedBundle`, decrypts again, streams each part into a
//!    [`PartSink`] (the node's private staging directory) and checks that the bytes are the
//!    ones verified. Only if all match does it return [`Released`], which the sink needs to
//!    move the parts into place.
//!
//! The second pass re-checks every hash, so a file swapped between the passes is caught.

use std::io::{self, BufReader, Read};

use crate::card::FacilityCard;
use crate::container::{ContainerError, Discard, PartVisitor, read_container};
use crate::fingerprint::Fingerprint;
use crate::identity::Keyring;
use crate::ids::FacilityId;
use crate::limits::MAX_AGE_HEADER_BYTES;
use crate::manifest::{Manifest, ManifestError, PartPath, PartyRef};
use crate::sig::{self, SigContext};
use crate::timestamp::Timestamp;

/// Why a bundle was not opened. Messages never include part names, subjects or patient
/// references; parts are referred to by position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not an age file at all.
    #[error("this is not a dossier bundle (no age-encryption.org/v1 header)")]
    NotABundle,
    /// An age file encrypted with a passphrase (such as a node's keyring), not a bundle.
    #[error(
        "this is an age file encrypted with a passphrase (perhaps a keyring), not a dossier bundle"
    )]
    PassphraseEncrypted,
    /// An age format from a newer version.
    #[error(
        "the bundle uses an unknown age format, probably from a newer version; upgrade dossier"
    )]
    UnknownFormat,
    /// The age header is larger than any bundle dossier makes.
    #[error(
        "the bundle header is larger than {MAX_AGE_HEADER_BYTES} bytes (too many recipients); refusing it"
    )]
    HeaderTooLarge,
    /// None of this node's keys can decrypt it.
    #[error("this bundle is not addressed to this node (none of its keys can decrypt it)")]
    NotForMe,
    /// Decrypts, but this node is not in the signed recipient list (e.g. a recipient
    /// re-encrypted it to us: surreptitious forwarding).
    #[error(
        "this bundle decrypts but its signed recipient list does not name this node; it was forwarded by someone other than its sender"
    )]
    NotListedRecipient,
    /// The ciphertext was altered or cut short.
    #[error("the bundle is damaged or was tampered with ({0}); ask the sender to send it again")]
    Tampered(String),
    /// The manifest is invalid or from a newer version.
    #[error("the bundle's manifest is invalid: {0}")]
    Manifest(ManifestError),
    /// The sender is not a pinned contact.
    #[error(
        "the sender {0} is not one of your contacts; the bundle was not opened. If you expect records from them, get their card, check its fingerprint with them and run `dossier contacts add`"
    )]
    UnknownSender(FacilityId),
    /// The sender's key is not the pinned one.
    #[error(
        "the bundle claims to be from {sender} but is signed with key {presented}, not the pinned key {pinned}. If {sender} changed keys, get their new card (signed by the old key) or confirm the new fingerprint with them by phone"
    )]
    SenderKeyMismatch {
        /// The sender id claimed.
        sender: FacilityId,
        /// Pinned fingerprint.
        pinned: Fingerprint,
        /// Fingerprint of the key named in the bundle.
        presented: Fingerprint,
    },
    /// The sender signed with a key its owner has revoked (docs/protocol.md §17).
    #[error(
        "the bundle is signed by {sender} with key {fingerprint}, which {sender} revoked at {revoked_at}; it was not opened. Do not trust it: ask {sender} to send it again after you have checked their new fingerprint with them by phone"
    )]
    SenderKeyRevoked {
        /// The sender id claimed.
        sender: FacilityId,
        /// Fingerprint of the revoked key named in the bundle.
        fingerprint: Fingerprint,
        /// When the owner revoked it.
        revoked_at: Timestamp,
    },
    /// The signature does not verify.
    #[error("the bundle's signature does not verify: it was altered or forged; do not trust it")]
    BadSignature,
    /// Reading the input failed for a reason other than its content.
    #[error("reading the bundle failed: {0}")]
    Io(io::Error),
    /// Writing a part failed (disk full, permissions).
    #[error("writing the opened parts failed: {0}; nothing was released")]
    Sink(io::Error),
}

/// What kind of failure, for exit codes (see docs/protocol.md §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Tampered, truncated, forged, or not for this node.
    Verification,
    /// The sender's pinned key differs.
    PinMismatch,
    /// The sender is not a pinned contact.
    UnknownSender,
    /// Local I/O.
    Local,
}

impl OpenError {
    /// The class of failure.
    pub fn class(&self) -> FailureClass {
        match self {
            OpenError::UnknownSender(_) => FailureClass::UnknownSender,
            OpenError::SenderKeyMismatch { .. } | OpenError::SenderKeyRevoked { .. } => {
                FailureClass::PinMismatch
            }
            OpenError::Io(_) | OpenError::Sink(_) => FailureClass::Local,
            _ => FailureClass::Verification,
        }
    }
}

/// Why a sender could not be resolved to a pinned card.
#[derive(Debug)]
pub enum SenderLookupError {
    /// No pin for this id.
    NotAContact,
    /// A pin exists but for other keys.
    KeyMismatch {
        /// Fingerprint of the pinned (current) key.
        pinned: Fingerprint,
    },
    /// The key is pinned, but its owner revoked it (docs/protocol.md §17).
    KeyRevoked {
        /// When the owner revoked it.
        revoked_at: Timestamp,
    },
}

/// The node's pins, as the verifier sees them.
pub trait SenderDirectory {
    /// The pinned card (current or retired) for `sender.id` whose key id is `sender.key`.
    fn sender_card(&self, sender: &PartyRef) -> Result<FacilityCard, SenderLookupError>;
}

/// Proof that a bundle passed every check. Only [`verify`] makes one.
#[derive(Debug)]
pub struct VerifiedBundle {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    sender: FacilityCard,
}

impl VerifiedBundle {
    /// The signed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The pinned card that verified the signature.
    pub fn sender(&self) -> &FacilityCard {
        &self.sender
    }
}

/// Proof that [`extract`] streamed exactly the verified parts into the sink.
#[derive(Debug)]
pub struct Released {
    _private: (),
}

/// Receives parts during [`extract`].
pub trait PartSink {
    /// Writes part `index` at `path` from `content`; must read it to the end.
    fn write_part(
        &mut self,
        index: usize,
        path: &PartPath,
        content: &mut dyn Read,
    ) -> io::Result<()>;
}

/// Pass 1: decrypt, hash, check signature, pins, recipients and hashes. Writes nothing.
pub fn verify<R: Read>(
    input: R,
    keyring: &Keyring,
    me: &FacilityId,
    pins: &dyn SenderDirectory,
) -> Result<VerifiedBundle, OpenError> {
    let contents = decrypt_and_read(input, keyring, &mut Discard)?;
    let manifest = Manifest::parse(&contents.manifest).map_err(OpenError::Manifest)?;
    let sender = pins.sender_card(&manifest.sender).map_err(|e| match e {
        SenderLookupError::NotAContact => OpenError::UnknownSender(manifest.sender.id.clone()),
        SenderLookupError::KeyMismatch { pinned } => OpenError::SenderKeyMismatch {
            sender: manifest.sender.id.clone(),
            pinned,
            presented: manifest.sender.key.fingerprint(),
        },
        SenderLookupError::KeyRevoked { revoked_at } => OpenError::SenderKeyRevoked {
            sender: manifest.sender.id.clone(),
            fingerprint: manifest.sender.key.fingerprint(),
            revoked_at,
        },
    })?;
    if sender.id() != &manifest.sender.id || sender.key_id() != manifest.sender.key {
        return Err(OpenError::BadSignature);
    }
    if !sig::verify(
        sender.verifying_key(),
        SigContext::Manifest,
        &contents.manifest,
        &contents.signature,
    ) {
        return Err(OpenError::BadSignature);
    }
    let mine = |r: &PartyRef| &r.id == me && keyring.all().any(|k| k.key_id() == r.key);
    if !(mine(&manifest.sender) || manifest.recipients.iter().any(mine)) {
        return Err(OpenError::NotListedRecipient);
    }
    check_parts_match(&manifest, &contents.parts)?;
    Ok(VerifiedBundle {
        manifest,
        manifest_bytes: contents.manifest,
        sender,
    })
}

/// Pass 2: decrypt again and stream the parts into `sink`, checking they are exactly the
/// verified ones. The caller releases the sink's output only with the returned proof.
pub fn extract<R: Read>(
    input: R,
    keyring: &Keyring,
    verified: &VerifiedBundle,
    sink: &mut dyn PartSink,
) -> Result<Released, OpenError> {
    let mut visitor = SinkVisitor { sink };
    let contents = decrypt_and_read(input, keyring, &mut visitor)?;
    if contents.manifest != verified.manifest_bytes {
        return Err(OpenError::Tampered(
            "the bundle changed between verification and extraction".into(),
        ));
    }
    check_parts_match(&verified.manifest, &contents.parts)?;
    Ok(Released { _private: () })
}

fn check_parts_match(
    manifest: &Manifest,
    seen: &[(PartPath, u64, [u8; 32])],
) -> Result<(), OpenError> {
    if manifest.parts.len() != seen.len() {
        return Err(OpenError::Tampered(format!(
            "the manifest lists {} parts but the bundle holds {}",
            manifest.parts.len(),
            seen.len()
        )));
    }
    for (i, (entry, (path, len, hash))) in manifest.parts.iter().zip(seen).enumerate() {
        if &entry.path != path
            || entry.length != *len
            || !bool::from(subtle::ConstantTimeEq::ct_eq(&entry.sha256[..], &hash[..]))
        {
            return Err(OpenError::Tampered(format!(
                "part #{i} does not match its signed manifest entry"
            )));
        }
    }
    Ok(())
}

struct SinkVisitor<'a> {
    sink: &'a mut dyn PartSink,
}
impl PartVisitor for SinkVisitor<'_> {
    fn visit(
        &mut self,
        index: usize,
        path: &PartPath,
        content: &mut dyn Read,
    ) -> Result<(), ContainerError> {
        let mut tracked = ReadErrorTracker {
            inner: content,
            failed: None,
        };
        match self.sink.write_part(index, path, &mut tracked) {
            Ok(()) => Ok(()),
            Err(e) => match tracked.failed.take() {
                // The sink failed because reading the bundle failed: tampering or truncation.
                Some(read_err) => Err(ContainerError::Read(read_err)),
                None => Err(ContainerError::Visit(e)),
            },
        }
    }
}

/// Remembers a read error so a sink's failure can be attributed to the bundle, not the disk.
struct ReadErrorTracker<'a> {
    inner: &'a mut dyn Read,
    failed: Option<io::Error>,
}
impl Read for ReadErrorTracker<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// Reads the bounded age header, decrypts with every key of `keyring`, reads the container.
fn decrypt_and_read<R: Read>(
    input: R,
    keyring: &Keyring,
    visitor: &mut dyn PartVisitor,
) -> Result<crate::container::ContainerContents, OpenError> {
    let stream = decrypt_payload(input, keyring)?;
    read_container(stream, visitor).map_err(|e| match e {
        ContainerError::Visit(e) => OpenError::Sink(e),
        ContainerError::Read(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            payload_read_error(e)
        }
        ContainerError::Read(_) => OpenError::Tampered(
            "the container could not be read (it is not a well-formed ustar stream)".into(),
        ),
        ContainerError::BadPath(m) => OpenError::Manifest(m),
        other => OpenError::Tampered(other.to_string()),
    })
}

/// The decrypted payload of an age file, as [`decrypt_payload`] hands it out.
pub(crate) type PayloadStream<R> =
    age::stream::StreamReader<BufReader<io::Chain<io::Cursor<Vec<u8>>, R>>>;

/// The age layer of opening (checks 1-4 of docs/protocol.md §11.1): reads the bounded
/// header, refuses a passphrase file, and unwraps the file key with every key set of
/// `keyring` (current first). The payload is not read yet; its chunks authenticate as they
/// are read, so the caller must read it to the end before trusting any of it.
pub(crate) fn decrypt_payload<R: Read>(
    mut input: R,
    keyring: &Keyring,
) -> Result<PayloadStream<R>, OpenError> {
    let header = read_bounded_header(&mut input)?;
    let input = BufReader::with_capacity(IO_BUFFER, io::Cursor::new(header).chain(input));
    let decryptor = age::Decryptor::new_buffered(input).map_err(map_age_error)?;
    if decryptor.is_scrypt() {
        return Err(OpenError::PassphraseEncrypted);
    }
    let identities: Vec<&dyn age::Identity> = keyring
        .all()
        .map(|k| k.age_identity() as &dyn age::Identity)
        .collect();
    decryptor
        .decrypt(identities.into_iter())
        .map_err(map_age_error)
}

/// What a failed read of the decrypted payload means (check 5 of §11.1): a chunk that does
/// not authenticate (`InvalidData`) or a file cut short is tampering; any other error is
/// the input's own.
pub(crate) fn payload_read_error(e: io::Error) -> OpenError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => OpenError::Tampered("the bundle is truncated".into()),
        io::ErrorKind::InvalidData => {
            OpenError::Tampered("the encrypted payload does not authenticate".into())
        }
        _ => OpenError::Io(e),
    }
}

const IO_BUFFER: usize = 64 * 1024;

/// Reads the age header (through the `---` MAC line) into memory, refusing one longer than
/// [`MAX_AGE_HEADER_BYTES`] before age parses it. Bytes after the header are kept too.
fn read_bounded_header<R: Read>(input: &mut R) -> Result<Vec<u8>, OpenError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // Only the first MAX_AGE_HEADER_BYTES may hold the header, however the input is
        // split into reads: the limit is exact.
        let window = &buf[..buf.len().min(MAX_AGE_HEADER_BYTES)];
        if let Some(mac_at) = find(window, b"\n--- ") {
            if window[mac_at + 1..].contains(&b'\n') {
                if buf.starts_with(AGE_V1_LINE)
                    && !stanza_bodies_end_short(&buf[AGE_V1_LINE.len()..=mac_at])
                {
                    return Err(OpenError::Tampered("the age header is invalid".into()));
                }
                return Ok(buf);
            }
        }
        if buf.len() >= MAX_AGE_HEADER_BYTES {
            return Err(OpenError::HeaderTooLarge);
        }
        let want = chunk.len().min(MAX_AGE_HEADER_BYTES - buf.len());
        let n = match input.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OpenError::Io(e)),
        };
        if n == 0 {
            return if buf.starts_with(b"age-encryption.org/v1\n") {
                Err(OpenError::Tampered(
                    "the bundle is truncated inside its header".into(),
                ))
            } else if buf.starts_with(b"age-encryption.org/") {
                Err(OpenError::UnknownFormat)
            } else {
                Err(OpenError::NotABundle)
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        let prefix = &buf[..buf.len().min(19)];
        if !b"age-encryption.org/".starts_with(prefix) {
            return Err(OpenError::NotABundle);
        }
    }
}

const AGE_V1_LINE: &[u8] = b"age-encryption.org/v1\n";

/// Part of check 2 of docs/protocol.md §11.1 that the age crate (0.12) leaves out: in an age
/// v1 header every stanza's body ends with a line shorter than 64 columns, possibly empty
/// (c2sp.org/age). `stanzas` is the header between the version line and the MAC line, each
/// line ending in `\n`. Body lines are base64 and never start with `-`; other defects are
/// left to the age parser. Without this, a stanza with no final line is accepted (CCTV age
/// vectors `stanza_missing_body`, `stanza_missing_final_line`).
fn stanza_bodies_end_short(stanzas: &[u8]) -> bool {
    let Some(lines) = stanzas.strip_suffix(b"\n") else {
        return true;
    };
    // Inside a stanza whose final, short line has not been seen yet.
    let mut open = false;
    for line in lines.split(|&b| b == b'\n') {
        if line.starts_with(b"-") {
            if open {
                return false;
            }
            open = line.starts_with(b"-> ");
        } else if line.len() < 64 {
            open = false;
        }
    }
    !open
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn map_age_error(e: age::DecryptError) -> OpenError {
    match e {
        age::DecryptError::NoMatchingKeys => OpenError::NotForMe,
        age::DecryptError::UnknownFormat => OpenError::UnknownFormat,
        age::DecryptError::InvalidHeader => OpenError::Tampered("the age header is invalid".into()),
        age::DecryptError::InvalidMac => {
            OpenError::Tampered("the age header MAC does not verify".into())
        }
        age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            OpenError::Tampered("the bundle is truncated".into())
        }
        age::DecryptError::Io(e) => OpenError::Io(e),
        _ => OpenError::Tampered("the file key could not be decrypted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{PartSource, SealRequest, seal};
    use crate::{BundleId, BundleKind, Timestamp};
    use std::collections::HashMap;

    struct Party {
        keys: Keyring,
        card: FacilityCard,
    }

    fn party(id: &str, cc: &str) -> Party {
        let (keys, card) = crate::test_support::facility(id, cc);
        Party {
            keys: Keyring::new(keys),
            card,
        }
    }

    struct Dir(Vec<FacilityCard>);
    impl SenderDirectory for Dir {
        fn sender_card(&self, s: &PartyRef) -> Result<FacilityCard, SenderLookupError> {
            let c = self
                .0
                .iter()
                .find(|c| c.id() == &s.id)
                .ok_or(SenderLookupError::NotAContact)?;
            if c.key_id() == s.key {
                Ok(c.clone())
            } else {
                Err(SenderLookupError::KeyMismatch {
                    pinned: c.fingerprint(),
                })
            }
        }
    }

    #[derive(Default)]
    struct MemSink(HashMap<String, Vec<u8>>);
    impl PartSink for MemSink {
        fn write_part(
            &mut self,
            _: usize,
            path: &PartPath,
            content: &mut dyn Read,
        ) -> io::Result<()> {
            let mut v = Vec::new();
            content.read_to_end(&mut v)?;
            self.0.insert(path.to_string(), v);
            Ok(())
        }
    }

    fn sealed(from: &Party, to: &[&Party], parts: &[(&str, &[u8])]) -> Vec<u8> {
        let recipients: Vec<FacilityCard> = to.iter().map(|p| p.card.clone()).collect();
        let req = SealRequest {
            sender: &from.card,
            keys: from.keys.current(),
            recipients: &recipients,
            bundle_id: BundleId::random().unwrap(),
            kind: BundleKind::Record,
            subject: Some("subject".into()),
            thread: None,
            patient: Some("MRN-1".into()),
            created_at: Timestamp::parse("2026-11-23T10:00:00Z").unwrap(),
        };
        let sources: Vec<PartSource> = parts
            .iter()
            .enumerate()
            .map(|(i, (p, d))| PartSource {
                path: PartPath::parse(p, i).unwrap(),
                media_type: "application/octet-stream".into(),
                length: d.len() as u64,
            })
            .collect();
        seal(&req, &sources, |i| Ok(parts[i].1), Vec::new())
            .unwrap()
            .1
    }

    #[test]
    fn recipients_and_sender_open_others_cannot() {
        let (a, b, c, d) = (
            party("us-a", "US"),
            party("th-b", "TH"),
            party("in-c", "IN"),
            party("mx-d", "MX"),
        );
        let big = vec![0x5au8; 300_000];
        let bundle = sealed(
            &a,
            &[&b, &c],
            &[("x/summary.json", b"{}"), ("x/scan.dcm", &big)],
        );
        let dir = Dir(vec![a.card.clone(), b.card.clone(), c.card.clone()]);
        for reader in [&b, &c, &a] {
            let v = verify(&bundle[..], &reader.keys, reader.card.id(), &dir).unwrap();
            let mut sink = MemSink::default();
            extract(&bundle[..], &reader.keys, &v, &mut sink).unwrap();
            assert_eq!(sink.0["x/scan.dcm"], big);
            assert_eq!(sink.0["x/summary.json"], b"{}");
        }
        assert!(matches!(
            verify(&bundle[..], &d.keys, d.card.id(), &dir),
            Err(OpenError::NotForMe)
        ));
    }

    #[test]
    fn every_flipped_region_and_truncation_fails_verification() {
        let (a, b) = (party("us-a", "US"), party("th-b", "TH"));
        let bundle = sealed(&a, &[&b], &[("p.bin", &vec![1u8; 200_000])]);
        let dir = Dir(vec![a.card.clone()]);
        for pos in [
            30,
            120,
            bundle.len() / 3,
            bundle.len() / 2,
            bundle.len() - 40,
            bundle.len() - 1,
        ] {
            let mut t = bundle.clone();
            t[pos] ^= 0x20;
            let e = verify(&t[..], &b.keys, b.card.id(), &dir).unwrap_err();
            assert_eq!(e.class(), FailureClass::Verification, "flip at {pos}: {e}");
        }
        for cut in [
            10,
            200,
            bundle.len() / 2,
            bundle.len() - 17,
            bundle.len() - 1,
        ] {
            let e = verify(&bundle[..cut], &b.keys, b.card.id(), &dir).unwrap_err();
            assert_eq!(e.class(), FailureClass::Verification, "cut at {cut}: {e}");
        }
    }

    #[test]
    fn unknown_sender_and_key_mismatch() {
        let (a, b) = (party("us-a", "US"), party("th-b", "TH"));
        let bundle = sealed(&a, &[&b], &[("p", b"x")]);
        assert!(matches!(
            verify(&bundle[..], &b.keys, b.card.id(), &Dir(vec![])),
            Err(OpenError::UnknownSender(_))
        ));
        let impostor = party("us-a", "US");
        let e = verify(&bundle[..], &b.keys, b.card.id(), &Dir(vec![impostor.card])).unwrap_err();
        assert!(matches!(e, OpenError::SenderKeyMismatch { .. }));
        assert_eq!(e.class(), FailureClass::PinMismatch);
    }

    #[test]
    fn revoked_sender_key_is_refused() {
        struct Revoked;
        impl SenderDirectory for Revoked {
            fn sender_card(&self, _: &PartyRef) -> Result<FacilityCard, SenderLookupError> {
                Err(SenderLookupError::KeyRevoked {
                    revoked_at: Timestamp::from_unix(1_800_000_000).unwrap(),
                })
            }
        }
        let (a, b) = (party("us-a", "US"), party("th-b", "TH"));
        let bundle = sealed(&a, &[&b], &[("p", b"x")]);
        let e = verify(&bundle[..], &b.keys, b.card.id(), &Revoked).unwrap_err();
        assert!(matches!(e, OpenError::SenderKeyRevoked { .. }));
        assert_eq!(e.class(), FailureClass::PinMismatch);
        assert!(e.to_string().contains("revoked"), "{e}");
    }

    #[test]
    fn forwarded_bundle_is_not_for_the_third_party() {
        // b decrypts a's bundle and re-encrypts the same plaintext to c.
        let (a, b, c) = (
            party("us-a", "US"),
            party("th-b", "TH"),
            party("in-c", "IN"),
        );
        let bundle = sealed(&a, &[&b], &[("p", b"secret")]);
        let d = age::Decryptor::new(&bundle[..]).unwrap();
        let mut plain = Vec::new();
        d.decrypt(std::iter::once(
            b.keys.current().age_identity() as &dyn age::Identity
        ))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
        let to_c = c.card.age_recipient_key();
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&to_c as &dyn age::Recipient)).unwrap();
        let mut forwarded = Vec::new();
        let mut w = enc.wrap_output(&mut forwarded).unwrap();
        io::Write::write_all(&mut w, &plain).unwrap();
        w.finish().unwrap();
        let e = verify(
            &forwarded[..],
            &c.keys,
            c.card.id(),
            &Dir(vec![a.card.clone()]),
        )
        .unwrap_err();
        assert!(matches!(e, OpenError::NotListedRecipient), "{e}");
    }

    #[test]
    fn stanza_without_its_final_short_line_is_refused() {
        // Found by the CCTV age vectors (stanza_missing_body, stanza_missing_final_line): the
        // age crate accepts these headers when their MAC is right.
        let (a, b) = (party("us-a", "US"), party("th-b", "TH"));
        let dir = Dir(vec![a.card.clone()]);
        let bundle = sealed(&a, &[&b], &[("p", b"x")]);
        let mac_at = find(&bundle, b"\n--- ").unwrap() + 1;
        for extra in [
            &b"-> grease\n"[..],
            &[b"-> grease\n", &[b'A'; 64][..], b"\n"].concat(),
        ] {
            let mut t = bundle[..mac_at].to_vec();
            t.extend_from_slice(extra);
            t.extend_from_slice(&bundle[mac_at..]);
            let e = verify(&t[..], &b.keys, b.card.id(), &dir).unwrap_err();
            assert!(
                matches!(&e, OpenError::Tampered(m) if m.contains("header is invalid")),
                "{e}"
            );
        }
        assert!(stanza_bodies_end_short(b"-> a\n\n-> b c\nAAAA\n"));
        assert!(stanza_bodies_end_short(b""));
        assert!(!stanza_bodies_end_short(b"-> a\n"));
        assert!(!stanza_bodies_end_short(b"-> a\n-> b\n\n"));
        let full = [&b"-> a\n"[..], &[b'A'; 64], b"\n"].concat();
        assert!(!stanza_bodies_end_short(&full));
        assert!(stanza_bodies_end_short(&[&full[..], b"\n"].concat()));
    }

    #[test]
    fn oversized_header_is_refused_before_parsing() {
        let mut fake = b"age-encryption.org/v1\n".to_vec();
        while fake.len() <= MAX_AGE_HEADER_BYTES + 10 {
            fake.extend_from_slice(b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        }
        let p = party("th-b", "TH");
        assert!(matches!(
            verify(&fake[..], &p.keys, p.card.id(), &Dir(vec![])),
            Err(OpenError::HeaderTooLarge)
        ));
        assert!(matches!(
            verify(&b"hello"[..], &p.keys, p.card.id(), &Dir(vec![])),
            Err(OpenError::NotABundle)
        ));
    }
}
