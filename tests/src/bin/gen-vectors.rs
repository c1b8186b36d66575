//! `gen-vectors`: writes dossier's test vectors (docs/protocol.md §14) into a directory.
//!
//! ```text
//! cargo run -p dossier-tests --bin gen-vectors -- tests/vectors [--force]
//! ```
//!
//! Card, fingerprint and manifest vectors are deterministic: fixed Ed25519 seeds and fixed
//! age X25519 identities give byte-identical files on every run, and Ed25519 signatures are
//! deterministic. Bundle vectors hold age ciphertext, which is randomised (file key,
//! ephemeral keys, payload nonce), so an existing bundle vector is kept as committed unless
//! `--force` is given; with `--force` every file is rewritten and files this generator no
//! longer makes are removed.
//!
//! Valid cards and bundles come from dossier_bundle's public API (`FacilityKeys::from_secrets`,
//! `FacilityCard::issue`, `seal::seal`). Every malformed case is built here by hand from the
//! spec: the signature input, key id, fingerprint, card body, card envelope, manifest JSON
//! and ustar container are re-implemented in this file, and the generator asserts that they
//! agree byte for byte with what the library produces. A disagreement means the code and
//! docs/protocol.md have drifted apart, and the generator stops.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use dossier_bundle::card::CardDetails;
use dossier_bundle::seal::{PartSource, SealRequest, seal};
use dossier_bundle::{
    BundleId, BundleKind, CountryCode, FacilityCard, FacilityId, FacilityKeys, PartPath, PartyKind,
    Timestamp, media,
};

// ---------------------------------------------------------------------------------------
// Fixed parties. The age identities were made once with `age-keygen`, the Ed25519 seeds once
// from /dev/urandom; they are test keys and protect nothing.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Party {
    id: &'static str,
    name: &'static str,
    country: &'static str,
    patient: bool,
    age: &'static str,
    seed: &'static str,
}

const MERCY: Party = Party {
    id: "us-mercy-intl",
    name: "Mercy General Hospital \u{2013} International Office",
    country: "US",
    patient: false,
    age: "AGE-SECRET-KEY-1C0UDXUY6L83KQ9YYWWPU972QCS4AKM4M6U3HUDSY22DTHZK6K2DQ37YMD0",
    seed: "8QSP7ipfMHh6xrMSKyFKW9Rsif4CLSDdjF5e8dk3uVM=",
};
/// Mercy's key set before its rotation.
const MERCY_OLD: Party = Party {
    age: "AGE-SECRET-KEY-1E0DEKDZT093PNYNYUFGCKJL7NK9S5LYAV0N4UD6YX3PWKEPRRV8SMSG2FW",
    seed: "2a2NIFrSNAJXLnvTp+gnnkcKDbxiHME0b8ibJR6fmKw=",
    ..MERCY
};
/// The reader of almost every bundle vector.
const BANGKOK: Party = Party {
    id: "th-bangkok-clinic",
    name: "Bangkok International Clinic",
    country: "TH",
    patient: false,
    age: "AGE-SECRET-KEY-1HGVCRL8MK8DCJ632YWE9XY4DZHXHQWGDGU2KF8JA75J7DHCN8HUQZAKA5W",
    seed: "Jo1EfLkesjQuScpr6kU4ger/Xh5DaPbEHpLJ+qbHlw4=",
};
/// The reader's key set before its rotation (kept in its keyring as retired).
const BANGKOK_OLD: Party = Party {
    age: "AGE-SECRET-KEY-1MSAPM723CXZTFYN24VLT3727CW32H5KYVUXGA6Y5EKUX9VAYSN5SL0AZMH",
    seed: "wlS4J+3ddzh98grqes57Gxuj6rPVtzxpPNl/pVjJY4s=",
    ..BANGKOK
};
const APOLLO: Party = Party {
    id: "in-apollo-chennai",
    name: "Apollo Hospitals Chennai",
    country: "IN",
    patient: false,
    age: "AGE-SECRET-KEY-1WS6UWLS4K6X24UJ7VR9D9E4YR6VRKPTQK04C5E8NLYJ8TUH3H89QWAR2K3",
    seed: "/Aw4acn6rFphmWdfmjHYon1WCFt5Ec6+xDxTHGUhkAs=",
};
/// A facility the reader never pinned.
const STRANGER: Party = Party {
    id: "mx-clinica-norte",
    name: "Cl\u{ed}nica del Norte",
    country: "MX",
    patient: false,
    age: "AGE-SECRET-KEY-12WCM2CQKHXATVZHHW5FVU8AVP386QAE6CHEP7Q775CZ7WW9RUWNQW78SX8",
    seed: "dKn/uCycIYQMBKrPKVv3OLL6bCmXhAb63YTesWQxE8A=",
};
/// Someone claiming to be Mercy with keys of their own.
const IMPOSTOR: Party = Party {
    age: "AGE-SECRET-KEY-1Z8AR68HVU4JH0Q52Y65NJCVFN2HEZ9JXK46Q07XU6DW4DQWXKQVSSKCDL0",
    seed: "xieMVRrCDd6FoS+F4JdgzABUiP3Yr8+d/t75stP7N/Y=",
    ..MERCY
};
const PATIENT: Party = Party {
    id: "p-somchai-0001",
    name: "Somchai Jaidee (\u{e17}\u{e14}\u{e2a}\u{e2d}\u{e1a})",
    country: "TH",
    patient: true,
    age: "AGE-SECRET-KEY-12CYKF4WQHT86AFP4S2J8D3UKDPH95ZVFXF5D6EAX88938LSGQ4JSWC076R",
    seed: "mAJCguKsF8rqqTicGkaAX6SGv7tFaZWz89ymDTZbthw=",
};

const CARD_CREATED: &str = "2026-11-23T09:00:00Z";
const ROTATED_CREATED: &str = "2027-05-01T08:00:00Z";
const PATIENT_EXPIRES: &str = "2028-11-23T09:00:00Z";
const BUNDLE_CREATED: &str = "2026-11-24T10:30:00Z";
const BUNDLE_ID: &str = "6f1c2e9a4b7d4c0e8a3f5b2d1e0c9a87";
const SUBJECT: &str = "Treatment history before cardiac surgery";
const THREAD: &str = "t-2026-0042";
const PATIENT_REF: &str = "MRN-TEST-0001";

impl Party {
    fn keys(&self) -> FacilityKeys {
        FacilityKeys::from_secrets(self.age, self.seed).expect("fixed keys parse")
    }
    fn signing_key(&self) -> SigningKey {
        let seed: [u8; 32] = B64.decode(self.seed).unwrap().try_into().unwrap();
        SigningKey::from_bytes(&seed)
    }
    fn verifying_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }
    fn recipient(&self) -> String {
        age::x25519::Identity::from_str(self.age)
            .unwrap()
            .to_public()
            .to_string()
    }
    fn key_id(&self) -> [u8; 32] {
        key_id(&self.verifying_key(), &self.recipient())
    }
    fn key_hex(&self) -> String {
        hex(&self.key_id())
    }
    fn fingerprint(&self) -> String {
        fingerprint(&self.key_id())
    }
    fn kind(&self) -> &'static str {
        if self.patient { "patient" } else { "facility" }
    }
    fn details(&self) -> CardDetails {
        CardDetails {
            id: FacilityId::parse(self.id).unwrap(),
            name: self.name.to_owned(),
            country: CountryCode::parse(self.country).unwrap(),
            kind: if self.patient {
                PartyKind::Patient
            } else {
                PartyKind::Facility
            },
        }
    }
    /// A `reader_key:` header value.
    fn reader_key(&self) -> String {
        format!("{} {}", self.age, self.seed)
    }
}

// ---------------------------------------------------------------------------------------
// The spec, re-implemented independently of dossier_bundle.
// ---------------------------------------------------------------------------------------

const CARD_SELF: &str = "dossier/card-self/v1";
const CARD_ROTATION: &str = "dossier/card-rotation/v1";
const MANIFEST_CONTEXT: &str = "dossier/manifest/v1";

/// §4: the bytes an Ed25519 signature is made over.
fn signature_input(context: &str, message: &[u8]) -> Vec<u8> {
    let mut v = context.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(message);
    v
}

fn sign(p: &Party, context: &str, message: &[u8]) -> [u8; 64] {
    p.signing_key()
        .sign(&signature_input(context, message))
        .to_bytes()
}

/// §3.1: SHA-256("dossier/key-id/v1" || 0x00 || ed25519 key || age recipient).
fn key_id(ed25519: &[u8; 32], age_recipient: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"dossier/key-id/v1\0");
    h.update(ed25519);
    h.update(age_recipient.as_bytes());
    h.finalize().into()
}

