//! Building blocks for the attack suite (`tests/tests/attacks.rs`): what an attacker holds
//! and does, built from the public library API and the `tar` and `age` crates rather than
//! from dossier's own writers, so that a malicious bundle can break any rule.
//!
//! * [`Insider`]: a node's own secret keys, read from its keyring with the passphrase — a
//!   malicious facility (or the thief of an unlocked laptop) signing whatever it likes.
//! * [`RawEntry`] and [`container`]: a ustar stream with any entry names, types, declared
//!   sizes and trailing bytes, written header by header (the `tar` crate's builder refuses
//!   `..` and absolute names, which is exactly what an attacker would use).
//! * [`encrypt_to`]: an age file to any recipients.
//! * [`StoreEdit`]: a relay operator editing its own stopped relay's files — swapping a body,
//!   or rewriting the bytes of its index (redb) in place, same length, as a malicious
//!   operator could. The relay is trusted for availability only (docs/threat-model.md §2),
//!   so every such edit must be caught by the nodes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dossier_bundle::card::CardDetails;
use dossier_bundle::{
    BundleId, BundleKind, FacilityCard, FacilityId, FacilityKeys, Manifest, PartEntry, PartPath,
    PartyRef, Timestamp,
};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use crate::{Node, PASSPHRASE, RelayProcess};

/// A node's secret keys and current card, as its owner (or anyone holding the keyring and
/// passphrase) has them.
pub struct Insider {
    /// The node's current keys.
    pub keys: FacilityKeys,
    signing: SigningKey,
    /// The node's current card.
    pub card: FacilityCard,
}

impl Insider {
    /// Reads `node`'s keyring (`keyring.age`) with the test passphrase and its current card.
    pub fn of(node: &Node) -> Self {
        let sealed = fs::read(node.keyring_path()).expect("reading keyring.age");
        let identity = age::scrypt::Identity::new(PASSPHRASE.to_owned().into());
        let plain = age::decrypt(&identity, &sealed).expect("decrypting keyring.age");
        let doc: serde_json::Value = serde_json::from_slice(&plain).expect("keyring JSON");
        let age_identity = doc["current"]["age_identity"]
            .as_str()
            .expect("current age identity");
        let seed_b64 = doc["current"]["signing_seed"]
            .as_str()
            .expect("current signing seed");
        let keys = FacilityKeys::from_secrets(age_identity, seed_b64).expect("keyring keys");
        let seed = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(seed_b64)
                .expect("seed base64")
        };
        let signing = SigningKey::from_bytes(&seed.try_into().expect("32-byte seed"));
        let card = card_of(node);
        assert_eq!(card.key_id(), keys.key_id(), "keyring and card agree");
        Insider {
            keys,
            signing,
            card,
        }
    }

    /// `self`'s party reference in a manifest.
    pub fn party(&self) -> PartyRef {
        party(&self.card)
    }

    /// A party reference claiming to be `claimed_id` while naming this node's own key:
    /// what a facility impersonating another puts in a manifest it signs itself.
    pub fn party_as(&self, claimed_id: &str) -> PartyRef {
        PartyRef {
            id: FacilityId::parse(claimed_id).expect("facility id"),
            key: self.keys.key_id(),
        }
    }

    /// A card with this node's keys but another facility's id (self-signed, so it parses).
    pub fn card_as(&self, claimed_id: &str) -> FacilityCard {
        let mut details: CardDetails = self.card.details();
        details.id = FacilityId::parse(claimed_id).expect("facility id");
        FacilityCard::issue(&self.keys, &details, self.card.created_at(), None, None)
            .expect("issuing an impostor card")
    }

    /// The Ed25519 signature `manifest.sig` holds: over
    /// `"dossier/manifest/v1" || 0x00 || manifest bytes` (docs/protocol.md §4).
    pub fn sign_manifest(&self, manifest: &[u8]) -> Vec<u8> {
        let mut signed = b"dossier/manifest/v1\0".to_vec();
        signed.extend_from_slice(manifest);
        self.signing.sign(&signed).to_bytes().to_vec()
    }

    /// A complete, honest bundle body (the container entries, in writer order) signed by
    /// this node: `parts` as given, then `manifest.json` and `manifest.sig`. Attacks edit
    /// the result before [`container`] and [`encrypt_to`].
    pub fn signed_entries(&self, manifest: &Manifest, parts: &[(&str, &[u8])]) -> Vec<RawEntry> {
        let bytes = manifest.to_bytes();
        let mut entries: Vec<RawEntry> = parts
            .iter()
            .map(|(path, data)| RawEntry::file(&format!("parts/{path}"), data))
            .collect();
        entries.push(RawEntry::file("manifest.json", &bytes));
        entries.push(RawEntry::file("manifest.sig", &self.sign_manifest(&bytes)));
        entries
    }
}

