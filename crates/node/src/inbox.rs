//! The inbox and the quarantine: where received bundles go, and only after the checks.
//!
//! ```text
//! HOME/inbox/incoming/<id>.part     a download in progress (resumed from its length)
//! HOME/inbox/<id>.dossier           a verified bundle: the age ciphertext as received
//! HOME/inbox/<id>.json              its record: the verified manifest summary, the receipt
//! HOME/quarantine/<id>.dossier      a bundle that failed verification, kept for inspection
//! HOME/quarantine/<id>.json         why (no record content), and the `rejected` receipt
//! ```
//!
//! Inbox items stay encrypted at rest: the `.dossier` file is the ciphertext exactly as the
//! sender sealed it, and `dossier open` verifies it again before releasing anything. A record
//! is written only after its bundle file is durable (renamed and the directory fsynced), and
//! the relay is acknowledged only after the record is durable, so a crash at any point
//! leaves either nothing (the relay still holds the bundle and sends it again) or a complete
//! entry (and the repeated delivery is recognised by its bundle id, never stored twice).
//!
//! Only [`admit`] creates an inbox entry, and it requires the
//! [`VerifiedBundle`](dossier_bundle::VerifiedBundle) that only pass 1 of opening can make.

use std::path::{Path, PathBuf};

use dossier_bundle::receipt::SignedReceipt;
use dossier_bundle::{BundleKind, Timestamp, VerifiedBundle};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::fsutil::{create_private_dir, sync_dir};
use crate::home::NodeHome;
use crate::statefile::{file_in, read_json, record_stems, with_state_lock, write_json};

const INBOX_FORMAT: &str = "dossier-inbox/v1";
const QUARANTINE_FORMAT: &str = "dossier-quarantine/v1";

/// How the relay described the bundle when it was fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Bundle id as listed in the mailbox.
    pub bundle_id: String,
    /// Depositor according to the relay.
    pub relay_from: String,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext as received (checked against the listing), hex.
    pub ciphertext_sha256: String,
    /// When the relay accepted it (relay clock).
    pub deposited_at: Timestamp,
    /// When it was stored here.
    pub received_at: Timestamp,
}

/// A verified, received bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxRecord {
    format: String,
    /// Bundle id (the signed one, equal to the relay's).
    pub bundle_id: String,
    /// Signed sender.
    pub from: String,
    /// Fingerprint of the pinned card that verified the signature.
    pub from_fingerprint: String,
    /// Signed recipient list.
    pub to: Vec<String>,
    /// Kind.
    pub kind: BundleKind,
    /// Subject (PHI: local only, never logged).
    pub subject: Option<String>,
    /// Thread.
    pub thread: Option<String>,
    /// Patient reference (PHI: local only, never logged).
    pub patient: Option<String>,
    /// When the sender sealed it (signed).
    pub created_at: Timestamp,
    /// Number of parts.
    pub parts: usize,
    /// Plaintext bytes over all parts.
    pub bytes: u64,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext, hex.
    pub ciphertext_sha256: String,
    /// When the relay accepted it.
    pub deposited_at: Timestamp,
    /// When it entered this inbox.
    pub received_at: Timestamp,
    /// Always true: only verified bundles have an inbox record.
    pub verified: bool,
    /// The signed `delivered` receipt sent back.
    pub receipt: String,
    /// Whether the relay stored the receipt.
    pub receipt_posted: bool,
}

/// A received bundle that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRecord {
    format: String,
    /// Bundle id as listed by the relay.
    pub bundle_id: String,
    /// Depositor according to the relay (unauthenticated as far as this node knows).
    pub relay_from: String,
    /// Why it was refused (no record content).
    pub reason: String,
    /// `verification_failed`, `pin_mismatch` or `unknown_sender`.
    pub class: String,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext, hex.
    pub ciphertext_sha256: String,
    /// When the relay accepted it.
    pub deposited_at: Timestamp,
    /// When it was quarantined here.
    pub received_at: Timestamp,
    /// The signed `rejected` receipt sent back.
    pub receipt: String,
    /// Whether the relay stored the receipt.
    pub receipt_posted: bool,
}

/// Where a received bundle id is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// In the inbox.
    Inbox(Box<InboxRecord>),
    /// In quarantine.
    Quarantine(Box<QuarantineRecord>),
}