/// §3.2: six groups of five digits from the first 30 bytes of the key id.
fn fingerprint(id: &[u8; 32]) -> String {
    id[..30]
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// A JSON string literal: `"` and `\` escaped, control characters as short escapes or
/// `\u00xx`, everything else (including non-ASCII) as raw UTF-8 (§5.2).
fn js(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            '\u{8}' => o.push_str("\\b"),
            '\u{c}' => o.push_str("\\f"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn js_opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".to_owned(), js)
}

/// §5.2: the signed card body.
#[derive(Clone)]
struct CardBody {
    id: String,
    name: String,
    country: String,
    kind: String,
    age_recipient: String,
    signing_key: String,
    created_at: String,
    expires_at: Option<String>,
    previous_key: Option<String>,
}

impl CardBody {
    fn of(p: &Party, created: &str, expires: Option<&str>, previous: Option<&Party>) -> Self {
        Self {
            id: p.id.into(),
            name: p.name.into(),
            country: p.country.into(),
            kind: p.kind().into(),
            age_recipient: p.recipient(),
            signing_key: B64.encode(p.verifying_key()),
            created_at: created.into(),
            expires_at: expires.map(Into::into),
            previous_key: previous.map(Party::key_hex),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"id\":{},\"name\":{},\"country\":{},\"kind\":{},\"age_recipient\":{},\
             \"signing_key\":{},\"created_at\":{},\"expires_at\":{},\"previous_key\":{}}}",
            js(&self.id),
            js(&self.name),
            js(&self.country),
            js(&self.kind),
            js(&self.age_recipient),
            js(&self.signing_key),
            js(&self.created_at),
            js_opt(&self.expires_at),
            js_opt(&self.previous_key),
        )
    }
}

/// §5.1: the card envelope as dossier writes it (two-space pretty JSON, final newline).
fn envelope(fields: &[(&str, String)]) -> Vec<u8> {
    let lines: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  {}: {}", js(k), js(v)))
        .collect();
    format!("{{\n{}\n}}\n", lines.join(",\n")).into_bytes()
}

fn card_file(body: &[u8], sig: &[u8], rotation: Option<&[u8]>) -> Vec<u8> {
    let mut f = vec![
        ("dossier_card", "v1".to_owned()),
        ("body", B64.encode(body)),
        ("signature", B64.encode(sig)),
    ];
    if let Some(r) = rotation {
        f.push(("rotation_signature", B64.encode(r)));
    }
    envelope(&f)
}

/// A card signed as the spec says: self signature by `p`, rotation signature by `old`.
fn signed_card(p: &Party, body: &CardBody, old: Option<&Party>) -> Vec<u8> {
    let b = body.json();
    let sig = sign(p, CARD_SELF, b.as_bytes());
    let rot = old.map(|o| sign(o, CARD_ROTATION, b.as_bytes()));
    card_file(b.as_bytes(), &sig, rot.as_ref().map(|r| &r[..]))
}

/// A card from the library, checked byte for byte against the spec.
fn issued(p: &Party, created: &str, expires: Option<&str>, old: Option<&Party>) -> FacilityCard {
    let old_keys = old.map(Party::keys);
    let card = FacilityCard::issue(
        &p.keys(),
        &p.details(),
        ts(created),
        expires.map(ts),
        old_keys.as_ref(),
    )
    .expect("fixed card issues");
    let mine = signed_card(p, &CardBody::of(p, created, expires, old), old);
    assert_eq!(
        String::from_utf8_lossy(&card.to_file_bytes()),
        String::from_utf8_lossy(&mine),
        "FacilityCard::issue differs from docs/protocol.md §5 for {}",
        p.id
    );
    assert_eq!(card.key_id().to_hex(), p.key_hex(), "key id of {}", p.id);
    assert_eq!(
        card.fingerprint().as_str(),
        p.fingerprint(),
        "fp of {}",
        p.id
    );
    card
}

fn plain_card(p: &Party) -> FacilityCard {
    issued(p, CARD_CREATED, None, None)
}

/// A card file as one line of JSON, for `pinned_card:` and `rotates_from:` headers.
fn compact(card: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(card).expect("card is JSON");
    v.to_string()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// §8.1: one `parts` entry.
#[derive(Clone)]
struct PartJson {
    path: String,
    media_type: String,
    length: u64,
    sha256: String,
}

impl PartJson {
    fn of(path: &str, data: &[u8]) -> Self {
        Self {
            path: path.into(),
            media_type: media::guess(path, data).into(),
            length: data.len() as u64,
            sha256: hex(&sha256(data)),
        }
    }
}

/// §8.1: the manifest, serialised as dossier writes it (compact, fixed field order).
#[derive(Clone)]
struct ManifestJson {
    format: String,
    bundle_id: String,
    kind: String,
    subject: Option<String>,
    thread: Option<String>,
    patient: Option<String>,
    created_at: String,
    sender: (String, String),
    recipients: Vec<(String, String)>,
    parts: Vec<PartJson>,
}

impl ManifestJson {
    fn new(sender: &Party, recipients: &[&Party], parts: &[(String, Vec<u8>)]) -> Self {
        Self {
            format: "dossier-manifest/v1".into(),
            bundle_id: BUNDLE_ID.into(),
            kind: "record".into(),
            subject: Some(SUBJECT.into()),
            thread: Some(THREAD.into()),
            patient: Some(PATIENT_REF.into()),
            created_at: BUNDLE_CREATED.into(),
            sender: (sender.id.into(), sender.key_hex()),
            recipients: recipients
                .iter()
                .map(|r| (r.id.to_owned(), r.key_hex()))
                .collect(),
            parts: parts.iter().map(|(p, d)| PartJson::of(p, d)).collect(),
        }
    }

    fn json(&self) -> Vec<u8> {
        let party =
            |(id, key): &(String, String)| format!("{{\"id\":{},\"key\":{}}}", js(id), js(key));
        let recipients: Vec<String> = self.recipients.iter().map(party).collect();
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| {
                format!(
                    "{{\"path\":{},\"media_type\":{},\"length\":{},\"sha256\":{}}}",
                    js(&p.path),
                    js(&p.media_type),
                    p.length,
                    js(&p.sha256)
                )
            })
            .collect();
        format!(
            "{{\"format\":{},\"bundle_id\":{},\"kind\":{},\"subject\":{},\"thread\":{},\
             \"patient\":{},\"created_at\":{},\"sender\":{},\"recipients\":[{}],\"parts\":[{}]}}",
            js(&self.format),
            js(&self.bundle_id),
            js(&self.kind),
            js_opt(&self.subject),
            js_opt(&self.thread),
            js_opt(&self.patient),
            js(&self.created_at),
            party(&self.sender),
            recipients.join(","),
            parts.join(","),
        )
        .into_bytes()
    }
}

/// §9.1: a ustar header as dossier writes it.
fn ustar_header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().expect("ustar header");
        if name.len() <= 100 {
            u.name[..name.len()].copy_from_slice(name);
        } else {
            // The longest prefix that fits the 155-byte prefix field, split at a '/'.
            let cut = (0..name.len().min(156))
                .rev()
                .find(|i| name[*i] == b'/')
                .expect("path has a '/' to split at");
            let (prefix, rest) = (&name[..cut], &name[cut + 1..]);
            assert!(rest.len() <= 100, "path cannot be written as ustar");
            u.prefix[..prefix.len()].copy_from_slice(prefix);
            u.name[..rest.len()].copy_from_slice(rest);
        }
    }
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(ts(BUNDLE_CREATED).unix() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// A ustar stream built entry by entry (§9).
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn header(&mut self, h: &tar::Header, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(h.as_bytes());
        self.raw(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn typed(&mut self, name: &str, kind: tar::EntryType, data: &[u8]) -> &mut Self {
        let h = ustar_header(name.as_bytes(), kind, data.len() as u64);
        self.header(&h, data)
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.typed(name, tar::EntryType::Regular, data)
    }
    fn parts(&mut self, parts: &[(String, Vec<u8>)]) -> &mut Self {
        for (p, d) in parts {
            self.file(&format!("parts/{p}"), d);
        }
        self
    }
    fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(data);
        self
    }
    /// The end-of-archive marker: two zero blocks.
    fn end(&mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        std::mem::take(&mut self.0)
    }
}

/// §9: parts, `manifest.json`, `manifest.sig`, end marker.
fn container(parts: &[(String, Vec<u8>)], manifest: &[u8], sig: &[u8]) -> Vec<u8> {
    Tar::default()
        .parts(parts)
        .file("manifest.json", manifest)
        .file("manifest.sig", sig)
        .end()
}

/// A container whose manifest Mercy signed properly.
fn mercy_container(m: &ManifestJson, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let j = m.json();
    container(parts, &j, &sign(&MERCY, MANIFEST_CONTEXT, &j))
}

fn encrypt(to: &[String], plaintext: &[u8]) -> Vec<u8> {
    let rs: Vec<age::x25519::Recipient> = to.iter().map(|r| r.parse().unwrap()).collect();
    let enc = age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
        .expect("recipients");
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap();
    out
}

/// §10: every recipient, then the sender.
fn to_bangkok_and_mercy(plaintext: &[u8]) -> Vec<u8> {
    encrypt(&[BANGKOK.recipient(), MERCY.recipient()], plaintext)
}

fn decrypt(identity: &str, ciphertext: &[u8]) -> Vec<u8> {
    let id = age::x25519::Identity::from_str(identity).unwrap();
    let d = age::Decryptor::new(ciphertext).unwrap();
    let mut r = d
        .decrypt(std::iter::once(&id as &dyn age::Identity))
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    out
}

/// Length of the age header (through the MAC line's newline).
fn age_header_len(ct: &[u8]) -> usize {
    let mac = ct.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
    mac + ct[mac..].iter().position(|b| *b == b'\n').unwrap() + 1
}

// ---------------------------------------------------------------------------------------
// Content. Invented test data: no real patient.
// ---------------------------------------------------------------------------------------

const FHIR_IPS: &[u8] = br#"{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient","id":"test-0001","name":[{"family":"Jaidee","given":["Somchai"]}],"birthDate":"1970-01-01"}},{"resource":{"resourceType":"Condition","code":{"text":"Test condition"}}}]}"#;

fn dicom_like() -> Vec<u8> {
    let mut d = vec![0u8; 128];
    d.extend_from_slice(b"DICM");
    d.extend((0u16..700).map(|i| (i.wrapping_mul(37) % 251) as u8));
    d
}

/// Deterministic filler bytes.
fn filler(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = sha256(b"dossier test vector filler");
    while out.len() < len {
        out.extend_from_slice(&block);
        block = sha256(&block);
    }
    out.truncate(len);
    out
}

fn parts_of(list: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    list.iter()
        .map(|(p, d)| ((*p).to_owned(), d.to_vec()))
        .collect()
}

fn std_parts() -> Vec<(String, Vec<u8>)> {
    parts_of(&[
        ("ips/patient-summary.json", FHIR_IPS),
        ("imaging/ct-0001.dcm", &dicom_like()),
    ])
}

// ---------------------------------------------------------------------------------------
// Vector files.
// ---------------------------------------------------------------------------------------

struct Vector {
    name: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    randomised: bool,
}

impl Vector {
    fn new(name: &str, kind: &str, expect: &str) -> Self {
        Self {
            name: name.into(),
            headers: vec![
                ("expect".into(), expect.into()),
                ("type".into(), kind.into()),
            ],
            body: Vec::new(),
            randomised: false,
        }
    }
    fn h(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        assert!(
            !value.contains('\n'),
            "{}: header {key} holds a newline",
            self.name
        );
        self.headers.push((key.into(), value));
        self
    }
    fn error(self, error: &str) -> Self {
        self.h("error", error)
    }
    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }
}

// ---------------------------------------------------------------------------------------
// Fingerprint and card vectors.
// ---------------------------------------------------------------------------------------

fn fingerprint_vector(name: &str, p: &Party, comment: &str) -> Vector {
    let keys = p.keys();
    assert_eq!(keys.key_id().to_hex(), p.key_hex());
    assert_eq!(keys.key_id().fingerprint().as_str(), p.fingerprint());
    Vector::new(name, "fingerprint", "success")
        .h("comment", comment)
        .h("age_identity", p.age)
        .h("signing_seed", p.seed)
        .h("age_recipient", p.recipient())
        .h("signing_key", B64.encode(p.verifying_key()))
        .h("key_id", p.key_hex())
        .h("fingerprint", p.fingerprint())
}

/// A valid card vector with everything the check needs to compare fields.
fn card_ok(
    name: &str,
    p: &Party,
    card_bytes: Vec<u8>,
    created: &str,
    expires: Option<&str>,
) -> Vector {
    let mut v = Vector::new(name, "card", "success")
        .h("id", p.id)
        .h("name", p.name)
        .h("country", p.country)
        .h("party", p.kind())
        .h("created_at", created);
    if let Some(e) = expires {
        v = v.h("expires_at", e);
    }
    v.h("age_recipient", p.recipient())
        .h("signing_key", B64.encode(p.verifying_key()))
        .h("key_id", p.key_hex())
        .h("fingerprint", p.fingerprint())
        .body(card_bytes)
}

fn card_err(name: &str, error: &str, comment: &str, body: Vec<u8>) -> Vector {
    Vector::new(name, "card", "card_error")
        .error(error)
        .h("comment", comment)
        .body(body)
}

/// The standard Mercy body with one field changed, self-signed by Mercy.
fn mercy_card_with(edit: impl FnOnce(&mut CardBody)) -> Vec<u8> {
    let mut b = CardBody::of(&MERCY, CARD_CREATED, None, None);
    edit(&mut b);
    signed_card(&MERCY, &b, None)
}

/// Mercy's card body, signed by `signer` under `context`, no rotation.
fn mercy_body_signed(signer: &Party, context: &str) -> Vec<u8> {
    let b = CardBody::of(&MERCY, CARD_CREATED, None, None).json();
    card_file(b.as_bytes(), &sign(signer, context, b.as_bytes()), None)
}

/// Mercy's standard card, envelope fields given explicitly.
fn mercy_envelope(edit: impl FnOnce(&mut Vec<(&'static str, String)>)) -> Vec<u8> {
    let b = CardBody::of(&MERCY, CARD_CREATED, None, None).json();
    let mut f = vec![
        ("dossier_card", "v1".to_owned()),
        ("body", B64.encode(b.as_bytes())),
        (
            "signature",
            B64.encode(sign(&MERCY, CARD_SELF, b.as_bytes())),
        ),
    ];
    edit(&mut f);
    envelope(&f)
}

/// Adds the group order L to the S half of a signature (little-endian), making it
/// non-canonical but equal modulo L.
fn malleate(sig: &[u8; 64]) -> [u8; 64] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let s = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = s as u8;
        carry = s >> 8;
    }
    assert_eq!(carry, 0);
    out
}

fn card_vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let mercy = plain_card(&MERCY).to_file_bytes();
    let mercy_old = plain_card(&MERCY_OLD);
    let std_body = || CardBody::of(&MERCY, CARD_CREATED, None, None);

    v.push(
        card_ok("card_valid", &MERCY, mercy.clone(), CARD_CREATED, None)
            .h(
                "comment",
                "A facility card issued from fixed keys; re-issuing it must give these exact bytes",
            )
            .h("age_identity", MERCY.age)
            .h("signing_seed", MERCY.seed),
    );
    let patient = issued(&PATIENT, CARD_CREATED, Some(PATIENT_EXPIRES), None);
    v.push(
        card_ok(
            "card_valid_patient",
            &PATIENT,
            patient.to_file_bytes(),
            CARD_CREATED,
            Some(PATIENT_EXPIRES),
        )
        .h(
            "comment",
            "A patient card with an expiry and a non-ASCII name (raw UTF-8 in the body)",
        )
        .h("age_identity", PATIENT.age)
        .h("signing_seed", PATIENT.seed),
    );
    let rotated = issued(&MERCY, ROTATED_CREATED, None, Some(&MERCY_OLD));
    v.push(
        card_ok("card_rotated", &MERCY, rotated.to_file_bytes(), ROTATED_CREATED, None)
            .h("comment", "A card made by key rotation: previous_key names the old key set, which signed rotation_signature")
            .h("age_identity", MERCY.age)
            .h("signing_seed", MERCY.seed)
            .h("previous_age_identity", MERCY_OLD.age)
            .h("previous_signing_seed", MERCY_OLD.seed)
            .h("previous_key", MERCY_OLD.key_hex())
            .h("rotates_from", compact(&mercy_old.to_file_bytes()))
            .h("rotation", "valid"),
    );
    let rot_body = CardBody::of(&MERCY, ROTATED_CREATED, None, Some(&MERCY_OLD));
    let rb = rot_body.json();
    let by_stranger = card_file(
        rb.as_bytes(),
        &sign(&MERCY, CARD_SELF, rb.as_bytes()),
        Some(&sign(&STRANGER, CARD_ROTATION, rb.as_bytes())),
    );
    v.push(
        card_ok("card_rotation_signed_by_stranger", &MERCY, by_stranger, ROTATED_CREATED, None)
            .h("comment", "Self-signature is valid, but the rotation signature is by a key other than previous_key: the card parses, yet must not move a pin")
            .h("previous_key", MERCY_OLD.key_hex())
            .h("rotates_from", compact(&mercy_old.to_file_bytes()))
            .h("rotation", "invalid"),
    );
    let mut wrong_prev = rot_body.clone();
    wrong_prev.previous_key = Some(STRANGER.key_hex());
    v.push(
        card_ok("card_rotation_wrong_previous_key", &MERCY, signed_card(&MERCY, &wrong_prev, Some(&MERCY_OLD)), ROTATED_CREATED, None)
            .h("comment", "Rotation signature by the old key, but previous_key names another key set: not a rotation from the old card")
            .h("previous_key", STRANGER.key_hex())
            .h("rotates_from", compact(&mercy_old.to_file_bytes()))
            .h("rotation", "invalid"),
    );
    let wrong_ctx = card_file(
        rb.as_bytes(),
        &sign(&MERCY, CARD_SELF, rb.as_bytes()),
        Some(&sign(&MERCY_OLD, CARD_SELF, rb.as_bytes())),
    );
    v.push(
        card_ok("card_rotation_signature_wrong_context", &MERCY, wrong_ctx, ROTATED_CREATED, None)
            .h("comment", "The old key signed the body under the card-self context instead of card-rotation: the rotation does not verify")
            .h("previous_key", MERCY_OLD.key_hex())
            .h("rotates_from", compact(&mercy_old.to_file_bytes()))
            .h("rotation", "invalid"),
    );
    let mut at_limit = mercy.clone();
    at_limit.resize(dossier_bundle::limits::MAX_CARD_BYTES, b' ');
    v.push(
        card_ok("card_at_size_limit", &MERCY, at_limit, CARD_CREATED, None).h(
            "comment",
            "The valid card padded with JSON whitespace to exactly 16384 bytes: accepted",
        ),
    );

    let mut over = mercy.clone();
    over.resize(dossier_bundle::limits::MAX_CARD_BYTES + 1, b' ');
    v.push(card_err(
        "card_oversized",
        "too_large",
        "The valid card padded with whitespace to 16385 bytes: refused before parsing",
        over,
    ));

    let b = std_body().json();
    let forged = b.replace("International Office", "International Offica");
    v.push(card_err(
        "card_bad_signature",
        "bad_signature",
        "One letter of the name changed after signing",
        card_file(
            forged.as_bytes(),
            &sign(&MERCY, CARD_SELF, b.as_bytes()),
            None,
        ),
    ));
    v.push(card_err(
        "card_signature_by_other_key",
        "bad_signature",
        "The body is signed by another facility's key, not the signing_key it carries",
        mercy_body_signed(&STRANGER, CARD_SELF),
    ));
    v.push(card_err(
        "card_signature_wrong_context",
        "bad_signature",
        "Signed by the right key under the manifest context: domain separation must refuse it",
        mercy_body_signed(&MERCY, MANIFEST_CONTEXT),
    ));
    v.push(card_err(
        "card_signature_malleable_s",
        "bad_signature",
        "S replaced by S + L (same value mod L): strict verification refuses non-canonical S",
        {
            let s = malleate(&sign(&MERCY, CARD_SELF, b.as_bytes()));
            card_file(b.as_bytes(), &s, None)
        },
    ));
    v.push(card_err(
        "card_wrong_version",
        "unknown_version",
        "dossier_card is v2: reported as a newer version, not as malformed",
        mercy_envelope(|f| f[0].1 = "v2".into()),
    ));
    v.push(card_err(
        "card_not_json",
        "malformed",
        "Not JSON at all",
        b"dossier card v1\nid: us-mercy-intl\n".to_vec(),
    ));
    v.push(card_err(
        "card_unknown_envelope_field",
        "malformed",
        "An envelope member this version does not define",
        mercy_envelope(|f| f.push(("comment", "hello".into()))),
    ));
    v.push(card_err(
        "card_missing_signature",
        "malformed",
        "No signature member",
        mercy_envelope(|f| f.truncate(2)),
    ));
    v.push(card_err(
        "card_body_base64_wrapped",
        "malformed",
        "The body base64 is wrapped at 76 columns (a newline inside the string): only unwrapped, padded standard base64 is accepted",
        mercy_envelope(|f| f[1].1.insert(76, '\n')),
    ));
    v.push(card_err(
        "card_signature_noncanonical_base64",
        "malformed",
        "The signature's last base64 digit has non-zero unused bits: decodes to the same bytes in lax decoders, refused here",
        mercy_envelope(|f| {
            let s = &mut f[2].1;
            let i = s.len() - 3;
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let v = alphabet.iter().position(|c| *c == s.as_bytes()[i]).unwrap();
            assert_eq!(v & 0xf, 0);
            s.replace_range(i..=i, &(alphabet[v | 1] as char).to_string());
        }),
    ));
    v.push(card_err(
        "card_signature_too_short",
        "malformed",
        "A 63-byte signature",
        mercy_envelope(|f| {
            let mut s = B64.decode(&f[2].1).unwrap();
            s.pop();
            f[2].1 = B64.encode(s);
        }),
    ));
    v.push(card_err(
        "card_unknown_body_field",
        "malformed",
        "The signed body has a member this version does not define; signature valid",
        {
            let body =
                std_body()
                    .json()
                    .replacen('{', "{\"website\":\"https://example.invalid\",", 1);
            card_file(
                body.as_bytes(),
                &sign(&MERCY, CARD_SELF, body.as_bytes()),
                None,
            )
        },
    ));
    v.push(card_err(
        "card_duplicate_body_field",
        "malformed",
        "The signed body names \"name\" twice; parsers that keep the first or the last would disagree, so it is refused",
        {
            let body = std_body().json().replacen("\"country\"", "\"name\":\"Someone Else\",\"country\"", 1);
            card_file(body.as_bytes(), &sign(&MERCY, CARD_SELF, body.as_bytes()), None)
        },
    ));
    v.push(card_err(
        "card_missing_body_field",
        "malformed",
        "The signed body lacks \"kind\"",
        {
            let body = std_body().json().replacen("\"kind\":\"facility\",", "", 1);
            card_file(
                body.as_bytes(),
                &sign(&MERCY, CARD_SELF, body.as_bytes()),
                None,
            )
        },
    ));
    v.push(card_err(
        "card_bad_country",
        "malformed",
        "country UK is not an assigned ISO 3166-1 code (GB is)",
        mercy_card_with(|b| b.country = "UK".into()),
    ));
    v.push(card_err(
        "card_lowercase_country",
        "malformed",
        "country must be written in capitals",
        mercy_card_with(|b| b.country = "us".into()),
    ));
    v.push(card_err(
        "card_bad_facility_id",
        "malformed",
        "Facility ids are lowercase",
        mercy_card_with(|b| b.id = "US-Mercy-Intl".into()),
    ));
    v.push(card_err(
        "card_unknown_party_kind",
        "malformed",
        "kind is neither facility nor patient",
        mercy_card_with(|b| b.kind = "hospital".into()),
    ));
    v.push(card_err(
        "card_bad_name",
        "bad_field",
        "The name has a leading space",
        mercy_card_with(|b| b.name = " Mercy General Hospital".into()),
    ));
    v.push(card_err(
        "card_name_control_character",
        "bad_field",
        "The name holds a tab",
        mercy_card_with(|b| b.name = "Mercy\tGeneral".into()),
    ));
    v.push(card_err(
        "card_name_too_long",
        "bad_field",
        "The name has 129 characters",
        mercy_card_with(|b| b.name = "\u{e9}".repeat(129)),
    ));
    v.push(card_err(
        "card_timestamp_with_offset",
        "malformed",
        "created_at written with +00:00 instead of Z",
        mercy_card_with(|b| b.created_at = "2026-11-23T09:00:00+00:00".into()),
    ));
    v.push(card_err(
        "card_noncanonical_age_recipient",
        "malformed",
        "The age recipient in upper case: valid Bech32, but not the canonical (lowercase) form the key id is computed over",
        mercy_card_with(|b| b.age_recipient = b.age_recipient.to_uppercase()),
    ));
    v.push(card_err(
        "card_signing_key_wrong_length",
        "malformed",
        "signing_key decodes to 31 bytes",
        mercy_card_with(|b| b.signing_key = B64.encode(&MERCY.verifying_key()[..31])),
    ));
    v.push(card_err(
        "card_weak_signing_key",
        "malformed",
        "signing_key is the identity point (small order): refused even though the envelope carries 64 signature bytes",
        mercy_card_with(|b| {
            let mut k = [0u8; 32];
            k[0] = 1;
            b.signing_key = B64.encode(k);
        }),
    ));
    v.push(card_err(
        "card_previous_key_without_rotation_signature",
        "malformed",
        "previous_key is set but the envelope has no rotation_signature",
        mercy_card_with(|b| b.previous_key = Some(MERCY_OLD.key_hex())),
    ));
    v.push(card_err(
        "card_rotation_signature_without_previous_key",
        "malformed",
        "rotation_signature is present but previous_key is null",
        {
            let body = std_body().json();
            card_file(
                body.as_bytes(),
                &sign(&MERCY, CARD_SELF, body.as_bytes()),
                Some(&sign(&MERCY_OLD, CARD_ROTATION, body.as_bytes())),
            )
        },
    ));
    v
}

