//! `dossier`: the command-line node.
//!
//! A thin layer over `dossier-node` and `dossier-bundle`: it parses arguments, asks for the
//! passphrase, calls the library and prints the outcome (human text, or one JSON document on
//! stdout with `--json`). Exit codes are documented in docs/protocol.md §12 and README.

#![forbid(unsafe_code)]
// The CLI is the one place that prints to stdout on purpose.
#![allow(clippy::print_stdout)]

mod cli;
mod commands;
mod demo;
mod output;
mod passphrase;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.json_requested();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::report_error(&e, json);
            ExitCode::from(e.exit_class() as u8)
        }
    }
}
