//! The bundle manifest: what a sender signs about a bundle.
//!
//! `manifest.json` names the bundle, its kind, subject, thread and patient reference, the
//! sender and every recipient with their key ids, and every part's path, media type, length
//! and SHA-256 (docs/protocol.md §8). The sender's signature covers the exact bytes, so a
//! recipient checks the signature first and only then trusts any field.

use std::collections::HashSet;
use std::fmt;

use crate::fingerprint::{KeyId, hex_lower, parse_hex_lower};
use crate::ids::{BundleId, FacilityId};
use crate::limits::*;
use crate::timestamp::Timestamp;

/// The manifest format this implementation writes and reads.
pub const MANIFEST_FORMAT: &str = "dossier-manifest/v1";

/// Why a manifest (or a field destined for one) was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_BYTES`].
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    /// Not a v1 manifest.
    #[error("manifest is malformed ({0})")]
    Malformed(&'static str),
    /// A newer format.
    #[error("manifest is format {0:?}, probably from a newer dossier; upgrade dossier to open it")]
    UnknownVersion(String),
    /// A part path that could escape the output directory or is otherwise unusable.
    #[error(
        "part path #{index} is not allowed: {reason}. Part paths are relative, '/'-separated, \
         at most {MAX_PART_PATH_BYTES} bytes, without '.', '..', backslashes or control characters"
    )]
    BadPartPath {
        /// Position of the part (0-based) in the bundle.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two parts would land on the same file (also compared case-insensitively).
    #[error("parts #{0} and #{1} have the same path (compared case-insensitively); rename one")]
    DuplicatePart(usize, usize),
    /// A part's path is also used as a directory by another part.
    #[error("part #{0} is a file where part #{1} needs a directory")]
    PathConflict(usize, usize),
    /// Too many parts.
    #[error("a bundle holds at most {MAX_PARTS} parts; split it into several bundles")]
    TooManyParts,
    /// Too many or no recipients.
    #[error("a bundle needs 1 to {MAX_RECIPIENTS} recipients")]
    RecipientCount,
    /// The same recipient listed twice.
    #[error("recipient {0} is listed twice")]
    DuplicateRecipient(FacilityId),
    /// Subject, thread or patient reference too long or with control characters.
    #[error("{0} is too long or contains control characters")]
    BadText(&'static str),
    /// A part larger than the container can describe.
    #[error("part #{0} is larger than the 8 GiB per-part limit; split it")]
    PartTooLarge(usize),
}

/// What a bundle carries, for routing and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleKind {
    /// A treatment history, patient summary, imaging: medical records.
    Record,
    /// A care plan, operative note or discharge summary from the treating clinic.
    Careplan,
    /// A message such as follow-up instructions.
    Message,
}

impl BundleKind {
    /// `record`, `careplan` or `message`.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleKind::Record => "record",
            BundleKind::Careplan => "careplan",
            BundleKind::Message => "message",
        }
    }
}

/// A validated relative path inside a bundle, e.g. `imaging/ct-001.dcm`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartPath(String);