/// The current card of `node` (`card -o`), parsed.
pub fn card_of(node: &Node) -> FacilityCard {
    FacilityCard::parse(&fs::read(node.export_card()).expect("card file")).expect("valid card")
}

/// A party reference to `card`'s id and key.
pub fn party(card: &FacilityCard) -> PartyRef {
    PartyRef {
        id: card.id().clone(),
        key: card.key_id(),
    }
}

/// An honest manifest for `parts` (paths, media type `application/octet-stream`, true
/// lengths and hashes) from `sender` to `recipients`, sealed at `created_at`.
pub fn manifest_for(
    sender: PartyRef,
    recipients: Vec<PartyRef>,
    parts: &[(&str, &[u8])],
    created_at: Timestamp,
) -> Manifest {
    Manifest {
        bundle_id: BundleId::random().expect("random bundle id"),
        kind: BundleKind::Record,
        subject: Some(crate::PHI.subject.to_owned()),
        thread: Some(crate::PHI.thread.to_owned()),
        patient: Some(crate::PHI.patient.to_owned()),
        created_at,
        sender,
        recipients,
        parts: parts
            .iter()
            .enumerate()
            .map(|(i, (path, data))| PartEntry {
                path: PartPath::parse(path, i).expect("honest part path"),
                media_type: "application/octet-stream".to_owned(),
                length: data.len() as u64,
                sha256: Sha256::digest(data).into(),
            })
            .collect(),
    }
}

/// One container entry as an attacker writes it: any name bytes, any type flag, any link
/// target, and a declared size that may differ from the data that follows.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The full entry name (split into ustar `prefix` and `name` when longer than 100).
    pub name: Vec<u8>,
    /// Type flag byte (`b'0'` regular, `b'1'` hard link, `b'2'` symlink, `b'x'` pax, ...).
    pub typeflag: u8,
    /// Link target (`linkname`), for links.
    pub link: Vec<u8>,
    /// The bytes that follow the header.
    pub data: Vec<u8>,
    /// The size written in the header; `None` for the data's true length.
    pub declared_size: Option<u64>,
}

impl RawEntry {
    /// A regular file.
    pub fn file(name: &str, data: &[u8]) -> Self {
        RawEntry {
            name: name.as_bytes().to_vec(),
            typeflag: b'0',
            link: Vec::new(),
            data: data.to_vec(),
            declared_size: None,
        }
    }

    /// A link entry (`b'1'` hard, `b'2'` symbolic) named `name` pointing at `target`.
    pub fn link(name: &str, typeflag: u8, target: &str) -> Self {
        RawEntry {
            name: name.as_bytes().to_vec(),
            typeflag,
            link: target.as_bytes().to_vec(),
            data: Vec::new(),
            declared_size: None,
        }
    }

    /// A pax extended header (`x`) that renames the next entry to `path`.
    pub fn pax_path(path: &str) -> Self {
        let record = |len: usize| format!("{len} path={path}\n");
        // The record's length counts its own digits.
        let mut len = record(0).len();
        while record(len).len() != len {
            len = record(len).len();
        }
        RawEntry {
            name: b"PaxHeaders/0".to_vec(),
            typeflag: b'x',
            link: Vec::new(),
            data: record(len).into_bytes(),
            declared_size: None,
        }
    }

