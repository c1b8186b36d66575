//! The disclosure gate: what every bundle passes through before it is sealed to leave.
//!
//! [`crate::policy`] decides (a pure function); this module gathers what the decision
//! needs from the node and the files, and carries it out:
//!
//! 1. loads `HOME/policy.toml`, this node's card (its country), the pinned contacts (each
//!    recipient's country and whether its fingerprint was verified) and, when the policy
//!    requires consent, the consent register;
//! 2. checks everything that does not depend on the files first, so a disclosure refused
//!    by country, verification or consent is refused before a byte of a record is read;
//! 3. reads the inputs ([`scan`]) — only when the minors rule can apply (a record, minors
//!    protected, a recipient abroad) or `--redact identifiers` was given — for FHIR
//!    records: the patients' ages from every `Patient.birthDate` (any minor makes the
//!    record a minor's; judged on the original, before redaction), and with redaction a
//!    redacted copy of each FHIR record in a private working directory under
//!    `HOME/redacting/` with the same part names;
//! 4. decides with [`Policy::check`]. A refusal is audited (action `seal` or `send`,
//!    outcome `refused`, detail the rule's name) and returned as
//!    [`NodeError::Policy`] (exit code 6); nothing is sealed;
//! 5. on success, writes the re-link table of a redaction ([`crate::relink`], encrypted to
//!    this node), records one `policy_override` audit entry per override with its reason,
//!    and marks the [`SealOptions`] (`redacted`, `overrides`) so the accounting of
//!    disclosures shows them.
//!
//! The caller seals [`Prepared::inputs`] instead of its own paths and drops the
//! [`Prepared`] afterwards, which deletes the redacted copies. An override is audited
//! when it is used, before the bundle it allows exists, so the trail shows it even if
//! sealing then fails; the `seal`/`send` entry that follows names the bundle.

mod scan;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dossier_bundle::{BundleKind, FacilityId, Timestamp};

use crate::audit::{Actor, AuditAction, AuditEvent, AuditOutcome};
use crate::contacts::ContactBook;
use crate::error::NodeError;
use crate::fsutil::create_private_dir;
use crate::home::NodeHome;
use crate::policy::{
    ConsentRegister, DisclosureRequest, Policy, PolicyDecision, PolicyOverride, PolicyRefusal,
    RecipientFacts, utc_date,
};
use crate::relink::{RelinkTable, new_pseudonym};
use crate::sealing::SealOptions;

/// Redacted copies older than this are left from a crashed run and are removed.
const STALE_WORK: Duration = Duration::from_secs(24 * 3600);

/// What the operator asked of the gate on the command line.
#[derive(Clone, Debug, Default)]
pub struct GateFlags {
    /// `--redact identifiers`: remove direct identifiers from every FHIR record.
    pub redact_identifiers: bool,
    /// `--allow-minor --reason TEXT`: the reason for sending a minor's record abroad
    /// unredacted (operator text: it goes into the audit trail, so no patient details).
    pub allow_minor_reason: Option<String>,
}

/// A redaction that was made for this disclosure.
struct Redacted {
    table: RelinkTable,
    path: PathBuf,
    owner: age::x25519::Recipient,
}

/// A disclosure the policy allowed, ready to seal.
pub struct Prepared {
    inputs: Vec<PathBuf>,
    decision: PolicyDecision,
    redacted: Option<Redacted>,
    fhir_parts: usize,
    notes: Vec<String>,
    /// The redacted copies; deleted on drop.
    _work: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("inputs", &self.inputs.len())
            .field("overrides", &self.decision.overrides.len())
            .field("redacted", &self.redacted.is_some())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// The paths to seal: the caller's, or redacted replacements with the same part names.
    pub fn inputs(&self) -> &[PathBuf] {
        &self.inputs
    }

    /// What the policy relied on (overrides used, countries consented to).
    pub fn decision(&self) -> &PolicyDecision {
        &self.decision
    }

    /// FHIR records found among the inputs (0 if they were not read).
    pub fn fhir_parts(&self) -> usize {
        self.fhir_parts
    }

    /// The pseudonym the redacted records carry, if identifiers were removed.
    pub fn pseudonym(&self) -> Option<&str> {
        self.redacted.as_ref().map(|r| r.table.pseudonym.as_str())
    }

    /// The encrypted re-link table, if identifiers were removed.
    pub fn relink_path(&self) -> Option<&Path> {
        self.redacted.as_ref().map(|r| r.path.as_path())
    }

    /// Lines for the operator: what was redacted, what was not, overrides used or unused.
    /// No record content (counts, the pseudonym and paths in the home only).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Adds the sealed bundle's id to the re-link table (rewritten, still encrypted). A
    /// failure leaves the table as it was, under its pseudonym.
    pub fn bind_bundle(&mut self, home: &NodeHome, bundle_id: &str) -> Result<(), NodeError> {
        if let Some(r) = &mut self.redacted {
            r.table.bundle_id = Some(bundle_id.to_owned());
            r.table.save(home, &r.owner)?;
        }
        Ok(())
    }
}

