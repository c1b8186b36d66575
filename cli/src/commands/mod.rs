//! One module per command group; each turns parsed arguments into a library call and
//! prints the outcome.

mod audit;
mod bundle;
mod consent;
mod contacts;
mod disclosures;
mod identity;
mod mailbox;
mod online;
mod policy;
mod progress;
mod purge;

use dossier_node::audit::{Actor, Operator};
use dossier_node::{NodeError, NodeHome};

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), NodeError> {
    if let Command::Demo(args) = &cli.command {
        return crate::demo::run(args);
    }
    let home = NodeHome::resolve(cli.home.as_deref())?;
    // Every command runs as a named operator; what it does is audited as theirs.
    let actor = Actor::new(&home, Operator::resolve(cli.operator.as_deref())?);
    match cli.command {
        Command::Init(a) => identity::init(&home, &actor, a),
        Command::Card(a) => identity::card(&home, a),
        Command::Key { command } => identity::key(&home, &actor, command),
        Command::Contacts { command } => contacts::run(&home, &actor, command),
        Command::Seal(a) => bundle::seal(&home, &actor, a),
        Command::Open(a) => bundle::open(&home, &actor, a),
        Command::Relay { command } => online::relay(&home, &actor, command),
        Command::Send(a) => online::send(&home, &actor, a),
        Command::Sync(a) => online::sync(&home, &actor, a),
        Command::Audit(a) => audit::run(&home, a),
        Command::Disclosures(a) => disclosures::run(&home, &actor, a),
        Command::Policy { command } => policy::run(&home, command),
        Command::Consent { command } => consent::run(&home, &actor, command),
        Command::Purge(a) => purge::run(&home, &actor, a),
        Command::Inbox(a) => mailbox::inbox(&home, a),
        Command::Outbox(a) => mailbox::outbox(&home, a),
        Command::Status(a) => mailbox::status(&home, a),
        Command::Demo(_) => unreachable!("handled above"),
    }
}
