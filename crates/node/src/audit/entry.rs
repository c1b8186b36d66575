//! What one audit entry says, and how its hash is computed (see the module docs for the
//! on-disk format).

use dossier_bundle::{BundleId, CountryCode, FacilityId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Operator;
use crate::statefile::{hex, one_line};

/// The entry format this code writes and verifies (`"v":1`).
pub const ENTRY_VERSION: u32 = 1;

/// Domain separation for entry hashes: no other dossier hash can collide with an entry's.
pub const HASH_DOMAIN: &[u8] = b"dossier/audit/v1\0";

/// `prev` of the first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest `detail` kept, in characters (longer text is cut).
pub const MAX_DETAIL_CHARS: usize = 200;

/// Most counterparts one entry names (a bundle has at most 64 recipients).
pub const MAX_COUNTERPARTS: usize = 64;

/// What was done. Serialized in snake_case (`key_rotate`, `policy_override`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// `dossier init`: the node's identity was created.
    Init,
    /// `dossier key rotate`.
    KeyRotate,
    /// `dossier key export` (a backup of the keyring left the node).
    KeyExport,
    /// `dossier key revoke`.
    KeyRevoke,
    /// A contact's card was pinned.
    ContactAdd,
    /// A contact's fingerprint was confirmed out of band.
    ContactVerify,
    /// A contact was removed.
    ContactRemove,
    /// A contact's own revocation of its key was applied here.
    ContactRevoked,
    /// A bundle was sealed to a file.
    Seal,
    /// A bundle was sealed and handed to the relay.
    Send,
    /// A bundle was received, verified and stored in the inbox.
    Receive,
    /// A bundle's parts were written out in plaintext.
    Open,
    /// Records left the node in another form (e.g. an export of the inbox).
    Export,
    /// A received bundle failed verification and was quarantined.
    Quarantine,
    /// A bundle or record was deleted by an operator.
    Delete,
    /// Retention: `dossier purge` deleted expired items.
    Purge,
    /// The disclosure policy was overridden with a reason.
    PolicyOverride,
    /// A patient's consent for a destination country was recorded.
    ConsentGrant,
    /// A patient's consent was withdrawn.
    ConsentRevoke,
    /// A disclosure report was produced for an auditor or patient.
    DisclosureReport,
    /// The relay setting was changed.
    RelaySet,
}

impl AuditAction {
    /// The snake_case name used on disk and in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Init => "init",
            AuditAction::KeyRotate => "key_rotate",
            AuditAction::KeyExport => "key_export",
            AuditAction::KeyRevoke => "key_revoke",
            AuditAction::ContactAdd => "contact_add",
            AuditAction::ContactVerify => "contact_verify",
            AuditAction::ContactRemove => "contact_remove",
            AuditAction::ContactRevoked => "contact_revoked",
            AuditAction::Seal => "seal",
            AuditAction::Send => "send",
            AuditAction::Receive => "receive",
            AuditAction::Open => "open",
            AuditAction::Export => "export",
            AuditAction::Quarantine => "quarantine",
            AuditAction::Delete => "delete",
            AuditAction::Purge => "purge",
            AuditAction::PolicyOverride => "policy_override",
            AuditAction::ConsentGrant => "consent_grant",
            AuditAction::ConsentRevoke => "consent_revoke",
            AuditAction::DisclosureReport => "disclosure_report",
            AuditAction::RelaySet => "relay_set",
        }
    }
}

/// How the action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It was done.
    Ok,
    /// It was attempted and failed (the detail says which class of failure).
    Failed,
    /// It was refused before anything happened (by the policy, a pin, a missing consent).
    Refused,
}

impl AuditOutcome {
    /// `ok`, `failed` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Refused => "refused",
        }
    }
}

/// The other facility in an action, and its country when known.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counterpart {
    /// Facility id.
    pub id: FacilityId,
    /// Its country (from its pinned card), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<CountryCode>,
}

