//! `seal` and `open`.

use std::path::{Path, PathBuf};

use dossier_bundle::{BundleId, BundleKind, FacilityId, Manifest, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent, AuditOutcome};
use dossier_node::disclosures::{self, Channel, DisclosureRecord};
use dossier_node::gate::{self, GateFlags, Prepared};
use dossier_node::opening::{OpenReport, open_file};
use dossier_node::sealing::{SealOptions, seal_to_file};
use dossier_node::{ContactBook, NodeError, NodeHome, identity, inbox, outbox, retention};
use serde_json::json;

use crate::cli::{BundleArgs, KindArg, OpenArgs, RedactArg, SealArgs};
use crate::output::Out;
use crate::passphrase;

pub fn seal(home: &NodeHome, actor: &Actor, a: SealArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let flags = gate_flags(&a.bundle);
    let mut opts = seal_options(a.bundle)?;
    let me = identity::my_card(home)?;
    if a.output.exists() {
        return Err(NodeError::OutputExists(a.output));
    }
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    // The disclosure policy decides first; what is sealed is what it prepared.
    let mut prepared = gate::prepare(
        home,
        actor,
        AuditAction::Seal,
        &mut opts,
        &a.paths,
        &flags,
        Timestamp::now(),
    )?;
    let m = seal_to_file(
        home,
        &ring,
        &opts,
        prepared.inputs(),
        &a.output,
        Timestamp::now(),
    )?;
    // The file is a disclosure once it exists: account for it and audit it, or remove it.
    if let Err(e) = account_for_seal(home, actor, &opts, &m) {
        let _ = std::fs::remove_file(&a.output);
        return Err(e);
    }
    after_gate(&out, home, &mut prepared, m.bundle_id.as_str());
    let pseudonym = prepared.pseudonym().map(str::to_owned);
    drop(prepared);
    let total: u64 = m.parts.iter().map(|p| p.length).sum();
    out.say(format!(
        "Sealed bundle {} ({}, {} part(s), {} bytes) from {} to {} into {}",
        m.bundle_id,
        m.kind.as_str(),
        m.parts.len(),
        total,
        me.id(),
        recipients(&m),
        a.output.display()
    ));
    out.json(&json!({
        "bundle_id": m.bundle_id.as_str(),
        "kind": m.kind.as_str(),
        "from": m.sender.id.as_str(),
        "to": m.recipients.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "parts": m.parts.len(),
        "bytes": total,
        "created_at": m.created_at.to_string(),
        "output": a.output,
        "redacted": opts.redacted,
        "pseudonym": pseudonym,
        "overrides": opts.overrides,
    }));
    Ok(())
}

fn account_for_seal(
    home: &NodeHome,
    actor: &Actor,
    opts: &SealOptions,
    m: &Manifest,
) -> Result<(), NodeError> {
    let book = ContactBook::load(home)?;
    let mut rec = DisclosureRecord::new(
        m,
        Channel::File,
        actor.operator().as_str(),
        &book,
        Timestamp::now(),
    );
    rec.redacted = opts.redacted;
    rec.overrides = opts.overrides.clone();
    disclosures::record(home, &rec)?;
    let mut event = AuditEvent::new(AuditAction::Seal).bundle(&m.bundle_id);
    for r in m.recipients.iter().filter(|r| r.id != m.sender.id) {
        event = event.counterpart(&r.id, book.get(&r.id).map(|c| c.card.country()));
    }
    actor
        .record(event)
        .inspect_err(|_| disclosures::forget(home, m.bundle_id.as_str()))?;
    Ok(())
}

/// What the disclosure gate is asked for on the command line (`--redact`, `--allow-minor
/// --reason`; clap makes each of the last two require the other).
pub fn gate_flags(b: &BundleArgs) -> GateFlags {
    GateFlags {
        redact_identifiers: b.redact == Some(RedactArg::Identifiers),
        allow_minor_reason: if b.allow_minor {
            b.reason.clone()
        } else {
            None
        },
    }
}

/// After sealing: names the bundle in the re-link table and tells the operator what the
/// gate did. A table that cannot be updated keeps its pseudonym as the key, so this warns
/// rather than fails (the bundle is already accounted for).
pub fn after_gate(out: &Out, home: &NodeHome, prepared: &mut Prepared, bundle_id: &str) {
    if let Err(e) = prepared.bind_bundle(home, bundle_id) {
        eprintln!(
            "warning: the re-link table could not be updated with bundle {bundle_id} ({e}); \
             it is kept under its pseudonym"
        );
    }
    for note in prepared.notes() {
        out.say(note);
    }
}

/// The seal options `seal` and `send` both take.
pub fn seal_options(b: BundleArgs) -> Result<SealOptions, NodeError> {
    Ok(SealOptions {
        to: b
            .to
            .iter()
            .map(|s| FacilityId::parse(s))
            .collect::<Result<_, _>>()?,
        kind: bundle_kind(b.kind),
        subject: b.subject,
        thread: b.thread,
        patient: b.patient,
        redacted: false,
        overrides: Vec::new(),
    })
}

