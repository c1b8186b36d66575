//! Sealing: parts in, one signed age-encrypted bundle out, in a single pass.
//!
//! The sender's node plans the parts (paths, media types, lengths), and this module streams
//! them one after another through SHA-256 into the ustar container inside the age stream,
//! then appends the signed manifest (docs/protocol.md §10). Memory use is bounded by the age
//! chunk size and a copy buffer, whatever the size of the parts.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use crate::card::FacilityCard;
use crate::container::{ContainerWriter, MANIFEST_NAME, PartWrite, SIGNATURE_NAME};
use crate::identity::FacilityKeys;
use crate::ids::{BundleId, FacilityId};
use crate::limits::{MAX_PARTS, MAX_RECIPIENTS};
use crate::manifest::{
    BundleKind, Manifest, ManifestError, PartEntry, PartPath, PartyRef, check_part_paths,
};
use crate::sig::SigContext;
use crate::timestamp::Timestamp;

/// Why sealing failed. The output must then be discarded (the node writes to a temporary
/// file and never renames it into place).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// No `--to`.
    #[error("a bundle needs at least one recipient: add --to ID")]
    NoRecipients,
    /// Too many `--to`.
    #[error("a bundle can have at most {MAX_RECIPIENTS} recipients; send several bundles")]
    TooManyRecipients,
    /// The sender named itself.
    #[error("you are always a reader of your own bundles; remove --to {0}")]
    SelfAsRecipient(FacilityId),
    /// A recipient named twice.
    #[error("recipient {0} is named twice; name each once")]
    DuplicateRecipient(FacilityId),
    /// A recipient's card has expired.
    #[error(
        "the card of {id} expired at {at}; ask them for a fresh card and add it with `dossier contacts add`"
    )]
    RecipientCardExpired {
        /// Recipient.
        id: FacilityId,
        /// Expiry.
        at: Timestamp,
    },
    /// The keys passed do not belong to the sender card.
    #[error("the node's keys do not match its card; run `dossier card` to reissue it")]
    KeysDoNotMatchCard,
    /// Nothing to seal.
    #[error("nothing to seal: give at least one file or directory")]
    NoParts,
    /// The manifest would be invalid (paths, counts, text fields).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A part changed size while it was being sealed.
    #[error(
        "input #{0} changed size while it was being sealed; seal again once it is no longer being written"
    )]
    PartChanged(usize),
    /// A part could not be read.
    #[error("input #{index} could not be read: {source}")]
    PartRead {
        /// Which part.
        index: usize,
        /// The I/O error.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("writing the bundle failed: {0}")]
    Write(io::Error),
    /// age refused the recipients.
    #[error("age encryption setup failed: {0}")]
    Encrypt(String),
}

/// One part to seal, as planned before any byte is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSource {
    /// Path inside the bundle.
    pub path: PartPath,
    /// Media type.
    pub media_type: String,
    /// Exact length the reader will produce.
    pub length: u64,
}

/// Everything about a bundle except its parts' bytes.
pub struct SealRequest<'a> {
    /// The sender's current card.
    pub sender: &'a FacilityCard,
    /// The sender's current keys (must match `sender`).
    pub keys: &'a FacilityKeys,
    /// The recipients' pinned cards.
    pub recipients: &'a [FacilityCard],
    /// A fresh id.
    pub bundle_id: BundleId,
    /// What it carries.
    pub kind: BundleKind,
    /// Subject line.
    pub subject: Option<String>,
    /// Thread id.
    pub thread: Option<String>,
    /// Patient reference.
    pub patient: Option<String>,
    /// Seal time (also checked against card expiry).
    pub created_at: Timestamp,
}

/// A bundle that was sealed completely.
#[derive(Debug)]
pub struct SealedBundle {
    /// The signed manifest.
    pub manifest: Manifest,
}

