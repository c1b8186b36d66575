//! Retention: how long copies of records stay on this node, and purging them when the
//! disclosure policy's periods run out.
//!
//! HIPAA's minimum-necessary principle applies to what a node keeps, too: a received
//! bundle that was opened and acted on, the sealed copy of a sent bundle whose delivery is
//! settled, and above all the plaintext that `open` wrote out should not linger. The
//! periods come from `[retention]` in `policy.toml`; `dossier purge` (and every `sync`)
//! deletes what is due and writes a `purge` audit entry for each item.
//!
//! What counts from when:
//!
//! - a plaintext export (a directory written by `open`): from when it was written;
//! - a received bundle's ciphertext: from when it was first opened here (never-opened
//!   bundles are kept: nobody has looked at them yet);
//! - a sent bundle's sealed copy: from when it was queued, once no recipient is still
//!   waiting for it (every one delivered, opened, rejected or expired).
//!
//! The inbox and outbox *records* (ids, parties, times, receipts) stay as evidence for the
//! accounting of disclosures; the ciphertext and the plaintext go. A deleted body is first
//! overwritten with zeros and fsynced, then unlinked, so no copy is left in the node's
//! store (copy-on-write file systems, snapshots and SSD remapping can still hold old
//! blocks: docs/operations.md says how to deal with those). Bodies are written around the
//! page cache (dossier-spool), so none linger in memory either.
//!
//! ```text
//! HOME/retention/opened/BUNDLE-ID.json    first opening of a received bundle, and the
//!                                         signed `opened` receipt until the relay has it
//! HOME/retention/exports/BUNDLE-ID-N.json one per directory `open` wrote
//! ```

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use dossier_bundle::receipt::{DeliveryReceipt, ReceiptStatus, SignedReceipt};
use dossier_bundle::{BundleId, FacilityId, Keyring, PartyRef, Timestamp};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::error::NodeError;
use crate::fsutil::create_private_dir;
use crate::home::NodeHome;
use crate::inbox;
use crate::outbox::{self, DeliveryState};
use crate::policy::Policy;
use crate::statefile::{file_in, read_json, record_stems, with_state_lock, write_json};

const OPENED_FORMAT: &str = "dossier-opened/v1";
const EXPORT_FORMAT: &str = "dossier-export/v1";

/// The first opening of a received bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenedRecord {
    format: String,
    /// Bundle id.
    pub bundle_id: String,
    /// When it was first opened here.
    pub opened_at: Timestamp,
    /// By whom.
    pub opened_by: String,
    /// The signed `opened` receipt for the sender.
    pub receipt: String,
    /// Whether the relay has stored it.
    pub receipt_posted: bool,
}

/// A directory of plaintext written by `open`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRecord {
    format: String,
    /// The bundle it came from.
    pub bundle_id: String,
    /// The directory (absolute).
    pub path: PathBuf,
    /// When it was written.
    pub written_at: Timestamp,
    /// By whom.
    pub operator: String,
}

fn opened_dir(home: &NodeHome) -> PathBuf {
    home.root().join("retention").join("opened")
}

fn exports_dir(home: &NodeHome) -> PathBuf {
    home.root().join("retention").join("exports")
}

/// Signs the `opened` receipt for an inbox bundle (the sender sees "opened at T").
pub fn opened_receipt(
    home: &NodeHome,
    keyring: &Keyring,
    me: &FacilityId,
    rec: &inbox::InboxRecord,
    now: Timestamp,
) -> Result<SignedReceipt, NodeError> {
    let keys = keyring.current();
    let mut sha = [0u8; 32];
    for (i, byte) in sha.iter_mut().enumerate() {
        *byte = rec
            .ciphertext_sha256
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                NodeError::CorruptState(inbox::inbox_dir(home), "a ciphertext hash is unreadable")
            })?;
    }
    let receipt = DeliveryReceipt {
        bundle_id: BundleId::parse(&rec.bundle_id)?,
        ciphertext_sha256: sha,
        recipient: PartyRef {
            id: me.clone(),
            key: keys.key_id(),
        },
        status: ReceiptStatus::Opened,
        reason: None,
        at: now,
    };
    SignedReceipt::sign(receipt, keys)
        .map_err(|e| NodeError::io("signing a receipt")(io::Error::other(e.to_string())))
}

