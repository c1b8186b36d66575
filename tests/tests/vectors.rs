//! Runs every test vector in `tests/vectors/` through dossier_bundle's public API and checks
//! the outcome its `expect:` header names (format: tests/vectors/README.md, docs/protocol.md
//! §14).
//!
//! Every vector is checked, and every failing file is reported by name at the end, so one
//! regression does not hide another. An empty vector directory is itself a failure.
//!
//! Bundle vectors go through the same two passes a node uses: `open::verify` with a
//! `SenderDirectory` built from the vector's pinned cards, then, only if that succeeded,
//! `open::extract` into an in-memory sink. For every failing bundle the test asserts that the
//! failure came from `verify` and that the sink never received a byte or a call.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use dossier_bundle::card::CardDetails;
use dossier_bundle::open::{
    FailureClass, PartSink, SenderDirectory, SenderLookupError, extract, verify,
};
use dossier_bundle::revocation::{RevocationError, SignedRevocation};
use dossier_bundle::{
    CardError, CountryCode, FacilityCard, FacilityId, FacilityKeys, KeyId, Keyring, Manifest,
    ManifestError, OpenError, PartPath, PartyKind, PartyRef, Timestamp,
};

/// One parsed vector file.
struct Vector {
    name: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Vector {
    fn parse(name: String, bytes: &[u8]) -> Result<Self, String> {
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no empty line between the header and the body")?;
        let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "header is not UTF-8")?;
        let mut headers = Vec::new();
        for line in head.split('\n') {
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| format!("header line {line:?} is not `key: value`"))?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(format!("bad header key {k:?}"));
            }
            headers.push((k.to_owned(), v.to_owned()));
        }
        Ok(Self {
            name,
            headers,
            body: bytes[split + 2..].to_vec(),
        })
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.all(key).first().copied()
    }

    fn req(&self, key: &str) -> Result<&str, String> {
        self.get(key)
            .ok_or_else(|| format!("missing header `{key}`"))
    }
}

fn check_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Fingerprints and cards (§3, §5).
// ---------------------------------------------------------------------------------------

fn check_fingerprint(v: &Vector) -> Result<(), String> {
    check_eq("expect", v.req("expect")?, "success")?;
    let vk: [u8; 32] = B64
        .decode(v.req("signing_key")?)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "signing_key is not 32 bytes")?;
    let recipient = v.req("age_recipient")?;
    let id = KeyId::of(&vk, recipient);
    check_eq("key id", id.to_hex().as_str(), v.req("key_id")?)?;
    check_eq(
        "fingerprint",
        id.fingerprint().as_str(),
        v.req("fingerprint")?,
    )?;
    // Independently of the library: SHA-256 over the domain, the key and the recipient.
    let mut h = Sha256::new();
    h.update(b"dossier/key-id/v1\0");
    h.update(vk);
    h.update(recipient.as_bytes());
    check_eq(
        "independent key id",
        hex(&h.finalize()).as_str(),
        v.req("key_id")?,
    )?;
    let keys = FacilityKeys::from_secrets(v.req("age_identity")?, v.req("signing_seed")?)
        .map_err(|e| e.to_string())?;
    check_eq("keys' recipient", keys.age_recipient().as_str(), recipient)?;
    check_eq("keys' key id", keys.key_id(), id)?;
    check_eq(
        "fingerprint round trip",
        id.fingerprint().matches(v.req("fingerprint")?),
        true,
    )
}

fn card_error_kind(e: &CardError) -> &'static str {
    match e {
        CardError::TooLarge => "too_large",
        CardError::Malformed(_) => "malformed",
        CardError::UnknownVersion(_) => "unknown_version",
        CardError::BadField(_) => "bad_field",
        CardError::BadSignature => "bad_signature",
        _ => "other",
    }
}

fn parse_party(s: &str) -> Result<PartyKind, String> {
    match s {
        "facility" => Ok(PartyKind::Facility),
        "patient" => Ok(PartyKind::Patient),
        _ => Err(format!("unknown party {s:?}")),
    }
}

fn ts(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| format!("{s}: {e}"))
}

