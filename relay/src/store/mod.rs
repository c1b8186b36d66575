//! The relay's durable state: enrollments, deposited ciphertext, mailboxes and the
//! receipts/notices kept for senders — behind [`RelayStore`], so that a replicated
//! PostgreSQL backend can replace the embedded default ([`RedbStore`]) later.
//!
//! # What the store holds, and what it never sees
//!
//! Facility ids, bundle ids, lengths, SHA-256 digests, Unix times, opaque card files,
//! opaque signed receipts, opaque signed key revocations (whose one-line reason the relay
//! can read) and age ciphertext. Never a plaintext byte, a subject, a file name or a
//! patient reference: the relay has none of them, and nothing here could parse them out of
//! the ciphertext (invariant 1).
//!
//! # Durability order: when may the relay say "accepted"?
//!
//! A deposit is streamed into `incoming/<id>.part`. [`DepositUpload::finish`] then, in this
//! order:
//!
//! 1. fsyncs the body file and checks the SHA-256 of the *whole* file (a resumed upload
//!    re-reads the prefix it already held to seed the hash);
//! 2. renames it to `blobs/<id>` and fsyncs both directories, so the name is durable too;
//! 3. commits the index in **one** redb write transaction — the bundle record, one mailbox
//!    entry per recipient and the sender's quota charge — with redb's default (immediate)
//!    durability, which fdatasyncs before `commit` returns.
//!
//! Only after `finish` returns may the caller tell the sender `deposit_accepted`. A crash
//! at any point before step 3 leaves no mailbox entry, so nothing half-written is ever
//! delivered; the next open moves a renamed-but-unindexed body back to `incoming/` so the
//! sender's retry resumes instead of starting over. Deleting goes the other way round:
//! the index forgets a body first, then its file is removed; a crash in between leaves an
//! orphan file, which the next open removes. Together with one mailbox entry per
//! (bundle, recipient) and idempotent deposit and acknowledgement, this is invariant 5: a
//! bundle accepted by the relay survives `kill -9` and reaches each recipient's mailbox
//! exactly once, however often the transfer is retried.
//!
//! # Why redb, and not sled
//!
//! The design card named sled. Measured on the project's machine, sled 0.34.7's `flush()`
//! issues `sync_file_range` rather than fsync (acknowledged writes are not safe from power
//! loss), writes large values with no fsync at all, grew its directory from 190 MiB to
//! 1.9 GiB over 200 `kill -9` cycles with a constant live set, and brings two
//! unmaintained-crate advisories (RUSTSEC-2025-0057, RUSTSEC-2024-0384). redb 4 fdatasyncs
//! every commit, stayed flat in size, lost nothing in 400 `kill -9` cycles and has no
//! advisories. docs/operations.md records the evidence for operators.
//!
//! # Why bodies are files
//!
//! Plain files written sequentially and fsynced measured about 1.5 GB/s, against
//! 0.2–0.45 GB/s for the same bytes stored as values inside either engine. A body is
//! written once, read a few times and deleted, which is what files are good at; redb
//! keeps only the small index. One ciphertext addressed to several recipients is one file.
//!
//! # Bounded memory
//!
//! redb's page cache is capped ([`DB_CACHE_BYTES`]); bodies are streamed in
//! both directions; listings take a limit (at most [`MAX_LIST_ITEMS`]); expiry works in
//! batches. Nothing the store does holds a whole body or an unbounded list in memory.
//!
//! # Time
//!
//! The store never reads a clock: every method that records or compares a time takes
//! `now` (Unix seconds), so retention is testable with simulated time.

use std::io::{Read, Seek};

mod error;
pub(crate) mod files;
mod index_db;
mod records;
mod recovery;
mod redb_store;
mod retention;
mod revocations;
mod upload;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use recovery::Recovery;
pub use redb_store::{DB_CACHE_BYTES, RedbStore};
pub use upload::PartialBlob;

pub use dossier_wire::message::{
    MAX_LIST_ITEMS, MAX_RECEIPT_BYTES, MAX_RECIPIENTS, MAX_REVOCATION_BYTES,
};

