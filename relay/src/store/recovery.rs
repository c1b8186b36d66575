//! Tidying after a crash, before the store serves anything.
//!
//! The durability order (body, names, then index; index forgets before files go) means a
//! crash can leave only these behind, never a mailbox entry without its body:
//!
//! - a body in `blobs/` the index does not hold: released or expired just before the
//!   crash (removed), or renamed but not yet committed (moved back to `incoming/`, so the
//!   sender's retry resumes at its end and re-verifies it);
//! - a part file in `incoming/` with no upload record (removed); one *with* a record is a
//!   resumable upload and is kept.
//!
//! Files whose names are not bundle ids are never touched.

use std::path::Path;

use super::StoreError;
use super::files::{remove_if_present, sync_dir};
use super::is_bundle_id;
use super::records::{BUNDLES, BundleState, UPLOADS, get_bundle, get_upload};
use super::redb_store::Inner;

/// What [`RedbStore::open`](super::RedbStore::open) tidied after a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Body files with no index entry (a crash after the index forgot them), removed.
    pub orphan_blobs_removed: u64,
    /// Bodies renamed but never indexed (a crash before the commit), moved back to
    /// `incoming/` so the sender's retry resumes at their end.
    pub uploads_requeued: u64,
    /// Partial uploads with no upload record, removed.
    pub orphan_parts_removed: u64,
}

impl Inner {
    /// Removes or requeues body files the index does not know, removes partial uploads
    /// with no record. Runs before any request, so no upload is live.
    pub(super) fn recover(&self) -> Result<Recovery, StoreError> {
        let mut report = Recovery::default();
        let txn = self.db.begin_read()?;
        let bundles = txn.open_table(BUNDLES)?;
        let uploads = txn.open_table(UPLOADS)?;
        let listing = |dir: &Path| {
            std::fs::read_dir(dir).map_err(StoreError::io("listing the data directory"))
        };
        for entry in listing(&self.layout.blobs)? {
            let entry = entry.map_err(StoreError::io("listing blobs/"))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().filter(|n| is_bundle_id(n)) else {
                continue; // not ours: never delete what we did not name
            };
            let held = get_bundle(&bundles, id)?.is_some_and(|r| r.state == BundleState::Held);
            if held {
                continue;
            }
            let part = self.layout.part(id);
            if get_upload(&uploads, id)?.is_some() && !part.exists() {
                std::fs::rename(entry.path(), &part)
                    .map_err(StoreError::io("requeueing an upload"))?;
                report.uploads_requeued += 1;
            } else {
                remove_if_present(&entry.path())
                    .map_err(StoreError::io("removing an orphan body"))?;
                report.orphan_blobs_removed += 1;
            }
        }
        for entry in listing(&self.layout.incoming)? {
            let entry = entry.map_err(StoreError::io("listing incoming/"))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".part"))
                .filter(|n| is_bundle_id(n))
            else {
                continue;
            };
            if get_upload(&uploads, id)?.is_none() {
                remove_if_present(&entry.path())
                    .map_err(StoreError::io("removing an orphan upload"))?;
                report.orphan_parts_removed += 1;
            }
        }
        if report != Recovery::default() {
            sync_dir(&self.layout.blobs).map_err(StoreError::io("syncing blobs/"))?;
            sync_dir(&self.layout.incoming).map_err(StoreError::io("syncing incoming/"))?;
        }
        Ok(report)
    }
}
