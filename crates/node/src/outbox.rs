//! The outbox: bundles this node sent, and what became of them for each recipient.
//!
//! ```text
//! HOME/outbox/<bundle_id>.dossier   the sealed bundle (age ciphertext), kept after upload
//! HOME/outbox/<bundle_id>.json      its record: recipients, delivery state, receipts, timeline
//! ```
//!
//! A bundle is queued the moment its ciphertext and record are durable; from then on it
//! survives a crash and `dossier sync` uploads it until the relay accepts it. Each recipient
//! then moves through `queued → accepted → delivered | rejected | expired` (and `opened`),
//! driven only by evidence: the relay's acceptance, a receipt signed by the recipient and
//! checked against its pin, or the relay's expiry notice. The record keeps each receipt as
//! received, so the evidence can be shown later.
//!
//! The record holds the subject and patient reference because this node wrote them; they
//! stay in the home (mode 0600) and are never sent to the relay or logged.

use std::path::{Path, PathBuf};

use dossier_bundle::{BundleKind, Keyring, Manifest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;
use crate::fsutil::{create_private_dir, sync_dir};
use crate::home::NodeHome;
use crate::sealing::{SealOptions, seal_to_file};
use crate::statefile::{
    file_in, hex, measure_file, read_json, record_stems, with_state_lock, write_json,
};

const OUTBOX_FORMAT: &str = "dossier-outbox/v1";

/// Where one recipient's copy stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Sealed and stored here; the relay does not have it yet.
    Queued,
    /// The relay holds it durably; no receipt yet.
    Accepted,
    /// The relay dropped it undelivered (its notice).
    Expired,
    /// The recipient refused it (signed receipt with a reason).
    Rejected,
    /// The recipient verified and stored it (signed receipt).
    Delivered,
    /// The recipient reports it was opened (signed receipt).
    Opened,
}

impl DeliveryState {
    /// `queued`, `accepted`, `delivered`, `opened`, `expired` or `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Accepted => "accepted",
            DeliveryState::Expired => "expired",
            DeliveryState::Rejected => "rejected",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Opened => "opened",
        }
    }

    /// Whether nothing further is expected for this recipient.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryState::Queued | DeliveryState::Accepted)
    }
}

/// One recipient's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientState {
    /// Recipient facility id.
    pub id: String,
    /// Current state.
    pub state: DeliveryState,
    /// When it entered that state (the receipt's signed time for receipts).
    pub at: Timestamp,
    /// For `rejected` and `expired`: why.
    pub reason: Option<String>,
    /// The signed receipt that proved the state, exactly as received.
    pub receipt: Option<String>,
    /// Something the user must know (e.g. the relay substituted the ciphertext).
    pub alert: Option<String>,
}

/// The upload to the relay.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadState {
    /// When the relay made it durable (relay clock).
    pub accepted_at: Option<Timestamp>,
    /// Upload attempts so far.
    pub attempts: u32,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The relay refused this bundle for good (too large, conflict): not retried.
    pub refused: Option<String>,
}

/// One entry of a bundle's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEvent {
    /// When.
    pub at: Timestamp,
    /// `queued`, `accepted`, `delivered`, `opened`, `rejected`, `expired`, `refused`, `alert`.
    pub event: String,
    /// The recipient concerned, if one.
    pub recipient: Option<String>,
    /// Reason or detail (no record content).
    pub detail: Option<String>,
}

/// A sent bundle's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxRecord {
    format: String,
    /// Bundle id.
    pub bundle_id: String,
    /// This node's id.
    pub from: String,
    /// Recipients, in the signed order.
    pub to: Vec<String>,
    /// Kind.
    pub kind: BundleKind,
    /// Subject (PHI: local only).
    pub subject: Option<String>,
    /// Thread.
    pub thread: Option<String>,
    /// Patient reference (PHI: local only).
    pub patient: Option<String>,
    /// When sealed.
    pub created_at: Timestamp,
    /// When queued here.
    pub queued_at: Timestamp,
    /// Number of parts.
    pub parts: usize,
    /// Plaintext bytes over all parts.
    pub bytes: u64,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext, lowercase hex: what every receipt must name.
    pub ciphertext_sha256: String,
    /// Upload progress.
    pub upload: UploadState,
    /// Per-recipient delivery.
    pub recipients: Vec<RecipientState>,
    /// Everything that happened, in order.
    pub timeline: Vec<TimelineEvent>,
}

