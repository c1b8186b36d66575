//! Retention: undelivered bundles expire (default 14 days) with an `expired` notice to
//! the sender, abandoned uploads are discarded, and receipts and the records of delivered
//! or expired bundles are purged after the receipt retention (default 1 year).
//!
//! Each pass handles at most [`EXPIRE_BATCH`] items per kind, so a pass is a short
//! transaction in bounded memory however much is due; `ExpiryReport::more` says to call
//! again. As everywhere in the store, the index forgets a body before its file is deleted.

use std::sync::Arc;

use redb::ReadableTable;
use sha2::{Digest, Sha256};

use super::files::remove_if_present;
use super::records::{
    BUNDLES, BundleState, CLOSED_AGE, HELD_AGE, MAILBOX, NOTICE_AGE, NOTICES, PENDING,
    RECEIPT_SEEN, UPLOAD_AGE, USAGE, append_notice, charge, encode, get_bundle, pending_of,
};
use super::redb_store::Inner;
use super::upload::lock;
use super::{ExpiredBundle, ExpiryReport, StoreError};

/// Bundles expired, uploads discarded, or receipts purged, per pass.
pub(crate) const EXPIRE_BATCH: usize = 256;

impl Inner {
    /// Expires one batch of held bundles older than the retention time.
    pub(super) fn expire_held(
        &self,
        now: i64,
        report: &mut ExpiryReport,
    ) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(self.limits.retention_secs);
        let txn = self.db.begin_write()?;
        let due = oldest(&txn.open_table(HELD_AGE)?, cutoff, EXPIRE_BATCH)?;
        report.more |= due.len() > EXPIRE_BATCH;
        let mut deleted = Vec::new();
        for (deposited_at, id) in due.into_iter().take(EXPIRE_BATCH) {
            txn.open_table(HELD_AGE)?
                .remove((deposited_at, id.as_str()))?;
            let Some(mut record) = get_bundle(&txn.open_table(BUNDLES)?, &id)? else {
                continue;
            };
            let waiting = pending_of(&txn.open_table(PENDING)?, &id)?;
            {
                let mut pending = txn.open_table(PENDING)?;
                let mut mailbox = txn.open_table(MAILBOX)?;
                for (recipient, seq) in &waiting {
                    pending.remove((id.as_str(), recipient.as_str()))?;
                    mailbox.remove((recipient.as_str(), *seq))?;
                }
            }
            let sender = record.content.sender.clone();
            for (recipient, _) in &waiting {
                append_notice(&txn, &sender, &id, recipient, now, None)?;
            }
            charge(
                &mut txn.open_table(USAGE)?,
                &sender,
                -i128::from(record.content.length),
            )?;
            record.state = BundleState::Expired { at: now };
            txn.open_table(BUNDLES)?
                .insert(id.as_str(), encode(&record).as_str())?;
            txn.open_table(CLOSED_AGE)?.insert((now, id.as_str()), ())?;
            report.expired.push(ExpiredBundle {
                bundle_id: id.clone(),
                sender,
                recipients: waiting.into_iter().map(|(r, _)| r).collect(),
            });
            deleted.push(id);
        }
        txn.commit()?;
        for id in &deleted {
            remove_if_present(&self.layout.blob(id))
                .map_err(StoreError::io("removing an expired body"))?;
        }
        Ok(())
    }

    /// Discards one batch of uploads abandoned longer than the retention time.
    pub(super) fn expire_uploads(
        self: &Arc<Self>,
        now: i64,
        report: &mut ExpiryReport,
    ) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(self.limits.retention_secs);
        let stale = {
            let txn = self.db.begin_read()?;
            oldest(&txn.open_table(UPLOAD_AGE)?, cutoff, EXPIRE_BATCH)?
        };
        report.more |= stale.len() > EXPIRE_BATCH;
        for (_, id) in stale.into_iter().take(EXPIRE_BATCH) {
            // Own the slot, so a writer still attached to this upload stops.
            let (lease, generation) = self.claim(&id);
            let slot = Arc::clone(&lease.slot);
            let mut owner = lock(&slot);
            *owner = generation;
            self.discard_upload(&id)?;
            remove_if_present(&self.layout.part(&id))
                .map_err(StoreError::io("removing an abandoned upload"))?;
            report.abandoned_uploads += 1;
        }
        Ok(())
    }

    /// Purges one batch of sender log entries and closed bundle records past the receipt
    /// retention.
    pub(super) fn purge_old(&self, now: i64, report: &mut ExpiryReport) -> Result<(), StoreError> {
        let cutoff = now.saturating_sub(self.limits.receipt_retention_secs);
        let txn = self.db.begin_write()?;
        let old: Vec<(i64, String, u64)> = {
            let age = txn.open_table(NOTICE_AGE)?;
            let mut out = Vec::new();
            for row in age.iter()? {
                let (k, _) = row?;
                let (at, sender, seq) = k.value();
                if at > cutoff || out.len() > EXPIRE_BATCH {
                    break;
                }
                out.push((at, sender.to_owned(), seq));
            }
            out
        };
        report.more |= old.len() > EXPIRE_BATCH;
        {
            let mut age = txn.open_table(NOTICE_AGE)?;
            let mut notices = txn.open_table(NOTICES)?;
            let mut seen = txn.open_table(RECEIPT_SEEN)?;
            for (at, sender, seq) in old.into_iter().take(EXPIRE_BATCH) {
                age.remove((at, sender.as_str(), seq))?;
                if let Some(row) = notices.remove((sender.as_str(), seq))? {
                    let (bundle_id, recipient, _, body) = row.value();
                    if let Some(body) = body {
                        let digest = Sha256::digest(body);
                        seen.remove((bundle_id, recipient, digest.as_slice()))?;
                    }
                }
                report.receipts_purged += 1;
            }
        }
        let closed = oldest(&txn.open_table(CLOSED_AGE)?, cutoff, EXPIRE_BATCH)?;
        report.more |= closed.len() > EXPIRE_BATCH;
        {
            let mut age = txn.open_table(CLOSED_AGE)?;
            let mut bundles = txn.open_table(BUNDLES)?;
            for (at, id) in closed.into_iter().take(EXPIRE_BATCH) {
                age.remove((at, id.as_str()))?;
                if get_bundle(&bundles, &id)?.is_some_and(|r| r.state != BundleState::Held) {
                    bundles.remove(id.as_str())?;
                }
                report.records_purged += 1;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// Up to `limit + 1` keys of an age index with time ≤ `cutoff`, oldest first (the extra
/// one tells the caller more is due).
fn oldest(
    table: &impl ReadableTable<(i64, &'static str), ()>,
    cutoff: i64,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, _) = row?;
        let (at, id) = k.value();
        if at > cutoff || out.len() > limit {
            break;
        }
        out.push((at, id.to_owned()));
    }
    Ok(out)
}