fn check_card(v: &Vector) -> Result<(), String> {
    let parsed = FacilityCard::parse(&v.body);
    match v.req("expect")? {
        "card_error" => match parsed {
            Ok(_) => Err("card was accepted".into()),
            Err(e) => check_eq("card error", card_error_kind(&e), v.req("error")?),
        },
        "success" => {
            let card = parsed.map_err(|e| format!("card refused: {e}"))?;
            check_card_fields(v, &card)?;
            if let Some(rot) = v.get("rotates_from") {
                let old = FacilityCard::parse(rot.as_bytes())
                    .map_err(|e| format!("rotates_from refused: {e}"))?;
                let want = match v.req("rotation")? {
                    "valid" => true,
                    "invalid" => false,
                    other => return Err(format!("rotation: {other:?}")),
                };
                check_eq(
                    "rotation signed by rotates_from",
                    card.is_rotation_signed_by(&old),
                    want,
                )?;
            }
            if v.get("signing_seed").is_some() {
                check_card_reissue(v, &card)?;
            }
            Ok(())
        }
        other => Err(format!("unknown expect {other:?} for a card")),
    }
}

fn check_card_fields(v: &Vector, card: &FacilityCard) -> Result<(), String> {
    check_eq("id", card.id().as_str(), v.req("id")?)?;
    check_eq("name", card.name(), v.req("name")?)?;
    check_eq("country", card.country().as_str(), v.req("country")?)?;
    check_eq("party", card.kind(), parse_party(v.req("party")?)?)?;
    check_eq("created_at", card.created_at(), ts(v.req("created_at")?)?)?;
    check_eq(
        "expires_at",
        card.expires_at(),
        v.get("expires_at").map(ts).transpose()?,
    )?;
    check_eq(
        "age_recipient",
        card.age_recipient(),
        v.req("age_recipient")?,
    )?;
    check_eq(
        "signing_key",
        B64.encode(card.verifying_key().as_bytes()).as_str(),
        v.req("signing_key")?,
    )?;
    check_eq("key_id", card.key_id().to_hex().as_str(), v.req("key_id")?)?;
    check_eq(
        "fingerprint",
        card.fingerprint().as_str(),
        v.req("fingerprint")?,
    )?;
    check_eq(
        "previous_key",
        card.previous_key().map(|k| k.to_hex()),
        v.get("previous_key").map(str::to_owned),
    )
}

/// Issues the card again from the fixed keys: the bytes must be identical.
fn check_card_reissue(v: &Vector, card: &FacilityCard) -> Result<(), String> {
    let keys = FacilityKeys::from_secrets(v.req("age_identity")?, v.req("signing_seed")?)
        .map_err(|e| e.to_string())?;
    let old = match (
        v.get("previous_age_identity"),
        v.get("previous_signing_seed"),
    ) {
        (Some(a), Some(s)) => Some(FacilityKeys::from_secrets(a, s).map_err(|e| e.to_string())?),
        _ => None,
    };
    let details = CardDetails {
        id: FacilityId::parse(v.req("id")?).map_err(|e| e.to_string())?,
        name: v.req("name")?.to_owned(),
        country: CountryCode::parse(v.req("country")?).map_err(|e| e.to_string())?,
        kind: parse_party(v.req("party")?)?,
    };
    let again = FacilityCard::issue(
        &keys,
        &details,
        ts(v.req("created_at")?)?,
        v.get("expires_at").map(ts).transpose()?,
        old.as_ref(),
    )
    .map_err(|e| format!("re-issue failed: {e}"))?;
    if again.to_file_bytes() != v.body {
        return Err("re-issued card differs from the vector's bytes".into());
    }
    check_eq("re-issued card", &again, card)
}

// ---------------------------------------------------------------------------------------
// Manifests (§8).
// ---------------------------------------------------------------------------------------

fn manifest_error_kind(e: &ManifestError) -> &'static str {
    match e {
        ManifestError::TooLarge => "too_large",
        ManifestError::Malformed(_) => "malformed",
        ManifestError::UnknownVersion(_) => "unknown_version",
        ManifestError::BadPartPath { .. } => "bad_part_path",
        ManifestError::DuplicatePart(..) => "duplicate_part",
        ManifestError::PathConflict(..) => "path_conflict",
        ManifestError::TooManyParts => "too_many_parts",
        ManifestError::RecipientCount => "recipient_count",
        ManifestError::DuplicateRecipient(_) => "duplicate_recipient",
        ManifestError::BadText(_) => "bad_text",
        ManifestError::PartTooLarge(_) => "part_too_large",
        _ => "other",
    }
}

