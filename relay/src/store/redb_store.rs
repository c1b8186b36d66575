//! The embedded default store: a redb index (`DATA/store.redb`) over body files
//! (`DATA/blobs/<id>`, uploads in `DATA/incoming/<id>.part`).
//!
//! redb commits with its default, immediate durability (fdatasync before `commit`
//! returns), and its page cache is capped at [`DB_CACHE_BYTES`] so the relay's memory does
//! not grow with the number of bundles. See the module docs of `store` for the durability
//! order and why redb.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dossier_spool::SpoolReader;
use redb::ReadableTable;
use sha2::{Digest, Sha256};

use super::files::{Layout, remove_if_present, touch_private};
use super::index_db::IndexDb;
use super::records::{
    BUNDLES, BundleRecord, BundleState, CLOSED_AGE, COUNTERS, Content, ENROLLMENTS, HELD_AGE,
    MAILBOX, NOTICES, PENDING, RECEIPT_SEEN, UPLOAD_AGE, UPLOADS, USAGE, UploadRecord,
    append_notice, charge, create_tables, encode, enrollment_from_row, get_bundle, get_upload,
    next_seq, pending_of, require_enrolled,
};
use super::recovery::Recovery;
use super::upload::{PartialBlob, SlotLease, Slots, lock};
use super::{
    Accepted, AckOutcome, DepositMeta, DepositStart, Enrollment, ExpiryReport, HeldBlob, Limits,
    MAX_LIST_ITEMS, MAX_RECEIPT_BYTES, MAX_RECIPIENTS, MailboxEntry, NoticeBody, RelayStore,
    RevocationRecord, SenderNotice, StoreError, digest_from_hex, is_bundle_id,
};

/// redb page cache cap. The index holds ids, sizes and times only, so 16 MiB keeps hot
/// mailboxes cached while bounding memory whatever the number of bundles.
pub const DB_CACHE_BYTES: usize = 16 << 20;

/// Largest card file the store accepts (cards are a few hundred bytes).
const MAX_CARD_BYTES: usize = 64 * 1024;

/// Shared state behind every handle and every upload.
pub(crate) struct Inner {
    /// The index; reopened by itself after a failed write (see `index_db`).
    pub db: IndexDb,
    pub layout: Layout,
    pub limits: Limits,
    pub slots: Slots,
    next_generation: AtomicU64,
}

/// The redb-backed [`RelayStore`]. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
    recovery: Recovery,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("data_dir", &self.inner.layout.root)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating if needed) the store in `data_dir`: `store.redb`, `blobs/` and
    /// `incoming/` (directories 0700, files 0600), then tidies what a crash left behind:
    /// unindexed bodies are removed or requeued, unrecorded partial uploads removed;
    /// recorded partial uploads are kept so their senders can resume.
    ///
    /// Fails with a database error if another process has the store open.
    pub fn open(data_dir: impl AsRef<Path>, limits: Limits) -> Result<Self, StoreError> {
        if limits.retention_secs <= 0 || limits.receipt_retention_secs <= 0 {
            return Err(StoreError::Invalid("retention times must be positive"));
        }
        let layout = Layout::new(data_dir.as_ref());
        layout.create()?;
        let db_path = layout.root.join("store.redb");
        touch_private(&db_path).map_err(StoreError::io("creating store.redb"))?;
        let db = IndexDb::new(move || {
            redb::Builder::new()
                .set_cache_size(DB_CACHE_BYTES)
                .create(&db_path)
        })?;
        let txn = db.begin_write()?;
        create_tables(&txn)?;
        txn.commit()?;
        let inner = Arc::new(Inner {
            db,
            layout,
            limits,
            slots: Slots::default(),
            next_generation: AtomicU64::new(1),
        });
        let recovery = inner.recover()?;
        Ok(Self { inner, recovery })
    }

    /// What opening tidied up (for the operator's log).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.layout.root
    }
}