// ---------------------------------------------------------------------------------------
// Manifest vectors.
// ---------------------------------------------------------------------------------------

fn std_manifest() -> ManifestJson {
    ManifestJson::new(&MERCY, &[&BANGKOK, &APOLLO], &std_parts())
}

fn manifest_err(name: &str, error: &str, comment: &str, body: Vec<u8>) -> Vector {
    Vector::new(name, "manifest", "manifest_error")
        .error(error)
        .h("comment", comment)
        .body(body)
}

fn manifest_with(edit: impl FnOnce(&mut ManifestJson)) -> Vec<u8> {
    let mut m = std_manifest();
    edit(&mut m);
    m.json()
}

fn replaced(m: &ManifestJson, from: &str, to: &str) -> Vec<u8> {
    let j = String::from_utf8(m.json()).unwrap();
    assert!(j.contains(from), "{from}");
    j.replacen(from, to, 1).into_bytes()
}

fn manifest_ok(
    name: &str,
    comment: &str,
    m: &ManifestJson,
    body: Vec<u8>,
    canonical: bool,
) -> Vector {
    let mut v = Vector::new(name, "manifest", "success")
        .h("comment", comment)
        .h("canonical", if canonical { "true" } else { "false" })
        .h("bundle_id", m.bundle_id.clone())
        .h("sender", m.sender.0.clone());
    for p in &m.parts {
        v = v.h("part", format!("{} {} {}", p.sha256, p.length, p.path));
    }
    v.body(body)
}