/// `part: SHA256 LENGTH PATH` headers.
fn expected_parts(v: &Vector) -> Result<Vec<(String, u64, String)>, String> {
    v.all("part")
        .into_iter()
        .map(|line| {
            let mut it = line.splitn(3, ' ');
            let (Some(h), Some(l), Some(p)) = (it.next(), it.next(), it.next()) else {
                return Err(format!("bad part header {line:?}"));
            };
            let l = l.parse().map_err(|_| format!("bad length in {line:?}"))?;
            Ok((h.to_owned(), l, p.to_owned()))
        })
        .collect()
}

fn check_manifest(v: &Vector) -> Result<(), String> {
    let parsed = Manifest::parse(&v.body);
    match v.req("expect")? {
        "manifest_error" => match parsed {
            Ok(_) => Err("manifest was accepted".into()),
            Err(e) => check_eq("manifest error", manifest_error_kind(&e), v.req("error")?),
        },
        "success" => {
            let m = parsed.map_err(|e| format!("manifest refused: {e}"))?;
            check_eq("bundle_id", m.bundle_id.as_str(), v.req("bundle_id")?)?;
            check_eq("sender", m.sender.id.as_str(), v.req("sender")?)?;
            let got: Vec<(String, u64, String)> = m
                .parts
                .iter()
                .map(|p| (hex(&p.sha256), p.length, p.path.as_str().to_owned()))
                .collect();
            check_eq("parts", got, expected_parts(v)?)?;
            let canonical = v.req("canonical")? == "true";
            check_eq(
                "re-serialises to the same bytes",
                m.to_bytes() == v.body,
                canonical,
            )?;
            if let Some(sig) = v.get("signature") {
                check_manifest_signature(v, &m, sig)?;
            }
            Ok(())
        }
        other => Err(format!("unknown expect {other:?} for a manifest")),
    }
}

/// The signature header verifies under the signer card's key, over `context || 0 || body`
/// (checked with ed25519-dalek directly), and is what the fixed seed produces.
fn check_manifest_signature(v: &Vector, m: &Manifest, sig_b64: &str) -> Result<(), String> {
    use ed25519_dalek::Signer as _;
    let card = FacilityCard::parse(v.req("signer_card")?.as_bytes())
        .map_err(|e| format!("signer_card refused: {e}"))?;
    check_eq("signer key id", card.key_id(), m.sender.key)?;
    let sig: [u8; 64] = B64
        .decode(sig_b64)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "signature is not 64 bytes")?;
    let mut input = b"dossier/manifest/v1\0".to_vec();
    input.extend_from_slice(&v.body);
    card.verifying_key()
        .verify_strict(&input, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "manifest signature does not verify")?;
    let seed: [u8; 32] = B64
        .decode(v.req("signer_seed")?)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "signer_seed is not 32 bytes")?;
    let again = ed25519_dalek::SigningKey::from_bytes(&seed).sign(&input);
    check_eq("deterministic signature", again.to_bytes(), sig)
}

// ---------------------------------------------------------------------------------------
// Bundles (§10, §11).
// ---------------------------------------------------------------------------------------

/// The pins of a vector: `pinned_card:` headers; for an id pinned more than once, the last
/// card is current and the earlier ones are the cards it rotated away from.
struct VectorPins(Vec<FacilityCard>);

impl SenderDirectory for VectorPins {
    fn sender_card(&self, sender: &PartyRef) -> Result<FacilityCard, SenderLookupError> {
        let cards: Vec<&FacilityCard> = self.0.iter().filter(|c| c.id() == &sender.id).collect();
        let current = cards.last().ok_or(SenderLookupError::NotAContact)?;
        cards
            .iter()
            .find(|c| c.key_id() == sender.key)
            .map(|c| (*c).clone())
            .ok_or(SenderLookupError::KeyMismatch {
                pinned: current.fingerprint(),
            })
    }
}

/// Records everything `extract` hands over.
#[derive(Default)]
struct MemorySink {
    calls: usize,
    bytes: u64,
    parts: Vec<(usize, String, Vec<u8>)>,
}