impl Known {
    /// The receipt stored with the entry.
    pub fn receipt(&self) -> &str {
        match self {
            Known::Inbox(r) => &r.receipt,
            Known::Quarantine(r) => &r.receipt,
        }
    }
}

/// `HOME/inbox`.
pub fn inbox_dir(home: &NodeHome) -> PathBuf {
    home.root().join("inbox")
}

/// `HOME/inbox/incoming`.
pub fn incoming_dir(home: &NodeHome) -> PathBuf {
    inbox_dir(home).join("incoming")
}

/// `HOME/quarantine`.
pub fn quarantine_dir(home: &NodeHome) -> PathBuf {
    home.root().join("quarantine")
}

/// The partial download of `bundle_id`.
pub fn part_path(home: &NodeHome, bundle_id: &str) -> PathBuf {
    file_in(&incoming_dir(home), bundle_id, "part")
}

/// The stored ciphertext of an inbox item.
pub fn bundle_path(home: &NodeHome, bundle_id: &str) -> PathBuf {
    file_in(&inbox_dir(home), bundle_id, "dossier")
}

/// Creates the inbox, incoming and quarantine directories (0700).
pub fn prepare(home: &NodeHome) -> Result<(), NodeError> {
    for d in [incoming_dir(home), quarantine_dir(home)] {
        create_private_dir(&d).map_err(NodeError::io(format!("creating {}", d.display())))?;
    }
    Ok(())
}

/// Whether `bundle_id` was already received (inbox or quarantine).
pub fn known(home: &NodeHome, bundle_id: &str) -> Result<Option<Known>, NodeError> {
    if let Some(r) = load_inbox(home, bundle_id)? {
        return Ok(Some(Known::Inbox(Box::new(r))));
    }
    if let Some(r) = load_quarantine(home, bundle_id)? {
        return Ok(Some(Known::Quarantine(Box::new(r))));
    }
    Ok(None)
}

/// The inbox record of `bundle_id`.
pub fn load_inbox(home: &NodeHome, bundle_id: &str) -> Result<Option<InboxRecord>, NodeError> {
    let path = file_in(&inbox_dir(home), bundle_id, "json");
    let rec: Option<InboxRecord> = read_json(&path)?;
    match rec {
        Some(r) if r.format != INBOX_FORMAT => Err(NodeError::CorruptState(
            path,
            "unknown inbox record version",
        )),
        other => Ok(other),
    }
}

/// The quarantine record of `bundle_id`.
pub fn load_quarantine(
    home: &NodeHome,
    bundle_id: &str,
) -> Result<Option<QuarantineRecord>, NodeError> {
    let path = file_in(&quarantine_dir(home), bundle_id, "json");
    let rec: Option<QuarantineRecord> = read_json(&path)?;
    match rec {
        Some(r) if r.format != QUARANTINE_FORMAT => Err(NodeError::CorruptState(
            path,
            "unknown quarantine record version",
        )),
        other => Ok(other),
    }
}

/// Every inbox item, oldest first.
pub fn list_inbox(home: &NodeHome) -> Result<Vec<InboxRecord>, NodeError> {
    let mut out = Vec::new();
    for stem in record_stems(&inbox_dir(home))? {
        if let Some(r) = load_inbox(home, &stem)? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| (a.received_at, &a.bundle_id).cmp(&(b.received_at, &b.bundle_id)));
    Ok(out)
}

/// Every quarantined item, oldest first.
pub fn list_quarantine(home: &NodeHome) -> Result<Vec<QuarantineRecord>, NodeError> {
    let mut out = Vec::new();
    for stem in record_stems(&quarantine_dir(home))? {
        if let Some(r) = load_quarantine(home, &stem)? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| (a.received_at, &a.bundle_id).cmp(&(b.received_at, &b.bundle_id)));
    Ok(out)
}