fn part_named(path: &str) -> PartJson {
    PartJson::of(path, b"x")
}

fn manifest_vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let m = std_manifest();
    let lib = dossier_bundle::Manifest::parse(&m.json()).expect("standard manifest parses");
    assert_eq!(
        lib.to_bytes(),
        m.json(),
        "Manifest::to_bytes differs from §8.1"
    );
    let sig = sign(&MERCY, MANIFEST_CONTEXT, &m.json());
    v.push(
        manifest_ok(
            "manifest_valid",
            "A manifest as dossier writes it, with Mercy's signature over it (§4, §8)",
            &m,
            m.json(),
            true,
        )
        .h("signer_card", compact(&plain_card(&MERCY).to_file_bytes()))
        .h("signer_seed", MERCY.seed)
        .h("signature", B64.encode(sig)),
    );
    let mut minimal = ManifestJson::new(&MERCY, &[&BANGKOK], &parts_of(&[("a", b"")]));
    minimal.kind = "message".into();
    minimal.subject = None;
    minimal.thread = None;
    minimal.patient = None;
    v.push(manifest_ok(
        "manifest_minimal",
        "No subject, thread or patient (null), one recipient, one empty part",
        &minimal,
        minimal.json(),
        true,
    ));
    let omitted = String::from_utf8(minimal.json())
        .unwrap()
        .replace("\"subject\":null,\"thread\":null,\"patient\":null,", "")
        .into_bytes();
    v.push(manifest_ok(
        "manifest_optional_fields_omitted",
        "subject, thread and patient left out instead of null: accepted as null; writers always write them",
        &minimal,
        omitted,
        false,
    ));
    let mut at_limits = ManifestJson::new(&MERCY, &[&BANGKOK], &[]);
    let long = format!("{}/{}/{}", "a".repeat(100), "b".repeat(100), "c".repeat(38));
    assert_eq!(long.len(), 240);
    at_limits.parts = vec![part_named(&long), part_named("\u{e9}".repeat(50).as_str())];
    at_limits.subject = Some("\u{e9}".repeat(500));
    at_limits.patient = Some("p".repeat(200));
    v.push(manifest_ok(
        "manifest_at_limits",
        "A 240-byte part path with two 100-byte components, a 500-character subject and a 200-character patient reference",
        &at_limits,
        at_limits.json(),
        true,
    ));

    v.push(manifest_err(
        "manifest_wrong_version",
        "unknown_version",
        "format dossier-manifest/v2 with v1 fields",
        replaced(&m, "manifest/v1", "manifest/v2"),
    ));
    v.push(manifest_err(
        "manifest_v2_with_new_fields",
        "unknown_version",
        "A v2 manifest with a member v1 does not know: still reported as a newer version",
        replaced(
            &m,
            "\"format\":\"dossier-manifest/v1\",",
            "\"format\":\"dossier-manifest/v2\",\"expires_at\":\"2027-01-01T00:00:00Z\",",
        ),
    ));
    v.push(manifest_err(
        "manifest_missing_format",
        "malformed",
        "No format member",
        replaced(&m, "\"format\":\"dossier-manifest/v1\",", ""),
    ));
    v.push(manifest_err(
        "manifest_not_json",
        "malformed",
        "Not JSON",
        b"format: dossier-manifest/v1\n".to_vec(),
    ));
    v.push(manifest_err(
        "manifest_unknown_field",
        "malformed",
        "A v1 manifest with a member v1 does not define",
        replaced(&m, "\"kind\"", "\"priority\":\"urgent\",\"kind\""),
    ));
    v.push(manifest_err(
        "manifest_duplicate_field",
        "malformed",
        "\"subject\" appears twice",
        replaced(
            &m,
            "\"thread\"",
            "\"subject\":\"Another subject\",\"thread\"",
        ),
    ));
    v.push(manifest_err(
        "manifest_uppercase_hash",
        "malformed",
        "A part's sha256 in upper-case hex",
        manifest_with(|m| m.parts[0].sha256 = m.parts[0].sha256.to_uppercase()),
    ));
    v.push(manifest_err(
        "manifest_bad_bundle_id",
        "malformed",
        "bundle_id in upper-case hex",
        manifest_with(|m| m.bundle_id = m.bundle_id.to_uppercase()),
    ));
    v.push(manifest_err(
        "manifest_unknown_kind",
        "malformed",
        "kind is not record, careplan or message",
        manifest_with(|m| m.kind = "invoice".into()),
    ));
    v.push(manifest_err(
        "manifest_timestamp_fraction",
        "malformed",
        "created_at with fractional seconds",
        manifest_with(|m| m.created_at = "2026-11-24T10:30:00.5Z".into()),
    ));
    v.push(manifest_err(
        "manifest_bad_key_id",
        "malformed",
        "The sender's key id is 63 hex digits",
        manifest_with(|m| {
            m.sender.1.pop();
        }),
    ));
    v.push(manifest_err(
        "manifest_media_type_with_space",
        "malformed",
        "Media types are printable ASCII without spaces or parameters",
        manifest_with(|m| m.parts[0].media_type = "text/plain; charset=utf-8".into()),
    ));
    v.push(manifest_err(
        "manifest_path_traversal",
        "bad_part_path",
        "A '..' component",
        manifest_with(|m| m.parts[0] = part_named("../escape.txt")),
    ));
    v.push(manifest_err(
        "manifest_path_absolute",
        "bad_part_path",
        "An absolute path",
        manifest_with(|m| m.parts[0] = part_named("/etc/passwd")),
    ));
    v.push(manifest_err(
        "manifest_path_dot_component",
        "bad_part_path",
        "A '.' component",
        manifest_with(|m| m.parts[0] = part_named("ips/./summary.json")),
    ));
    v.push(manifest_err(
        "manifest_path_empty_component",
        "bad_part_path",
        "Two slashes in a row",
        manifest_with(|m| m.parts[0] = part_named("ips//summary.json")),
    ));
    v.push(manifest_err(
        "manifest_path_trailing_slash",
        "bad_part_path",
        "A trailing slash (empty last component)",
        manifest_with(|m| m.parts[0] = part_named("ips/")),
    ));
    v.push(manifest_err(
        "manifest_path_backslash",
        "bad_part_path",
        "A backslash, a separator on Windows",
        manifest_with(|m| m.parts[0] = part_named("ips\\..\\..\\escape.txt")),
    ));
    v.push(manifest_err(
        "manifest_path_drive_letter",
        "bad_part_path",
        "A component with ':' as its second character",
        manifest_with(|m| m.parts[0] = part_named("C:/escape.txt")),
    ));
    v.push(manifest_err(
        "manifest_path_control_character",
        "bad_part_path",
        "A newline in a path",
        manifest_with(|m| m.parts[0] = part_named("ips/summary\n.json")),
    ));
    v.push(manifest_err(
        "manifest_path_too_long",
        "bad_part_path",
        "A 241-byte path",
        manifest_with(|m| {
            m.parts[0] = part_named(&format!(
                "{}/{}/{}",
                "a".repeat(100),
                "b".repeat(100),
                "c".repeat(39)
            ))
        }),
    ));
    v.push(manifest_err(
        "manifest_path_component_too_long",
        "bad_part_path",
        "A 101-byte component",
        manifest_with(|m| m.parts[0] = part_named(&"a".repeat(101))),
    ));
    v.push(manifest_err(
        "manifest_path_empty",
        "bad_part_path",
        "An empty path",
        manifest_with(|m| m.parts[0] = part_named("")),
    ));
    v.push(manifest_err(
        "manifest_duplicate_part",
        "duplicate_part",
        "The same path twice",
        manifest_with(|m| m.parts[1] = part_named(&m.parts[0].path.clone())),
    ));
    v.push(manifest_err(
        "manifest_duplicate_part_case_insensitive",
        "duplicate_part",
        "Report.PDF and report.pdf are one file on macOS and Windows",
        manifest_with(|m| m.parts = vec![part_named("Report.PDF"), part_named("report.pdf")]),
    ));
    v.push(manifest_err("manifest_duplicate_part_unicode_case", "duplicate_part", "\u{c9}TUDE.pdf and \u{e9}tude.pdf: case-insensitive beyond ASCII (Unicode lowercase mapping)", manifest_with(|m| m.parts = vec![part_named("\u{c9}TUDE.pdf"), part_named("\u{e9}tude.pdf")])));
    v.push(manifest_err(
        "manifest_file_dir_conflict",
        "path_conflict",
        "scan is a file, then scan/1.dcm needs it to be a directory",
        manifest_with(|m| m.parts = vec![part_named("scan"), part_named("scan/1.dcm")]),
    ));
    v.push(manifest_err(
        "manifest_dir_file_conflict",
        "path_conflict",
        "Scan/1.dcm makes scan a directory, then SCAN is a file (case-insensitive)",
        manifest_with(|m| m.parts = vec![part_named("Scan/1.dcm"), part_named("SCAN")]),
    ));
    v.push(manifest_err(
        "manifest_no_recipients",
        "recipient_count",
        "An empty recipient list",
        manifest_with(|m| m.recipients.clear()),
    ));
    v.push(manifest_err(
        "manifest_too_many_recipients",
        "recipient_count",
        "65 recipients (the limit is 64)",
        manifest_with(|m| {
            m.recipients = (0..65)
                .map(|i| (format!("clinic-{i:03}"), APOLLO.key_hex()))
                .collect()
        }),
    ));
    v.push(manifest_err(
        "manifest_duplicate_recipient",
        "duplicate_recipient",
        "The same recipient id twice",
        manifest_with(|m| m.recipients[1].0 = BANGKOK.id.into()),
    ));
    v.push(manifest_err(
        "manifest_subject_control_character",
        "bad_text",
        "A newline in the subject",
        manifest_with(|m| m.subject = Some("line one\nline two".into())),
    ));
    v.push(manifest_err(
        "manifest_subject_too_long",
        "bad_text",
        "A 501-character subject",
        manifest_with(|m| m.subject = Some("\u{e9}".repeat(501))),
    ));
    v.push(manifest_err(
        "manifest_patient_too_long",
        "bad_text",
        "A 201-character patient reference",
        manifest_with(|m| m.patient = Some("p".repeat(201))),
    ));
    v.push(manifest_err(
        "manifest_part_too_large",
        "part_too_large",
        "A part of 8 GiB (one byte over the ustar limit of 8 GiB - 1)",
        manifest_with(|m| m.parts[0].length = 1 << 33),
    ));
    v
}