/// Notes that a received bundle was opened (the first time counts) and keeps its signed
/// `opened` receipt for the next sync to post.
pub fn note_opened(
    home: &NodeHome,
    actor: &Actor,
    bundle_id: &str,
    receipt: &SignedReceipt,
    now: Timestamp,
) -> Result<(), NodeError> {
    let dir = opened_dir(home);
    create_private_dir(&dir).map_err(NodeError::io("creating the retention records"))?;
    let path = file_in(&dir, bundle_id, "json");
    with_state_lock(home, || {
        if read_json::<OpenedRecord>(&path)?.is_some() {
            return Ok(());
        }
        write_json(
            &path,
            &OpenedRecord {
                format: OPENED_FORMAT.to_owned(),
                bundle_id: bundle_id.to_owned(),
                opened_at: now,
                opened_by: actor.operator().as_str().to_owned(),
                receipt: String::from_utf8_lossy(&receipt.to_bytes()).into_owned(),
                receipt_posted: false,
            },
        )
    })
}

/// When a received bundle was first opened here, if it was.
pub fn opened_at(home: &NodeHome, bundle_id: &str) -> Result<Option<Timestamp>, NodeError> {
    Ok(
        read_json::<OpenedRecord>(&file_in(&opened_dir(home), bundle_id, "json"))?
            .map(|r| r.opened_at),
    )
}

/// `opened` receipts the relay does not have yet: (bundle id, receipt).
pub fn unposted_opened_receipts(home: &NodeHome) -> Result<Vec<(String, String)>, NodeError> {
    let dir = opened_dir(home);
    let mut out = Vec::new();
    for stem in record_stems(&dir)? {
        if let Some(r) = read_json::<OpenedRecord>(&file_in(&dir, &stem, "json"))? {
            if !r.receipt_posted {
                out.push((r.bundle_id, r.receipt));
            }
        }
    }
    Ok(out)
}

/// The relay stored the `opened` receipt of `bundle_id`.
pub fn mark_opened_receipt_posted(home: &NodeHome, bundle_id: &str) -> Result<(), NodeError> {
    let path = file_in(&opened_dir(home), bundle_id, "json");
    with_state_lock(home, || {
        if let Some(mut r) = read_json::<OpenedRecord>(&path)? {
            r.receipt_posted = true;
            write_json(&path, &r)?;
        }
        Ok(())
    })
}

/// Notes a directory of plaintext written by `open`, so that `purge` deletes it in time.
pub fn note_export(
    home: &NodeHome,
    actor: &Actor,
    bundle_id: &str,
    path: &Path,
    now: Timestamp,
) -> Result<(), NodeError> {
    let dir = exports_dir(home);
    create_private_dir(&dir).map_err(NodeError::io("creating the retention records"))?;
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    with_state_lock(home, || {
        let taken = record_stems(&dir)?;
        let n = (1..)
            .find(|n| !taken.contains(&format!("{bundle_id}-{n}")))
            .unwrap_or(1);
        write_json(
            &file_in(&dir, &format!("{bundle_id}-{n}"), "json"),
            &ExportRecord {
                format: EXPORT_FORMAT.to_owned(),
                bundle_id: bundle_id.to_owned(),
                path: path.clone(),
                written_at: now,
                operator: actor.operator().as_str().to_owned(),
            },
        )
    })
}

/// One thing `purge` deleted (or would delete, on a dry run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// `export`, `inbox` or `outbox`.
    pub what: &'static str,
    /// The bundle concerned.
    pub bundle_id: String,
    /// The file or directory removed.
    pub path: PathBuf,
    /// When its retention period started.
    pub since: Timestamp,
}