/// What a caller records: the action and who and what it touched, never content.
///
/// The types admit only identifiers (a [`BundleId`], [`FacilityId`]s, [`CountryCode`]s), so
/// a subject, a file name or a patient reference cannot be put in by mistake; the one free
/// text, `detail`, is for short non-PHI text such as an override reason or a failure class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// What was done.
    pub action: AuditAction,
    /// The bundle concerned.
    pub bundle_id: Option<BundleId>,
    /// The other facilities involved (recipients of a send, the sender of a receive).
    pub counterparts: Vec<Counterpart>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Short non-PHI text (control characters become spaces; cut to
    /// [`MAX_DETAIL_CHARS`]).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event for `action` with outcome `ok` and nothing else.
    pub fn new(action: AuditAction) -> Self {
        Self {
            action,
            bundle_id: None,
            counterparts: Vec::new(),
            outcome: AuditOutcome::Ok,
            detail: None,
        }
    }

    /// Names the bundle.
    pub fn bundle(mut self, id: &BundleId) -> Self {
        self.bundle_id = Some(id.clone());
        self
    }

    /// Adds a counterpart facility and its country.
    pub fn counterpart(mut self, id: &FacilityId, country: Option<CountryCode>) -> Self {
        self.counterparts.push(Counterpart {
            id: id.clone(),
            country,
        });
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: AuditOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the detail text (never record content: no subjects, names or patient refs).
    pub fn detail(mut self, text: impl AsRef<str>) -> Self {
        self.detail = Some(text.as_ref().to_owned());
        self
    }
}

/// One line of `HOME/audit/log.jsonl`.
///
/// Field order here is the order on disk and in the hashed form; do not reorder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Entry format version ([`ENTRY_VERSION`]).
    pub v: u32,
    /// Position in the trail, from 1, without gaps.
    pub seq: u64,
    /// When it was recorded (UTC, whole seconds).
    pub time: Timestamp,
    /// Who ran the command.
    pub operator: String,
    /// What was done.
    pub action: AuditAction,
    /// The bundle concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<BundleId>,
    /// The other facilities involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counterparts: Vec<Counterpart>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Short non-PHI text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `hash` of the previous entry ([`GENESIS_HASH`] for seq 1).
    pub prev: String,
    /// Hex SHA-256 of [`HASH_DOMAIN`] and the canonical JSON of every field above.
    pub hash: String,
}

/// The hashed form: every field of [`AuditEntry`] but `hash`, in the same order.
#[derive(Serialize)]
struct HashedBody<'a> {
    v: u32,
    seq: u64,
    time: Timestamp,
    operator: &'a str,
    action: AuditAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle_id: Option<&'a BundleId>,
    #[serde(skip_serializing_if = "<[Counterpart]>::is_empty")]
    counterparts: &'a [Counterpart],
    outcome: AuditOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    prev: &'a str,
}

