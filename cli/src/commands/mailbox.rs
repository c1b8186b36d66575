//! `inbox`, `outbox` and `status`: what arrived, what was sent, and the evidence for each.
//!
//! These read local records only (no passphrase, no network). Subjects are shown to the
//! node's own user, as `open` does; they never leave the node.

use dossier_bundle::{BundleId, Timestamp};
use dossier_node::inbox::{self, InboxRecord, QuarantineRecord};
use dossier_node::outbox::{self, OutboxRecord};
use dossier_node::relay_config::{DEFAULT_OVERDUE_AFTER_SECS, RelayConfig};
use dossier_node::{NodeError, NodeHome, identity};
use serde_json::{Value, json};

use crate::cli::{ListArgs, StatusArgs};
use crate::output::Out;

fn overdue_window(home: &NodeHome) -> Result<u64, NodeError> {
    Ok(RelayConfig::load(home)?.map_or(DEFAULT_OVERDUE_AFTER_SECS, |c| c.overdue_after_secs))
}

pub fn inbox(home: &NodeHome, a: ListArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    identity::my_card(home)?;
    let items = inbox::list_inbox(home)?;
    let quarantined = inbox::list_quarantine(home)?;
    if items.is_empty() && quarantined.is_empty() {
        out.say("The inbox is empty. `dossier sync` fetches new bundles from the relay.");
    }
    for r in &items {
        out.say(format!(
            "{}  {}  {:<9} from {:<20} {}{}",
            r.received_at,
            r.bundle_id,
            r.kind.as_str(),
            r.from,
            r.subject.as_deref().unwrap_or("(no subject)"),
            if r.receipt_posted {
                ""
            } else {
                "  [receipt not yet sent]"
            }
        ));
    }
    for q in &quarantined {
        out.say(format!(
            "{}  {}  QUARANTINED (deposited by {}): {}",
            q.received_at, q.bundle_id, q.relay_from, q.reason
        ));
    }
    if !items.is_empty() {
        out.say("Open one with `dossier open BUNDLE-ID -o DIR`.");
    }
    let mut rows: Vec<Value> = items.iter().map(inbox_json).collect();
    rows.extend(quarantined.iter().map(quarantine_json));
    out.json(&Value::Array(rows));
    Ok(())
}

fn inbox_json(r: &InboxRecord) -> Value {
    json!({
        "bundle_id": r.bundle_id,
        "from": r.from,
        "from_fingerprint": r.from_fingerprint,
        "to": r.to,
        "kind": r.kind.as_str(),
        "subject": r.subject,
        "thread": r.thread,
        "patient": r.patient,
        "created_at": r.created_at.to_string(),
        "received_at": r.received_at.to_string(),
        "deposited_at": r.deposited_at.to_string(),
        "parts": r.parts,
        "bytes": r.bytes,
        "length": r.length,
        "ciphertext_sha256": r.ciphertext_sha256,
        "verified": r.verified,
        "quarantined": false,
        "receipt_sent": r.receipt_posted,
    })
}

fn quarantine_json(q: &QuarantineRecord) -> Value {
    json!({
        "bundle_id": q.bundle_id,
        "from": q.relay_from,
        "to": Value::Null,
        "kind": Value::Null,
        "subject": Value::Null,
        "created_at": Value::Null,
        "received_at": q.received_at.to_string(),
        "deposited_at": q.deposited_at.to_string(),
        "length": q.length,
        "ciphertext_sha256": q.ciphertext_sha256,
        "verified": false,
        "quarantined": true,
        "reason": q.reason,
        "class": q.class,
        "receipt_sent": q.receipt_posted,
    })
}

pub fn outbox(home: &NodeHome, a: ListArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    identity::my_card(home)?;
    let window = overdue_window(home)?;
    let now = Timestamp::now();
    let records = outbox::list(home)?;
    if records.is_empty() {
        out.say("The outbox is empty. `dossier send --to ID PATH...` sends a bundle.");
    }
    for r in &records {
        let states: Vec<String> = r
            .recipients
            .iter()
            .map(|x| format!("{} {}", x.id, x.state.as_str()))
            .collect();
        out.say(format!(
            "{}  {}  {:<9} {}{}  {}",
            r.queued_at,
            r.bundle_id,
            r.kind.as_str(),
            states.join(", "),
            if r.overdue(now, window) {
                "  [OVERDUE: no receipt yet]"
            } else {
                ""
            },
            r.subject.as_deref().unwrap_or("(no subject)"),
        ));
    }
    let rows: Vec<Value> = records
        .iter()
        .map(|r| outbox_json(r, now, window))
        .collect();
    out.json(&Value::Array(rows));
    Ok(())
}

fn recipients_json(r: &OutboxRecord) -> Vec<Value> {
    r.recipients
        .iter()
        .map(|x| {
            json!({
                "id": x.id,
                "state": x.state.as_str(),
                "at": x.at.to_string(),
                "reason": x.reason,
                "alert": x.alert,
                "receipt_verified": x.receipt.is_some(),
            })
        })
        .collect()
}