/// Deletes (or with `dry_run`, lists) everything whose retention period has run out under
/// `policy`, auditing each deletion. Safe to run at any time and concurrently with `sync`.
pub fn purge(
    home: &NodeHome,
    actor: &Actor,
    policy: &Policy,
    now: Timestamp,
    dry_run: bool,
) -> Result<Vec<Purged>, NodeError> {
    let mut done = Vec::new();
    let keep = &policy.retention;

    // Plaintext exports.
    let dir = exports_dir(home);
    for stem in record_stems(&dir)? {
        let record_path = file_in(&dir, &stem, "json");
        let Some(rec) = read_json::<ExportRecord>(&record_path)? else {
            continue;
        };
        if !keep.exports().is_due(rec.written_at, now) {
            continue;
        }
        if !dry_run {
            audited(actor, &rec.bundle_id, "plaintext export deleted", || {
                remove_tree(&rec.path)
            })?;
            fs::remove_file(&record_path).map_err(NodeError::io("removing an export record"))?;
        }
        done.push(Purged {
            what: "export",
            bundle_id: rec.bundle_id,
            path: rec.path,
            since: rec.written_at,
        });
    }

    // Received bundles, from their first opening.
    for rec in inbox::list_inbox(home)? {
        let Some(opened) = opened_at(home, &rec.bundle_id)? else {
            continue;
        };
        let body = inbox::bundle_path(home, &rec.bundle_id);
        if !body.exists() || !keep.opened_inbox().is_due(opened, now) {
            continue;
        }
        if !dry_run {
            audited(actor, &rec.bundle_id, "received ciphertext deleted", || {
                shred(&body)
            })?;
        }
        done.push(Purged {
            what: "inbox",
            bundle_id: rec.bundle_id,
            path: body,
            since: opened,
        });
    }

    // Sent copies whose delivery is settled.
    for rec in outbox::list(home)? {
        let body = outbox::bundle_path(home, &rec.bundle_id);
        let settled = rec.recipients.iter().all(|r| {
            matches!(
                r.state,
                DeliveryState::Delivered
                    | DeliveryState::Opened
                    | DeliveryState::Rejected
                    | DeliveryState::Expired
            )
        });
        if !settled || !body.exists() || !keep.sent().is_due(rec.queued_at, now) {
            continue;
        }
        if !dry_run {
            audited(actor, &rec.bundle_id, "sent copy deleted", || shred(&body))?;
        }
        done.push(Purged {
            what: "outbox",
            bundle_id: rec.bundle_id,
            path: body,
            since: rec.queued_at,
        });
    }
    Ok(done)
}

/// Records the purge in the audit trail first (an unrecorded deletion must not happen),
/// then deletes.
fn audited(
    actor: &Actor,
    bundle_id: &str,
    detail: &str,
    delete: impl FnOnce() -> io::Result<()>,
) -> Result<(), NodeError> {
    let mut event = AuditEvent::new(AuditAction::Purge).detail(detail);
    if let Ok(id) = BundleId::parse(bundle_id) {
        event = event.bundle(&id);
    }
    actor.record(event)?;
    delete().map_err(NodeError::io(format!("purging bundle {bundle_id}")))
}

/// Overwrites a file with zeros, fsyncs, unlinks, and syncs its directory.
fn shred(path: &Path) -> io::Result<()> {
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut f = OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    fs::remove_file(path)?;
    crate::fsutil::sync_dir(crate::fsutil::parent_of(path))
}

/// Shreds every file under `dir`, then removes the tree. A directory already gone is fine.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        // Never follow a symlink planted where an export was.
        return fs::remove_file(dir);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            remove_tree(&entry.path())?;
        } else if kind.is_file() {
            shred(&entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    fs::remove_dir(dir)
}
