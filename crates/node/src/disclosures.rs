//! The accounting of disclosures: every bundle that left this node, about whom, to which
//! facility in which country, with which parts, by which operator.
//!
//! HIPAA gives a patient the right to an accounting of the disclosures of their records,
//! and a covered entity whose partner's key leaked must know what that partner received.
//! The outbox alone cannot answer either: offline bundles (`dossier seal`) never enter it,
//! and its records are for delivery tracking. So every seal and send writes one
//! [`DisclosureRecord`] *as part of the operation* (before the bundle becomes visible in
//! the outbox or the output file is kept), and `dossier disclosures` joins these with the
//! outbox's receipts for delivery times.
//!
//! ```text
//! HOME/disclosures/BUNDLE-ID.json   one record per bundle (0600, written atomically)
//! ```
//!
//! These records hold patient references and part names: they are local, protected state
//! like the outbox, never sent anywhere except in a report to the patient themself.

use std::path::PathBuf;

use dossier_bundle::{BundleKind, Manifest, Timestamp};
use serde::{Deserialize, Serialize};

use crate::contacts::ContactBook;
use crate::error::NodeError;
use crate::fsutil::create_private_dir;
use crate::home::NodeHome;
use crate::statefile::{file_in, read_json, record_stems, write_json};

const FORMAT: &str = "dossier-disclosure/v1";

/// How the bundle left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Handed to the relay by `dossier send`.
    Relay,
    /// Written to a file by `dossier seal` (carried by e-mail, USB, ...).
    File,
}

impl Channel {
    /// `relay` or `file`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Relay => "relay",
            Channel::File => "file",
        }
    }
}

/// One recipient of a disclosure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosedTo {
    /// Facility (or patient) id.
    pub id: String,
    /// Display name from the pinned card.
    pub name: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: String,
}

/// One part of a disclosed bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosedPart {
    /// Path inside the bundle.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Bytes.
    pub length: u64,
}

/// What left the node in one bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisclosureRecord {
    /// [`FORMAT`].
    pub format: String,
    /// Bundle id.
    pub bundle_id: String,
    /// Kind of bundle.
    pub kind: BundleKind,
    /// Relay or file.
    pub channel: Channel,
    /// When it was sealed.
    pub disclosed_at: Timestamp,
    /// Who sealed it.
    pub operator: String,
    /// The patient reference given at sealing, if any.
    pub patient: Option<String>,
    /// To whom.
    pub recipients: Vec<DisclosedTo>,
    /// What.
    pub parts: Vec<DisclosedPart>,
    /// Direct identifiers were removed from FHIR parts before sealing.
    #[serde(default)]
    pub redacted: bool,
    /// Disclosure-policy overrides used, each with its reason.
    #[serde(default)]
    pub overrides: Vec<String>,
}