// ---------------------------------------------------------------------------------------
// Bundle vectors.
// ---------------------------------------------------------------------------------------

/// Seals with the library and checks the plaintext against the spec's container.
fn sealed(sender: &Party, recipients: &[&Party], parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let sender_card = plain_card(sender);
    let cards: Vec<FacilityCard> = recipients.iter().map(|p| plain_card(p)).collect();
    let sources: Vec<PartSource> = parts
        .iter()
        .enumerate()
        .map(|(i, (p, d))| PartSource {
            path: PartPath::parse(p, i).unwrap(),
            media_type: media::guess(p, d).into(),
            length: d.len() as u64,
        })
        .collect();
    let keys = sender.keys();
    let req = SealRequest {
        sender: &sender_card,
        keys: &keys,
        recipients: &cards,
        bundle_id: BundleId::parse(BUNDLE_ID).unwrap(),
        kind: BundleKind::Record,
        subject: Some(SUBJECT.into()),
        thread: Some(THREAD.into()),
        patient: Some(PATIENT_REF.into()),
        created_at: ts(BUNDLE_CREATED),
    };
    let (done, out) = seal(&req, &sources, |i| Ok(&parts[i].1[..]), Vec::new()).expect("seal");
    let m = ManifestJson::new(sender, recipients, parts);
    assert_eq!(
        done.manifest.to_bytes(),
        m.json(),
        "sealed manifest differs from §8.1"
    );
    let j = m.json();
    let expected = container(parts, &j, &sign(sender, MANIFEST_CONTEXT, &j));
    assert!(
        decrypt(sender.age, &out) == expected,
        "sealed container differs from §9 (or the sender cannot read its own bundle)"
    );
    let stanzas = out.windows(10).filter(|w| w == b"\n-> X25519").count();
    assert_eq!(
        stanzas,
        recipients.len() + 1,
        "§10: one stanza per recipient plus the sender"
    );
    out
}

struct BundleCase {
    v: Vector,
}

impl BundleCase {
    /// A bundle read by Bangkok (current keys only), with Mercy pinned.
    fn new(name: &str, expect: &str, error: Option<&str>, comment: &str, body: Vec<u8>) -> Self {
        let mut v = Vector::new(name, "bundle", expect);
        if let Some(e) = error {
            v = v.error(e);
        }
        v = v.h("comment", comment);
        v.body = body;
        v.randomised = true;
        Self { v }
    }
    fn fail(name: &str, error: &str, comment: &str, body: Vec<u8>) -> Vector {
        Self::new(name, "verification_failed", Some(error), comment, body).std()
    }
    fn manifest_fail(name: &str, detail: &str, comment: &str, body: Vec<u8>) -> Vector {
        Self::new(name, "verification_failed", Some("manifest"), comment, body)
            .detail(detail)
            .std()
    }
    fn detail(mut self, detail: &str) -> Self {
        self.v = self.v.h("detail", detail);
        self
    }
    fn reader(mut self, p: &Party, keys: &[&Party], pins: &[&FacilityCard]) -> Self {
        self.v = self.v.h("reader_id", p.id);
        for k in keys {
            self.v = self.v.h("reader_key", k.reader_key());
        }
        for c in pins {
            self.v = self.v.h("pinned_card", compact(&c.to_file_bytes()));
        }
        self
    }
    fn std(self) -> Vector {
        self.reader(&BANGKOK, &[&BANGKOK], &[&plain_card(&MERCY)]).v
    }
    fn success(self, sender: &Party, parts: &[(String, Vec<u8>)]) -> Self {
        let mut v = self.v.h("bundle_id", BUNDLE_ID).h("sender", sender.id);
        for (p, d) in parts {
            v = v.h("part", format!("{} {} {}", hex(&sha256(d)), d.len(), p));
        }
        Self { v }
    }
}

/// A plaintext container whose first zero block ends at `first_end` and whose total
/// length is `total`, holding one part sized to fit.
fn sized_container(first_end: usize, total: usize) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let pad = |n: usize| n.div_ceil(512) * 512;
    let name = "imaging/series-0001.dcm";
    let mut len = first_end - 2560; // first guess ignoring the manifest
    loop {
        let parts = vec![(name.to_owned(), filler(len))];
        let m = ManifestJson::new(&MERCY, &[&BANGKOK], &parts);
        let want = first_end - 512 - 2048 - pad(m.json().len());
        if want == len {
            let mut c = mercy_container(&m, &parts);
            assert_eq!(c.len(), first_end + 512);
            c.resize(total, 0);
            return (c, parts);
        }
        len = want;
    }
}

