//! The C2SP CCTV age test vectors (npm package `cctv-age`, fetched at test time by
//! `tests/fetch-cctv-age` into `target/cctv-age/testdata/`, never committed) run through
//! dossier's own age layer, every `expect:` honoured, and no plaintext released on any
//! failure.
//!
//! Which layer each category goes through:
//!
//! * **X25519 files** (`x25519_*`, `stanza_*`, `hmac_*`, `stream_*`, `header_crlf`,
//!   `version_unsupported`, `empty`): the bundle open path itself, through
//!   `dossier_bundle::age_file` — the code `open::verify`/`open::extract` decrypt bundles
//!   with (64 KiB header bound, key sets of a `Keyring` built from the vector's identities,
//!   current first), in the node's order: header, then the whole payload verified and
//!   discarded, then, only if that succeeded, extraction into a sink. Outcomes:
//!   `success` → the sink holds the payload of the expected SHA-256; `no match` →
//!   `NotForMe`; `HMAC failure` → `Tampered` (header MAC); `header failure` → a header
//!   refusal (`NotABundle`, `UnknownFormat` or `Tampered`, not the MAC, not `NotForMe`) before
//!   any payload is read; `payload failure` → `Tampered` from the verification pass.
//! * **Armored files** (`armor_*`, every `expect:`): the same path, which refuses ASCII armor
//!   as `NotABundle` (docs/protocol.md §10: bundles are never armored; dossier vector
//!   `bundle_armored`). dossier has no armor decoder, so `armor failure` is honoured as that
//!   refusal and the armor rules themselves are not exercised here.
//! * **scrypt files** (a `passphrase:` header): twice. The bundle open path must refuse them
//!   (`PassphraseEncrypted`, §11.1 check 3, vector `bundle_scrypt_recipient`; a header that
//!   mixes scrypt with other stanzas fails as `Tampered` first). Then the other age layer
//!   dossier has, the keyring's (`age_file::decrypt_passphrase_file`, §6), honours every
//!   `expect:`: `success` → the payload; `no match` → `WrongPassphrase`; `header failure`
//!   → `Corrupt`. (`scrypt_uppercase` has a `Scrypt` stanza, which is not scrypt: the bundle
//!   path finds no key for it, `NotForMe`, and the keyring layer no passphrase stanza,
//!   `Corrupt`; both are its `no match`.)
//! * **Hybrid (ML-KEM) files** (an `AGE-SECRET-KEY-PQ-1` identity): dossier keys are X25519
//!   only, so the identity is refused as a key (`FacilityKeys::from_secrets` → `Corrupt`),
//!   and the file, opened with keys of this node, is not for it (`NotForMe`, or a header
//!   refusal for the malformed ones): never a plaintext.
//!
//! For every failure the sink is checked to have received nothing. For `payload failure`
//! the test also decrypts with the bare `age` crate, which hands out the chunks before the
//! bad one (their hash is the vector's `payload:`), to show that dossier withholds bytes the
//! underlying stream would have released.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use sha2::{Digest, Sha256};

use dossier_bundle::age_file::{decrypt_passphrase_file, open_age_file};
use dossier_bundle::{FacilityKeys, Keyring, KeyringError, OpenError, Timestamp};

/// Vectors in cctv-age 0.2.0 (pinned in tests/fetch-cctv-age).
const EXPECTED_VECTORS: usize = 143;
/// How a hybrid (ML-KEM-768 + X25519) identity starts.
const HYBRID_IDENTITY: &str = "AGE-SECRET-KEY-PQ-1";
/// An Ed25519 seed to pair with each vector identity (dossier key sets carry both).
const SEED: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cctv-age/testdata")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Success,
    NoMatch,
    HmacFailure,
    HeaderFailure,
    PayloadFailure,
    ArmorFailure,
}

struct Vector {
    name: String,
    expect: Expect,
    payload: Option<[u8; 32]>,
    identities: Vec<String>,
    passphrases: Vec<String>,
    armored: bool,
    body: Vec<u8>,
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!("bad hash {s:?}"));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| format!("bad hex {s:?}"))?;
    }
    Ok(out)
}