/// Checks a disclosure against the node's policy and prepares its inputs (see the module
/// docs). `action` is [`AuditAction::Seal`] or [`AuditAction::Send`], for the audit entry
/// of a refusal. On success `opts` is marked with the redaction and the overrides used.
pub fn prepare(
    home: &NodeHome,
    actor: &Actor,
    action: AuditAction,
    opts: &mut SealOptions,
    inputs: &[PathBuf],
    flags: &GateFlags,
    now: Timestamp,
) -> Result<Prepared, NodeError> {
    let policy = Policy::load(home)?;
    let me = crate::identity::my_card(home)?;
    let book = ContactBook::load(home)?;
    let consent = if policy.consent.required {
        ConsentRegister::load(home)?
    } else {
        ConsentRegister::default()
    };
    let mut recipients = Vec::with_capacity(opts.to.len());
    for id in opts.to.iter().filter(|id| *id != me.id()) {
        let c = book
            .get(id)
            .ok_or_else(|| NodeError::NotAContact(id.clone()))?;
        recipients.push(RecipientFacts {
            id: id.clone(),
            country: c.card.country(),
            verified: c.verified,
        });
    }
    let mut request = DisclosureRequest {
        kind: opts.kind,
        own_country: me.country(),
        recipients: &recipients,
        patient_ref: opts.patient.as_deref(),
        patient_is_minor: None,
        redacted: flags.redact_identifiers,
        minor_override_reason: flags.allow_minor_reason.as_deref(),
        consent: &consent,
        now,
    };
    // Everything but the minors rule, before reading a file: the minors rule only ever
    // adds a refusal.
    policy
        .check(&request)
        .or_else(|r| refuse(actor, action, &recipients, r))?;

    let abroad = recipients.iter().any(|r| r.country != me.country());
    let judge_minors = opts.kind == BundleKind::Record && policy.minors.protect && abroad;
    let work = if flags.redact_identifiers {
        Some(work_dir(home)?)
    } else {
        None
    };
    let pseudonym = if flags.redact_identifiers {
        Some(new_pseudonym()?)
    } else {
        None
    };
    let found = if judge_minors || flags.redact_identifiers {
        scan::scan(
            inputs,
            &scan::ScanRequest {
                minors: judge_minors.then(|| (utc_date(now), policy.minors.age_of_majority)),
                redact: pseudonym.as_deref().zip(work.as_ref().map(|w| w.path())),
            },
        )?
    } else {
        scan::Scan {
            inputs: inputs.to_vec(),
            ..scan::Scan::default()
        }
    };
    request.patient_is_minor = found.minor;
    let decision = policy
        .check(&request)
        .or_else(|r| refuse(actor, action, &recipients, r))?;

    let mut notes = Vec::new();
    let mut redacted = None;
    if let Some(pseudonym) = pseudonym.filter(|_| found.fhir_parts > 0) {
        let mut table = RelinkTable::new(
            &pseudonym,
            actor.operator().as_str(),
            recipients.iter().map(|r| r.id.clone()).collect(),
            now,
        );
        table.parts = found.relink;
        let owner = me.age_recipient_key();
        let path = table.save(home, &owner)?;
        notes.push(format!(
            "Identifiers removed from {} FHIR record(s); the patient appears as {pseudonym}. \
             The re-link table stays on this node only, encrypted: {}",
            found.fhir_parts,
            path.display()
        ));
        if found.other_parts > 0 {
            notes.push(format!(
                "{} other part(s) are sent as they are: --redact identifiers removes \
                 identifiers from FHIR JSON and XML records only, so check those files \
                 by hand",
                found.other_parts
            ));
        }
        opts.redacted = true;
        redacted = Some(Redacted { table, path, owner });
    } else if flags.redact_identifiers {
        notes.push(
            "--redact identifiers: no FHIR JSON or XML record among the inputs, so nothing \
             was redacted and the bundle is not marked redacted"
                .to_owned(),
        );
    }

    for o in &decision.overrides {
        let PolicyOverride::MinorAbroad { reason, facilities } = o;
        let mut event = AuditEvent::new(AuditAction::PolicyOverride).detail(o.audit_detail());
        for id in facilities {
            event = event.counterpart(id, country_of(&recipients, id));
        }
        actor.record(event)?;
        opts.overrides
            .push(format!("minor's record sent abroad unredacted: {reason}"));
        notes.push(
            "The minors rule was overridden with --allow-minor; the reason is recorded in \
             the audit trail"
                .to_owned(),
        );
    }
    if flags.allow_minor_reason.is_some() && decision.overrides.is_empty() {
        notes.push(
            "--allow-minor was not needed for this bundle (no minor's record going abroad \
             unredacted), so no override was recorded"
                .to_owned(),
        );
    }
    Ok(Prepared {
        inputs: found.inputs,
        decision,
        redacted,
        fhir_parts: found.fhir_parts,
        notes,
        _work: work,
    })
}

fn country_of(
    recipients: &[RecipientFacts],
    id: &FacilityId,
) -> Option<dossier_bundle::CountryCode> {
    recipients.iter().find(|r| &r.id == id).map(|r| r.country)
}

/// Audits a refusal (not a usage error) and returns it as the error.
fn refuse<T>(
    actor: &Actor,
    action: AuditAction,
    recipients: &[RecipientFacts],
    refusal: PolicyRefusal,
) -> Result<T, NodeError> {
    if !refusal.is_usage() {
        let mut event = AuditEvent::new(action)
            .outcome(AuditOutcome::Refused)
            .detail(refusal.rule());
        for r in recipients {
            event = event.counterpart(&r.id, Some(r.country));
        }
        actor.record(event)?;
    }
    Err(refusal.into())
}

/// A new private working directory under `HOME/redacting/`, clearing ones left by crashes.
fn work_dir(home: &NodeHome) -> Result<tempfile::TempDir, NodeError> {
    let parent = home.redacting_dir();
    let what = || {
        format!(
            "creating a private working directory in {}",
            parent.display()
        )
    };
    create_private_dir(&parent).map_err(NodeError::io(what()))?;
    if let Ok(entries) = std::fs::read_dir(&parent) {
        let stale = SystemTime::now()
            .checked_sub(STALE_WORK)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < stale);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("r-")
        .tempdir_in(&parent)
        .map_err(NodeError::io(what()))?;
    create_private_dir(dir.path()).map_err(NodeError::io(what()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests;
