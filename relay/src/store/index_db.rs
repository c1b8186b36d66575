//! The redb index behind a handle that reopens it after a failed write.
//!
//! When a write to its file fails (typically `ENOSPC` while the file grows on a full disk),
//! redb latches the failure: every later transaction fails with "Previous I/O error ...
//! Please close and re-open the database", even once space is back. Without help the relay
//! would answer every request `internal` until someone restarted it. [`IndexDb`] notices the
//! latch when a transaction begins, drops the database and opens it again — which makes
//! redb check and, if needed, repair the file from its last durable commit, exactly as
//! after a crash — and retries once. What the failed transaction held was never committed,
//! so nothing acknowledged is lost; the caller of that transaction got its error already.
//!
//! A transaction still running elsewhere keeps the old database's file lock; the reopen
//! then fails with "already open" and the next transaction tries again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use redb::{
    Database, ReadTransaction, ReadableDatabase, StorageError, TransactionError, WriteTransaction,
};

use super::StoreError;

/// Opens the database (again).
type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>;

/// The index database; see the module docs.
pub(crate) struct IndexDb {
    /// `None` only after a reopen failed; the next transaction tries again.
    db: RwLock<Option<Database>>,
    open: Opener,
}

impl IndexDb {
    /// Opens the database with `open`, which is kept for reopening.
    pub fn new(
        open: impl Fn() -> Result<Database, redb::DatabaseError> + Send + Sync + 'static,
    ) -> Result<Self, StoreError> {
        let db = open()?;
        Ok(Self {
            db: RwLock::new(Some(db)),
            open: Box::new(open),
        })
    }

    /// [`Database::begin_write`], reopening first if a write failed before.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        self.begin(|db| db.begin_write())
    }

    /// [`Database::begin_read`], reopening first if a write failed before.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.begin(|db| db.begin_read())
    }

    fn begin<T>(
        &self,
        begin: impl Fn(&Database) -> Result<T, TransactionError>,
    ) -> Result<T, StoreError> {
        // A read may have met the latch inside a transaction (a read transaction begins
        // without checking for it); the flag makes the next transaction look.
        if PREVIOUS_IO_SEEN.swap(false, Ordering::AcqRel) {
            self.reopen_if_latched()?;
        }
        let first = {
            let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
            guard.as_ref().map(&begin)
        };
        match first {
            Some(Err(TransactionError::Storage(StorageError::PreviousIo))) | None => {}
            Some(other) => return other.map_err(StoreError::from),
        }
        self.reopen_if_latched()?;
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Corrupt(
            "the index database could not be reopened".to_owned(),
        ))?;
        begin(db).map_err(StoreError::from)
    }

    /// Reopens the database if redb latched a failed write (or an earlier reopen failed).
    fn reopen_if_latched(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = guard.as_ref() {
            // Checks the latch first; a transaction begun here is dropped unused (aborted).
            match db.try_begin_write() {
                Err(TransactionError::Storage(StorageError::PreviousIo)) => {}
                _ => return Ok(()),
            }
        }
        tracing::warn!("the index database failed a write earlier; reopening it");
        drop(guard.take());
        *guard = Some((self.open)()?);
        tracing::warn!("index database reopened");
        Ok(())
    }
}

/// Set when any store operation met redb's latched-failure error (see [`note_previous_io`]).
static PREVIOUS_IO_SEEN: AtomicBool = AtomicBool::new(false);

/// Records that an operation failed with redb's "previous I/O error": the next transaction
/// of any [`IndexDb`] in this process checks for the latch and reopens its database.
pub(crate) fn note_previous_io() {
    PREVIOUS_IO_SEEN.store(true, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use redb::backends::InMemoryBackend;
    use redb::{StorageBackend, TableDefinition};

    use super::*;

    const T: TableDefinition<&str, u64> = TableDefinition::new("t");

    /// An in-memory file whose writes fail with `ENOSPC` while `full` is set.
    #[derive(Debug)]
    struct FlakyDisk {
        file: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    type IoResult<T> = Result<T, std::io::Error>;

    impl FlakyDisk {
        fn check(&self) -> IoResult<()> {
            if self.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            Ok(())
        }
    }

    impl StorageBackend for FlakyDisk {
        fn len(&self) -> IoResult<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> IoResult<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> IoResult<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> IoResult<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
            self.check()?;
            self.file.write(offset, data)
        }
    }

    fn put(db: &IndexDb, key: &str, value: u64) -> Result<(), StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(T)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn get(db: &IndexDb, key: &str) -> Result<Option<u64>, StoreError> {
        let txn = db.begin_read()?;
        Ok(txn.open_table(T)?.get(key)?.map(|v| v.value()))
    }

    #[test]
    fn a_failed_write_is_recovered_by_reopening() {
        let file = Arc::new(InMemoryBackend::new());
        let full = Arc::new(AtomicBool::new(false));
        let (f, s) = (Arc::clone(&file), Arc::clone(&full));
        let db = IndexDb::new(move || {
            redb::Builder::new().create_with_backend(FlakyDisk {
                file: Arc::clone(&f),
                full: Arc::clone(&s),
            })
        })
        .unwrap();
        put(&db, "kept", 1).unwrap();

        // The disk fills: the commit fails, as a full disk does.
        full.store(true, Ordering::SeqCst);
        let failed = put(&db, "lost", 2).unwrap_err();
        assert!(
            matches!(failed, StoreError::StorageFull { .. } | StoreError::Db(_)),
            "{failed:?}"
        );
        // redb has latched the failure; without the reopen every later read would fail.
        full.store(false, Ordering::SeqCst);
        assert_eq!(
            get(&db, "kept").unwrap(),
            Some(1),
            "committed data survives"
        );
        assert_eq!(
            get(&db, "lost").unwrap(),
            None,
            "the failed commit left nothing"
        );
        put(&db, "after", 3).unwrap();
        assert_eq!(get(&db, "after").unwrap(), Some(3), "writable again");
    }
}
