//! `audit [--json]`, `audit verify`, `audit head`: showing the trail to an auditor.

use dossier_node::audit::{AuditEntry, AuditLog, VerifyReport};
use dossier_node::{NodeError, NodeHome};
use serde_json::json;

use crate::cli::{AuditArgs, AuditCommand};
use crate::output::Out;

pub fn run(home: &NodeHome, a: AuditArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let log = AuditLog::open(home);
    match a.command {
        None => list(&log, out),
        Some(AuditCommand::Verify) => verify(home, &log, out),
        Some(AuditCommand::Head) => {
            let head = log.head()?;
            let (seq, hash) = head
                .as_ref()
                .map(|h| (h.seq, h.hash.clone()))
                .unwrap_or((0, dossier_node::audit::GENESIS_HASH.to_owned()));
            out.say(format!("seq  {seq}\nhash {hash}"));
            out.say("Keep this pair off the node; a later `dossier audit --json` must still hold this seq with this hash.");
            out.json(&json!({ "seq": seq, "hash": hash }));
            Ok(())
        }
    }
}

fn list(log: &AuditLog, out: Out) -> Result<(), NodeError> {
    let entries = log.entries()?;
    if entries.is_empty() {
        out.say("The audit trail is empty.");
    }
    for e in &entries {
        out.say(line(e));
    }
    out.json(&serde_json::to_value(&entries).unwrap_or_default());
    Ok(())
}

fn line(e: &AuditEntry) -> String {
    let who: Vec<String> = e
        .counterparts
        .iter()
        .map(|c| match &c.country {
            Some(cc) => format!("{} ({cc})", c.id),
            None => c.id.to_string(),
        })
        .collect();
    format!(
        "{:>5}  {}  {:<16} {:<16} {:<8} {}{}{}",
        e.seq,
        e.time,
        e.operator,
        e.action.as_str(),
        e.outcome.as_str(),
        e.bundle_id
            .as_ref()
            .map(|b| format!("{b} "))
            .unwrap_or_default(),
        who.join(", "),
        e.detail
            .as_ref()
            .map(|d| format!("  [{d}]"))
            .unwrap_or_default(),
    )
}

fn verify(home: &NodeHome, log: &AuditLog, out: Out) -> Result<(), NodeError> {
    match log.verify()? {
        VerifyReport::Intact(t) => {
            out.say(format!(
                "The audit trail is intact: {} entries, chained and anchored. Head: seq {} hash {}",
                t.entries, t.last.seq, t.last.hash
            ));
            if t.anchor_behind {
                out.say("(The anchor is one entry behind: a command stopped between its two writes; the next entry moves it. Nothing is missing.)");
            }
            out.json(&json!({
                "intact": true,
                "entries": t.entries,
                "head": { "seq": t.last.seq, "hash": t.last.hash },
                "anchor_behind": t.anchor_behind,
            }));
            Ok(())
        }
        VerifyReport::Broken(b) => {
            out.json(&json!({
                "intact": false,
                "first_bad_seq": b.seq,
                "line": b.line,
                "problem": b.to_string(),
            }));
            Err(NodeError::AuditTampered {
                dir: home.audit_dir(),
                found: b.to_string(),
            })
        }
    }
}
