//! `purge [--dry-run] [--json]`: retention, by hand.

use dossier_bundle::Timestamp;
use dossier_node::audit::Actor;
use dossier_node::policy::Policy;
use dossier_node::{NodeError, NodeHome, identity, retention};
use serde_json::json;

use crate::cli::PurgeArgs;
use crate::output::Out;

pub fn run(home: &NodeHome, actor: &Actor, a: PurgeArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    identity::my_card(home)?;
    let policy = Policy::load(home)?;
    let done = retention::purge(home, actor, &policy, Timestamp::now(), a.dry_run)?;
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    if done.is_empty() {
        out.say("Nothing is past its retention period.");
    }
    for p in &done {
        out.say(format!(
            "{verb} {:<6} {}  {}  (period started {})",
            p.what,
            p.bundle_id,
            p.path.display(),
            p.since
        ));
    }
    out.json(&json!({ "dry_run": a.dry_run, "purged": done }));
    Ok(())
}
