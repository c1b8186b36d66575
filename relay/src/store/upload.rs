//! Streamed, resumable deposits into `incoming/<id>.part`.
//!
//! One upload per bundle id is live at a time: each begin/resume takes the bundle's
//! *slot* and becomes its owner, so a writer from a dropped connection that the server has
//! not noticed yet is told [`StoreError::Superseded`] instead of interleaving its bytes with
//! the new connection's. Every write and the finish hold the slot's lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use dossier_spool::SpoolWriter;
use sha2::{Digest, Sha256};

use super::files::{remove_if_present, sync_dir};
use super::redb_store::Inner;
use super::{Accepted, DepositMeta, DepositUpload, StoreError};

/// Owner generation of one bundle's upload slot.
pub(crate) type Slot = Arc<Mutex<u64>>;

/// Upload slots by bundle id; an entry lives while someone holds a [`SlotLease`].
pub(crate) type Slots = Mutex<HashMap<String, Slot>>;

/// Locks a mutex whose data (a generation number, a map of slots) stays meaningful even if
/// a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A claim on a bundle's upload slot; dropping the last claim frees the map entry.
pub(crate) struct SlotLease {
    inner: Arc<Inner>,
    id: String,
    pub slot: Slot,
}

impl SlotLease {
    /// Takes (or joins) the slot for `id`.
    pub fn take(inner: &Arc<Inner>, id: &str) -> Self {
        let mut slots = lock(&inner.slots);
        let slot = slots.entry(id.to_owned()).or_default().clone();
        Self {
            inner: Arc::clone(inner),
            id: id.to_owned(),
            slot,
        }
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let mut slots = lock(&self.inner.slots);
        // The map holds one reference and this lease another; clones are made only under
        // the map lock, so nobody else can be about to use the entry.
        if Arc::strong_count(&self.slot) == 2 {
            slots.remove(&self.id);
        }
    }
}

/// The receiving end of a deposit held by [`RedbStore`](super::RedbStore).
pub struct PartialBlob {
    lease: SlotLease,
    generation: u64,
    meta: DepositMeta,
    path: PathBuf,
    /// `None` only after `finish` took it.
    body: Option<SpoolWriter>,
    written: u64,
    hasher: Sha256,
}

impl std::fmt::Debug for PartialBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartialBlob")
            .field("bundle_id", &self.meta.bundle_id)
            .field("written", &self.written)
            .field("length", &self.meta.length)
            .finish_non_exhaustive()
    }
}