/// Seconds in a day, for retention arithmetic.
pub const DAY_SECS: i64 = 24 * 60 * 60;

/// Operator-configurable limits. Every refusal they cause says which limit and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single bundle (ciphertext bytes) the relay accepts.
    pub max_bundle_bytes: u64,
    /// Bytes one sending facility may have held at the relay at once: undelivered bundles
    /// plus uploads in progress. Freed as recipients acknowledge or bundles expire.
    pub quota_bytes_per_facility: u64,
    /// How long undelivered ciphertext is kept before it expires (default 14 days).
    pub retention_secs: i64,
    /// How long receipts, notices and the small record of a delivered or expired bundle
    /// are kept (default 365 days).
    pub receipt_retention_secs: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bundle_bytes: 8 << 30,
            quota_bytes_per_facility: 32 << 30,
            retention_secs: 14 * DAY_SECS,
            receipt_retention_secs: 365 * DAY_SECS,
        }
    }
}

/// A facility (or patient) the operator admitted to this relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// The facility id, as on its card.
    pub facility: String,
    /// The card file's bytes. Opaque to the store; the server verifies and parses it.
    pub card: Vec<u8>,
    /// When the operator enrolled it (Unix seconds).
    pub enrolled_at: i64,
    /// When the operator revoked it, if so. A revoked facility is refused everywhere.
    pub revoked_at: Option<i64>,
}

/// What a sender announces before streaming a deposit's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositMeta {
    /// Bundle id: 32 lowercase hex digits (checked before it becomes a file name).
    pub bundle_id: String,
    /// The authenticated sending facility (never taken from the request body).
    pub sender: String,
    /// Recipient facility ids: 1 to [`MAX_RECIPIENTS`], no duplicates, all enrolled.
    pub recipients: Vec<String>,
    /// Ciphertext length in bytes.
    pub length: u64,
    /// SHA-256 of the whole ciphertext.
    pub sha256: [u8; 32],
}

/// How a deposit request starts.
pub enum DepositStart {
    /// Stream the bytes from [`DepositUpload::offset`] (0 for a new deposit; more when an
    /// earlier, interrupted upload of the same bundle left bytes the relay still holds).
    Upload(Box<dyn DepositUpload>),
    /// The identical bundle is already durable and indexed: tell the sender it is accepted
    /// and send nothing. This makes a retried deposit idempotent.
    AlreadyAccepted(Accepted),
}

impl std::fmt::Debug for DepositStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DepositStart::Upload(u) => f
                .debug_struct("Upload")
                .field("bundle_id", &u.meta().bundle_id)
                .field("offset", &u.offset())
                .finish(),
            DepositStart::AlreadyAccepted(a) => f.debug_tuple("AlreadyAccepted").field(a).finish(),
        }
    }
}

/// A durable, indexed deposit: the relay may now acknowledge it to the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Bundle id.
    pub bundle_id: String,
    /// When the index committed it (Unix seconds).
    pub accepted_at: i64,
}

/// An upload in progress: the receiving end of a streamed deposit.
///
/// Bytes are appended with [`write_all`](Self::write_all); [`finish`](Self::finish) makes the
/// deposit durable and indexed (see the module docs for the order). Dropping the upload
/// without finishing keeps the bytes written so far, so the sender can resume.
pub trait DepositUpload: Send {
    /// What was announced.
    fn meta(&self) -> &DepositMeta;
    /// Bytes the relay holds for this upload so far; the sender continues from here.
    fn offset(&self) -> u64;
    /// Appends the next bytes. Refuses bytes past the announced length, and refuses to go
    /// on once another connection has resumed the same upload ([`StoreError::Superseded`]).
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), StoreError>;
    /// Makes the deposit durable (fsync, hash check, rename, directory fsyncs, one index
    /// commit). A hash mismatch discards the upload; a short upload is kept for resuming.
    fn finish(self: Box<Self>, now: i64) -> Result<Accepted, StoreError>;
}