/// What applying a receipt or notice did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The recipient's state changed to this.
    Changed(DeliveryState),
    /// Nothing new (a repeated receipt, or older news).
    Unchanged,
    /// The recipient is not one of this bundle's.
    NotARecipient,
    /// The receipt names other ciphertext than what was deposited.
    CiphertextMismatch,
}

impl OutboxRecord {
    /// A new record for a bundle just sealed into the outbox.
    pub fn new(manifest: &Manifest, length: u64, sha256: &[u8; 32], now: Timestamp) -> Self {
        let to: Vec<String> = manifest
            .recipients
            .iter()
            .map(|r| r.id.as_str().to_owned())
            .collect();
        Self {
            format: OUTBOX_FORMAT.to_owned(),
            bundle_id: manifest.bundle_id.as_str().to_owned(),
            from: manifest.sender.id.as_str().to_owned(),
            recipients: to
                .iter()
                .map(|id| RecipientState {
                    id: id.clone(),
                    state: DeliveryState::Queued,
                    at: now,
                    reason: None,
                    receipt: None,
                    alert: None,
                })
                .collect(),
            to,
            kind: manifest.kind,
            subject: manifest.subject.clone(),
            thread: manifest.thread.clone(),
            patient: manifest.patient.clone(),
            created_at: manifest.created_at,
            queued_at: now,
            parts: manifest.parts.len(),
            bytes: manifest.parts.iter().map(|p| p.length).sum(),
            length,
            ciphertext_sha256: hex(sha256),
            upload: UploadState::default(),
            timeline: vec![TimelineEvent {
                at: now,
                event: "queued".into(),
                recipient: None,
                detail: None,
            }],
        }
    }

    /// Whether `sync` should (still) upload it.
    pub fn needs_upload(&self) -> bool {
        self.upload.accepted_at.is_none() && self.upload.refused.is_none()
    }

    /// An upload attempt failed for a reason that may pass.
    pub fn record_attempt_failure(&mut self, error: &str, now: Timestamp) {
        self.upload.attempts += 1;
        self.upload.last_attempt_at = Some(now);
        self.upload.last_error = Some(crate::statefile::one_line(error, 300));
    }

    /// The relay accepted the bundle durably at `at`.
    pub fn mark_accepted(&mut self, at: Timestamp, now: Timestamp) {
        self.upload.attempts += 1;
        self.upload.last_attempt_at = Some(now);
        self.upload.last_error = None;
        if self.upload.accepted_at.is_some() {
            return;
        }
        self.upload.accepted_at = Some(at);
        for r in &mut self.recipients {
            if r.state == DeliveryState::Queued {
                r.state = DeliveryState::Accepted;
                r.at = at;
            }
        }
        self.push_event(at, "accepted", None, None);
    }

    /// The bundle cannot be uploaded, ever (the relay refused it for good, or its file is
    /// gone): it will not be retried. `reason` says why, for every queued recipient.
    pub fn mark_refused(&mut self, reason: &str, now: Timestamp) {
        let reason = crate::statefile::one_line(reason, 300);
        self.upload.attempts += 1;
        self.upload.last_attempt_at = Some(now);
        self.upload.refused = Some(reason.clone());
        for r in &mut self.recipients {
            if r.state == DeliveryState::Queued {
                r.state = DeliveryState::Rejected;
                r.at = now;
                r.reason = Some(reason.clone());
            }
        }
        self.push_event(now, "refused", None, Some(reason));
    }

    /// Applies a receipt whose signature was checked against the recipient's pin.
    /// `sha_matches` says whether it names the ciphertext this node deposited.
    pub fn apply_receipt(
        &mut self,
        recipient: &str,
        status: dossier_bundle::receipt::ReceiptStatus,
        reason: Option<&str>,
        at: Timestamp,
        receipt_text: &str,
        sha_matches: bool,
    ) -> Applied {
        use dossier_bundle::receipt::ReceiptStatus;
        let Some(i) = self.recipients.iter().position(|r| r.id == recipient) else {
            return Applied::NotARecipient;
        };
        if !sha_matches {
            let alert = "the recipient received different ciphertext than this node deposited: the relay substituted it. Do not rely on this delivery; send the bundle again and tell the relay's operator";
            let r = &mut self.recipients[i];
            if r.alert.as_deref() == Some(alert) {
                return Applied::CiphertextMismatch;
            }
            r.alert = Some(alert.to_owned());
            self.push_event(
                at,
                "alert",
                Some(recipient),
                Some("relay substituted ciphertext".into()),
            );
            return Applied::CiphertextMismatch;
        }
        let new = match status {
            ReceiptStatus::Delivered => DeliveryState::Delivered,
            ReceiptStatus::Opened => DeliveryState::Opened,
            ReceiptStatus::Rejected => DeliveryState::Rejected,
        };
        let r = &mut self.recipients[i];
        let advance = matches!(
            (r.state, new),
            (
                DeliveryState::Queued | DeliveryState::Accepted | DeliveryState::Expired,
                _
            ) | (DeliveryState::Delivered, DeliveryState::Opened)
        );
        if !advance {
            return Applied::Unchanged;
        }
        r.state = new;
        r.at = at;
        r.reason = reason.map(|s| crate::statefile::one_line(s, 300));
        r.receipt = Some(receipt_text.to_owned());
        let detail = r.reason.clone();
        self.push_event(at, new.as_str(), Some(recipient), detail);
        Applied::Changed(new)
    }

