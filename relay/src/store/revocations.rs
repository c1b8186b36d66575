//! Key revocations (docs/protocol.md §17): an append-only log the relay serves to every node.
//!
//! A revocation is small (at most 4 KiB), concerns one (facility, key) pair and matters to
//! peers that join long after it was posted, so it is never expired or purged. Posting the
//! same key's revocation again returns the first record: the log holds one entry per key.
//! The server checks the signature against the enrolled card before it calls the store;
//! here the revocation is opaque bytes plus the facility and key id it concerns.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::records::COUNTERS;
use super::redb_store::Inner;
use super::{MAX_LIST_ITEMS, MAX_REVOCATION_BYTES, RevocationRecord, StoreError, digest_from_hex};

/// A revocation row: (facility, key id hex, posted_at, signed revocation bytes).
type RevocationRow = (&'static str, &'static str, i64, &'static [u8]);
/// seq → [`RevocationRow`], in posting order.
const REVOCATIONS: TableDefinition<u64, RevocationRow> = TableDefinition::new("revocations");
/// (facility, key id hex) → seq: which keys are revoked (checked at every authentication).
const REVOKED_KEYS: TableDefinition<(&str, &str), u64> = TableDefinition::new("revoked_keys");
/// The counter of revocation sequence numbers (its own, so the cursor is dense).
const REVOCATION_SEQ: &str = "revocation_seq";

/// Creates the revocation tables (called with the others when the store opens).
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(REVOCATIONS)?;
    txn.open_table(REVOKED_KEYS)?;
    Ok(())
}

fn record(seq: u64, row: (&str, &str, i64, &[u8])) -> RevocationRecord {
    RevocationRecord {
        seq,
        facility: row.0.to_owned(),
        key: row.1.to_owned(),
        posted_at: row.2,
        revocation: row.3.to_vec(),
    }
}

fn check(facility: &str, key: &str, revocation: &[u8]) -> Result<(), StoreError> {
    if facility.is_empty() || facility.len() > 64 || !facility.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(StoreError::Invalid(
            "facility ids are 1-64 printable ASCII characters",
        ));
    }
    if digest_from_hex(key).is_none() {
        return Err(StoreError::Invalid("key ids are 64 lowercase hex digits"));
    }
    if revocation.is_empty() {
        return Err(StoreError::Invalid("empty revocation"));
    }
    if revocation.len() > MAX_REVOCATION_BYTES {
        return Err(StoreError::TooLarge {
            length: revocation.len() as u64,
            max: MAX_REVOCATION_BYTES as u64,
        });
    }
    Ok(())
}

impl Inner {
    /// Appends a revocation of `facility`'s key `key` (one commit), or returns the record
    /// already held for that key.
    pub(crate) fn post_revocation(
        &self,
        facility: &str,
        key: &str,
        revocation: &[u8],
        now: i64,
    ) -> Result<RevocationRecord, StoreError> {
        check(facility, key, revocation)?;
        let txn = self.db.begin_write()?;
        let existing = txn
            .open_table(REVOKED_KEYS)?
            .get((facility, key))?
            .map(|v| v.value());
        if let Some(seq) = existing {
            let held = txn
                .open_table(REVOCATIONS)?
                .get(seq)?
                .map(|row| record(seq, row.value()))
                .ok_or_else(|| StoreError::Corrupt(format!("revocation {seq} missing")))?;
            txn.abort()?;
            return Ok(held);
        }
        let seq = {
            let mut counters = txn.open_table(COUNTERS)?;
            let seq = counters.get(REVOCATION_SEQ)?.map_or(0, |v| v.value()) + 1;
            counters.insert(REVOCATION_SEQ, seq)?;
            seq
        };
        txn.open_table(REVOCATIONS)?
            .insert(seq, (facility, key, now, revocation))?;
        txn.open_table(REVOKED_KEYS)?.insert((facility, key), seq)?;
        txn.commit()?;
        Ok(RevocationRecord {
            seq,
            facility: facility.to_owned(),
            key: key.to_owned(),
            posted_at: now,
            revocation: revocation.to_vec(),
        })
    }

    /// Revocations with `seq > after`, in order, at most `limit` (capped at
    /// [`MAX_LIST_ITEMS`]).
    pub(crate) fn revocations(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationRecord>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let limit = limit.min(MAX_LIST_ITEMS);
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REVOCATIONS)?;
        let mut out = Vec::new();
        for row in table.range(first..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            out.push(record(k.value(), v.value()));
        }
        Ok(out)
    }

    /// The revocation of `facility`'s key `key`, if it was revoked.
    pub(crate) fn key_revocation(
        &self,
        facility: &str,
        key: &str,
    ) -> Result<Option<RevocationRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(seq) = txn
            .open_table(REVOKED_KEYS)?
            .get((facility, key))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let row = txn
            .open_table(REVOCATIONS)?
            .get(seq)?
            .ok_or_else(|| StoreError::Corrupt(format!("revocation {seq} missing")))?;
        Ok(Some(record(seq, row.value())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, RedbStore, RelayStore};
    use super::*;

    const T0: i64 = 1_700_000_000;

    fn key(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn revocations_are_appended_once_per_key_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RedbStore::open(dir.path(), Limits::default()).unwrap();
            assert!(s.key_revocation("th-b", &key(1)).unwrap().is_none());
            let first = s.post_revocation("th-b", &key(1), b"rev-1", T0).unwrap();
            assert_eq!(first.seq, 1);
            // Posting the same key again (a retry) returns the first record.
            let again = s
                .post_revocation("th-b", &key(1), b"rev-1b", T0 + 5)
                .unwrap();
            assert_eq!(again, first);
            let second = s
                .post_revocation("us-a", &key(2), b"rev-2", T0 + 9)
                .unwrap();
            assert_eq!(second.seq, 2);
            // Retention never touches them.
            s.expire(T0 + 3650 * super::super::DAY_SECS).unwrap();
        }
        let s = RedbStore::open(dir.path(), Limits::default()).unwrap();
        let all = s.revocations(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2],
            "{all:?}"
        );
        assert_eq!(all[0].revocation, b"rev-1");
        assert_eq!(all[1].facility, "us-a");
        assert_eq!(s.revocations(1, 10).unwrap().len(), 1);
        assert!(s.revocations(2, 10).unwrap().is_empty());
        assert!(s.revocations(u64::MAX, 10).unwrap().is_empty());
        assert_eq!(s.revocations(0, 1).unwrap().len(), 1);
        let held = s.key_revocation("th-b", &key(1)).unwrap().unwrap();
        assert_eq!(held.posted_at, T0);
        assert!(s.key_revocation("th-b", &key(2)).unwrap().is_none());
    }

    #[test]
    fn malformed_revocations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(dir.path(), Limits::default()).unwrap();
        for (facility, k, body) in [
            ("", key(1), b"r".to_vec()),
            ("th b", key(1), b"r".to_vec()),
            ("th-b", "AB".repeat(32), b"r".to_vec()),
            ("th-b", key(1), Vec::new()),
        ] {
            assert!(matches!(
                s.post_revocation(facility, &k, &body, T0),
                Err(StoreError::Invalid(_))
            ));
        }
        assert!(matches!(
            s.post_revocation("th-b", &key(1), &vec![b'x'; MAX_REVOCATION_BYTES + 1], T0),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(s.revocations(0, 10).unwrap().is_empty());
    }
}