    fn header(&self) -> [u8; 512] {
        let mut h = [0u8; 512];
        let (prefix, name) = split_name(&self.name);
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], 0o600);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(
            &mut h[124..136],
            self.declared_size.unwrap_or(self.data.len() as u64),
        );
        octal(&mut h[136..148], 1_795_424_400);
        h[156] = self.typeflag;
        assert!(self.link.len() <= 100, "link target fits");
        h[157..157 + self.link.len()].copy_from_slice(&self.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        // Checksum: the header's byte sum with the checksum field taken as 8 spaces.
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        let field = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(field.as_bytes());
        h
    }
}

fn split_name(name: &[u8]) -> (&[u8], &[u8]) {
    if name.len() <= 100 {
        return (&[], name);
    }
    let cut = name
        .iter()
        .enumerate()
        .rev()
        .find(|(i, b)| **b == b'/' && *i <= 155 && name.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .expect("the name splits into a ustar prefix and name");
    (&name[..cut], &name[cut + 1..])
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    assert_eq!(text.len(), digits, "{value} fits {digits} octal digits");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// The ustar stream of `entries`: each header, its data padded to 512 bytes, then the two
/// zero blocks of the end-of-archive marker and `trailing` more zero bytes.
pub fn container(entries: &[RawEntry], trailing: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.header());
        out.extend_from_slice(&e.data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024 + trailing, 0);
    out
}

/// An age v1 file (binary) of `plaintext`, encrypted to `recipients`.
pub fn encrypt_to(recipients: &[age::x25519::Recipient], plaintext: &[u8]) -> Vec<u8> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .expect("age recipients");
    let mut out = Vec::new();
    let mut w = encryptor.wrap_output(&mut out).expect("age writer");
    w.write_all(plaintext).expect("age write");
    w.finish().expect("age finish");
    out
}

/// Edits a *stopped* relay's data directory as its operator can.
pub struct StoreEdit<'a> {
    relay: &'a RelayProcess,
}

impl<'a> StoreEdit<'a> {
    /// Edits of `relay`'s data; panics if it is running.
    pub fn of(relay: &'a mut RelayProcess) -> Self {
        assert!(
            !relay.is_running(),
            "stop the relay before editing its store"
        );
        StoreEdit { relay }
    }

    /// `DATA/blobs/<bundle id>`: the stored body of a held bundle.
    pub fn blob(&self, bundle_id: &str) -> PathBuf {
        self.relay.data.join("blobs").join(bundle_id)
    }

    /// Replaces the held body of `bundle_id` with `bytes`.
    pub fn replace_blob(&self, bundle_id: &str, bytes: &[u8]) {
        let path = self.blob(bundle_id);
        assert!(path.is_file(), "the relay holds {bundle_id}");
        fs::write(&path, bytes).expect("rewriting a blob");
    }

    /// Replaces every occurrence of `from` with `to` (same length) in the relay's index
    /// files, in place; returns how many were replaced. The index stores records as plain
    /// bytes, so this is how an operator rewrites a listed hash or a stored receipt.
    pub fn rewrite_index(&self, from: &[u8], to: &[u8]) -> usize {
        assert_eq!(from.len(), to.len(), "an in-place rewrite keeps the length");
        let mut total = 0;
        for file in index_files(&self.relay.data) {
            let mut bytes = fs::read(&file).expect("reading the index");
            let mut n = 0;
            let mut at = 0;
            while let Some(pos) = find(&bytes[at..], from) {
                let start = at + pos;
                bytes[start..start + to.len()].copy_from_slice(to);
                at = start + to.len();
                n += 1;
            }
            if n > 0 {
                fs::write(&file, &bytes).expect("rewriting the index");
                total += n;
            }
        }
        total
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The redb files in a relay's data directory.
fn index_files(data: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = fs::read_dir(data)
        .expect("listing the relay's data directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "redb"))
        .collect();
    assert!(!files.is_empty(), "the relay keeps a redb index");
    files
}

/// Copies a directory tree (a relay's data directory taken as a backup).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("creating the copy");
    for e in fs::read_dir(from).expect("listing").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copying a file");
        }
    }
}
