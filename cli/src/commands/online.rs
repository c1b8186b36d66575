//! `relay set|show`, `send` and `sync`: the online exchange through the pinned relay.

use std::sync::Mutex;
use std::time::Duration;

use dossier_node::audit::{Actor, AuditAction, AuditEvent};
use dossier_node::outbox::OutboxRecord;
use dossier_node::relay_client::runtime;
use dossier_node::relay_config::{self, RelayConfig};
use dossier_node::sync::{self, SendOutcome, StopSignal, SyncContext, SyncEvent, SyncEvents};
use dossier_node::{NodeError, NodeHome, gate, identity, outbox};
use serde_json::json;

use super::bundle::{after_gate, gate_flags, seal_options};
use super::progress::TerminalProgress;
use crate::cli::{RelayCommand, SendArgs, SyncArgs};
use crate::output::Out;
use crate::passphrase;

pub fn relay(home: &NodeHome, actor: &Actor, cmd: RelayCommand) -> Result<(), NodeError> {
    match cmd {
        RelayCommand::Set {
            addr,
            pin,
            overdue_after,
        } => {
            let cfg = relay_config::set(home, &addr, &pin, overdue_after)?;
            actor.record(
                AuditEvent::new(AuditAction::RelaySet)
                    .detail(format!("relay {} pinned to {}", cfg.address, cfg.pin)),
            )?;
            let out = Out::new(false);
            out.say(format!(
                "Relay set to {}, pinned to {}.",
                cfg.address, cfg.pin
            ));
            out.say("This node will refuse any relay at that address whose key does not match the pin. Make sure the pin came from the relay's operator over a trusted channel.");
            out.say(format!(
                "Bundles without a delivery receipt after {} s are flagged overdue.",
                cfg.overdue_after_secs
            ));
        }
        RelayCommand::Show { json } => {
            let out = Out::new(json);
            let cfg = RelayConfig::require(home)?;
            out.say(format!("relay    {}", cfg.address));
            out.say(format!("pin      {}", cfg.pin));
            out.say(format!("overdue  after {} s", cfg.overdue_after_secs));
            out.json(&json!({
                "address": cfg.address,
                "pin": cfg.pin,
                "overdue_after_secs": cfg.overdue_after_secs,
                "connect_timeout_secs": cfg.connect_timeout_secs,
            }));
        }
    }
    Ok(())
}

pub fn send(home: &NodeHome, actor: &Actor, a: SendArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let flags = gate_flags(&a.bundle);
    let mut opts = seal_options(a.bundle)?;
    // Fail before sealing if there is nowhere to send to.
    RelayConfig::require(home)?;
    identity::my_card(home)?;
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    // The disclosure policy decides first; what is sealed is what it prepared.
    let mut prepared = gate::prepare(
        home,
        actor,
        AuditAction::Send,
        &mut opts,
        &a.paths,
        &flags,
        dossier_bundle::Timestamp::now(),
    )?;
    let progress = TerminalProgress::new();
    let events = Printer::new(out, false);
    let ctx = SyncContext::new(home, &ring, &progress, &events, actor)?;
    let rt = runtime().map_err(NodeError::io("starting the network runtime"))?;
    let outcome = rt.block_on(sync::send(&ctx, &opts, prepared.inputs()))?;
    let bundle_id = match &outcome {
        SendOutcome::Accepted(rec) => rec.bundle_id.clone(),
        SendOutcome::Queued { record, .. } => record.bundle_id.clone(),
    };
    after_gate(&out, home, &mut prepared, &bundle_id);
    let gate_json = |mut doc: serde_json::Value| {
        doc["redacted"] = opts.redacted.into();
        doc["pseudonym"] = prepared.pseudonym().into();
        doc["overrides"] = opts.overrides.clone().into();
        doc
    };
    match outcome {
        SendOutcome::Accepted(rec) => {
            let at = rec
                .upload
                .accepted_at
                .map(|t| t.to_string())
                .unwrap_or_default();
            out.say(format!(
                "Sent bundle {} ({}, {} part(s), {} bytes) to {}: accepted by the relay at {at}.",
                rec.bundle_id,
                rec.kind.as_str(),
                rec.parts,
                rec.bytes,
                rec.to.join(", ")
            ));
            out.say(format!(
                "Delivery receipts arrive with `dossier sync`; `dossier status {}` shows them.",
                rec.bundle_id
            ));
            out.json(&gate_json(send_json(&rec, "accepted", None)));
        }
        SendOutcome::Queued { record, why } => {
            out.say(format!(
                "Bundle {} is queued in the outbox, NOT yet accepted by the relay: {why}",
                record.bundle_id
            ));
            out.say("It is stored safely and survives a restart; run `dossier sync` to upload it once the relay is reachable.");
            out.json(&gate_json(send_json(&record, "queued", Some(&why))));
        }
    }
    // The sealed copy is in the outbox: the redacted working copies can go.
    drop(prepared);
    Ok(())
}