impl DisclosureRecord {
    /// The record for `manifest`, sealed by `operator`; names and countries come from the
    /// pinned cards (the sender itself, when it is a recipient of its own copy, is left
    /// out).
    pub fn new(
        manifest: &Manifest,
        channel: Channel,
        operator: &str,
        book: &ContactBook,
        now: Timestamp,
    ) -> Self {
        let recipients = manifest
            .recipients
            .iter()
            .filter(|r| r.id != manifest.sender.id)
            .map(|r| {
                let card = book.get(&r.id).map(|c| &c.card);
                DisclosedTo {
                    id: r.id.as_str().to_owned(),
                    name: card.map(|c| c.name().to_owned()).unwrap_or_default(),
                    country: card
                        .map(|c| c.country().as_str().to_owned())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Self {
            format: FORMAT.to_owned(),
            bundle_id: manifest.bundle_id.as_str().to_owned(),
            kind: manifest.kind,
            channel,
            disclosed_at: now,
            operator: operator.to_owned(),
            patient: manifest.patient.clone(),
            recipients,
            parts: manifest
                .parts
                .iter()
                .map(|p| DisclosedPart {
                    name: p.path.as_str().to_owned(),
                    media_type: p.media_type.clone(),
                    length: p.length,
                })
                .collect(),
            redacted: false,
            overrides: Vec::new(),
        }
    }
}

/// `HOME/disclosures`.
pub fn dir(home: &NodeHome) -> PathBuf {
    home.root().join("disclosures")
}

/// Writes `rec` durably.
pub fn record(home: &NodeHome, rec: &DisclosureRecord) -> Result<(), NodeError> {
    let d = dir(home);
    create_private_dir(&d).map_err(NodeError::io("creating the disclosure records"))?;
    write_json(&file_in(&d, &rec.bundle_id, "json"), rec)
}

/// Removes the record of a bundle that did not leave after all (its operation failed).
pub fn forget(home: &NodeHome, bundle_id: &str) {
    let _ = std::fs::remove_file(file_in(&dir(home), bundle_id, "json"));
}

/// Every record, oldest first.
pub fn list(home: &NodeHome) -> Result<Vec<DisclosureRecord>, NodeError> {
    let d = dir(home);
    let mut all = Vec::new();
    for stem in record_stems(&d)? {
        if let Some(r) = read_json::<DisclosureRecord>(&file_in(&d, &stem, "json"))? {
            all.push(r);
        }
    }
    all.sort_by(|a, b| (a.disclosed_at, &a.bundle_id).cmp(&(b.disclosed_at, &b.bundle_id)));
    Ok(all)
}

/// Which disclosures a report covers.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    /// Only bundles about this patient reference (exact match).
    pub patient: Option<String>,
    /// Only bundles sent to this facility.
    pub to: Option<String>,
    /// Only bundles sealed at or after this time.
    pub since: Option<Timestamp>,
}

/// Where one recipient's copy of a disclosed bundle got to, from the outbox's receipts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryLine {
    /// Recipient id.
    pub id: String,
    /// Name from the pinned card at the time.
    pub name: String,
    /// Country.
    pub country: String,
    /// Latest state (`file` for offline bundles, whose delivery this node cannot see).
    pub state: String,
    /// When a signed delivery receipt said it arrived.
    pub delivered_at: Option<Timestamp>,
    /// When the recipient reported opening it, if it did.
    pub opened_at: Option<Timestamp>,
}

/// One disclosed bundle with its delivery evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReportEntry {
    /// Bundle id.
    pub bundle_id: String,
    /// When it was sealed.
    pub disclosed_at: Timestamp,
    /// `record`, `careplan` or `message`.
    pub kind: String,
    /// `relay` or `file`.
    pub channel: String,
    /// Who sealed it.
    pub operator: String,
    /// Patient reference.
    pub patient: Option<String>,
    /// Parts (name, type, size).
    pub parts: Vec<DisclosedPart>,
    /// Per recipient.
    pub recipients: Vec<DeliveryLine>,
    /// Identifiers were removed before sealing.
    pub redacted: bool,
    /// Policy overrides used, with reasons.
    pub overrides: Vec<String>,
}

/// The disclosures matching `filter`, oldest first, with delivery times from the outbox.
pub fn report(home: &NodeHome, filter: &ReportFilter) -> Result<Vec<ReportEntry>, NodeError> {
    let mut out = Vec::new();
    for rec in list(home)? {
        if filter
            .patient
            .as_ref()
            .is_some_and(|p| rec.patient.as_ref() != Some(p))
        {
            continue;
        }
        if filter
            .to
            .as_ref()
            .is_some_and(|to| !rec.recipients.iter().any(|r| &r.id == to))
        {
            continue;
        }
        if filter.since.is_some_and(|since| rec.disclosed_at < since) {
            continue;
        }
        let sent = crate::outbox::load(home, &rec.bundle_id)?;
        let recipients = rec
            .recipients
            .iter()
            .map(|r| {
                let state = sent
                    .as_ref()
                    .and_then(|s| s.recipients.iter().find(|x| x.id == r.id));
                let when = |event: &str| {
                    sent.as_ref().and_then(|s| {
                        s.timeline
                            .iter()
                            .find(|t| t.event == event && t.recipient.as_deref() == Some(&r.id))
                            .map(|t| t.at)
                    })
                };
                DeliveryLine {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    country: r.country.clone(),
                    state: match (rec.channel, state) {
                        (Channel::File, _) => "file".to_owned(),
                        (Channel::Relay, Some(s)) => s.state.as_str().to_owned(),
                        (Channel::Relay, None) => "unknown".to_owned(),
                    },
                    delivered_at: when("delivered"),
                    opened_at: when("opened"),
                }
            })
            .collect();
        out.push(ReportEntry {
            bundle_id: rec.bundle_id,
            disclosed_at: rec.disclosed_at,
            kind: rec.kind.as_str().to_owned(),
            channel: rec.channel.as_str().to_owned(),
            operator: rec.operator,
            patient: rec.patient,
            parts: rec.parts,
            recipients,
            redacted: rec.redacted,
            overrides: rec.overrides,
        });
    }
    Ok(out)
}