fn outbox_json(r: &OutboxRecord, now: Timestamp, window: u64) -> Value {
    json!({
        "bundle_id": r.bundle_id,
        "from": r.from,
        "to": r.to,
        "kind": r.kind.as_str(),
        "subject": r.subject,
        "thread": r.thread,
        "patient": r.patient,
        "created_at": r.created_at.to_string(),
        "queued_at": r.queued_at.to_string(),
        "accepted_at": r.upload.accepted_at.map(|t| t.to_string()),
        "state": r.overall_state().as_str(),
        "overdue": r.overdue(now, window),
        "length": r.length,
        "ciphertext_sha256": r.ciphertext_sha256,
        "upload_error": r.upload.last_error,
        "refused": r.upload.refused,
        "recipients": recipients_json(r),
    })
}

pub fn status(home: &NodeHome, a: StatusArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let me = identity::my_card(home)?;
    let id = BundleId::parse(a.bundle_id.trim())?;
    let id = id.as_str();
    if let Some(r) = outbox::load(home, id)? {
        let window = overdue_window(home)?;
        let now = Timestamp::now();
        let overdue = r.overdue(now, window);
        out.say(format!(
            "Bundle {} ({}) sent by {} to {}",
            r.bundle_id,
            r.kind.as_str(),
            r.from,
            r.to.join(", ")
        ));
        out.say(format!("  sealed    {}", r.created_at));
        out.say(format!("  queued    {}", r.queued_at));
        match (&r.upload.accepted_at, &r.upload.refused) {
            (Some(t), _) => out.say(format!("  accepted  {t} by the relay")),
            (None, Some(why)) => out.say(format!("  REFUSED by the relay: {why}")),
            (None, None) => out.say(format!(
                "  NOT yet accepted by the relay ({} attempt(s){}); `dossier sync` retries",
                r.upload.attempts,
                r.upload
                    .last_error
                    .as_deref()
                    .map(|e| format!(", last: {e}"))
                    .unwrap_or_default()
            )),
        }
        for x in &r.recipients {
            let evidence = if x.receipt.is_some() {
                " (signed receipt verified against the pinned card)"
            } else {
                ""
            };
            out.say(format!(
                "  {:<24} {:<9} {}{}{}",
                x.id,
                x.state.as_str(),
                x.at,
                evidence,
                x.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
            if let Some(alert) = &x.alert {
                out.say(format!("    ALERT: {alert}"));
            }
        }
        if overdue {
            out.say(format!(
                "  OVERDUE: no delivery receipt from every recipient after {window} s; check that they run `dossier sync`"
            ));
        }
        out.say("Timeline:");
        for e in &r.timeline {
            out.say(format!(
                "  {}  {}{}{}",
                e.at,
                e.event,
                e.recipient
                    .as_deref()
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default(),
                e.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ));
        }
        let timeline: Vec<Value> = r
            .timeline
            .iter()
            .map(|e| json!({"at": e.at.to_string(), "event": e.event, "recipient": e.recipient, "detail": e.detail}))
            .collect();
        out.json(&json!({
            "bundle_id": r.bundle_id,
            "direction": "sent",
            "from": r.from,
            "to": r.to,
            "kind": r.kind.as_str(),
            "created_at": r.created_at.to_string(),
            "queued_at": r.queued_at.to_string(),
            "accepted_at": r.upload.accepted_at.map(|t| t.to_string()),
            "refused": r.upload.refused,
            "state": r.overall_state().as_str(),
            "overdue": overdue,
            "recipients": recipients_json(&r),
            "timeline": timeline,
        }));
        return Ok(());
    }
    match inbox::known(home, id)? {
        Some(inbox::Known::Inbox(r)) => {
            out.say(format!(
                "Bundle {} ({}) received from {} at {}: verified, in the inbox; receipt {}",
                r.bundle_id,
                r.kind.as_str(),
                r.from,
                r.received_at,
                if r.receipt_posted {
                    "sent"
                } else {
                    "not yet sent (next sync)"
                }
            ));
            out.json(&json!({
                "bundle_id": r.bundle_id,
                "direction": "received",
                "from": r.from,
                "to": r.to,
                "kind": r.kind.as_str(),
                "created_at": r.created_at.to_string(),
                "received_at": r.received_at.to_string(),
                "recipients": [{"id": me.id().as_str(), "state": "delivered", "at": r.received_at.to_string(), "receipt_sent": r.receipt_posted}],
            }));
            Ok(())
        }
        Some(inbox::Known::Quarantine(q)) => {
            out.say(format!(
                "Bundle {} (deposited by {}) was QUARANTINED at {}: {}",
                q.bundle_id, q.relay_from, q.received_at, q.reason
            ));
            out.json(&json!({
                "bundle_id": q.bundle_id,
                "direction": "received",
                "from": q.relay_from,
                "received_at": q.received_at.to_string(),
                "recipients": [{"id": me.id().as_str(), "state": "rejected", "at": q.received_at.to_string(), "reason": q.reason, "receipt_sent": q.receipt_posted}],
            }));
            Ok(())
        }
        None => Err(NodeError::UnknownBundle(id.to_owned())),
    }
}