/// One bundle waiting in a recipient's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxEntry {
    /// Position in the mailbox; increases with every deposit (use it as a listing cursor).
    pub seq: u64,
    /// Bundle id.
    pub bundle_id: String,
    /// Sending facility.
    pub from: String,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext.
    pub sha256: [u8; 32],
    /// When the deposit was accepted (Unix seconds).
    pub deposited_at: i64,
}

/// A readable body source: a [`dossier_spool::SpoolReader`] for [`RedbStore`].
pub trait BlobRead: Read + Seek + Send {
    /// The next bytes, at most `max`, as one shared piece (empty at the end). The default
    /// copies through [`Read`]; a source that can hand out its own buffers (the spool's
    /// aligned direct-I/O buffers) does so without the copy.
    fn read_piece(&mut self, max: usize) -> std::io::Result<bytes::Bytes> {
        let mut v = vec![0u8; max];
        let mut filled = 0;
        while filled < max {
            match self.read(&mut v[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        v.truncate(filled);
        Ok(v.into())
    }
}

impl BlobRead for dossier_spool::SpoolReader {
    fn read_piece(&mut self, max: usize) -> std::io::Result<bytes::Bytes> {
        dossier_spool::SpoolReader::read_piece(self, max)
    }
}

/// A body opened for a recipient to download.
pub struct HeldBlob {
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext.
    pub sha256: [u8; 32],
    /// The ciphertext, positioned at 0; seek to resume a download.
    pub reader: Box<dyn BlobRead>,
}

impl std::fmt::Debug for HeldBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBlob")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// What an acknowledgement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Removed from this recipient's mailbox; other recipients still have it pending.
    Acked,
    /// Removed, and it was the last pending recipient: the body was deleted and the
    /// sender's quota freed.
    Released,
    /// Already acknowledged (or expired) earlier: nothing changed.
    AlreadyAcked,
}

/// What a sender's log entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeBody {
    /// A receipt signed by the recipient, opaque to the relay.
    Receipt(Vec<u8>),
    /// The relay's own notice: the bundle expired before this recipient acknowledged it.
    Expired,
}

/// An entry in a sender's log of receipts and notices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderNotice {
    /// Position in the log; strictly increasing, never reused (use it as a cursor).
    pub seq: u64,
    /// The bundle concerned.
    pub bundle_id: String,
    /// The recipient concerned.
    pub recipient: String,
    /// When the relay recorded it (Unix seconds).
    pub at: i64,
    /// The receipt or notice.
    pub body: NoticeBody,
}

/// A key revocation held by the relay (docs/protocol.md §17). Kept forever: it is small,
/// and a node that pins the facility later still needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Position in the revocation log; strictly increasing (use it as a cursor).
    pub seq: u64,
    /// The facility that posted it (its enrolled key is the key revoked).
    pub facility: String,
    /// Key id of the revoked key set: 64 lowercase hex digits.
    pub key: String,
    /// When the relay stored it (Unix seconds).
    pub posted_at: i64,
    /// The signed revocation, opaque to the store.
    pub revocation: Vec<u8>,
}

/// A bundle that expired undelivered during [`RelayStore::expire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredBundle {
    /// Bundle id.
    pub bundle_id: String,
    /// Its sender, who now has an `expired` notice per recipient below.
    pub sender: String,
    /// Recipients that had not acknowledged it.
    pub recipients: Vec<String>,
}

/// What one [`RelayStore::expire`] pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Bundles that expired (at most one batch).
    pub expired: Vec<ExpiredBundle>,
    /// Uploads abandoned longer than the retention time, discarded.
    pub abandoned_uploads: u64,
    /// Receipts and notices older than the receipt retention, purged.
    pub receipts_purged: u64,
    /// Records of delivered or expired bundles older than the receipt retention, purged.
    pub records_purged: u64,
    /// More work is due: call `expire` again (each pass is one bounded batch).
    pub more: bool,
}

/// The relay's durable state. Synchronous and thread-safe; the async server calls it
/// from blocking tasks. Every time is a parameter.
pub trait RelayStore: Send + Sync {
    /// The limits this store enforces.
    fn limits(&self) -> &Limits;

