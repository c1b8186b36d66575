//! The redb tables of the index and the records kept in them.
//!
//! Keys are chosen so that every listing is one ordered range scan: mailboxes by
//! (recipient, seq), sender logs by (sender, seq), and the retention queues by time.
//! Values are small: ids, sizes, times and digests — bodies live in files.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{DepositMeta, Enrollment, StoreError, to_hex};

/// facility → (enrolled_at, revoked_at, card bytes).
pub(crate) const ENROLLMENTS: TableDefinition<&str, (i64, Option<i64>, &[u8])> =
    TableDefinition::new("enrollments");
/// bundle id → JSON [`BundleRecord`], for held, delivered and expired bundles.
pub(crate) const BUNDLES: TableDefinition<&str, &str> = TableDefinition::new("bundles");
/// bundle id → JSON [`UploadRecord`], for uploads in progress.
pub(crate) const UPLOADS: TableDefinition<&str, &str> = TableDefinition::new("uploads");
/// (started_at, bundle id) → (): uploads by age, for discarding abandoned ones.
pub(crate) const UPLOAD_AGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("upload_age");
/// (recipient, seq) → bundle id: each recipient's mailbox in deposit order.
pub(crate) const MAILBOX: TableDefinition<(&str, u64), &str> = TableDefinition::new("mailbox");
/// (bundle id, recipient) → mailbox seq: who still has to acknowledge a bundle.
pub(crate) const PENDING: TableDefinition<(&str, &str), u64> = TableDefinition::new("pending");
/// (deposited_at, bundle id) → (): held bundles by age, for expiry.
pub(crate) const HELD_AGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("held_age");
/// (closed_at, bundle id) → (): delivered or expired bundle records by age, for purging.
pub(crate) const CLOSED_AGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("closed_age");
/// A sender log entry: (bundle id, recipient, at, receipt bytes — `None` for the relay's
/// expiry notice).
pub(crate) type NoticeRow = (&'static str, &'static str, i64, Option<&'static [u8]>);
/// (sender, seq) → [`NoticeRow`].
pub(crate) const NOTICES: TableDefinition<(&str, u64), NoticeRow> = TableDefinition::new("notices");
/// (at, sender, seq) → (): sender log entries by age, for purging.
pub(crate) const NOTICE_AGE: TableDefinition<(i64, &str, u64), ()> =
    TableDefinition::new("notice_age");
/// (bundle id, recipient, SHA-256 of the receipt) → seq: a re-posted receipt is not
/// logged twice.
pub(crate) const RECEIPT_SEEN: TableDefinition<(&str, &str, &[u8]), u64> =
    TableDefinition::new("receipt_seen");
/// facility → bytes charged against its quota.
pub(crate) const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// name → counter. `seq` numbers mailbox entries and sender log entries, never reused.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// What identifies a deposit's content; a second deposit under the same id must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Content {
    pub sender: String,
    /// Sorted, so that a retry listing the recipients in another order still matches.
    pub recipients: Vec<String>,
    pub length: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Content {
    pub fn of(meta: &DepositMeta) -> Self {
        let mut recipients = meta.recipients.clone();
        recipients.sort();
        Self {
            sender: meta.sender.clone(),
            recipients,
            length: meta.length,
            sha256: to_hex(&meta.sha256),
        }
    }
}

/// Where a committed bundle is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BundleState {
    /// Body on disk, some recipient still pending.
    Held,
    /// Every recipient acknowledged; body deleted at `at`.
    Released { at: i64 },
    /// Expired undelivered at `at`; body deleted.
    Expired { at: i64 },
}

/// A committed bundle. Kept after its body is gone (until the receipt retention ends)
/// so that a late retry of the same deposit is recognised instead of delivered twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BundleRecord {
    pub content: Content,
    pub deposited_at: i64,
    pub state: BundleState,
}

/// An upload in progress; its bytes are charged to the sender's quota from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UploadRecord {
    pub content: Content,
    pub started_at: i64,
}

/// Decodes a JSON record, reporting which one is unreadable.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    json: &str,
    what: &'static str,
    id: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|_| StoreError::Corrupt(format!("{what} {id} unreadable")))
}

/// Encodes a record (cannot fail for these plain types).
pub(crate) fn encode<T: Serialize>(record: &T) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

