//! `policy show`: the disclosure policy this node enforces, and where each value comes from.

use dossier_node::policy::EffectivePolicy;
use dossier_node::{NodeError, NodeHome};

use crate::cli::PolicyCommand;
use crate::output::Out;

pub fn run(home: &NodeHome, cmd: PolicyCommand) -> Result<(), NodeError> {
    match cmd {
        PolicyCommand::Show { json } => show(home, json),
    }
}

fn show(home: &NodeHome, json: bool) -> Result<(), NodeError> {
    let out = Out::new(json);
    let e = EffectivePolicy::load(home)?;
    if e.file_exists {
        out.say(format!("Disclosure policy from {}", e.path.display()));
    } else {
        out.say(format!(
            "No {}: the built-in safe defaults below apply (a new `dossier init` writes \
             that file with every setting explained in comments)",
            e.path.display()
        ));
    }
    let width = e.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in &e.settings {
        out.say(format!(
            "  {:<width$}  {:<12} ({})  {}",
            s.key,
            s.value.to_string(),
            s.source.as_str(),
            s.meaning
        ));
    }
    out.say("Edit the file to change a setting; the comments in it explain each one.");
    out.json(&e.to_json());
    Ok(())
}