/// Seals `parts`, reading part `i` from `open_part(i)`, into `out`. Checks every rule before
/// writing the first byte.
pub fn seal<W, R, F>(
    req: &SealRequest<'_>,
    parts: &[PartSource],
    mut open_part: F,
    out: W,
) -> Result<(SealedBundle, W), SealError>
where
    W: Write,
    R: Read,
    F: FnMut(usize) -> io::Result<R>,
{
    check_request(req, parts)?;

    let mut age_recipients: Vec<age::x25519::Recipient> = req
        .recipients
        .iter()
        .map(FacilityCard::age_recipient_key)
        .collect();
    age_recipients.push(req.sender.age_recipient_key());
    let encryptor =
        age::Encryptor::with_recipients(age_recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let stream = encryptor.wrap_output(out).map_err(SealError::Write)?;
    let mtime = u64::try_from(req.created_at.unix()).unwrap_or(0);
    let mut container = ContainerWriter::new(stream, mtime);

    let mut entries = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let source = open_part(index).map_err(|source| SealError::PartRead { index, source })?;
        let sha256 = match container.append_part(&part.path, part.length, ReadTagged(source)) {
            Ok(PartWrite::Done(d)) => d,
            Ok(PartWrite::LengthChanged) => return Err(SealError::PartChanged(index)),
            Err(e) if is_read_error(&e) => return Err(SealError::PartRead { index, source: e }),
            Err(e) => return Err(SealError::Write(e)),
        };
        entries.push(PartEntry {
            path: part.path.clone(),
            media_type: part.media_type.clone(),
            length: part.length,
            sha256,
        });
    }

    let manifest = Manifest {
        bundle_id: req.bundle_id.clone(),
        kind: req.kind,
        subject: req.subject.clone(),
        thread: req.thread.clone(),
        patient: req.patient.clone(),
        created_at: req.created_at,
        sender: PartyRef {
            id: req.sender.id().clone(),
            key: req.sender.key_id(),
        },
        recipients: req
            .recipients
            .iter()
            .map(|c| PartyRef {
                id: c.id().clone(),
                key: c.key_id(),
            })
            .collect(),
        parts: entries,
    };
    manifest.validate()?;
    let manifest_bytes = manifest.to_bytes();
    let signature = req.keys.sign(SigContext::Manifest, &manifest_bytes);
    container
        .append_small(MANIFEST_NAME, &manifest_bytes)
        .map_err(SealError::Write)?;
    container
        .append_small(SIGNATURE_NAME, &signature)
        .map_err(SealError::Write)?;
    let stream = container.finish().map_err(SealError::Write)?;
    let out = stream.finish().map_err(SealError::Write)?;
    Ok((SealedBundle { manifest }, out))
}

fn check_request(req: &SealRequest<'_>, parts: &[PartSource]) -> Result<(), SealError> {
    if req.keys.key_id() != req.sender.key_id() {
        return Err(SealError::KeysDoNotMatchCard);
    }
    if req.recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    if req.recipients.len() > MAX_RECIPIENTS {
        return Err(SealError::TooManyRecipients);
    }
    let mut seen = HashSet::new();
    for card in req.recipients {
        if card.id() == req.sender.id() {
            return Err(SealError::SelfAsRecipient(card.id().clone()));
        }
        if !seen.insert(card.id()) {
            return Err(SealError::DuplicateRecipient(card.id().clone()));
        }
        if let Some(at) = card.expires_at().filter(|at| *at <= req.created_at) {
            return Err(SealError::RecipientCardExpired {
                id: card.id().clone(),
                at,
            });
        }
    }
    if parts.is_empty() {
        return Err(SealError::NoParts);
    }
    if parts.len() > MAX_PARTS {
        return Err(ManifestError::TooManyParts.into());
    }
    for (i, p) in parts.iter().enumerate() {
        if p.length > crate::limits::MAX_PART_BYTES {
            return Err(ManifestError::PartTooLarge(i).into());
        }
    }
    check_part_paths(parts.iter().map(|p| &p.path))?;
    if let Some(index) = parts
        .iter()
        .position(|p| !crate::container::fits_ustar(&p.path))
    {
        return Err(ManifestError::BadPartPath {
            index,
            reason: "too long for the container (shorten the directory or file names)",
        }
        .into());
    }
    crate::manifest::check_text(
        "subject",
        req.subject.as_deref(),
        crate::limits::MAX_SUBJECT_CHARS,
    )?;
    crate::manifest::check_text(
        "thread",
        req.thread.as_deref(),
        crate::limits::MAX_REF_CHARS,
    )?;
    crate::manifest::check_text(
        "patient reference",
        req.patient.as_deref(),
        crate::limits::MAX_REF_CHARS,
    )?;
    Ok(())
}

/// Marks errors from the part source so they are reported as read errors, not write errors.
struct ReadTagged<R>(R);

impl<R: Read> Read for ReadTagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), TaggedSource(e)))
    }
}

#[derive(Debug)]
struct TaggedSource(io::Error);
impl std::fmt::Display for TaggedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for TaggedSource {}

fn is_read_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TaggedSource>())
}