impl AuditEntry {
    /// Builds entry `seq` after `prev`, cleaning the detail and computing the hash.
    pub(crate) fn build(
        seq: u64,
        prev: &str,
        operator: &Operator,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Self {
        let detail = event
            .detail
            .as_deref()
            .map(|d| one_line(d, MAX_DETAIL_CHARS).trim().to_owned())
            .filter(|d| !d.is_empty());
        let mut entry = AuditEntry {
            v: ENTRY_VERSION,
            seq,
            time: now,
            operator: operator.as_str().to_owned(),
            action: event.action,
            bundle_id: event.bundle_id.clone(),
            counterparts: event
                .counterparts
                .iter()
                .take(MAX_COUNTERPARTS)
                .cloned()
                .collect(),
            outcome: event.outcome,
            detail,
            prev: prev.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.computed_hash();
        entry
    }

    /// The hash this entry's content calls for (compare with `hash` to detect edits).
    pub fn computed_hash(&self) -> String {
        let body = HashedBody {
            v: self.v,
            seq: self.seq,
            time: self.time,
            operator: &self.operator,
            action: self.action,
            bundle_id: self.bundle_id.as_ref(),
            counterparts: &self.counterparts,
            outcome: self.outcome,
            detail: self.detail.as_deref(),
            prev: &self.prev,
        };
        // Serializing plain strings, numbers and enums to a Vec cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(&json);
        hex(&h.finalize())
    }

    /// The exact line written to the log (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a line is not an entry this code can check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LineError {
    /// Not JSON, or not an entry.
    Malformed,
    /// An entry of another format version.
    Version(u64),
    /// Valid JSON, but the hash does not match the content, or the bytes are not the
    /// canonical form of that content.
    Edited,
}

/// Parses one line (without its newline) and checks it is the canonical form of an entry
/// whose hash matches its content.
pub(crate) fn parse_line(line: &[u8]) -> Result<AuditEntry, LineError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u64,
    }
    let version: VersionOnly = serde_json::from_slice(line).map_err(|_| LineError::Malformed)?;
    if version.v != u64::from(ENTRY_VERSION) {
        return Err(LineError::Version(version.v));
    }
    let entry: AuditEntry = serde_json::from_slice(line).map_err(|_| LineError::Malformed)?;
    if entry.computed_hash() != entry.hash || entry.to_line().as_bytes() != line {
        return Err(LineError::Edited);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operator {
        Operator::new("dr.somchai").unwrap()
    }

    #[test]
    fn line_round_trips_and_hash_covers_every_field() {
        let bid = BundleId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let ev = AuditEvent::new(AuditAction::Send)
            .bundle(&bid)
            .counterpart(
                &FacilityId::parse("th-bangkok-intl").unwrap(),
                Some(CountryCode::parse("TH").unwrap()),
            )
            .detail("two\nlines");
        let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        let e = AuditEntry::build(1, GENESIS_HASH, &op(), &ev, now);
        assert_eq!(e.detail.as_deref(), Some("two lines"));
        let line = e.to_line();
        assert_eq!(
            line,
            format!(
                "{{\"v\":1,\"seq\":1,\"time\":\"2026-11-23T09:00:00Z\",\"operator\":\"dr.somchai\",\
                 \"action\":\"send\",\"bundle_id\":\"{bid}\",\"counterparts\":[{{\"id\":\
                 \"th-bangkok-intl\",\"country\":\"TH\"}}],\"outcome\":\"ok\",\"detail\":\
                 \"two lines\",\"prev\":\"{GENESIS_HASH}\",\"hash\":\"{}\"}}",
                e.hash
            )
        );
        assert_eq!(parse_line(line.as_bytes()).unwrap(), e);

        let mut changed = e.clone();
        changed.outcome = AuditOutcome::Failed;
        assert_ne!(changed.computed_hash(), e.hash);
        assert_eq!(
            parse_line(changed.to_line().as_bytes()),
            Err(LineError::Edited)
        );
        // Same content, different bytes: still refused.
        let spaced = line.replacen(",", ", ", 1);
        assert_eq!(parse_line(spaced.as_bytes()), Err(LineError::Edited));
        assert_eq!(
            parse_line(line.replacen("\"v\":1", "\"v\":2", 1).as_bytes()),
            Err(LineError::Version(2))
        );
        assert_eq!(parse_line(b"{"), Err(LineError::Malformed));
    }

    #[test]
    fn hash_matches_the_documented_construction() {
        // Computed independently: sha256(b"dossier/audit/v1\0" + line without "hash").
        let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        let op = Operator::new("dr.lee").unwrap();
        let e = AuditEntry::build(
            1,
            GENESIS_HASH,
            &op,
            &AuditEvent::new(AuditAction::Init),
            now,
        );
        assert_eq!(
            e.hash,
            "749601965be440c55c3a7ffb0aefccd94d08ca57b674b44ee80b1e0cb0ea3158"
        );
    }

    #[test]
    fn empty_detail_is_dropped_and_long_detail_cut() {
        let now = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        let e = AuditEntry::build(
            1,
            GENESIS_HASH,
            &op(),
            &AuditEvent::new(AuditAction::Purge).detail("  "),
            now,
        );
        assert_eq!(e.detail, None);
        let e = AuditEntry::build(
            1,
            GENESIS_HASH,
            &op(),
            &AuditEvent::new(AuditAction::Purge).detail("x".repeat(1000)),
            now,
        );
        assert_eq!(e.detail.unwrap().chars().count(), MAX_DETAIL_CHARS);
    }

    #[test]
    fn actions_serialize_as_their_names() {
        for a in [
            AuditAction::Init,
            AuditAction::KeyRotate,
            AuditAction::ContactRevoked,
            AuditAction::PolicyOverride,
            AuditAction::DisclosureReport,
            AuditAction::RelaySet,
        ] {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }
}