impl Inner {
    /// Decides how a deposit starts, reserving quota for a new one (one commit).
    fn reserve(&self, meta: &DepositMeta, now: i64) -> Result<Reservation, StoreError> {
        let content = Content::of(meta);
        let id = meta.bundle_id.as_str();
        let txn = self.db.begin_write()?;
        {
            let enrollments = txn.open_table(ENROLLMENTS)?;
            require_enrolled(&enrollments, &meta.sender)?;
            for r in &meta.recipients {
                require_enrolled(&enrollments, r)?;
            }
        }
        let conflict = || StoreError::Conflict {
            bundle_id: id.to_owned(),
        };
        if let Some(record) = get_bundle(&txn.open_table(BUNDLES)?, id)? {
            if record.content != content {
                return Err(conflict());
            }
            return match record.state {
                BundleState::Expired { .. } => Err(StoreError::Expired {
                    bundle_id: id.to_owned(),
                }),
                _ => Ok(Reservation::Accepted(Accepted {
                    bundle_id: id.to_owned(),
                    accepted_at: record.deposited_at,
                })),
            };
        }
        if let Some(upload) = get_upload(&txn.open_table(UPLOADS)?, id)? {
            return if upload.content == content {
                Ok(Reservation::Resume)
            } else {
                Err(conflict())
            };
        }
        {
            let mut usage = txn.open_table(USAGE)?;
            let used = usage.get(meta.sender.as_str())?.map_or(0, |v| v.value());
            let quota = self.limits.quota_bytes_per_facility;
            if used.saturating_add(meta.length) > quota {
                return Err(StoreError::OverQuota {
                    facility: meta.sender.clone(),
                    used,
                    requested: meta.length,
                    quota,
                });
            }
            charge(&mut usage, &meta.sender, i128::from(meta.length))?;
        }
        let record = UploadRecord {
            content,
            started_at: now,
        };
        txn.open_table(UPLOADS)?
            .insert(id, encode(&record).as_str())?;
        txn.open_table(UPLOAD_AGE)?.insert((now, id), ())?;
        txn.commit()?;
        Ok(Reservation::New)
    }

    /// Indexes a durable, verified body: bundle record, one mailbox entry per recipient,
    /// upload record gone (its quota charge carries over). One commit.
    pub(crate) fn commit_deposit(
        &self,
        meta: &DepositMeta,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        let id = meta.bundle_id.as_str();
        let txn = self.db.begin_write()?;
        let upload = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let upload = get_upload(&uploads, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("upload record {id} missing")))?;
            uploads.remove(id)?;
            upload
        };
        txn.open_table(UPLOAD_AGE)?
            .remove((upload.started_at, id))?;
        if get_bundle(&txn.open_table(BUNDLES)?, id)?.is_some() {
            return Err(StoreError::Corrupt(format!("bundle {id} indexed twice")));
        }
        {
            let mut counters = txn.open_table(COUNTERS)?;
            let mut mailbox = txn.open_table(MAILBOX)?;
            let mut pending = txn.open_table(PENDING)?;
            for recipient in &upload.content.recipients {
                let seq = next_seq(&mut counters)?;
                mailbox.insert((recipient.as_str(), seq), id)?;
                pending.insert((id, recipient.as_str()), seq)?;
            }
        }
        let record = BundleRecord {
            content: upload.content,
            deposited_at: now,
            state: BundleState::Held,
        };
        txn.open_table(BUNDLES)?
            .insert(id, encode(&record).as_str())?;
        txn.open_table(HELD_AGE)?.insert((now, id), ())?;
        txn.commit()?;
        Ok(Accepted {
            bundle_id: id.to_owned(),
            accepted_at: now,
        })
    }

    /// Forgets an upload and its quota charge (the caller removes the file afterwards).
    pub(crate) fn discard_upload(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let upload = {
            let mut uploads = txn.open_table(UPLOADS)?;
            let upload = get_upload(&uploads, id)?;
            uploads.remove(id)?;
            upload
        };
        if let Some(upload) = upload {
            txn.open_table(UPLOAD_AGE)?
                .remove((upload.started_at, id))?;
            charge(
                &mut txn.open_table(USAGE)?,
                &upload.content.sender,
                -i128::from(upload.content.length),
            )?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Takes a bundle's upload slot and becomes its owner, superseding any older writer.
    pub(super) fn claim(self: &Arc<Self>, id: &str) -> (SlotLease, u64) {
        let lease = SlotLease::take(self, id);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        (lease, generation)
    }
}

/// How [`Inner::reserve`] decided.
enum Reservation {
    New,
    Resume,
    Accepted(Accepted),
}

/// A facility id as a key: bounded, printable ASCII. (The full id grammar is the card
/// code's; the store only needs keys it can bound and print.)
fn check_facility(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::Invalid(
            "facility ids are 1-64 printable ASCII characters",
        ));
    }
    Ok(())
}