pub fn bundle_kind(k: KindArg) -> BundleKind {
    match k {
        KindArg::Record => BundleKind::Record,
        KindArg::Careplan => BundleKind::Careplan,
        KindArg::Message => BundleKind::Message,
    }
}

/// `open` takes a file path, or the id of a bundle this node received (or sent).
fn resolve_bundle(home: &NodeHome, arg: &Path) -> Result<PathBuf, NodeError> {
    if arg.exists() {
        return Ok(arg.to_path_buf());
    }
    let text = arg.to_string_lossy();
    let Ok(id) = BundleId::parse(&text) else {
        return Err(NodeError::Input {
            arg: arg.to_path_buf(),
            problem: "does not exist (give a bundle file, or the 32-hex-digit id of a bundle in `dossier inbox`)".into(),
        });
    };
    let id = id.as_str();
    match inbox::known(home, id)? {
        Some(inbox::Known::Inbox(_)) => return Ok(inbox::bundle_path(home, id)),
        Some(inbox::Known::Quarantine(q)) => {
            return Err(NodeError::Quarantined {
                bundle_id: id.to_owned(),
                reason: q.reason,
            });
        }
        None => {}
    }
    if outbox::load(home, id)?.is_some() {
        return Ok(outbox::bundle_path(home, id));
    }
    Err(NodeError::UnknownBundle(id.to_owned()))
}

pub fn open(home: &NodeHome, actor: &Actor, a: OpenArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let file = resolve_bundle(home, &a.file)?;
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    let r = match open_file(home, &ring, &file, &a.output) {
        Ok(r) => r,
        Err(e) => {
            // A refused bundle is an access attempt worth recording (no content: a class).
            let class = match e.exit_class() {
                dossier_node::ExitClass::Verification => "verification failed",
                dossier_node::ExitClass::PinMismatch => "sender key differs from the pin",
                dossier_node::ExitClass::UnknownSender => "sender not a pinned contact",
                _ => "failed",
            };
            actor.record(
                AuditEvent::new(AuditAction::Open)
                    .outcome(AuditOutcome::Failed)
                    .detail(class),
            )?;
            return Err(e);
        }
    };
    let opened = AuditEvent::new(AuditAction::Open)
        .bundle(&r.manifest.bundle_id)
        .counterpart(r.sender.id(), Some(r.sender.country()))
        .detail("parts written to a directory");
    if let Err(e) = actor.record(opened) {
        // Plaintext that the trail cannot account for does not stay.
        let _ = std::fs::remove_dir_all(&r.out_dir);
        return Err(e);
    }
    // Retention: the export is deleted when its period runs out; an inbox bundle's period
    // starts at its first opening, and its sender gets a signed `opened` receipt.
    let now = Timestamp::now();
    let id = r.manifest.bundle_id.as_str();
    retention::note_export(home, actor, id, &r.out_dir, now)?;
    if file == inbox::bundle_path(home, id) {
        if let Some(rec) = inbox::load_inbox(home, id)? {
            let me = identity::my_card(home)?;
            let receipt = retention::opened_receipt(home, &ring, me.id(), &rec, now)?;
            retention::note_opened(home, actor, id, &receipt, now)?;
        }
    }
    let m = &r.manifest;
    out.say(format!(
        "Opened bundle {} ({})",
        m.bundle_id,
        m.kind.as_str()
    ));
    out.say(format!(
        "  from    {} ({}, {}) — fingerprint {} {}",
        r.sender.id(),
        r.sender.name(),
        r.sender.country(),
        r.sender.fingerprint(),
        if r.sender_verified {
            "(verified)"
        } else {
            "(NOT verified: compare it with the sender by phone)"
        }
    ));
    out.say(format!("  to      {}", recipients(m)));
    out.say(format!("  sealed  {}", m.created_at));
    if let Some(s) = &m.subject {
        out.say(format!("  subject {s}"));
    }
    if let Some(p) = &m.patient {
        out.say(format!("  patient {p}"));
    }
    out.say(format!(
        "  {} part(s), all signatures and hashes check, now in {}:",
        m.parts.len(),
        r.out_dir.display()
    ));
    for p in &m.parts {
        out.say(format!(
            "    {}  {}  {} bytes",
            p.path, p.media_type, p.length
        ));
    }
    out.json(&open_json(&r));
    Ok(())
}

fn recipients(m: &Manifest) -> String {
    m.recipients
        .iter()
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn open_json(r: &OpenReport) -> serde_json::Value {
    let m = &r.manifest;
    json!({
        "bundle_id": m.bundle_id.as_str(),
        "kind": m.kind.as_str(),
        "from": m.sender.id.as_str(),
        "from_fingerprint": r.sender.fingerprint().as_str(),
        "from_verified": r.sender_verified,
        "to": m.recipients.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        "subject": m.subject,
        "thread": m.thread,
        "patient": m.patient,
        "created_at": m.created_at.to_string(),
        "output": r.out_dir,
        "parts": m.parts.iter().map(|p| json!({
            "path": p.path.as_str(),
            "media_type": p.media_type,
            "length": p.length,
            "sha256": p.sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        })).collect::<Vec<_>>(),
    })
}