impl Vector {
    /// The CCTV format: `key: value` lines, an empty line, the age file (zlib-compressed if
    /// `compressed: zlib`). Unknown keys are ignored, as the format asks.
    fn parse(name: String, bytes: &[u8]) -> Result<Self, String> {
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no empty line after the header")?;
        let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "header is not UTF-8")?;
        let (mut expect, mut payload, mut compressed, mut armored) = (None, None, false, false);
        let (mut identities, mut passphrases) = (Vec::new(), Vec::new());
        for line in head.split('\n') {
            let (k, v) = line
                .split_once(": ")
                .ok_or_else(|| format!("header line {line:?} is not `key: value`"))?;
            match k {
                "expect" => {
                    expect = Some(match v {
                        "success" => Expect::Success,
                        "no match" => Expect::NoMatch,
                        "HMAC failure" => Expect::HmacFailure,
                        "header failure" => Expect::HeaderFailure,
                        "payload failure" => Expect::PayloadFailure,
                        "armor failure" => Expect::ArmorFailure,
                        other => return Err(format!("unknown expect {other:?}")),
                    })
                }
                "payload" => payload = Some(hex32(v)?),
                "identity" => identities.push(v.to_owned()),
                "passphrase" => passphrases.push(v.to_owned()),
                "armored" => armored = v == "yes",
                "compressed" if v == "zlib" => compressed = true,
                "compressed" => return Err(format!("unknown compression {v:?}")),
                _ => {}
            }
        }
        let raw = &bytes[split + 2..];
        let body = if compressed {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(raw)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            out
        } else {
            raw.to_vec()
        };
        Ok(Self {
            name,
            expect: expect.ok_or("no expect header")?,
            payload,
            identities,
            passphrases,
            armored,
            body,
        })
    }

    fn payload(&self) -> Result<[u8; 32], String> {
        self.payload.ok_or_else(|| "no payload hash".to_owned())
    }
}

/// A `Keyring` holding the vector's X25519 identities (the first current, the others
/// retired), or fresh keys if it has none; an error if an identity is not a dossier key.
fn keyring(identities: &[String]) -> Result<Keyring, KeyringError> {
    let mut keys = identities
        .iter()
        .map(|id| FacilityKeys::from_secrets(id, SEED))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter();
    let mut ring = Keyring::new(match keys.next() {
        Some(k) => k,
        None => FacilityKeys::generate()?,
    });
    for k in keys {
        ring.rotate(k, Timestamp::from_unix(1_800_000_000).expect("valid time"));
    }
    Ok(ring)
}

/// A sink that records every byte handed to it.
#[derive(Default)]
struct Sink(Vec<u8>);
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a run of the open path stopped.
#[derive(Debug)]
enum Outcome {
    /// Verified and extracted; the sink's bytes.
    Opened(Vec<u8>),
    /// `open_age_file` (header, file key) refused it.
    Header(OpenError),
    /// The verification pass over the payload refused it.
    Payload(OpenError),
}

/// The node's order: header, verify the whole payload (discarding it), then extract into
/// the sink. On any failure asserts the sink received nothing.
fn run_open_path(body: &[u8], ring: &Keyring) -> Result<Outcome, String> {
    let mut sink = Sink::default();
    let outcome = match open_age_file(body, ring) {
        Err(e) => Outcome::Header(e),
        Ok(payload) => match payload.verify() {
            Err(e) => Outcome::Payload(e),
            Ok(verified) => {
                let payload =
                    open_age_file(body, ring).map_err(|e| format!("second open failed: {e}"))?;
                payload
                    .extract(&verified, &mut sink)
                    .map_err(|e| format!("extract after verify failed: {e}"))?;
                if sink.0.len() as u64 != verified.length()
                    || <[u8; 32]>::from(Sha256::digest(&sink.0)) != verified.sha256()
                {
                    return Err("extracted bytes differ from the verified ones".into());
                }
                return Ok(Outcome::Opened(sink.0));
            }
        },
    };
    if !sink.0.is_empty() {
        return Err(format!(
            "{} plaintext bytes released on failure",
            sink.0.len()
        ));
    }
    Ok(outcome)
}

