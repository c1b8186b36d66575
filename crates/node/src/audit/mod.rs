//! The audit trail: who did what to which bundle, for whom, and when — tamper-evident and
//! append-only, and never holding record content.
//!
//! HIPAA's audit-control safeguard asks that every access to and change of protected
//! records can be traced to a named person. Every `dossier` command therefore runs as an
//! [`Operator`] (`--operator NAME`, else `$DOSSIER_OPERATOR`, else the OS user) and appends
//! an [`AuditEntry`] *as part of the operation*: [`AuditLog::append`] returns `Result`, and
//! an operation whose entry cannot be written fails.
//!
//! # What an entry holds
//!
//! Time, operator, action, bundle id, counterpart facility ids and their countries, the
//! outcome (`ok`, `failed`, `refused`) and a short `detail` such as an override reason or a
//! failure class. Never a subject, a part or file name, a patient reference or any other
//! record content: [`AuditEvent`] only accepts validated identifiers for everything but
//! `detail`, and callers must keep `detail` free of PHI.
//!
//! # Files
//!
//! ```text
//! HOME/audit/            mode 0700
//!   log.jsonl            the entries, one JSON object per line, oldest first (0600)
//!   head.json            the anchor: {"format":"dossier-audit-head/v1","seq":N,"hash":H}
//!   lock                 flock(2) serialising appends across threads and processes
//! ```
//!
//! One line of `log.jsonl` (fields always in this order, optional ones omitted when empty;
//! no spaces):
//!
//! ```text
//! {"v":1,"seq":7,"time":"2026-11-23T09:00:00Z","operator":"dr.lee","action":"send",
//!  "bundle_id":"<32 hex>","counterparts":[{"id":"th-bangkok-intl","country":"TH"}],
//!  "outcome":"ok","detail":"...","prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! - `seq` counts from 1 without gaps.
//! - `prev` is the `hash` of entry `seq - 1`, or 64 zeros for entry 1.
//! - `hash` is the lowercase hex SHA-256 of `"dossier/audit/v1\0"` followed by the line as
//!   it would be written *without* its `hash` field (same field order, same compact JSON).
//!   A line must be exactly the canonical serialization of its content: any byte changed
//!   counts as an edit.
//! - `action` is one of [`AuditAction`] in snake_case; `v` other than 1 is reported as a
//!   newer format, not as damage.
//!
//! # Appending
//!
//! Under the lock: read the anchor and the last two lines of the log (never the whole
//! trail); check the last entry is the anchored one; write the new line with one `write`
//! and fsync the log; then replace `head.json` atomically. A new trail writes the anchor
//! `seq 0` *before* its first entry, so a missing anchor always means it was removed.
//!
//! If the end of the log does not match the anchor, the append is refused
//! ([`crate::NodeError::AuditBroken`]) and the operation with it: run `dossier audit
//! verify`, keep `HOME/audit` unchanged as evidence. One case is repaired instead: the log
//! holds exactly one valid entry more than the anchor, chained onto it — a command stopped
//! between its two writes — and the anchor is moved forward. (The entry it recorded may be
//! of an operation that then failed; a trail that over-reports an attempt is preferred to
//! one that loses it.) A failed write is cut back so no torn line stays behind.
//!
//! # What it protects against
//!
//! [`AuditLog::verify`] finds, and names by seq and line, the first entry that was edited,
//! removed, reordered, forged without the hash, or cut off — including the last one, which
//! the anchor covers — and a deleted or rewritten anchor. It does not stop someone who can
//! write both files and recompute the hashes: the chain is keyless by design (a key on the
//! same disk would not help). The countermeasure is to hold the head off the node: an
//! auditor records [`AuditLog::head`] (`dossier audit head`) at each review, and later
//! checks that the trail still contains that seq with that hash ([`AuditLog::entries`]).

mod actor;
mod entry;
mod log;
mod operator;
mod verify;

#[cfg(test)]
mod tests;

pub use actor::Actor;
pub use entry::{
    AuditAction, AuditEntry, AuditEvent, AuditOutcome, Counterpart, ENTRY_VERSION, GENESIS_HASH,
    HASH_DOMAIN, MAX_COUNTERPARTS, MAX_DETAIL_CHARS,
};
pub use log::{AuditHead, AuditLog, MAX_LINE_BYTES};
pub use operator::{MAX_OPERATOR_CHARS, OPERATOR_ENV, Operator};
pub use verify::{IntactTrail, TrailBreak, TrailProblem, VerifyReport};