fn bundle_vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    let mercy_card = plain_card(&MERCY);
    let parts = std_parts();

    // --- success -------------------------------------------------------------------------
    let valid = sealed(&MERCY, &[&BANGKOK, &APOLLO], &parts);
    v.push(
        BundleCase::new(
            "bundle_valid",
            "success",
            None,
            "Sealed by the library from Mercy to Bangkok and Apollo; Bangkok opens it",
            valid.clone(),
        )
        .success(&MERCY, &parts)
        .std(),
    );
    let empty = parts_of(&[
        ("notes/empty.txt", b""),
        ("notes/follow-up.txt", b"Rest for two weeks.\n"),
    ]);
    v.push(
        BundleCase::new(
            "bundle_empty_part",
            "success",
            None,
            "A zero-length part is a valid part",
            sealed(&MERCY, &[&BANGKOK], &empty),
        )
        .success(&MERCY, &empty)
        .std(),
    );
    let unicode = parts_of(&[(
        "\u{e23}\u{e32}\u{e22}\u{e07}\u{e32}\u{e19}/r\u{e9}sum\u{e9} m\u{e9}dical.pdf",
        b"%PDF-1.7\n% test\n",
    )]);
    v.push(
        BundleCase::new(
            "bundle_unicode_part_path",
            "success",
            None,
            "A part path with Thai, accented letters and a space",
            sealed(&MERCY, &[&BANGKOK], &unicode),
        )
        .success(&MERCY, &unicode)
        .std(),
    );
    v.push(
        BundleCase::new(
            "bundle_read_by_sender",
            "success",
            None,
            "The sender opens its own bundle: it is an age recipient and names itself as sender",
            sealed(&MERCY, &[&BANGKOK], &parts),
        )
        .success(&MERCY, &parts)
        .reader(&MERCY, &[&MERCY], &[&mercy_card])
        .v,
    );
    v.push(
        BundleCase::new("bundle_sealed_to_retired_key", "success", None, "Sealed to Bangkok's old key; Bangkok has rotated and keeps the old key set in its keyring", sealed(&MERCY, &[&BANGKOK_OLD], &parts))
            .success(&MERCY, &parts)
            .reader(&BANGKOK, &[&BANGKOK_OLD, &BANGKOK], &[&mercy_card])
            .v,
    );
    let rotated = issued(&MERCY, ROTATED_CREATED, None, Some(&MERCY_OLD));
    v.push(
        BundleCase::new("bundle_sender_rotated", "success", None, "Signed by Mercy's old key; the reader pinned the old card and then the rotated one, so the old key still verifies", sealed(&MERCY_OLD, &[&BANGKOK], &parts))
            .success(&MERCY, &parts)
            .reader(&BANGKOK, &[&BANGKOK], &[&plain_card(&MERCY_OLD), &rotated])
            .v,
    );
    {
        let long = "imaging/study-1.2.840.113619.2.55.3.604688119.969.1268071029/series-0002-axial-soft-tissue-with-contrast/IM-0001-0001.dcm";
        assert!(long.len() > 100);
        let ps = parts_of(&[
            (long, &dicom_like()),
            ("ips/patient-summary.json", FHIR_IPS),
        ]);
        let m = ManifestJson::new(&MERCY, &[&BANGKOK], &ps);
        let j = m.json();
        let mut t = Tar::default();
        for (p, d) in &ps {
            let mut h = ustar_header(
                format!("parts/{p}").as_bytes(),
                tar::EntryType::Regular,
                d.len() as u64,
            );
            h.set_mode(0o644);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_mtime(0);
            h.set_username("clinic").unwrap();
            h.set_groupname("records").unwrap();
            h.set_cksum();
            t.header(&h, d);
        }
        let mut nul_type = ustar_header(b"manifest.json", tar::EntryType::Regular, j.len() as u64);
        nul_type.as_mut_bytes()[156] = 0;
        nul_type.set_cksum();
        t.header(&nul_type, &j)
            .file("manifest.sig", &sign(&MERCY, MANIFEST_CONTEXT, &j));
        v.push(
            BundleCase::new(
                "bundle_foreign_tar_metadata",
                "success",
                None,
                "Mode 0644, uid 1000, user names, mtime 0, a path split over the ustar prefix field, and a NUL type flag on manifest.json: readers ignore metadata and accept '0' or NUL as a regular file",
                to_bangkok_and_mercy(&t.end()),
            )
            .success(&MERCY, &ps)
            .std(),
        );
    }
    {
        let m = ManifestJson::new(&MERCY, &[&BANGKOK], &[]);
        v.push(
            BundleCase::new("bundle_zero_parts", "success", None, "A signed manifest with no parts: readers accept it (dossier's sealer never makes one)", to_bangkok_and_mercy(&mercy_container(&m, &[])))
                .success(&MERCY, &[])
                .std(),
        );
    }
    {
        let mut c = mercy_container(&std_manifest_to_bangkok(), &parts);
        c.extend(std::iter::repeat_n(0u8, 65536 - 512));
        v.push(
            BundleCase::new("bundle_trailing_zero_padding_at_limit", "success", None, "After the first zero block of the end marker, exactly 65536 zero bytes (the second zero block and 65024 more)", to_bangkok_and_mercy(&c))
                .success(&MERCY, &parts)
                .std(),
        );
    }
    {
        let (c, ps) = sized_container(65536 - 1024, 65536);
        v.push(
            BundleCase::new(
                "bundle_plaintext_one_full_chunk",
                "success",
                None,
                "The container is exactly 65536 bytes: one full age chunk, which is the last chunk",
                to_bangkok_and_mercy(&c),
            )
            .success(&MERCY, &ps)
            .std(),
        );
    }
    let (c, ps) = sized_container(65536, 65536 + 512);
    let split = to_bangkok_and_mercy(&c);
    v.push(
        BundleCase::new("bundle_end_marker_in_last_chunk", "success", None, "The first zero block ends the first 64 KiB chunk; the second zero block is alone in the last chunk", split.clone())
            .success(&MERCY, &ps)
            .std(),
    );

    // --- age layer -----------------------------------------------------------------------
    let hl = age_header_len(&valid);
    let mut flipped = valid.clone();
    flipped[hl + 16 + 100] ^= 0x01;
    v.push(BundleCase::fail(
        "bundle_flipped_payload_byte",
        "tampered",
        "One bit of the first payload chunk flipped: the chunk does not authenticate",
        flipped,
    ));
    let mut mac = valid.clone();
    let m0 = hl - 44;
    assert_eq!(&mac[m0 - 4..m0], b"--- ");
    mac[m0] = if mac[m0] == b'A' { b'B' } else { b'A' };
    v.push(BundleCase::fail(
        "bundle_bad_header_mac",
        "tampered",
        "The first character of the header MAC changed",
        mac,
    ));
    v.push(BundleCase::fail(
        "bundle_truncated",
        "tampered",
        "The last 40 bytes of the file cut off",
        valid[..valid.len() - 40].to_vec(),
    ));
    v.push(BundleCase::fail(
        "bundle_truncated_final_chunk",
        "tampered",
        "bundle_end_marker_in_last_chunk without its last chunk: every entry is intact, only reading the plaintext to its end detects the missing final chunk",
        split[..age_header_len(&split) + 16 + 65536 + 16].to_vec(),
    ));
    v.push(BundleCase::fail(
        "bundle_truncated_header",
        "tampered",
        "Only the first 60 bytes of the age header",
        valid[..60].to_vec(),
    ));
    v.push(BundleCase::fail(
        "bundle_empty_file",
        "not_a_bundle",
        "A zero-byte file",
        Vec::new(),
    ));
    v.push(BundleCase::fail(
        "bundle_not_age",
        "not_a_bundle",
        "A plain, unencrypted container",
        mercy_container(&std_manifest_to_bangkok(), &parts),
    ));
    {
        // age's ASCII armor (PEM-like, 64 columns of padded base64), written out by hand.
        let b64 = B64.encode(&valid);
        let mut armored = b"-----BEGIN AGE ENCRYPTED FILE-----\n".to_vec();
        for line in b64.as_bytes().chunks(64) {
            armored.extend_from_slice(line);
            armored.push(b'\n');
        }
        armored.extend_from_slice(b"-----END AGE ENCRYPTED FILE-----\n");
        v.push(BundleCase::fail(
            "bundle_armored",
            "not_a_bundle",
            "bundle_valid in age's ASCII armor: bundles are binary age files",
            armored,
        ));
    }
    {
        let mut v2 = valid.clone();
        assert_eq!(&v2[..22], b"age-encryption.org/v1\n");
        v2[20] = b'2';
        v.push(BundleCase::fail(
            "bundle_unknown_age_version",
            "unknown_format",
            "The first line says age-encryption.org/v2",
            v2,
        ));
    }
    {
        let mut r = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
            "correct horse battery staple".to_owned(),
        ));
        r.set_work_factor(10);
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(&mercy_container(&std_manifest_to_bangkok(), &parts))
            .unwrap();
        w.finish().unwrap();
        v.push(BundleCase::fail(
            "bundle_scrypt_recipient",
            "passphrase_encrypted",
            "A container encrypted to a passphrase (scrypt stanza, like a keyring): not a bundle",
            out,
        ));
    }
    {
        let mut to = vec![BANGKOK.recipient()];
        to.extend((0..700).map(|_| age::x25519::Identity::generate().to_public().to_string()));
        to.push(MERCY.recipient());
        let big = encrypt(&to, &mercy_container(&std_manifest_to_bangkok(), &parts));
        assert!(age_header_len(&big) > 65536);
        v.push(BundleCase::fail("bundle_header_too_large", "header_too_large", "A valid bundle for Bangkok whose header has 702 X25519 stanzas (about 70 KB): refused before age parses it", big));
    }
    v.push(BundleCase::fail(
        "bundle_not_for_me",
        "not_for_me",
        "Sealed from Mercy to Apollo only",
        sealed(&MERCY, &[&APOLLO], &parts),
    ));

    // --- recipients and sender --------------------------------------------------------------
    {
        let to_apollo = sealed(&MERCY, &[&APOLLO], &parts);
        let plain = decrypt(APOLLO.age, &to_apollo);
        v.push(BundleCase::fail(
            "bundle_not_listed_recipient",
            "not_listed_recipient",
            "Surreptitious forwarding: Mercy sealed this to Apollo; Apollo decrypted it and re-encrypted the same signed container to Bangkok. The signature verifies but Bangkok is not in the signed recipient list",
            encrypt(&[BANGKOK.recipient()], &plain),
        ));
    }
    {
        let m = ManifestJson::new(&MERCY, &[&BANGKOK_OLD], &parts);
        v.push(BundleCase::fail(
            "bundle_listed_with_other_key",
            "not_listed_recipient",
            "Bangkok's id is listed, but with a key id the reader's keyring does not hold (its old key, which this reader never had)",
            to_bangkok_and_mercy(&mercy_container(&m, &parts)),
        ));
    }
    v.push(
        BundleCase::new(
            "bundle_unknown_sender",
            "unknown_sender",
            Some("unknown_sender"),
            "Validly signed by a facility the reader never pinned",
            sealed(&STRANGER, &[&BANGKOK], &parts),
        )
        .std(),
    );
    v.push(
        BundleCase::new("bundle_sender_key_mismatch", "pin_mismatch", Some("sender_key_mismatch"), "Claims to be from us-mercy-intl but is signed by other keys (a validly self-signed impostor card)", sealed(&IMPOSTOR, &[&BANGKOK], &parts))
            .std()
            .h("pinned_fingerprint", MERCY.fingerprint())
            .h("presented_fingerprint", IMPOSTOR.fingerprint()),
    );
    v.push(
        BundleCase::new("bundle_sender_old_key_not_pinned", "pin_mismatch", Some("sender_key_mismatch"), "Signed by Mercy's old key, but the reader only ever pinned the current card: no rotation record links them", sealed(&MERCY_OLD, &[&BANGKOK], &parts))
            .std()
            .h("pinned_fingerprint", MERCY.fingerprint())
            .h("presented_fingerprint", MERCY_OLD.fingerprint()),
    );

    // --- signature ----------------------------------------------------------------------
    let m = std_manifest_to_bangkok();
    let j = m.json();
    let with_sig = |sig: &[u8]| to_bangkok_and_mercy(&container(&parts, &j, sig));
    let mut bad = sign(&MERCY, MANIFEST_CONTEXT, &j);
    bad[10] ^= 0x80;
    v.push(BundleCase::fail(
        "bundle_bad_signature",
        "bad_signature",
        "One bit of manifest.sig flipped",
        with_sig(&bad),
    ));
    v.push(BundleCase::fail(
        "bundle_signature_by_other_key",
        "bad_signature",
        "The manifest names Mercy's key but was signed by another key",
        with_sig(&sign(&IMPOSTOR, MANIFEST_CONTEXT, &j)),
    ));
    v.push(BundleCase::fail(
        "bundle_signature_wrong_context",
        "bad_signature",
        "Signed by Mercy under the card-self context instead of the manifest context",
        with_sig(&sign(&MERCY, CARD_SELF, &j)),
    ));
    v.push(BundleCase::fail(
        "bundle_signature_no_context",
        "bad_signature",
        "Signed by Mercy over the bare manifest bytes, without the context prefix",
        with_sig(&MERCY.signing_key().sign(&j).to_bytes()),
    ));

    // --- container entries --------------------------------------------------------------
    let signed_with_paths = |paths: &[&str], entries: &mut Tar| {
        let ps: Vec<(String, Vec<u8>)> = paths
            .iter()
            .map(|p| ((*p).to_owned(), b"x".to_vec()))
            .collect();
        let mut m = ManifestJson::new(&MERCY, &[&BANGKOK], &ps);
        m.parts = paths.iter().map(|p| part_named(p)).collect();
        let j = m.json();
        to_bangkok_and_mercy(
            &entries
                .file("manifest.json", &j)
                .file("manifest.sig", &sign(&MERCY, MANIFEST_CONTEXT, &j))
                .end(),
        )
    };
    v.push(BundleCase::manifest_fail(
        "bundle_path_traversal",
        "bad_part_path",
        "An entry parts/../escape.txt (listed so in the signed manifest)",
        signed_with_paths(
            &["../escape.txt"],
            Tar::default().file("parts/../escape.txt", b"x"),
        ),
    ));
    v.push(BundleCase::manifest_fail(
        "bundle_absolute_path",
        "bad_part_path",
        "An entry parts//tmp/escape.txt: the part path is absolute",
        signed_with_paths(
            &["/tmp/escape.txt"],
            Tar::default().file("parts//tmp/escape.txt", b"x"),
        ),
    ));
    v.push(BundleCase::manifest_fail(
        "bundle_backslash_path",
        "bad_part_path",
        "An entry parts/..\\escape.txt: a traversal on Windows",
        signed_with_paths(
            &["..\\escape.txt"],
            Tar::default().file("parts/..\\escape.txt", b"x"),
        ),
    ));
    {
        let mut h = ustar_header(b"parts/link", tar::EntryType::Symlink, 0);
        h.set_link_name("/etc/passwd").unwrap();
        h.set_cksum();
        v.push(BundleCase::fail(
            "bundle_symlink_entry",
            "tampered",
            "A symbolic link parts/link -> /etc/passwd (listed as an empty part)",
            signed_with_paths(&["link"], Tar::default().header(&h, b"")),
        ));
        let mut h = ustar_header(b"parts/hard", tar::EntryType::Link, 0);
        h.set_link_name("manifest.json").unwrap();
        h.set_cksum();
        v.push(BundleCase::fail(
            "bundle_hardlink_entry",
            "tampered",
            "A hard link entry",
            signed_with_paths(&["hard"], Tar::default().header(&h, b"")),
        ));
    }
    v.push(BundleCase::fail("bundle_directory_entry", "tampered", "A directory entry parts/ips/ before parts/ips/a (GNU tar writes these; dossier refuses them)", signed_with_paths(&["ips/a"], Tar::default().typed("parts/ips/", tar::EntryType::Directory, b"").file("parts/ips/a", b"x"))));
    v.push(BundleCase::fail(
        "bundle_device_entry",
        "tampered",
        "A character device entry",
        signed_with_paths(
            &["dev"],
            Tar::default().typed("parts/dev", tar::EntryType::Char, b""),
        ),
    ));
    v.push(BundleCase::fail(
        "bundle_fifo_entry",
        "tampered",
        "A FIFO entry",
        signed_with_paths(
            &["fifo"],
            Tar::default().typed("parts/fifo", tar::EntryType::Fifo, b""),
        ),
    ));
    v.push(BundleCase::fail(
        "bundle_pax_global_header",
        "tampered",
        "A pax global extended header entry (type g)",
        signed_with_paths(
            &["a"],
            Tar::default()
                .typed(
                    "pax_global_header",
                    tar::EntryType::XGlobalHeader,
                    b"20 comment=testing\n",
                )
                .file("parts/a", b"x"),
        ),
    ));
    {
        let rec = "path=parts/../escape.txt\n";
        let rec = format!("{} {rec}", rec.len() + 3);
        v.push(BundleCase::new(
            "bundle_pax_path_traversal",
            "verification_failed",
            Some("manifest"),
            "A pax extended header (type x) renames the next entry parts/innocent.txt to parts/../escape.txt. Readers that honour pax see the traversal; readers that refuse pax headers refuse the entry: either way the bundle fails",
            signed_with_paths(&["innocent.txt"], Tar::default().typed("parts/PaxHeaders/innocent.txt", tar::EntryType::XHeader, rec.as_bytes()).file("parts/innocent.txt", b"x")),
        ).detail("bad_part_path").std());
        v.push(BundleCase::new(
            "bundle_gnu_longname_traversal",
            "verification_failed",
            Some("manifest"),
            "A GNU long-name entry (type L) renames the next entry to parts/../escape.txt; as with pax, honouring or refusing it both fail the bundle",
            signed_with_paths(&["innocent.txt"], Tar::default().typed("././@LongLink", tar::EntryType::GNULongName, b"parts/../escape.txt\0").file("parts/innocent.txt", b"x")),
        ).detail("bad_part_path").std());
    }
    v.push(BundleCase::manifest_fail(
        "bundle_duplicate_part",
        "duplicate_part",
        "Two entries parts/report.pdf, both in the signed manifest",
        signed_with_paths(
            &["report.pdf", "report.pdf"],
            Tar::default()
                .file("parts/report.pdf", b"x")
                .file("parts/report.pdf", b"x"),
        ),
    ));
    v.push(BundleCase::manifest_fail(
        "bundle_duplicate_part_case_insensitive",
        "duplicate_part",
        "parts/Report.pdf and parts/report.PDF, both in the signed manifest",
        signed_with_paths(
            &["Report.pdf", "report.PDF"],
            Tar::default()
                .file("parts/Report.pdf", b"x")
                .file("parts/report.PDF", b"x"),
        ),
    ));
    v.push(BundleCase::manifest_fail(
        "bundle_file_dir_conflict",
        "path_conflict",
        "parts/scan then parts/scan/1.dcm",
        signed_with_paths(
            &["scan", "scan/1.dcm"],
            Tar::default()
                .file("parts/scan", b"x")
                .file("parts/scan/1.dcm", b"x"),
        ),
    ));
    v.push(BundleCase::fail(
        "bundle_entry_name_not_utf8",
        "tampered",
        "An entry name with a byte that is not UTF-8",
        signed_with_paths(
            &["a"],
            Tar::default().header(
                &ustar_header(b"parts/\xff.bin", tar::EntryType::Regular, 1),
                b"x",
            ),
        ),
    ));
    {
        let mut h = ustar_header(b"parts/a", tar::EntryType::Regular, 1);
        h.as_mut_bytes()[148] = b'7';
        v.push(BundleCase::fail(
            "bundle_tar_bad_checksum",
            "tampered",
            "A ustar header whose checksum field is wrong",
            signed_with_paths(&["a"], Tar::default().header(&h, b"x")),
        ));
    }

    // --- parts against the manifest ---------------------------------------------------------
    let signed_parts = |m: &ManifestJson, actual: &[(String, Vec<u8>)]| {
        to_bangkok_and_mercy(&mercy_container(m, actual))
    };
    {
        let mut m = std_manifest_to_bangkok();
        m.parts[1].sha256 = hex(&sha256(b"other content"));
        v.push(BundleCase::fail(
            "bundle_part_hash_mismatch",
            "tampered",
            "The signed manifest gives part #1 another SHA-256",
            signed_parts(&m, &parts),
        ));
        let mut m = std_manifest_to_bangkok();
        m.parts[0].length += 1;
        v.push(BundleCase::fail(
            "bundle_part_length_mismatch",
            "tampered",
            "The signed manifest gives part #0 one more byte than its entry has (hash correct)",
            signed_parts(&m, &parts),
        ));
        let m = std_manifest_to_bangkok();
        v.push(BundleCase::fail(
            "bundle_part_missing",
            "tampered",
            "The signed manifest lists two parts; the container holds only the first",
            signed_parts(&m, &parts[..1]),
        ));
        let mut extra = parts.clone();
        extra.push(("extra.txt".into(), b"not signed".to_vec()));
        v.push(BundleCase::fail(
            "bundle_extra_part",
            "tampered",
            "The container holds a part the signed manifest does not list",
            signed_parts(&m, &extra),
        ));
        let swapped = vec![parts[1].clone(), parts[0].clone()];
        v.push(BundleCase::fail(
            "bundle_parts_reordered",
            "tampered",
            "The container holds the listed parts in the other order",
            signed_parts(&m, &swapped),
        ));
        let mut renamed = parts.clone();
        renamed[0].0 = "ips/summary.json".into();
        v.push(BundleCase::fail(
            "bundle_part_renamed",
            "tampered",
            "Part #0's entry has another name than its manifest entry (same bytes)",
            signed_parts(&m, &renamed),
        ));
    }

    // --- the manifest and signature entries ----------------------------------------------------
    let m = std_manifest_to_bangkok();
    let j = m.json();
    let sig = sign(&MERCY, MANIFEST_CONTEXT, &j);
    let enc = |t: &mut Tar| to_bangkok_and_mercy(&t.end());
    let with_parts = || {
        let mut t = Tar::default();
        t.parts(&parts);
        t
    };
    {
        let v2 = replaced(&m, "manifest/v1", "manifest/v2");
        let s = sign(&MERCY, MANIFEST_CONTEXT, &v2);
        v.push(BundleCase::manifest_fail(
            "bundle_manifest_unknown_version",
            "unknown_version",
            "A validly signed dossier-manifest/v2: reported as from a newer version",
            enc(with_parts()
                .file("manifest.json", &v2)
                .file("manifest.sig", &s)),
        ));
        let bad = replaced(&m, "\"kind\"", "\"priority\":\"urgent\",\"kind\"");
        let s = sign(&MERCY, MANIFEST_CONTEXT, &bad);
        v.push(BundleCase::manifest_fail(
            "bundle_manifest_malformed",
            "malformed",
            "A validly signed manifest with a member v1 does not define",
            enc(with_parts()
                .file("manifest.json", &bad)
                .file("manifest.sig", &s)),
        ));
    }
    {
        let h = ustar_header(b"manifest.json", tar::EntryType::Regular, 5 << 20);
        let mut t = with_parts();
        t.raw(h.as_bytes());
        v.push(BundleCase::fail("bundle_manifest_entry_too_large", "tampered", "The manifest.json header declares 5 MiB (over the 4 MiB limit); refused from the header alone", to_bangkok_and_mercy(&t.0)));
    }
    v.push(BundleCase::fail(
        "bundle_missing_manifest",
        "tampered",
        "Parts and the end marker, no manifest.json or manifest.sig",
        enc(&mut with_parts()),
    ));
    v.push(BundleCase::fail(
        "bundle_missing_signature",
        "tampered",
        "No manifest.sig",
        enc(with_parts().file("manifest.json", &j)),
    ));
    v.push(BundleCase::fail(
        "bundle_signature_before_manifest",
        "tampered",
        "manifest.sig comes before manifest.json",
        enc(with_parts()
            .file("manifest.sig", &sig)
            .file("manifest.json", &j)),
    ));
    {
        let mut t = Tar::default();
        t.parts(&parts[..1]).file("manifest.json", &j);
        t.parts(&parts[1..]).file("manifest.sig", &sig);
        v.push(BundleCase::fail(
            "bundle_part_after_manifest",
            "tampered",
            "A part entry after manifest.json",
            enc(&mut t),
        ));
    }
    v.push(BundleCase::fail(
        "bundle_entry_after_signature",
        "tampered",
        "A part entry after manifest.sig",
        enc(with_parts()
            .file("manifest.json", &j)
            .file("manifest.sig", &sig)
            .file("parts/late.txt", b"late")),
    ));
    v.push(BundleCase::fail(
        "bundle_two_manifests",
        "tampered",
        "manifest.json twice",
        enc(with_parts()
            .file("manifest.json", &j)
            .file("manifest.json", &j)
            .file("manifest.sig", &sig)),
    ));
    v.push(BundleCase::fail(
        "bundle_unexpected_entry",
        "tampered",
        "An entry README.txt outside parts/",
        enc(Tar::default()
            .file("README.txt", b"hello")
            .parts(&parts)
            .file("manifest.json", &j)
            .file("manifest.sig", &sig)),
    ));
    {
        let mut long = sig.to_vec();
        long.push(0);
        v.push(BundleCase::fail(
            "bundle_signature_wrong_length",
            "tampered",
            "manifest.sig holds 65 bytes",
            enc(with_parts()
                .file("manifest.json", &j)
                .file("manifest.sig", &long)),
        ));
    }
    {
        let mut c = mercy_container(&m, &parts);
        c.extend_from_slice(b"smuggled");
        v.push(BundleCase::fail(
            "bundle_trailing_data",
            "tampered",
            "Non-zero bytes after the end-of-archive marker",
            to_bangkok_and_mercy(&c),
        ));
        let mut c = mercy_container(&m, &parts);
        c.extend(std::iter::repeat_n(0u8, 65536 - 512 + 1));
        v.push(BundleCase::fail(
            "bundle_trailing_zero_padding_over_limit",
            "tampered",
            "65537 zero bytes after the first zero block of the end marker",
            to_bangkok_and_mercy(&c),
        ));
    }
    {
        let h = ustar_header(
            b"parts/ips/patient-summary.json",
            tar::EntryType::Regular,
            1000,
        );
        let mut t = Tar::default();
        t.raw(h.as_bytes()).raw(&FHIR_IPS[..100]);
        v.push(BundleCase::fail(
            "bundle_part_shorter_than_header",
            "tampered",
            "A part header declares 1000 bytes; the plaintext ends after 100",
            to_bangkok_and_mercy(&t.0),
        ));
    }
    v
}