/// Reads a bundle record.
pub(crate) fn get_bundle(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<BundleRecord>, StoreError> {
    match table.get(id)? {
        Some(v) => Ok(Some(decode(v.value(), "bundle record", id)?)),
        None => Ok(None),
    }
}

/// Reads an upload record.
pub(crate) fn get_upload(
    table: &impl ReadableTable<&'static str, &'static str>,
    id: &str,
) -> Result<Option<UploadRecord>, StoreError> {
    match table.get(id)? {
        Some(v) => Ok(Some(decode(v.value(), "upload record", id)?)),
        None => Ok(None),
    }
}

/// Converts a stored enrollment row.
pub(crate) fn enrollment_from_row(facility: &str, row: (i64, Option<i64>, &[u8])) -> Enrollment {
    Enrollment {
        facility: facility.to_owned(),
        card: row.2.to_vec(),
        enrolled_at: row.0,
        revoked_at: row.1,
    }
}

/// Refuses a facility that is not enrolled or was revoked.
pub(crate) fn require_enrolled(
    table: &impl ReadableTable<&'static str, (i64, Option<i64>, &'static [u8])>,
    facility: &str,
) -> Result<(), StoreError> {
    match table.get(facility)? {
        None => Err(StoreError::NotEnrolled {
            facility: facility.to_owned(),
        }),
        Some(row) if row.value().1.is_some() => Err(StoreError::Revoked {
            facility: facility.to_owned(),
        }),
        Some(_) => Ok(()),
    }
}

/// Takes the next sequence number (first is 1, so "after 0" means everything).
pub(crate) fn next_seq(counters: &mut Table<&str, u64>) -> Result<u64, StoreError> {
    let seq = counters.get("seq")?.map_or(0, |v| v.value()) + 1;
    counters.insert("seq", seq)?;
    Ok(seq)
}

/// Adds `delta` (possibly negative) to a facility's quota charge.
pub(crate) fn charge(
    usage: &mut Table<&str, u64>,
    facility: &str,
    delta: i128,
) -> Result<(), StoreError> {
    let current = usage.get(facility)?.map_or(0, |v| v.value());
    let next = (i128::from(current) + delta).clamp(0, i128::from(u64::MAX));
    let next = u64::try_from(next).unwrap_or(u64::MAX);
    if next == 0 {
        usage.remove(facility)?;
    } else {
        usage.insert(facility, next)?;
    }
    Ok(())
}

/// Appends an entry to `sender`'s log, returning its seq.
pub(crate) fn append_notice(
    txn: &WriteTransaction,
    sender: &str,
    bundle_id: &str,
    recipient: &str,
    at: i64,
    receipt: Option<&[u8]>,
) -> Result<u64, StoreError> {
    let seq = next_seq(&mut txn.open_table(COUNTERS)?)?;
    txn.open_table(NOTICES)?
        .insert((sender, seq), (bundle_id, recipient, at, receipt))?;
    txn.open_table(NOTICE_AGE)?.insert((at, sender, seq), ())?;
    Ok(seq)
}

/// Recipients with `bundle_id` still pending, with their mailbox seqs.
pub(crate) fn pending_of(
    pending: &impl ReadableTable<(&'static str, &'static str), u64>,
    bundle_id: &str,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::new();
    for row in pending.range((bundle_id, "")..)? {
        let (k, v) = row?;
        let (id, recipient) = k.value();
        if id != bundle_id {
            break;
        }
        out.push((recipient.to_owned(), v.value()));
    }
    Ok(out)
}

/// Creates every table, so read transactions never meet a missing one.
pub(crate) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ENROLLMENTS)?;
    txn.open_table(BUNDLES)?;
    txn.open_table(UPLOADS)?;
    txn.open_table(UPLOAD_AGE)?;
    txn.open_table(MAILBOX)?;
    txn.open_table(PENDING)?;
    txn.open_table(HELD_AGE)?;
    txn.open_table(CLOSED_AGE)?;
    txn.open_table(NOTICES)?;
    txn.open_table(NOTICE_AGE)?;
    txn.open_table(RECEIPT_SEEN)?;
    txn.open_table(USAGE)?;
    txn.open_table(COUNTERS)?;
    super::revocations::create_tables(txn)?;
    Ok(())
}