    /// Applies the relay's notice that the bundle expired undelivered for `recipient`.
    pub fn apply_expired(&mut self, recipient: &str, at: Timestamp) -> Applied {
        let Some(r) = self.recipients.iter_mut().find(|r| r.id == recipient) else {
            return Applied::NotARecipient;
        };
        if r.state.is_final() {
            return Applied::Unchanged;
        }
        r.state = DeliveryState::Expired;
        r.at = at;
        r.reason = Some("the relay dropped it undelivered after its retention time".into());
        self.push_event(
            at,
            "expired",
            Some(recipient),
            Some("undelivered at the relay".into()),
        );
        Applied::Changed(DeliveryState::Expired)
    }

    /// Whether some recipient still has no receipt `window_secs` after queueing.
    pub fn overdue(&self, now: Timestamp, window_secs: u64) -> bool {
        let waited = now.unix().saturating_sub(self.queued_at.unix());
        waited >= 0
            && waited as u64 >= window_secs
            && self.recipients.iter().any(|r| !r.state.is_final())
    }

    /// One word for the whole bundle: the least advanced recipient's state.
    pub fn overall_state(&self) -> DeliveryState {
        self.recipients
            .iter()
            .map(|r| r.state)
            .min()
            .unwrap_or(DeliveryState::Queued)
    }

    fn push_event(
        &mut self,
        at: Timestamp,
        event: &str,
        recipient: Option<&str>,
        detail: Option<String>,
    ) {
        self.timeline.push(TimelineEvent {
            at,
            event: event.to_owned(),
            recipient: recipient.map(str::to_owned),
            detail,
        });
    }

    fn check(&self, path: &Path) -> Result<(), NodeError> {
        if self.format != OUTBOX_FORMAT {
            return Err(NodeError::CorruptState(
                path.to_path_buf(),
                "unknown outbox record version",
            ));
        }
        Ok(())
    }
}

/// `HOME/outbox`.
pub fn dir(home: &NodeHome) -> PathBuf {
    home.root().join("outbox")
}

/// The ciphertext of a queued or sent bundle.
pub fn bundle_path(home: &NodeHome, bundle_id: &str) -> PathBuf {
    file_in(&dir(home), bundle_id, "dossier")
}

fn record_path(home: &NodeHome, bundle_id: &str) -> PathBuf {
    file_in(&dir(home), bundle_id, "json")
}

/// The record of `bundle_id`, if this node sent it.
pub fn load(home: &NodeHome, bundle_id: &str) -> Result<Option<OutboxRecord>, NodeError> {
    let path = record_path(home, bundle_id);
    let rec: Option<OutboxRecord> = read_json(&path)?;
    if let Some(r) = &rec {
        r.check(&path)?;
    }
    Ok(rec)
}

/// Every sent bundle, oldest first.
pub fn list(home: &NodeHome) -> Result<Vec<OutboxRecord>, NodeError> {
    let mut out = Vec::new();
    for stem in record_stems(&dir(home))? {
        if let Some(r) = load(home, &stem)? {
            out.push(r);
        }
    }
    out.sort_by(|a, b| (a.queued_at, &a.bundle_id).cmp(&(b.queued_at, &b.bundle_id)));
    Ok(out)
}