/// For `tampered` vectors: a piece of this implementation's message that shows the bundle
/// failed for the intended reason (informative; other implementations word it their way).
const TAMPER_REASONS: &[(&str, &str)] = &[
    ("bundle_flipped_payload_byte", "does not authenticate"),
    ("bundle_bad_header_mac", "header MAC"),
    ("bundle_truncated", "does not authenticate"),
    ("bundle_truncated_final_chunk", "truncated"),
    ("bundle_truncated_header", "truncated"),
    ("bundle_symlink_entry", "not a regular file"),
    ("bundle_hardlink_entry", "not a regular file"),
    ("bundle_directory_entry", "not a regular file"),
    ("bundle_device_entry", "not a regular file"),
    ("bundle_fifo_entry", "not a regular file"),
    ("bundle_pax_global_header", "not a regular file"),
    ("bundle_entry_name_not_utf8", "not UTF-8"),
    ("bundle_tar_bad_checksum", "could not be read"),
    ("bundle_part_hash_mismatch", "part #1 does not match"),
    ("bundle_part_length_mismatch", "part #0 does not match"),
    (
        "bundle_part_missing",
        "lists 2 parts but the bundle holds 1",
    ),
    ("bundle_extra_part", "lists 2 parts but the bundle holds 3"),
    ("bundle_parts_reordered", "part #0 does not match"),
    ("bundle_part_renamed", "part #0 does not match"),
    (
        "bundle_manifest_entry_too_large",
        "manifest larger than the limit",
    ),
    ("bundle_missing_manifest", "no manifest"),
    ("bundle_missing_signature", "no signature"),
    (
        "bundle_signature_before_manifest",
        "signature before the manifest",
    ),
    ("bundle_part_after_manifest", "part after the manifest"),
    (
        "bundle_entry_after_signature",
        "entry after the manifest signature",
    ),
    ("bundle_two_manifests", "two manifests"),
    ("bundle_unexpected_entry", "unexpected entry"),
    ("bundle_signature_wrong_length", "not 64 bytes"),
    (
        "bundle_trailing_data",
        "data after the end of the container",
    ),
    (
        "bundle_trailing_zero_padding_over_limit",
        "data after the end of the container",
    ),
    ("bundle_part_shorter_than_header", "shorter than its header"),
];