fn check_bundle_id(id: &str) -> Result<(), StoreError> {
    if is_bundle_id(id) {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "bundle ids are 32 lowercase hex digits",
        ))
    }
}

fn check_meta(meta: &DepositMeta, limits: &Limits) -> Result<(), StoreError> {
    check_bundle_id(&meta.bundle_id)?;
    check_facility(&meta.sender)?;
    if meta.recipients.is_empty() || meta.recipients.len() > MAX_RECIPIENTS {
        return Err(StoreError::Invalid("a deposit names 1 to 64 recipients"));
    }
    for (i, r) in meta.recipients.iter().enumerate() {
        check_facility(r)?;
        if meta.recipients[..i].contains(r) {
            return Err(StoreError::Invalid("a recipient is listed twice"));
        }
    }
    if meta.length > limits.max_bundle_bytes {
        return Err(StoreError::TooLarge {
            length: meta.length,
            max: limits.max_bundle_bytes,
        });
    }
    Ok(())
}

fn unknown(id: &str) -> StoreError {
    StoreError::UnknownBundle {
        bundle_id: id.to_owned(),
    }
}

impl RelayStore for RedbStore {
    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn enroll(&self, facility: &str, card: &[u8], now: i64) -> Result<Enrollment, StoreError> {
        check_facility(facility)?;
        if card.is_empty() || card.len() > MAX_CARD_BYTES {
            return Err(StoreError::Invalid("a card file is 1 byte to 64 KiB"));
        }
        let txn = self.inner.db.begin_write()?;
        txn.open_table(ENROLLMENTS)?
            .insert(facility, (now, None, card))?;
        txn.commit()?;
        Ok(Enrollment {
            facility: facility.to_owned(),
            card: card.to_vec(),
            enrolled_at: now,
            revoked_at: None,
        })
    }

    fn revoke(&self, facility: &str, now: i64) -> Result<Enrollment, StoreError> {
        let txn = self.inner.db.begin_write()?;
        let enrollment = {
            let mut table = txn.open_table(ENROLLMENTS)?;
            let mut e = match table.get(facility)? {
                Some(row) => enrollment_from_row(facility, row.value()),
                None => {
                    return Err(StoreError::NotEnrolled {
                        facility: facility.to_owned(),
                    });
                }
            };
            if e.revoked_at.is_none() {
                e.revoked_at = Some(now);
                table.insert(facility, (e.enrolled_at, e.revoked_at, e.card.as_slice()))?;
            }
            e
        };
        txn.commit()?;
        Ok(enrollment)
    }