fn is_mac_error(e: &OpenError) -> bool {
    matches!(e, OpenError::Tampered(m) if m.contains("MAC"))
}

fn is_header_refusal(e: &OpenError) -> bool {
    matches!(
        e,
        OpenError::NotABundle | OpenError::UnknownFormat | OpenError::HeaderTooLarge
    ) || matches!(e, OpenError::Tampered(_)) && !is_mac_error(e)
}

/// What the bare `age` crate releases before it fails: CCTV's `payload:` for a payload
/// failure is the hash of exactly these bytes.
fn released_by_bare_age(v: &Vector) -> Result<Vec<u8>, String> {
    let ids: Vec<age::x25519::Identity> = v
        .identities
        .iter()
        .map(|s| s.parse().map_err(|e| format!("identity: {e}")))
        .collect::<Result<_, String>>()?;
    let d = age::Decryptor::new_buffered(&v.body[..]).map_err(|e| format!("age: {e}"))?;
    let mut r = d
        .decrypt(ids.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| format!("age: {e}"))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Err("the bare age crate read it to the end without error".into()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return Ok(out),
        }
    }
}

fn check_x25519(v: &Vector, withheld: &mut usize) -> Result<&'static str, String> {
    let ring = keyring(&v.identities).map_err(|e| format!("identity refused: {e}"))?;
    let outcome = run_open_path(&v.body, &ring)?;
    match (v.expect, &outcome) {
        (Expect::Success, Outcome::Opened(plain)) => {
            if <[u8; 32]>::from(Sha256::digest(plain)) != v.payload()? {
                return Err("opened, but the payload hash differs".into());
            }
        }
        (Expect::NoMatch, Outcome::Header(OpenError::NotForMe)) => {}
        (Expect::HmacFailure, Outcome::Header(e)) if is_mac_error(e) => {}
        (Expect::HeaderFailure, Outcome::Header(e)) if is_header_refusal(e) => {}
        (Expect::PayloadFailure, Outcome::Payload(OpenError::Tampered(_))) => {
            let released = released_by_bare_age(v)?;
            if <[u8; 32]>::from(Sha256::digest(&released)) != v.payload()? {
                return Err("the bare age crate's partial plaintext does not match".into());
            }
            if !released.is_empty() {
                *withheld += 1;
            }
        }
        (expect, got) => return Err(format!("expected {expect:?}, got {got:?}")),
    }
    Ok("x25519: bundle open path")
}

fn check_armored(v: &Vector) -> Result<&'static str, String> {
    // Fresh keys stand in for a hybrid identity, which dossier cannot hold.
    let ring = keyring(&v.identities)
        .or_else(|_| keyring(&[]))
        .map_err(|e| e.to_string())?;
    match run_open_path(&v.body, &ring)? {
        Outcome::Header(OpenError::NotABundle) => Ok("armored: refused by the bundle open path"),
        got => Err(format!(
            "expected the armor refusal NotABundle, got {got:?}"
        )),
    }
}

fn check_scrypt(v: &Vector) -> Result<&'static str, String> {
    let ring = keyring(&v.identities).map_err(|e| format!("identity refused: {e}"))?;
    let bundle_path = run_open_path(&v.body, &ring)?;
    let passphrase_file = matches!(bundle_path, Outcome::Header(OpenError::PassphraseEncrypted));
    match bundle_path {
        Outcome::Header(OpenError::PassphraseEncrypted) => {}
        Outcome::Header(e) if v.expect == Expect::HeaderFailure && is_header_refusal(&e) => {}
        // `Scrypt` is not an scrypt stanza: not a passphrase file, and no key of ours.
        Outcome::Header(OpenError::NotForMe) if v.expect == Expect::NoMatch => {}
        got => {
            return Err(format!(
                "bundle open path: expected PassphraseEncrypted, got {got:?}"
            ));
        }
    }
    for pass in &v.passphrases {
        let got = decrypt_passphrase_file(&v.body[..], &SecretString::from(pass.clone()));
        match (v.expect, &got) {
            (Expect::Success, Ok(plain)) => {
                if <[u8; 32]>::from(Sha256::digest(&plain[..])) != v.payload()? {
                    return Err("keyring layer: payload hash differs".into());
                }
            }
            (Expect::NoMatch, Err(KeyringError::WrongPassphrase)) => {}
            // Not a passphrase file at all (§6: `Corrupt`).
            (Expect::NoMatch, Err(KeyringError::Corrupt)) if !passphrase_file => {}
            (Expect::HeaderFailure, Err(KeyringError::Corrupt)) => {}
            (expect, got) => {
                return Err(format!(
                    "keyring layer: expected {expect:?}, got {:?}",
                    got.as_ref().map(|p| p.len())
                ));
            }
        }
    }
    Ok("scrypt: refused by the bundle open path, honoured by the keyring layer")
}