/// Moves a verified download into the inbox and writes its record (durably, in that
/// order). `verified` is the proof that pass 1 of opening accepted exactly this file.
pub fn admit(
    home: &NodeHome,
    part: &Path,
    verified: &VerifiedBundle,
    arrival: &Arrival,
    receipt: &SignedReceipt,
) -> Result<InboxRecord, NodeError> {
    let m = verified.manifest();
    let record = InboxRecord {
        format: INBOX_FORMAT.to_owned(),
        bundle_id: m.bundle_id.as_str().to_owned(),
        from: m.sender.id.as_str().to_owned(),
        from_fingerprint: verified.sender().fingerprint().as_str().to_owned(),
        to: m
            .recipients
            .iter()
            .map(|r| r.id.as_str().to_owned())
            .collect(),
        kind: m.kind,
        subject: m.subject.clone(),
        thread: m.thread.clone(),
        patient: m.patient.clone(),
        created_at: m.created_at,
        parts: m.parts.len(),
        bytes: m.parts.iter().map(|p| p.length).sum(),
        length: arrival.length,
        ciphertext_sha256: arrival.ciphertext_sha256.clone(),
        deposited_at: arrival.deposited_at,
        received_at: arrival.received_at,
        verified: true,
        receipt: receipt_text(receipt),
        receipt_posted: false,
    };
    let dir = inbox_dir(home);
    move_durably(part, &bundle_path(home, &record.bundle_id), &dir)?;
    with_state_lock(home, || {
        write_json(&file_in(&dir, &record.bundle_id, "json"), &record)
    })?;
    Ok(record)
}

/// Moves a download that failed verification into quarantine, with the reason.
pub fn quarantine(
    home: &NodeHome,
    part: &Path,
    arrival: &Arrival,
    reason: &str,
    class: &str,
    receipt: &SignedReceipt,
) -> Result<QuarantineRecord, NodeError> {
    let record = QuarantineRecord {
        format: QUARANTINE_FORMAT.to_owned(),
        bundle_id: arrival.bundle_id.clone(),
        relay_from: arrival.relay_from.clone(),
        reason: crate::statefile::one_line(reason, 600),
        class: class.to_owned(),
        length: arrival.length,
        ciphertext_sha256: arrival.ciphertext_sha256.clone(),
        deposited_at: arrival.deposited_at,
        received_at: arrival.received_at,
        receipt: receipt_text(receipt),
        receipt_posted: false,
    };
    let dir = quarantine_dir(home);
    move_durably(part, &file_in(&dir, &record.bundle_id, "dossier"), &dir)?;
    with_state_lock(home, || {
        write_json(&file_in(&dir, &record.bundle_id, "json"), &record)
    })?;
    Ok(record)
}

/// Records that the relay stored the receipt of `bundle_id`.
pub fn mark_receipt_posted(home: &NodeHome, bundle_id: &str) -> Result<(), NodeError> {
    with_state_lock(home, || {
        if let Some(mut r) = load_inbox(home, bundle_id)? {
            if !r.receipt_posted {
                r.receipt_posted = true;
                write_json(&file_in(&inbox_dir(home), bundle_id, "json"), &r)?;
            }
        } else if let Some(mut r) = load_quarantine(home, bundle_id)? {
            if !r.receipt_posted {
                r.receipt_posted = true;
                write_json(&file_in(&quarantine_dir(home), bundle_id, "json"), &r)?;
            }
        }
        Ok(())
    })
}

/// Receipts not yet stored by the relay (e.g. the node stopped between the ack and the
/// receipt): `(bundle id, receipt)`.
pub fn unposted_receipts(home: &NodeHome) -> Result<Vec<(String, String)>, NodeError> {
    let mut out: Vec<(String, String)> = list_inbox(home)?
        .into_iter()
        .filter(|r| !r.receipt_posted)
        .map(|r| (r.bundle_id, r.receipt))
        .collect();
    out.extend(
        list_quarantine(home)?
            .into_iter()
            .filter(|r| !r.receipt_posted)
            .map(|r| (r.bundle_id, r.receipt)),
    );
    Ok(out)
}

fn receipt_text(receipt: &SignedReceipt) -> String {
    // A receipt envelope is JSON with base64 members: always UTF-8.
    String::from_utf8_lossy(&receipt.to_bytes()).into_owned()
}

fn move_durably(from: &Path, to: &Path, dir: &Path) -> Result<(), NodeError> {
    create_private_dir(dir).map_err(NodeError::io(format!("creating {}", dir.display())))?;
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .map_err(NodeError::io("syncing the download"))?;
    std::fs::rename(from, to).map_err(NodeError::io(format!(
        "moving the download into {}",
        dir.display()
    )))?;
    sync_dir(dir).map_err(NodeError::io(format!("syncing {}", dir.display())))?;
    if let Some(src_dir) = from.parent() {
        let _ = sync_dir(src_dir);
    }
    Ok(())
}