fn with_reasons(vectors: Vec<Vector>) -> Vec<Vector> {
    vectors
        .into_iter()
        .map(|v| {
            if !v
                .headers
                .iter()
                .any(|(k, e)| k == "error" && e == "tampered")
            {
                return v;
            }
            let reason = TAMPER_REASONS
                .iter()
                .find(|(n, _)| *n == v.name)
                .unwrap_or_else(|| panic!("{} needs an entry in TAMPER_REASONS", v.name))
                .1;
            v.h("reason", reason)
        })
        .collect()
}

fn std_manifest_to_bangkok() -> ManifestJson {
    ManifestJson::new(&MERCY, &[&BANGKOK], &std_parts())
}

// ---------------------------------------------------------------------------------------
// Key revocation vectors (§17).
// ---------------------------------------------------------------------------------------

const REVOCATION_CONTEXT: &str = "dossier/revocation/v1";
const REVOKED_AT: &str = "2027-02-01T10:00:00Z";
const REVOKED_REASON: &str = "laptop stolen";

/// §17.1: the signed revocation body.
fn revocation_body(facility: &str, key_hex: &str, reason: &str, at: &str) -> String {
    format!(
        "{{\"facility\":{},\"key\":{},\"reason\":{},\"revoked_at\":{}}}",
        js(facility),
        js(key_hex),
        js(reason),
        js(at)
    )
}

/// §17.2: the compact envelope.
fn revocation_file(version: &str, body: &[u8], sig: &[u8]) -> Vec<u8> {
    format!(
        "{{\"dossier_revocation\":{},\"body\":{},\"signature\":{}}}",
        js(version),
        js(&B64.encode(body)),
        js(&B64.encode(sig))
    )
    .into_bytes()
}

/// `p`'s revocation of its own key, signed as the spec says.
fn signed_revocation(p: &Party, reason: &str) -> Vec<u8> {
    let body = revocation_body(p.id, &p.key_hex(), reason, REVOKED_AT);
    let sig = sign(p, REVOCATION_CONTEXT, body.as_bytes());
    revocation_file("v1", body.as_bytes(), &sig)
}

fn revocation_err(name: &str, error: &str, comment: &str, body: Vec<u8>) -> Vector {
    Vector::new(name, "revocation", "revocation_error")
        .error(error)
        .h("comment", comment)
        .h("card", compact(&plain_card(&BANGKOK).to_file_bytes()))
        .body(body)
}

fn revocation_vectors() -> Vec<Vector> {
    use dossier_bundle::revocation::{Revocation, SignedRevocation};

    let valid = signed_revocation(&BANGKOK, REVOKED_REASON);
    let from_library = SignedRevocation::sign(
        Revocation {
            facility: FacilityId::parse(BANGKOK.id).unwrap(),
            key: BANGKOK.keys().key_id(),
            reason: REVOKED_REASON.into(),
            revoked_at: ts(REVOKED_AT),
        },
        &BANGKOK.keys(),
    )
    .expect("fixed revocation signs");
    assert_eq!(
        String::from_utf8_lossy(&from_library.to_bytes()),
        String::from_utf8_lossy(&valid),
        "SignedRevocation::sign differs from docs/protocol.md §17"
    );
    let body = revocation_body(BANGKOK.id, &BANGKOK.key_hex(), REVOKED_REASON, REVOKED_AT);
    let by = |signer: &Party, context: &str, body: &str| {
        revocation_file(
            "v1",
            body.as_bytes(),
            &sign(signer, context, body.as_bytes()),
        )
    };
    let mut oversized = valid.clone();
    oversized.truncate(oversized.len() - 1);
    oversized.extend(std::iter::repeat_n(b' ', 4097 - valid.len()));
    oversized.push(b'}');

    vec![
        Vector::new("revocation_valid", "revocation", "success")
            .h(
                "comment",
                "Bangkok revokes its own key, signed by that key (§17); checked against its card",
            )
            .h("card", compact(&plain_card(&BANGKOK).to_file_bytes()))
            .h("facility", BANGKOK.id)
            .h("key_id", BANGKOK.key_hex())
            .h("reason", REVOKED_REASON)
            .h("revoked_at", REVOKED_AT)
            .body(valid.clone()),
        revocation_err(
            "revocation_tampered_reason",
            "bad_signature",
            "The reason was changed after signing",
            revocation_file(
                "v1",
                revocation_body(BANGKOK.id, &BANGKOK.key_hex(), "routine change", REVOKED_AT)
                    .as_bytes(),
                &sign(&BANGKOK, REVOCATION_CONTEXT, body.as_bytes()),
            ),
        ),
        revocation_err(
            "revocation_signed_by_other_key",
            "bad_signature",
            "Names Bangkok's key but is signed by another key",
            by(&STRANGER, REVOCATION_CONTEXT, &body),
        ),
        revocation_err(
            "revocation_signature_wrong_context",
            "bad_signature",
            "Signed by Bangkok's key under the card-self context instead of dossier/revocation/v1",
            by(&BANGKOK, CARD_SELF, &body),
        ),
        revocation_err(
            "revocation_wrong_key",
            "wrong_key",
            "Bangkok's revocation of its old key, checked against its current card",
            signed_revocation(&BANGKOK_OLD, REVOKED_REASON),
        ),
        revocation_err(
            "revocation_wrong_facility",
            "wrong_facility",
            "Names another facility with Bangkok's key",
            by(
                &BANGKOK,
                REVOCATION_CONTEXT,
                &revocation_body(MERCY.id, &BANGKOK.key_hex(), REVOKED_REASON, REVOKED_AT),
            ),
        ),
        revocation_err(
            "revocation_unknown_body_field",
            "malformed",
            "A body member this version does not define (signed)",
            by(
                &BANGKOK,
                REVOCATION_CONTEXT,
                &body.replace("\"reason\"", "\"replacement\":null,\"reason\""),
            ),
        ),
        revocation_err(
            "revocation_reason_two_lines",
            "bad_reason",
            "A reason with a line break (signed)",
            by(
                &BANGKOK,
                REVOCATION_CONTEXT,
                &revocation_body(BANGKOK.id, &BANGKOK.key_hex(), "laptop\nstolen", REVOKED_AT),
            ),
        ),
        revocation_err(
            "revocation_wrong_version",
            "unknown_version",
            "A newer envelope version with a member v1 does not know",
            format!(
                "{{\"dossier_revocation\":\"v2\",\"body\":{},\"signature\":\"\",\"successor\":null}}",
                js(&B64.encode(body.as_bytes()))
            )
            .into_bytes(),
        ),
        revocation_err(
            "revocation_oversized",
            "too_large",
            "4097 bytes: over the 4096-byte limit, refused before parsing",
            oversized,
        ),
    ]
}

// ---------------------------------------------------------------------------------------

fn all_vectors() -> Vec<Vector> {
    let mut v = vec![
        fingerprint_vector(
            "fingerprint_fixed_keys",
            &MERCY,
            "Key id and fingerprint of Mercy's fixed key set (§3)",
        ),
        fingerprint_vector(
            "fingerprint_fixed_keys_patient",
            &PATIENT,
            "Key id and fingerprint of a patient's fixed key set (§3)",
        ),
    ];
    v.extend(card_vectors());
    v.extend(manifest_vectors());
    v.extend(with_reasons(bundle_vectors()));
    v.extend(revocation_vectors());
    v
}

fn main() -> ExitCode {
    let mut dir = None;
    let mut force = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--force" => force = true,
            _ if dir.is_none() => dir = Some(a),
            _ => {
                eprintln!("usage: gen-vectors DIR [--force]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: gen-vectors DIR [--force]");
        return ExitCode::from(2);
    };
    let dir = Path::new(&dir);
    if let Err(e) = fs::create_dir_all(dir) {
        eprintln!("gen-vectors: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let vectors = all_vectors();
    let mut names = BTreeSet::new();
    let (mut written, mut kept, mut same) = (0, 0, 0);
    for v in &vectors {
        assert!(
            names.insert(v.name.clone()),
            "duplicate vector name {}",
            v.name
        );
        let path = dir.join(&v.name);
        let bytes = v.bytes();
        if v.randomised && !force && path.exists() {
            kept += 1;
            continue;
        }
        if fs::read(&path).is_ok_and(|old| old == bytes) {
            same += 1;
            continue;
        }
        if let Err(e) = fs::write(&path, &bytes) {
            eprintln!("gen-vectors: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        written += 1;
    }
    let mut stale = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "README.md" && !names.contains(&name) {
            stale.push(name);
        }
    }
    for name in &stale {
        if force {
            let _ = fs::remove_file(dir.join(name));
            eprintln!("gen-vectors: removed stale {name}");
        } else {
            eprintln!("gen-vectors: {name} is not made by this generator (--force removes it)");
        }
    }
    eprintln!(
        "gen-vectors: {} vectors in {}: {written} written, {same} unchanged, {kept} randomised kept (use --force to regenerate)",
        vectors.len(),
        dir.display()
    );
    ExitCode::SUCCESS
}