    /// Admits a facility, or replaces its card and lifts a revocation if it was enrolled.
    fn enroll(&self, facility: &str, card: &[u8], now: i64) -> Result<Enrollment, StoreError>;
    /// Revokes an enrollment ([`StoreError::NotEnrolled`] if there is none). Idempotent:
    /// the first revocation time is kept.
    fn revoke(&self, facility: &str, now: i64) -> Result<Enrollment, StoreError>;
    /// The enrollment of `facility`, revoked or not, if any.
    fn enrollment(&self, facility: &str) -> Result<Option<Enrollment>, StoreError>;
    /// All enrollments, ordered by facility id.
    fn enrollments(&self) -> Result<Vec<Enrollment>, StoreError>;

    /// Starts or resumes a deposit. Checks the id, the recipient list, that sender and
    /// recipients are enrolled and not revoked, the size limit and the sender's quota.
    /// Same id with other content → [`StoreError::Conflict`]; identical and already
    /// committed → [`DepositStart::AlreadyAccepted`].
    fn begin_deposit(&self, meta: &DepositMeta, now: i64) -> Result<DepositStart, StoreError>;

    /// `recipient`'s pending bundles with `seq > after`, oldest first, at most `limit`
    /// (capped at [`MAX_LIST_ITEMS`]).
    fn mailbox(
        &self,
        recipient: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<MailboxEntry>, StoreError>;
    /// Opens a body for download, only if it is pending for `recipient`.
    fn open_blob(&self, bundle_id: &str, recipient: &str) -> Result<HeldBlob, StoreError>;
    /// `recipient` holds the bundle durably: remove it from its mailbox; when no recipient
    /// is pending any more, delete the body and free the sender's quota. Idempotent.
    fn ack(&self, recipient: &str, bundle_id: &str, now: i64) -> Result<AckOutcome, StoreError>;

    /// Appends a recipient's signed receipt to the sender's log and returns its seq. Only a
    /// recipient the bundle addressed may post; posting the same bytes again returns the
    /// first seq instead of a second entry.
    fn post_receipt(
        &self,
        bundle_id: &str,
        recipient: &str,
        receipt: &[u8],
        now: i64,
    ) -> Result<u64, StoreError>;
    /// `sender`'s receipts and notices with `seq > after`, in order, at most `limit`
    /// (capped at [`MAX_LIST_ITEMS`]).
    fn receipts(
        &self,
        sender: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SenderNotice>, StoreError>;

    /// One bounded pass of retention: expires undelivered bundles older than the retention
    /// time (body deleted, mailbox entries removed, an `expired` notice per pending
    /// recipient for the sender), discards abandoned uploads, and purges receipts and
    /// bundle records older than the receipt retention. Call again while `more` is set.
    fn expire(&self, now: i64) -> Result<ExpiryReport, StoreError>;

    /// Bytes charged against `facility`'s quota: held bundles plus uploads in progress.
    fn usage(&self, facility: &str) -> Result<u64, StoreError>;

    /// Appends `facility`'s signed revocation of its key `key` (64 hex digits) to the
    /// revocation log, never expired. The caller has verified it against the enrolled card.
    /// Posting a revocation of a key already revoked returns the record held for it.
    fn post_revocation(
        &self,
        facility: &str,
        key: &str,
        revocation: &[u8],
        now: i64,
    ) -> Result<RevocationRecord, StoreError>;
    /// Revocations with `seq > after`, in order, at most `limit` (capped at
    /// [`MAX_LIST_ITEMS`]).
    fn revocations(&self, after: u64, limit: usize) -> Result<Vec<RevocationRecord>, StoreError>;
    /// The revocation of `facility`'s key `key`, if that key was revoked.
    fn key_revocation(
        &self,
        facility: &str,
        key: &str,
    ) -> Result<Option<RevocationRecord>, StoreError>;
}

/// `true` for 32 lowercase hex digits — the only strings that may become file names.
pub(crate) fn is_bundle_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lowercase hex of bytes (digests in records and messages).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Parses 64 lowercase hex digits into a digest.
pub(crate) fn digest_from_hex(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}