fn send_json(rec: &OutboxRecord, state: &str, why: Option<&str>) -> serde_json::Value {
    json!({
        "bundle_id": rec.bundle_id,
        "state": state,
        "to": rec.to,
        "kind": rec.kind.as_str(),
        "created_at": rec.created_at.to_string(),
        "queued_at": rec.queued_at.to_string(),
        "accepted_at": rec.upload.accepted_at.map(|t| t.to_string()),
        "length": rec.length,
        "ciphertext_sha256": rec.ciphertext_sha256,
        "not_accepted_because": why,
    })
}

pub fn sync(home: &NodeHome, actor: &Actor, a: SyncArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    RelayConfig::require(home)?;
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    let progress = TerminalProgress::new();
    let events = Printer::new(out, true);
    let mut ctx = SyncContext::new(home, &ring, &progress, &events, actor)?;
    let rt = runtime().map_err(NodeError::io("starting the network runtime"))?;
    if a.watch {
        out.say(format!(
            "Watching {} (new mail is fetched as it arrives; periodic sync every {} s). Ctrl-C to stop.",
            ctx.relay.address, a.interval
        ));
        // The signal is heard on its own task, so that it also stops a download running
        // on a blocking thread (see `StopSignal`).
        let (stopper, stop) = StopSignal::new();
        ctx.stop = stop.clone();
        rt.block_on(async {
            tokio::spawn(async move {
                shutdown_signal().await;
                stopper.stop();
            });
            sync::watch(&ctx, Duration::from_secs(a.interval.max(1)), stop.raised()).await
        })?;
        out.say("Stopped.");
        return Ok(());
    }
    let result = rt.block_on(sync::sync_once(&ctx));
    if let Err(e) = result {
        let pending = outbox::list(home)?
            .iter()
            .filter(|r| r.needs_upload())
            .count();
        if pending > 0 {
            eprintln!(
                "{pending} bundle(s) remain queued in the outbox, NOT accepted by the relay; they are kept and retried by the next `dossier sync`."
            );
        }
        return Err(e);
    }
    summary(home, out, &ctx.relay, &events)?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn summary(
    home: &NodeHome,
    out: Out,
    relay: &RelayConfig,
    events: &Printer,
) -> Result<(), NodeError> {
    let seen = events.take();
    let now = dossier_bundle::Timestamp::now();
    let records = outbox::list(home)?;
    let waiting_upload = records.iter().filter(|r| r.needs_upload()).count();
    let awaiting = records
        .iter()
        .filter(|r| !r.needs_upload() && r.recipients.iter().any(|x| !x.state.is_final()))
        .count();
    let overdue: Vec<&str> = records
        .iter()
        .filter(|r| r.overdue(now, relay.overdue_after_secs))
        .map(|r| r.bundle_id.as_str())
        .collect();
    let count = |f: fn(&SyncEvent) -> bool| seen.iter().filter(|e| f(e)).count();
    out.say(format!(
        "Sync done: {} uploaded, {} received, {} quarantined, {} receipt(s). Outbox: {waiting_upload} waiting for the relay, {awaiting} awaiting receipts, {} overdue.",
        count(|e| matches!(e, SyncEvent::Uploaded { .. })),
        count(|e| matches!(e, SyncEvent::Received { .. })),
        count(|e| matches!(e, SyncEvent::Quarantined { .. })),
        count(|e| matches!(e, SyncEvent::Receipt { .. })),
        overdue.len()
    ));
    let mut doc = json!({
        "uploaded": [], "received": [], "quarantined": [], "duplicates": [],
        "receipts": [], "deferred": [], "warnings": [], "purged": [], "revoked": [],
        "outbox": {"waiting_for_relay": waiting_upload, "awaiting_receipts": awaiting, "overdue": overdue},
    });
    for e in &seen {
        let (key, value) = match e {
            SyncEvent::Uploaded {
                bundle_id,
                accepted_at,
                sent,
            } => (
                "uploaded",
                json!({"bundle_id": bundle_id, "accepted_at": accepted_at.to_string(), "bytes_sent": sent}),
            ),
            SyncEvent::Received {
                bundle_id,
                from,
                kind,
                length,
                resumed_from,
            } => (
                "received",
                json!({"bundle_id": bundle_id, "from": from, "kind": kind, "length": length, "resumed_from": resumed_from}),
            ),
            SyncEvent::Quarantined {
                bundle_id,
                relay_from,
                reason,
            } => (
                "quarantined",
                json!({"bundle_id": bundle_id, "from": relay_from, "reason": reason}),
            ),
            SyncEvent::Duplicate { bundle_id } => ("duplicates", json!(bundle_id)),
            SyncEvent::Receipt {
                bundle_id,
                recipient,
                state,
                at,
            } => (
                "receipts",
                json!({"bundle_id": bundle_id, "recipient": recipient, "state": state.as_str(), "at": at.to_string()}),
            ),
            SyncEvent::UploadDeferred { bundle_id, error }
            | SyncEvent::UploadRefused { bundle_id, error }
            | SyncEvent::DownloadDeferred { bundle_id, error } => {
                ("deferred", json!({"bundle_id": bundle_id, "error": error}))
            }
            SyncEvent::Warning(w) => ("warnings", json!(w)),
            SyncEvent::ContactRevoked { id, reason } => {
                ("revoked", json!({"id": id, "reason": reason}))
            }
            SyncEvent::Purged { what, bundle_id } => {
                ("purged", json!({"what": what, "bundle_id": bundle_id}))
            }
            _ => continue,
        };
        if let Some(list) = doc[key].as_array_mut() {
            list.push(value);
        }
    }
    out.json(&doc);
    Ok(())
}

/// Prints each event as it happens (and keeps them for the summary).
struct Printer {
    out: Out,
    verbose_connect: bool,
    seen: Mutex<Vec<SyncEvent>>,
}

impl Printer {
    fn new(out: Out, verbose_connect: bool) -> Self {
        Self {
            out,
            verbose_connect,
            seen: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<SyncEvent> {
        self.seen
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl SyncEvents for Printer {
    fn event(&self, e: SyncEvent) {
        let line = match &e {
            SyncEvent::Connected { address } if self.verbose_connect => {
                Some(format!("connected to the relay at {address} (pin checked)"))
            }
            SyncEvent::Connected { .. } => None,
            SyncEvent::Uploaded {
                bundle_id,
                accepted_at,
                sent,
            } => Some(format!(
                "uploaded     {bundle_id}  accepted by the relay at {accepted_at} ({sent} bytes sent)"
            )),
            SyncEvent::UploadDeferred { bundle_id, error } => {
                Some(format!("not uploaded {bundle_id}  still queued: {error}"))
            }
            SyncEvent::UploadRefused { bundle_id, error } => Some(format!(
                "REFUSED      {bundle_id}  the relay will not take it: {error}"
            )),
            SyncEvent::Received {
                bundle_id,
                from,
                kind,
                length,
                resumed_from,
            } => Some(format!(
                "received     {bundle_id}  {kind} from {from}, {length} bytes{}: verified, in the inbox",
                if *resumed_from > 0 {
                    format!(" (resumed after {resumed_from})")
                } else {
                    String::new()
                }
            )),
            SyncEvent::Quarantined {
                bundle_id,
                relay_from,
                reason,
            } => Some(format!(
                "QUARANTINED  {bundle_id}  deposited by {relay_from}, not opened: {reason}"
            )),
            SyncEvent::Duplicate { bundle_id } => Some(format!(
                "duplicate    {bundle_id}  already received; acknowledged again, not stored twice"
            )),
            SyncEvent::DownloadDeferred { bundle_id, error } => {
                Some(format!("not fetched  {bundle_id}  {error}"))
            }
            SyncEvent::Receipt {
                bundle_id,
                recipient,
                state,
                at,
            } => Some(format!(
                "receipt      {bundle_id}  {recipient}: {} at {at}",
                state.as_str()
            )),
            SyncEvent::Warning(w) => Some(format!("warning: {w}")),
            SyncEvent::ContactRevoked { id, reason } => Some(format!(
                "REVOKED      {id}  revoked its key (their reason: \"{reason}\"): nothing more is sent to or accepted from that key; pin their new card only after checking its fingerprint by phone"
            )),
            SyncEvent::RevocationPosted { fingerprint } => Some(format!(
                "revocation   the relay stored the revocation of this node's key {fingerprint}"
            )),
            SyncEvent::Purged { what, bundle_id } => Some(format!(
                "retention: deleted the {} of bundle {bundle_id} (its period in policy.toml ran out)",
                match *what {
                    "export" => "plaintext export",
                    "inbox" => "received ciphertext",
                    _ => "sent copy",
                }
            )),
            SyncEvent::Reconnecting { in_secs, error } => Some(format!(
                "relay unavailable ({error}); trying again in {in_secs} s"
            )),
            _ => None,
        };
        if let Some(line) = line {
            self.out.say(line);
        }
        if let Ok(mut v) = self.seen.lock() {
            v.push(e);
        }
    }
}