impl PartPath {
    /// Checks a part path (docs/protocol.md §8.2). `index` is only used in the error.
    pub fn parse(s: &str, index: usize) -> Result<Self, ManifestError> {
        let bad = |reason| ManifestError::BadPartPath { index, reason };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_PART_PATH_BYTES {
            return Err(bad("too long"));
        }
        if s.starts_with('/') {
            return Err(bad("absolute"));
        }
        if s.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("control character or backslash"));
        }
        for comp in s.split('/') {
            match comp {
                "" => return Err(bad("empty component")),
                "." | ".." => return Err(bad("'.' or '..' component")),
                c if c.len() > MAX_PART_COMPONENT_BYTES => return Err(bad("component too long")),
                c if c.len() >= 2 && c.as_bytes()[1] == b':' => return Err(bad("drive letter")),
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The path with '/' separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Path components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for PartPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A party named in a manifest: facility id and the key set used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyRef {
    /// Facility id.
    pub id: FacilityId,
    /// Key id (64 hex digits) of the card the sender used.
    pub key: KeyId,
}

/// One part of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartEntry {
    /// Relative path.
    pub path: PartPath,
    /// Media type, e.g. `application/fhir+json`.
    pub media_type: String,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PartWire {
    path: String,
    media_type: String,
    length: u64,
    sha256: String,
}

/// The signed description of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Bundle id.
    pub bundle_id: BundleId,
    /// What the bundle carries.
    pub kind: BundleKind,
    /// Subject line (PHI: never logged).
    pub subject: Option<String>,
    /// Conversation thread id.
    pub thread: Option<String>,
    /// Patient reference such as an MRN (PHI: never logged).
    pub patient: Option<String>,
    /// When it was sealed.
    pub created_at: Timestamp,
    /// Who sealed and signed it.
    pub sender: PartyRef,
    /// Everyone it is for (the sender is implicit).
    pub recipients: Vec<PartyRef>,
    /// The parts, in container order.
    pub parts: Vec<PartEntry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    format: String,
    bundle_id: BundleId,
    kind: BundleKind,
    subject: Option<String>,
    thread: Option<String>,
    patient: Option<String>,
    created_at: Timestamp,
    sender: PartyRef,
    recipients: Vec<PartyRef>,
    parts: Vec<PartWire>,
}

#[derive(serde::Deserialize)]
struct FormatOnly {
    format: String,
}

/// Checks optional free text destined for a manifest.
pub fn check_text(
    field: &'static str,
    value: Option<&str>,
    max_chars: usize,
) -> Result<(), ManifestError> {
    match value {
        Some(v) if v.chars().count() > max_chars || v.chars().any(char::is_control) => {
            Err(ManifestError::BadText(field))
        }
        _ => Ok(()),
    }
}

impl Manifest {
    /// Checks every rule a manifest must satisfy, whether we built it or received it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        check_text("subject", self.subject.as_deref(), MAX_SUBJECT_CHARS)?;
        check_text("thread", self.thread.as_deref(), MAX_REF_CHARS)?;
        check_text("patient reference", self.patient.as_deref(), MAX_REF_CHARS)?;
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(ManifestError::RecipientCount);
        }
        let mut seen = HashSet::new();
        for r in &self.recipients {
            if !seen.insert(&r.id) {
                return Err(ManifestError::DuplicateRecipient(r.id.clone()));
            }
        }
        if self.parts.len() > MAX_PARTS {
            return Err(ManifestError::TooManyParts);
        }
        for (i, p) in self.parts.iter().enumerate() {
            if p.length > MAX_PART_BYTES {
                return Err(ManifestError::PartTooLarge(i));
            }
            if p.media_type.is_empty()
                || p.media_type.len() > MAX_MEDIA_TYPE_BYTES
                || !p.media_type.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ManifestError::Malformed("media type"));
            }
        }
        check_part_paths(self.parts.iter().map(|p| &p.path))
    }

    /// The exact bytes written as `manifest.json` and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = ManifestWire {
            format: MANIFEST_FORMAT.to_owned(),
            bundle_id: self.bundle_id.clone(),
            kind: self.kind,
            subject: self.subject.clone(),
            thread: self.thread.clone(),
            patient: self.patient.clone(),
            created_at: self.created_at,
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            parts: self
                .parts
                .iter()
                .map(|p| PartWire {
                    path: p.path.as_str().to_owned(),
                    media_type: p.media_type.clone(),
                    length: p.length,
                    sha256: hex_lower(&p.sha256),
                })
                .collect(),
        };
        serde_json::to_vec(&wire).expect("manifest fields serialise")
    }

    /// Parses and validates `manifest.json` (docs/protocol.md §8). The caller checks the
    /// signature over these same bytes before acting on any field.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let wire: ManifestWire = match serde_json::from_slice(bytes) {
            Ok(w) => w,
            Err(_) => {
                return Err(match serde_json::from_slice::<FormatOnly>(bytes) {
                    Ok(f) if f.format != MANIFEST_FORMAT => {
                        ManifestError::UnknownVersion(f.format.chars().take(32).collect())
                    }
                    _ => ManifestError::Malformed("not a v1 manifest"),
                });
            }
        };
        if wire.format != MANIFEST_FORMAT {
            return Err(ManifestError::UnknownVersion(
                wire.format.chars().take(32).collect(),
            ));
        }
        if wire.parts.len() > MAX_PARTS {
            return Err(ManifestError::TooManyParts);
        }
        let parts = wire
            .parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let sha256 = parse_hex_lower(&p.sha256)
                    .and_then(|v| v.try_into().ok())
                    .ok_or(ManifestError::Malformed(
                        "sha256 is not 64 lowercase hex digits",
                    ))?;
                Ok(PartEntry {
                    path: PartPath::parse(&p.path, i)?,
                    media_type: p.media_type,
                    length: p.length,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        let m = Manifest {
            bundle_id: wire.bundle_id,
            kind: wire.kind,
            subject: wire.subject,
            thread: wire.thread,
            patient: wire.patient,
            created_at: wire.created_at,
            sender: wire.sender,
            recipients: wire.recipients,
            parts,
        };
        m.validate()?;
        Ok(m)
    }
}