impl PartSink for MemorySink {
    fn write_part(
        &mut self,
        index: usize,
        path: &PartPath,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        self.calls += 1;
        let mut buf = Vec::new();
        let r = content.read_to_end(&mut buf);
        self.bytes += buf.len() as u64;
        self.parts.push((index, path.as_str().to_owned(), buf));
        r.map(|_| ())
    }
}

fn open_error_kind(e: &OpenError) -> &'static str {
    match e {
        OpenError::NotABundle => "not_a_bundle",
        OpenError::PassphraseEncrypted => "passphrase_encrypted",
        OpenError::UnknownFormat => "unknown_format",
        OpenError::HeaderTooLarge => "header_too_large",
        OpenError::NotForMe => "not_for_me",
        OpenError::NotListedRecipient => "not_listed_recipient",
        OpenError::Tampered(_) => "tampered",
        OpenError::Manifest(_) => "manifest",
        OpenError::UnknownSender(_) => "unknown_sender",
        OpenError::SenderKeyMismatch { .. } => "sender_key_mismatch",
        OpenError::BadSignature => "bad_signature",
        OpenError::Io(_) => "io",
        OpenError::Sink(_) => "sink",
        _ => "other",
    }
}

fn class_name(c: FailureClass) -> &'static str {
    match c {
        FailureClass::Verification => "verification_failed",
        FailureClass::PinMismatch => "pin_mismatch",
        FailureClass::UnknownSender => "unknown_sender",
        FailureClass::Local => "local_error",
    }
}

fn keyring_of(v: &Vector) -> Result<Keyring, String> {
    // Oldest first; the last `reader_key` is current, the others are retired.
    let mut keys = v.all("reader_key").into_iter().map(|line| {
        let (age, seed) = line
            .split_once(' ')
            .ok_or_else(|| format!("bad reader_key {line:?}"))?;
        FacilityKeys::from_secrets(age, seed).map_err(|e| e.to_string())
    });
    let mut ring = Keyring::new(keys.next().ok_or("no reader_key")??);
    for (i, k) in keys.enumerate() {
        let retired_at =
            Timestamp::from_unix(1_800_000_000 + i as i64).map_err(|e| e.to_string())?;
        ring.rotate(k?, retired_at);
    }
    Ok(ring)
}

fn check_bundle(v: &Vector) -> Result<(), String> {
    let keyring = keyring_of(v)?;
    let me = FacilityId::parse(v.req("reader_id")?).map_err(|e| e.to_string())?;
    let pins = VectorPins(
        v.all("pinned_card")
            .into_iter()
            .map(|c| {
                FacilityCard::parse(c.as_bytes()).map_err(|e| format!("pinned_card refused: {e}"))
            })
            .collect::<Result<_, _>>()?,
    );
    let mut sink = MemorySink::default();
    let verified = verify(&v.body[..], &keyring, &me, &pins);
    let expect = v.req("expect")?;
    let verified = match verified {
        Err(e) => {
            // Verification failed, so extraction must never have been reached.
            if sink.calls != 0 || sink.bytes != 0 {
                return Err("the sink received data from a bundle that failed verification".into());
            }
            check_eq("outcome", class_name(e.class()), expect)?;
            check_eq("error", open_error_kind(&e), v.req("error")?)?;
            if let Some(reason) = v.get("reason") {
                let message = e.to_string();
                if !message.contains(reason) {
                    return Err(format!("failed for another reason: {message}"));
                }
            }
            if let Some(detail) = v.get("detail") {
                match &e {
                    OpenError::Manifest(m) => {
                        check_eq("manifest error", manifest_error_kind(m), detail)?
                    }
                    _ => return Err(format!("detail given but the error is {e}")),
                }
            }
            if let OpenError::SenderKeyMismatch {
                pinned, presented, ..
            } = &e
            {
                check_eq(
                    "pinned fingerprint",
                    pinned.as_str(),
                    v.req("pinned_fingerprint")?,
                )?;
                check_eq(
                    "presented fingerprint",
                    presented.as_str(),
                    v.req("presented_fingerprint")?,
                )?;
            }
            eprintln!("{}: {} ({e})", v.name, class_name(e.class()));
            return Ok(());
        }
        Ok(verified) => verified,
    };
    if expect != "success" {
        return Err(format!("bundle verified, but the vector expects {expect}"));
    }
    extract(&v.body[..], &keyring, &verified, &mut sink)
        .map_err(|e| format!("extract failed: {e}"))?;
    let m = verified.manifest();
    check_eq("bundle_id", m.bundle_id.as_str(), v.req("bundle_id")?)?;
    check_eq("sender", m.sender.id.as_str(), v.req("sender")?)?;
    check_eq("sender card", verified.sender().key_id(), m.sender.key)?;
    let want = expected_parts(v)?;
    let got: Vec<(String, u64, String)> = sink
        .parts
        .iter()
        .map(|(_, p, d)| (hex(&Sha256::digest(d)), d.len() as u64, p.clone()))
        .collect();
    check_eq("parts received by the sink", got, want)?;
    let indices: Vec<usize> = sink.parts.iter().map(|(i, _, _)| *i).collect();
    check_eq("part indices", indices, (0..sink.parts.len()).collect())
}