/// Re-reads the record under the state lock, applies `f`, writes it back atomically.
pub fn update<T>(
    home: &NodeHome,
    bundle_id: &str,
    f: impl FnOnce(&mut OutboxRecord) -> T,
) -> Result<Option<T>, NodeError> {
    with_state_lock(home, || {
        let Some(mut rec) = load(home, bundle_id)? else {
            return Ok(None);
        };
        let before = rec.clone();
        let out = f(&mut rec);
        if rec != before {
            write_json(&record_path(home, bundle_id), &rec)?;
        }
        Ok(Some(out))
    })
}

/// Seals `inputs` into the outbox and records the bundle as queued. When this returns, the
/// bundle survives a crash and will be uploaded by `sync`.
///
/// `commit` runs after sealing and before the bundle becomes visible in the outbox (the
/// audit entry and the disclosure record are written there); if it fails, nothing is
/// queued.
pub fn queue(
    home: &NodeHome,
    keyring: &Keyring,
    opts: &SealOptions,
    inputs: &[PathBuf],
    now: Timestamp,
    commit: &mut dyn FnMut(&Manifest) -> Result<(), NodeError>,
) -> Result<OutboxRecord, NodeError> {
    let out_dir = dir(home);
    create_private_dir(&out_dir).map_err(NodeError::io("creating the outbox"))?;
    // Seal under a temporary name: the bundle id is chosen while sealing.
    let staging = tempfile::Builder::new()
        .prefix(".sealing-")
        .suffix(".dossier")
        .tempfile_in(&out_dir)
        .map_err(NodeError::io("creating a file in the outbox"))?
        .into_temp_path();
    let staging_path = staging.to_path_buf();
    std::fs::remove_file(&staging_path).map_err(NodeError::io("preparing the outbox"))?;
    let sealed = seal_to_file(home, keyring, opts, inputs, &staging_path, now);
    let manifest = match sealed {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&staging_path);
            return Err(e);
        }
    };
    let (length, sha) =
        measure_file(&staging_path).map_err(NodeError::io("hashing the sealed bundle"))?;
    if let Err(e) = commit(&manifest) {
        let _ = std::fs::remove_file(&staging_path);
        return Err(e);
    }
    let id = manifest.bundle_id.as_str().to_owned();
    std::fs::rename(&staging_path, bundle_path(home, &id))
        .map_err(NodeError::io("moving the bundle into the outbox"))?;
    drop(staging);
    sync_dir(&out_dir).map_err(NodeError::io("syncing the outbox"))?;
    let rec = OutboxRecord::new(&manifest, length, &sha, now);
    // The record makes it queued; written last, so a queued bundle always has its file.
    with_state_lock(home, || write_json(&record_path(home, &id), &rec))?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_bundle::receipt::ReceiptStatus;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + s).unwrap()
    }

    fn record() -> OutboxRecord {
        let mut r = OutboxRecord {
            format: OUTBOX_FORMAT.into(),
            bundle_id: "ab".repeat(16),
            from: "us-a".into(),
            to: vec!["th-b".into(), "p-c".into()],
            kind: BundleKind::Record,
            subject: None,
            thread: None,
            patient: None,
            created_at: t(0),
            queued_at: t(0),
            parts: 1,
            bytes: 1,
            length: 10,
            ciphertext_sha256: "00".repeat(32),
            upload: UploadState::default(),
            recipients: Vec::new(),
            timeline: Vec::new(),
        };
        r.recipients =
            r.to.iter()
                .map(|id| RecipientState {
                    id: id.clone(),
                    state: DeliveryState::Queued,
                    at: t(0),
                    reason: None,
                    receipt: None,
                    alert: None,
                })
                .collect();
        r
    }

    #[test]
    fn acceptance_then_receipts_drive_each_recipient() {
        let mut r = record();
        assert!(r.needs_upload());
        r.record_attempt_failure("relay down", t(1));
        assert!(r.needs_upload());
        assert_eq!(r.upload.attempts, 1);
        r.mark_accepted(t(5), t(5));
        assert!(!r.needs_upload());
        assert_eq!(r.upload.last_error, None);
        assert!(
            r.recipients
                .iter()
                .all(|x| x.state == DeliveryState::Accepted && x.at == t(5))
        );
        // Accepting again (an idempotent retry) changes nothing.
        let before = r.clone();
        r.mark_accepted(t(9), t(9));
        assert_eq!(r.upload.accepted_at, before.upload.accepted_at);

        let got = r.apply_receipt("th-b", ReceiptStatus::Delivered, None, t(7), "R1", true);
        assert_eq!(got, Applied::Changed(DeliveryState::Delivered));
        assert_eq!(
            r.apply_receipt("th-b", ReceiptStatus::Delivered, None, t(8), "R1", true),
            Applied::Unchanged,
            "a repeated receipt is not news"
        );
        assert_eq!(r.recipients[0].at, t(7));
        assert_eq!(r.overall_state(), DeliveryState::Accepted);
        assert_eq!(
            r.apply_receipt("th-b", ReceiptStatus::Opened, None, t(9), "R2", true),
            Applied::Changed(DeliveryState::Opened)
        );
        assert_eq!(
            r.apply_receipt("th-b", ReceiptStatus::Rejected, Some("x"), t(9), "R3", true),
            Applied::Unchanged,
            "a later rejection does not undo a delivery"
        );
        assert_eq!(
            r.apply_receipt("zz", ReceiptStatus::Delivered, None, t(9), "R", true),
            Applied::NotARecipient
        );
        let got = r.apply_receipt(
            "p-c",
            ReceiptStatus::Rejected,
            Some("sender not pinned\n"),
            t(10),
            "R4",
            true,
        );
        assert_eq!(got, Applied::Changed(DeliveryState::Rejected));
        assert_eq!(
            r.recipients[1].reason.as_deref(),
            Some("sender not pinned ")
        );
        assert_eq!(r.overall_state(), DeliveryState::Rejected);
        let events: Vec<_> = r.timeline.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["accepted", "delivered", "opened", "rejected"]);
    }

    #[test]
    fn substituted_ciphertext_is_flagged_not_delivered() {
        let mut r = record();
        r.mark_accepted(t(1), t(1));
        let got = r.apply_receipt("th-b", ReceiptStatus::Delivered, None, t(2), "R", false);
        assert_eq!(got, Applied::CiphertextMismatch);
        assert_eq!(r.recipients[0].state, DeliveryState::Accepted);
        assert!(
            r.recipients[0]
                .alert
                .as_deref()
                .unwrap()
                .contains("substituted")
        );
    }

    #[test]
    fn expiry_only_touches_pending_recipients_and_receipts_override_it() {
        let mut r = record();
        r.mark_accepted(t(1), t(1));
        r.apply_receipt("th-b", ReceiptStatus::Delivered, None, t(2), "R", true);
        assert_eq!(r.apply_expired("th-b", t(3)), Applied::Unchanged);
        assert_eq!(
            r.apply_expired("p-c", t(3)),
            Applied::Changed(DeliveryState::Expired)
        );
        assert_eq!(r.apply_expired("p-c", t(4)), Applied::Unchanged);
        // A receipt signed before the expiry reached us is still evidence of delivery.
        assert_eq!(
            r.apply_receipt("p-c", ReceiptStatus::Delivered, None, t(2), "R", true),
            Applied::Changed(DeliveryState::Delivered)
        );
    }

    #[test]
    fn overdue_needs_the_window_and_a_pending_recipient() {
        let mut r = record();
        assert!(!r.overdue(t(10), 3600));
        assert!(r.overdue(t(3600), 3600));
        r.mark_accepted(t(1), t(1));
        assert!(r.overdue(t(4000), 3600));
        for id in ["th-b", "p-c"] {
            r.apply_receipt(id, ReceiptStatus::Delivered, None, t(2), "R", true);
        }
        assert!(!r.overdue(t(4000), 3600));
    }

    #[test]
    fn refusal_stops_retries_and_rejects_queued_recipients() {
        let mut r = record();
        r.mark_refused("the relay refused it: too_large", t(1));
        assert!(!r.needs_upload());
        assert!(
            r.recipients
                .iter()
                .all(|x| x.state == DeliveryState::Rejected
                    && x.reason.as_deref().unwrap().contains("relay refused"))
        );
        assert!(!r.overdue(t(100_000), 3600));
    }

    #[test]
    fn update_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        create_private_dir(&super::dir(&home)).unwrap();
        let r = record();
        write_json(&record_path(&home, &r.bundle_id), &r).unwrap();
        assert_eq!(list(&home).unwrap(), vec![r.clone()]);
        update(&home, &r.bundle_id, |x| x.mark_accepted(t(3), t(3))).unwrap();
        let back = load(&home, &r.bundle_id).unwrap().unwrap();
        assert_eq!(back.upload.accepted_at, Some(t(3)));
        assert!(
            update(&home, "cd".repeat(16).as_str(), |_| ())
                .unwrap()
                .is_none()
        );
    }
}
