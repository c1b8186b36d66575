//! One module per command group; each turns parsed arguments into a library call and
//! prints the outcome.

mod bundle;
mod contacts;
mod identity;
mod mailbox;
mod online;
mod progress;

use dossier_node::{NodeError, NodeHome};

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), NodeError> {
    if let Command::Demo(args) = &cli.command {
        return crate::demo::run(args);
    }
    let home = NodeHome::resolve(cli.home.as_deref())?;
    match cli.command {
        Command::Init(a) => identity::init(&home, a),
        Command::Card(a) => identity::card(&home, a),
        Command::Key { command } => identity::key(&home, command),
        Command::Contacts { command } => contacts::run(&home, command),
        Command::Seal(a) => bundle::seal(&home, a),
        Command::Open(a) => bundle::open(&home, a),
        Command::Relay { command } => online::relay(&home, command),
        Command::Send(a) => online::send(&home, a),
        Command::Sync(a) => online::sync(&home, a),
        Command::Inbox(a) => mailbox::inbox(&home, a),
        Command::Outbox(a) => mailbox::outbox(&home, a),
        Command::Status(a) => mailbox::status(&home, a),
        Command::Demo(_) => unreachable!("handled above"),
    }
}
