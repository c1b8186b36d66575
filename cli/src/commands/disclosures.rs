//! `disclosures --patient REF | --to FACILITY [--since DATE] [--send-to-patient ID]`:
//! the accounting of disclosures a patient may ask for, and the list a breach
//! notification starts from.

use std::collections::BTreeMap;

use dossier_bundle::{BundleKind, FacilityId, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent};
use dossier_node::disclosures::{ReportEntry, ReportFilter, report};
use dossier_node::policy::parse_consent_date;
use dossier_node::relay_client::{NoProgress, runtime};
use dossier_node::sealing::SealOptions;
use dossier_node::sync::{self, SendOutcome, SyncContext, SyncEvent, SyncEvents};
use dossier_node::{NodeError, NodeHome, identity};
use serde_json::json;

use crate::cli::DisclosuresArgs;
use crate::output::Out;
use crate::passphrase;

pub fn run(home: &NodeHome, actor: &Actor, a: DisclosuresArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    identity::my_card(home)?;
    let since = match &a.since {
        Some(d) => {
            let date = parse_consent_date(d)?;
            Some(
                Timestamp::from_unix(date.midnight().assume_utc().unix_timestamp()).map_err(
                    |_| NodeError::Input {
                        arg: d.into(),
                        problem: "the date is out of range; give YYYY-MM-DD".into(),
                    },
                )?,
            )
        }
        None => None,
    };
    let filter = ReportFilter {
        patient: a.patient.clone(),
        to: a.to.clone(),
        since,
    };
    let entries = report(home, &filter)?;
    let document = match (&a.patient, &a.to) {
        (Some(patient), _) => {
            say_entries(
                &out,
                &format!("Disclosures about patient {patient}"),
                &entries,
            );
            json!({ "patient": patient, "since": a.since, "disclosures": entries })
        }
        (None, Some(to)) => {
            let mut by_patient: BTreeMap<String, Vec<&ReportEntry>> = BTreeMap::new();
            for e in &entries {
                let key = e
                    .patient
                    .clone()
                    .unwrap_or_else(|| "(no patient reference)".into());
                by_patient.entry(key).or_default().push(e);
            }
            out.say(format!(
                "Disclosures to {to}{}: {} bundle(s) about {} patient(s)",
                a.since
                    .as_ref()
                    .map(|s| format!(" since {s}"))
                    .unwrap_or_default(),
                entries.len(),
                by_patient.len()
            ));
            for (patient, list) in &by_patient {
                out.say(format!("\n  patient {patient}: {} bundle(s)", list.len()));
                for e in list {
                    out.say(format!(
                        "    {}  {}  {:<8} {} part(s)  by {}",
                        e.disclosed_at,
                        e.bundle_id,
                        e.kind,
                        e.parts.len(),
                        e.operator
                    ));
                }
            }
            let groups: Vec<_> = by_patient
                .iter()
                .map(|(p, list)| json!({ "patient": p, "disclosures": list }))
                .collect();
            json!({ "facility": to, "since": a.since, "patients": groups })
        }
        (None, None) => unreachable!("clap requires --patient or --to"),
    };
    let mut event = AuditEvent::new(AuditAction::DisclosureReport).detail(if a.to.is_some() {
        "accounting by facility"
    } else {
        "accounting for a patient"
    });
    if let Some(to) = &a.to {
        if let Ok(id) = FacilityId::parse(to) {
            event = event.counterpart(&id, None);
        }
    }
    actor.record(event)?;
    if let (Some(patient), Some(to_patient)) = (&a.patient, &a.send_to_patient) {
        send_to_patient(home, actor, &out, patient, to_patient, &document)?;
    }
    out.json(&document);
    Ok(())
}

fn say_entries(out: &Out, title: &str, entries: &[ReportEntry]) {
    out.say(format!("{title}: {} bundle(s)", entries.len()));
    for e in entries {
        out.say(format!(
            "\n  {}  bundle {}  {} via {}  by {}{}",
            e.disclosed_at,
            e.bundle_id,
            e.kind,
            e.channel,
            e.operator,
            if e.redacted {
                "  (identifiers removed)"
            } else {
                ""
            }
        ));
        for r in &e.recipients {
            out.say(format!(
                "    to {} ({}, {}): {}{}{}",
                r.id,
                r.name,
                r.country,
                r.state,
                r.delivered_at
                    .map(|t| format!(", delivered {t}"))
                    .unwrap_or_default(),
                r.opened_at
                    .map(|t| format!(", opened {t}"))
                    .unwrap_or_default()
            ));
        }
        for p in &e.parts {
            out.say(format!(
                "    part {}  {}  {} bytes",
                p.name, p.media_type, p.length
            ));
        }
        for o in &e.overrides {
            out.say(format!("    policy override: {o}"));
        }
    }
}

/// Seals the accounting as a JSON part and sends it to the patient's node.
fn send_to_patient(
    home: &NodeHome,
    actor: &Actor,
    out: &Out,
    patient: &str,
    to: &str,
    document: &serde_json::Value,
) -> Result<(), NodeError> {
    let dir = tempfile::Builder::new()
        .prefix(".disclosure-report-")
        .tempdir_in(home.root())
        .map_err(NodeError::io("preparing the accounting"))?;
    let file = dir.path().join("accounting-of-disclosures.json");
    let text = serde_json::to_vec_pretty(document).unwrap_or_default();
    dossier_node::fsutil::write_atomic(&file, &text)
        .map_err(NodeError::io("writing the accounting"))?;
    let opts = SealOptions {
        to: vec![FacilityId::parse(to)?],
        kind: BundleKind::Message,
        subject: Some("Accounting of disclosures of your records".into()),
        thread: None,
        patient: Some(patient.to_owned()),
        redacted: false,
        overrides: Vec::new(),
    };
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    let ctx = SyncContext::new(home, &ring, &NoProgress, &Quiet, actor)?;
    let rt = runtime().map_err(NodeError::io("starting the network runtime"))?;
    match rt.block_on(sync::send(&ctx, &opts, &[file]))? {
        SendOutcome::Accepted(rec) => out.say(format!(
            "\nSent the accounting to {to} as bundle {}: accepted by the relay.",
            rec.bundle_id
        )),
        SendOutcome::Queued { record, why } => out.say(format!(
            "\nThe accounting for {to} is queued as bundle {}, NOT yet accepted by the relay: {why}",
            record.bundle_id
        )),
    }
    Ok(())
}

struct Quiet;

impl SyncEvents for Quiet {
    fn event(&self, _: SyncEvent) {}
}