// ---------------------------------------------------------------------------------------

fn revocation_error_kind(e: &RevocationError) -> &'static str {
    match e {
        RevocationError::TooLarge => "too_large",
        RevocationError::Malformed(_) => "malformed",
        RevocationError::UnknownVersion(_) => "unknown_version",
        RevocationError::BadReason(_) => "bad_reason",
        RevocationError::WrongFacility { .. } => "wrong_facility",
        RevocationError::WrongKey { .. } => "wrong_key",
        RevocationError::BadSignature => "bad_signature",
        _ => "other",
    }
}

/// `SignedRevocation::parse`, then `verify` against the vector's `card:` (§17).
fn check_revocation(v: &Vector) -> Result<(), String> {
    let card = FacilityCard::parse(v.req("card")?.as_bytes())
        .map_err(|e| format!("card header refused: {e}"))?;
    let result = SignedRevocation::parse(&v.body).and_then(|r| {
        let content = r.verify(&card)?.clone();
        // What was accepted re-serialises to a revocation that parses equal.
        let again = SignedRevocation::parse(&r.to_bytes())?;
        assert_eq!(again, r, "round trip");
        Ok(content)
    });
    match v.req("expect")? {
        "revocation_error" => match result {
            Ok(_) => Err("revocation was accepted".into()),
            Err(e) => check_eq(
                "revocation error",
                revocation_error_kind(&e),
                v.req("error")?,
            ),
        },
        "success" => {
            let r = result.map_err(|e| format!("revocation refused: {e}"))?;
            check_eq("facility", r.facility.as_str(), v.req("facility")?)?;
            check_eq("key id", r.key.to_hex().as_str(), v.req("key_id")?)?;
            check_eq("reason", r.reason.as_str(), v.req("reason")?)?;
            check_eq("revoked_at", r.revoked_at, ts(v.req("revoked_at")?)?)
        }
        other => Err(format!("unknown expect {other:?} for a revocation")),
    }
}

// ---------------------------------------------------------------------------------------

fn check(v: &Vector) -> Result<(), String> {
    match v.req("type")? {
        "fingerprint" => check_fingerprint(v),
        "card" => check_card(v),
        "manifest" => check_manifest(v),
        "bundle" => check_bundle(v),
        "revocation" => check_revocation(v),
        other => Err(format!("unknown vector type {other:?}")),
    }
}

#[test]
fn every_vector_has_its_expected_outcome() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test vectors in {}", dir.display());

    let mut failures = BTreeMap::new();
    let mut by_type = BTreeMap::<String, usize>::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| Vector::parse(name.clone(), &bytes))
            .and_then(|v| {
                *by_type
                    .entry(v.get("type").unwrap_or("?").to_owned())
                    .or_default() += 1;
                match catch_unwind(AssertUnwindSafe(|| check(&v))) {
                    Ok(r) => r,
                    Err(_) => Err("panicked".into()),
                }
            });
        if let Err(e) = result {
            failures.insert(name, e);
        }
    }
    eprintln!("checked {} vectors: {by_type:?}", files.len());
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        files.len(),
        failures
            .iter()
            .map(|(n, e)| format!("  {n}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