fn check_hybrid(v: &Vector) -> Result<&'static str, String> {
    let (hybrid, x25519): (Vec<String>, Vec<String>) = v
        .identities
        .iter()
        .cloned()
        .partition(|i| i.starts_with(HYBRID_IDENTITY));
    for id in &hybrid {
        if !matches!(
            FacilityKeys::from_secrets(id, SEED),
            Err(KeyringError::Corrupt)
        ) {
            return Err("a hybrid identity was accepted as a dossier key".into());
        }
    }
    // The node holds whatever X25519 keys the vector has, else keys of its own.
    let ring = keyring(&x25519).map_err(|e| format!("identity refused: {e}"))?;
    match (v.expect, run_open_path(&v.body, &ring)?) {
        (_, Outcome::Header(OpenError::NotForMe)) => {}
        (Expect::HeaderFailure, Outcome::Header(e)) if is_header_refusal(&e) => {}
        (_, got) => return Err(format!("expected NotForMe, got {got:?}")),
    }
    Ok("hybrid: not for this node")
}

fn check(v: &Vector, withheld: &mut usize) -> Result<&'static str, String> {
    if v.armored {
        check_armored(v)
    } else if v.expect == Expect::ArmorFailure {
        Err("armor failure without armor".into())
    } else if !v.passphrases.is_empty() {
        check_scrypt(v)
    } else if v.identities.iter().any(|i| i.starts_with(HYBRID_IDENTITY)) {
        check_hybrid(v)
    } else {
        check_x25519(v, withheld)
    }
}

#[test]
fn cctv_age_vectors_through_the_open_path() {
    let dir = vector_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the CCTV age vectors are missing from {} ({e}); fetch them with \
             `bash tests/fetch-cctv-age` (tests/run does this first)",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        EXPECTED_VECTORS,
        "{} holds {} files, cctv-age 0.2.0 has {EXPECTED_VECTORS}; rerun `bash tests/fetch-cctv-age`",
        dir.display(),
        files.len()
    );

    let mut failures = BTreeMap::new();
    let mut by_layer = BTreeMap::<String, usize>::new();
    let mut by_expect = BTreeMap::<String, usize>::new();
    let mut withheld = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let result = fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| Vector::parse(name.clone(), &bytes))
            .and_then(|v| {
                *by_expect.entry(format!("{:?}", v.expect)).or_default() += 1;
                check(&v, &mut withheld)
                    .map(|layer| format!("{layer}: {:?}", v.expect))
                    .map_err(|e| format!("{}: {e}", v.name))
            });
        match result {
            Ok(layer) => *by_layer.entry(layer).or_default() += 1,
            Err(e) => {
                failures.insert(name, e);
            }
        }
    }
    eprintln!("CCTV age vectors by expect: {by_expect:?}");
    eprintln!("CCTV age vectors by layer and expect: {by_layer:#?}");
    eprintln!("payload failures where bare age released bytes that dossier withheld: {withheld}");
    assert!(
        failures.is_empty(),
        "{} of {} CCTV vectors failed:\n{}",
        failures.len(),
        files.len(),
        failures.into_values().collect::<Vec<_>>().join("\n")
    );
    // The partial-plaintext check has teeth: some payload failures release bytes in age.
    assert!(withheld > 0);
}