/// Refuses duplicate paths (case-insensitively, so a bundle unpacks the same on macOS and
/// Windows) and a path used both as a file and as a directory.
pub fn check_part_paths<'a>(
    paths: impl Iterator<Item = &'a PartPath>,
) -> Result<(), ManifestError> {
    let mut files = std::collections::HashMap::new();
    let mut dirs = std::collections::HashMap::new();
    for (i, p) in paths.enumerate() {
        let folded = p.as_str().to_lowercase();
        if let Some(&j) = files.get(&folded) {
            return Err(ManifestError::DuplicatePart(j, i));
        }
        if let Some(&j) = dirs.get(&folded) {
            return Err(ManifestError::PathConflict(i, j));
        }
        let mut prefix = String::new();
        for comp in folded
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, d)| d)
            .unwrap_or(&[])
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if let Some(&j) = files.get(&prefix) {
                return Err(ManifestError::PathConflict(j, i));
            }
            dirs.entry(prefix.clone()).or_insert(i);
        }
        files.insert(folded, i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let key = KeyId::of(&[1; 32], "age1x");
        Manifest {
            bundle_id: BundleId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            kind: BundleKind::Record,
            subject: Some("Treatment history".into()),
            thread: None,
            patient: Some("MRN-1".into()),
            created_at: Timestamp::parse("2026-11-23T09:00:00Z").unwrap(),
            sender: PartyRef {
                id: FacilityId::parse("us-mercy").unwrap(),
                key,
            },
            recipients: vec![PartyRef {
                id: FacilityId::parse("th-clinic").unwrap(),
                key,
            }],
            parts: vec![PartEntry {
                path: PartPath::parse("ips/summary.json", 0).unwrap(),
                media_type: "application/fhir+json".into(),
                length: 3,
                sha256: [7; 32],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn oversized_malformed_and_wrong_version() {
        assert_eq!(
            Manifest::parse(&vec![b' '; MAX_MANIFEST_BYTES + 1]),
            Err(ManifestError::TooLarge)
        );
        assert!(matches!(
            Manifest::parse(b"{"),
            Err(ManifestError::Malformed(_))
        ));
        let v2 = String::from_utf8(sample().to_bytes())
            .unwrap()
            .replace("dossier-manifest/v1", "dossier-manifest/v2");
        assert_eq!(
            Manifest::parse(v2.as_bytes()),
            Err(ManifestError::UnknownVersion("dossier-manifest/v2".into()))
        );
        let extra = String::from_utf8(sample().to_bytes())
            .unwrap()
            .replacen('{', "{\"x\":1,", 1);
        assert!(matches!(
            Manifest::parse(extra.as_bytes()),
            Err(ManifestError::Malformed(_))
        ));
        let upper = String::from_utf8(sample().to_bytes())
            .unwrap()
            .replace(&"07".repeat(32), &"0A".repeat(32));
        assert!(matches!(
            Manifest::parse(upper.as_bytes()),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn too_many_parts_and_recipients() {
        let mut m = sample();
        m.parts = (0..=MAX_PARTS)
            .map(|i| PartEntry {
                path: PartPath::parse(&format!("p{i}"), i).unwrap(),
                ..sample().parts[0].clone()
            })
            .collect();
        assert_eq!(
            Manifest::parse(&m.to_bytes()),
            Err(ManifestError::TooManyParts)
        );
        let mut m = sample();
        m.recipients = vec![];
        assert_eq!(m.validate(), Err(ManifestError::RecipientCount));
        let mut m = sample();
        m.recipients.push(m.recipients[0].clone());
        assert!(matches!(
            m.validate(),
            Err(ManifestError::DuplicateRecipient(_))
        ));
    }

    #[test]
    fn part_paths() {
        for ok in [
            "a",
            "dir/file.json",
            "imaging/series 1/IM0001.dcm",
            "…ünïcode.pdf",
        ] {
            assert!(PartPath::parse(ok, 0).is_ok(), "{ok}");
        }
        let long = "a".repeat(101);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "c:evil",
            "a\nb",
            long.as_str(),
        ] {
            assert!(PartPath::parse(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_and_conflicting_paths() {
        let p = |s: &str| PartPath::parse(s, 0).unwrap();
        assert_eq!(check_part_paths([p("a"), p("b")].iter()), Ok(()));
        assert_eq!(
            check_part_paths([p("a"), p("A")].iter()),
            Err(ManifestError::DuplicatePart(0, 1))
        );
        assert_eq!(
            check_part_paths([p("a"), p("a/b")].iter()),
            Err(ManifestError::PathConflict(0, 1))
        );
        assert_eq!(
            check_part_paths([p("a/b"), p("a")].iter()),
            Err(ManifestError::PathConflict(1, 0))
        );
        assert_eq!(check_part_paths([p("d/x"), p("d/y")].iter()), Ok(()));
    }

    #[test]
    fn text_fields() {
        let mut m = sample();
        m.subject = Some("two\nlines".into());
        assert_eq!(m.validate(), Err(ManifestError::BadText("subject")));
        m.subject = Some("x".repeat(MAX_SUBJECT_CHARS + 1));
        assert_eq!(m.validate(), Err(ManifestError::BadText("subject")));
    }
}