impl PartialBlob {
    /// Opens (or recreates) the part file while the caller holds the slot lock, makes the
    /// bytes already held durable, and seeds the hash with them.
    pub(crate) fn open(
        lease: SlotLease,
        generation: u64,
        meta: DepositMeta,
    ) -> Result<Self, StoreError> {
        let layout = &lease.inner.layout;
        let path = layout.part(&meta.bundle_id);
        let blob = layout.blob(&meta.bundle_id);
        // A body renamed into blobs/ whose index commit failed: take it back, so the
        // sender resumes at its end instead of sending it all again.
        if !path.exists() && blob.exists() {
            std::fs::rename(&blob, &path).map_err(StoreError::io("requeueing an upload"))?;
            sync_dir(&layout.blobs).map_err(StoreError::io("syncing blobs/"))?;
            sync_dir(&layout.incoming).map_err(StoreError::io("syncing incoming/"))?;
        }
        // Bytes already held are kept (cut back to whole blocks when written around the
        // page cache) and fsynced: the sender is told only what is durable.
        let (body, created) = SpoolWriter::resume(&path, meta.length)
            .map_err(StoreError::io("opening an upload file"))?;
        if created {
            sync_dir(&layout.incoming).map_err(StoreError::io("syncing incoming/"))?;
        }
        let held = body.len();
        let mut hasher = Sha256::new();
        if held > 0 {
            let file = File::open(&path).map_err(StoreError::io("reading an upload file"))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut prefix = file.take(held);
            loop {
                let n = prefix
                    .read(&mut buf)
                    .map_err(StoreError::io("reading an upload file"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        Ok(Self {
            lease,
            generation,
            meta,
            path,
            body: Some(body),
            written: held,
            hasher,
        })
    }

    /// After the file system filled up under this upload: forgets it — bytes, file and
    /// quota charge — so a full disk is not kept full by the uploads it cut short. The node
    /// still holds the bundle and deposits it again from byte 0 once there is room. The file
    /// goes first (that frees the space the index commit may need); a crash in between
    /// leaves an upload record whose file is recreated empty on resume.
    fn release_after_storage_full(&mut self) {
        if let Some(body) = self.body.take() {
            body.abandon();
        }
        if let Err(e) = remove_if_present(&self.path) {
            tracing::warn!(bundle_id = %self.meta.bundle_id, error = %e, "removing a cut-off upload");
        }
        if let Err(e) = self.lease.inner.discard_upload(&self.meta.bundle_id) {
            tracing::warn!(bundle_id = %self.meta.bundle_id, error = %e, "releasing a cut-off upload's quota");
        }
    }

    fn superseded(&self) -> StoreError {
        StoreError::Superseded {
            bundle_id: self.meta.bundle_id.clone(),
        }
    }
}

impl Drop for PartialBlob {
    /// A dropped upload keeps its bytes for resuming, unless a newer upload of the same
    /// bundle owns the file now: then its unwritten bytes are forgotten.
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        let slot = Arc::clone(&self.lease.slot);
        let owner = lock(&slot);
        if *owner == self.generation {
            drop(body);
        } else {
            body.abandon();
        }
    }
}

impl DepositUpload for PartialBlob {
    fn meta(&self) -> &DepositMeta {
        &self.meta
    }

    fn offset(&self) -> u64 {
        self.written
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let slot = Arc::clone(&self.lease.slot);
        let owner = lock(&slot);
        if *owner != self.generation {
            return Err(self.superseded());
        }
        let end = self.written.saturating_add(bytes.len() as u64);
        if end > self.meta.length {
            return Err(StoreError::LengthMismatch {
                bundle_id: self.meta.bundle_id.clone(),
                expected: self.meta.length,
                received: end,
            });
        }
        // Whole blocks go to disk now; at most a partial block waits in memory.
        let Some(body) = self.body.as_mut() else {
            // Released after the disk filled up: this upload is over.
            return Err(self.superseded());
        };
        let written = body
            .write_all(bytes)
            .and_then(|()| body.write_blocks())
            .map_err(StoreError::io("writing an upload file"));
        if let Err(e) = written {
            if matches!(e, StoreError::StorageFull { .. }) {
                self.release_after_storage_full();
            }
            return Err(e);
        }
        self.hasher.update(bytes);
        self.written = end;
        Ok(())
    }

    fn finish(self: Box<Self>, now: i64) -> Result<Accepted, StoreError> {
        let mut this = *self;
        let slot = Arc::clone(&this.lease.slot);
        let owner = lock(&slot);
        if *owner != this.generation {
            return Err(this.superseded());
        }
        if this.written != this.meta.length {
            return Err(StoreError::LengthMismatch {
                bundle_id: this.meta.bundle_id.clone(),
                expected: this.meta.length,
                received: this.written,
            });
        }
        let inner = Arc::clone(&this.lease.inner);
        let layout = &inner.layout;
        // 1. The body is on disk and is what was announced. (A file system that delays
        // allocation may report that it is full only here.)
        let synced = this
            .body
            .take()
            .expect("body present until finish")
            .finish()
            .map_err(StoreError::io("syncing an upload file"));
        if let Err(e) = synced {
            if matches!(e, StoreError::StorageFull { .. }) {
                this.release_after_storage_full();
            }
            return Err(e);
        }
        let digest: [u8; 32] = this.hasher.clone().finalize().into();
        if digest != this.meta.sha256 {
            inner.discard_upload(&this.meta.bundle_id)?;
            remove_if_present(&this.path).map_err(StoreError::io("removing a bad upload"))?;
            return Err(StoreError::HashMismatch {
                bundle_id: this.meta.bundle_id.clone(),
            });
        }
        // 2. Its final name is durable.
        std::fs::rename(&this.path, layout.blob(&this.meta.bundle_id))
            .map_err(StoreError::io("moving an upload into blobs/"))?;
        sync_dir(&layout.blobs).map_err(StoreError::io("syncing blobs/"))?;
        sync_dir(&layout.incoming).map_err(StoreError::io("syncing incoming/"))?;
        // 3. One commit indexes it for every recipient.
        let accepted = inner.commit_deposit(&this.meta, now)?;
        drop(owner);
        Ok(accepted)
    }
}