    fn enrollment(&self, facility: &str) -> Result<Option<Enrollment>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(ENROLLMENTS)?;
        Ok(table
            .get(facility)?
            .map(|row| enrollment_from_row(facility, row.value())))
    }

    fn enrollments(&self) -> Result<Vec<Enrollment>, StoreError> {
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(ENROLLMENTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            out.push(enrollment_from_row(k.value(), v.value()));
        }
        Ok(out)
    }

    fn begin_deposit(&self, meta: &DepositMeta, now: i64) -> Result<DepositStart, StoreError> {
        check_meta(meta, &self.inner.limits)?;
        let (lease, generation) = self.inner.claim(&meta.bundle_id);
        let slot = Arc::clone(&lease.slot);
        // Decide and open under the slot lock, so a concurrent finish cannot slip between.
        let mut owner = lock(&slot);
        let new = match self.inner.reserve(meta, now)? {
            Reservation::Accepted(accepted) => return Ok(DepositStart::AlreadyAccepted(accepted)),
            Reservation::New => true,
            Reservation::Resume => false,
        };
        *owner = generation;
        let upload = match PartialBlob::open(lease, generation, meta.clone()) {
            Ok(upload) => upload,
            Err(e @ StoreError::StorageFull { .. }) if new => {
                // No room even to start: forget the reservation made above.
                let _ = remove_if_present(&self.inner.layout.part(&meta.bundle_id));
                let _ = self.inner.discard_upload(&meta.bundle_id);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        drop(owner);
        Ok(DepositStart::Upload(Box::new(upload)))
    }

    fn mailbox(
        &self,
        recipient: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<MailboxEntry>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let limit = limit.min(MAX_LIST_ITEMS);
        let txn = self.inner.db.begin_read()?;
        let mailbox = txn.open_table(MAILBOX)?;
        let bundles = txn.open_table(BUNDLES)?;
        let mut out = Vec::new();
        for row in mailbox.range((recipient, first)..=(recipient, u64::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let id = v.value();
            let record = get_bundle(&bundles, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("mailbox names unknown bundle {id}")))?;
            let sha256 = digest_from_hex(&record.content.sha256)
                .ok_or_else(|| StoreError::Corrupt(format!("bundle record {id} unreadable")))?;
            out.push(MailboxEntry {
                seq: k.value().1,
                bundle_id: id.to_owned(),
                from: record.content.sender,
                length: record.content.length,
                sha256,
                deposited_at: record.deposited_at,
            });
        }
        Ok(out)
    }

    fn open_blob(&self, bundle_id: &str, recipient: &str) -> Result<HeldBlob, StoreError> {
        if !is_bundle_id(bundle_id) {
            return Err(unknown(bundle_id));
        }
        let record = {
            let txn = self.inner.db.begin_read()?;
            if txn
                .open_table(PENDING)?
                .get((bundle_id, recipient))?
                .is_none()
            {
                return Err(unknown(bundle_id));
            }
            get_bundle(&txn.open_table(BUNDLES)?, bundle_id)?
                .filter(|r| r.state == BundleState::Held)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("pending bundle {bundle_id} not held"))
                })?
        };
        // Served around the page cache where possible (see dossier-spool).
        let file = SpoolReader::open(&self.inner.layout.blob(bundle_id)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Corrupt(format!("body of bundle {bundle_id} missing"))
            } else {
                StoreError::io("opening a body")(e)
            }
        })?;
        let length = file.len().map_err(StoreError::io("reading a body"))?;
        if length != record.content.length {
            return Err(StoreError::Corrupt(format!(
                "body of bundle {bundle_id} has the wrong length"
            )));
        }
        let sha256 = digest_from_hex(&record.content.sha256)
            .ok_or_else(|| StoreError::Corrupt(format!("bundle record {bundle_id} unreadable")))?;
        Ok(HeldBlob {
            length,
            sha256,
            reader: Box::new(file),
        })
    }

    fn ack(&self, recipient: &str, bundle_id: &str, now: i64) -> Result<AckOutcome, StoreError> {
        if !is_bundle_id(bundle_id) {
            return Err(unknown(bundle_id));
        }
        let txn = self.inner.db.begin_write()?;
        let Some(mut record) = get_bundle(&txn.open_table(BUNDLES)?, bundle_id)? else {
            return Err(unknown(bundle_id));
        };
        if !record.content.recipients.iter().any(|r| r == recipient) {
            return Err(unknown(bundle_id));
        }
        let Some(seq) = txn
            .open_table(PENDING)?
            .remove((bundle_id, recipient))?
            .map(|v| v.value())
        else {
            txn.abort()?;
            return Ok(AckOutcome::AlreadyAcked);
        };
        txn.open_table(MAILBOX)?.remove((recipient, seq))?;
        if !pending_of(&txn.open_table(PENDING)?, bundle_id)?.is_empty() {
            txn.commit()?;
            return Ok(AckOutcome::Acked);
        }
        charge(
            &mut txn.open_table(USAGE)?,
            &record.content.sender,
            -i128::from(record.content.length),
        )?;
        txn.open_table(HELD_AGE)?
            .remove((record.deposited_at, bundle_id))?;
        record.state = BundleState::Released { at: now };
        txn.open_table(BUNDLES)?
            .insert(bundle_id, encode(&record).as_str())?;
        txn.open_table(CLOSED_AGE)?.insert((now, bundle_id), ())?;
        txn.commit()?;
        // The index has forgotten the body; a crash before this line leaves an orphan
        // file, which the next open removes.
        remove_if_present(&self.inner.layout.blob(bundle_id))
            .map_err(StoreError::io("removing a delivered body"))?;
        Ok(AckOutcome::Released)
    }

    fn post_receipt(
        &self,
        bundle_id: &str,
        recipient: &str,
        receipt: &[u8],
        now: i64,
    ) -> Result<u64, StoreError> {
        if receipt.is_empty() {
            return Err(StoreError::Invalid("empty receipt"));
        }
        if receipt.len() > MAX_RECEIPT_BYTES {
            return Err(StoreError::TooLarge {
                length: receipt.len() as u64,
                max: MAX_RECEIPT_BYTES as u64,
            });
        }
        if !is_bundle_id(bundle_id) {
            return Err(unknown(bundle_id));
        }
        let txn = self.inner.db.begin_write()?;
        let Some(record) = get_bundle(&txn.open_table(BUNDLES)?, bundle_id)? else {
            return Err(unknown(bundle_id));
        };
        if !record.content.recipients.iter().any(|r| r == recipient) {
            return Err(unknown(bundle_id));
        }
        let digest = Sha256::digest(receipt);
        let key = (bundle_id, recipient, digest.as_slice());
        let seen = txn.open_table(RECEIPT_SEEN)?.get(key)?.map(|v| v.value());
        if let Some(seq) = seen {
            txn.abort()?;
            return Ok(seq);
        }
        let seq = append_notice(
            &txn,
            &record.content.sender,
            bundle_id,
            recipient,
            now,
            Some(receipt),
        )?;
        txn.open_table(RECEIPT_SEEN)?.insert(key, seq)?;
        txn.commit()?;
        Ok(seq)
    }

    fn receipts(
        &self,
        sender: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SenderNotice>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let limit = limit.min(MAX_LIST_ITEMS);
        let txn = self.inner.db.begin_read()?;
        let notices = txn.open_table(NOTICES)?;
        let mut out = Vec::new();
        for row in notices.range((sender, first)..=(sender, u64::MAX))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let (bundle_id, recipient, at, body) = v.value();
            out.push(SenderNotice {
                seq: k.value().1,
                bundle_id: bundle_id.to_owned(),
                recipient: recipient.to_owned(),
                at,
                body: match body {
                    Some(bytes) => NoticeBody::Receipt(bytes.to_vec()),
                    None => NoticeBody::Expired,
                },
            });
        }
        Ok(out)
    }

    fn expire(&self, now: i64) -> Result<ExpiryReport, StoreError> {
        let mut report = ExpiryReport::default();
        self.inner.expire_held(now, &mut report)?;
        self.inner.expire_uploads(now, &mut report)?;
        self.inner.purge_old(now, &mut report)?;
        Ok(report)
    }

    fn usage(&self, facility: &str) -> Result<u64, StoreError> {
        let txn = self.inner.db.begin_read()?;
        Ok(txn
            .open_table(USAGE)?
            .get(facility)?
            .map_or(0, |v| v.value()))
    }

    // Key revocations live in `revocations.rs`.
    fn post_revocation(
        &self,
        facility: &str,
        key: &str,
        revocation: &[u8],
        now: i64,
    ) -> Result<RevocationRecord, StoreError> {
        self.inner.post_revocation(facility, key, revocation, now)
    }

    fn revocations(&self, after: u64, limit: usize) -> Result<Vec<RevocationRecord>, StoreError> {
        self.inner.revocations(after, limit)
    }

    fn key_revocation(
        &self,
        facility: &str,
        key: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        self.inner.key_revocation(facility, key)
    }
}
