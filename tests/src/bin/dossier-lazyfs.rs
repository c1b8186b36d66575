//! `dossier-lazyfs`: a FUSE file system that drops everything not fsynced when told to —
//! a simulated power loss for the relay's data directory (see `dossier_tests::lazyfs` for
//! the model, and docs/operations.md, "Power-loss testing").
//!
//! ```sh
//! dossier-lazyfs --backing DIR --mount MOUNTPOINT --control SOCKET [--max-mib N]
//! ```
//!
//! Prints `mounted MOUNTPOINT` once the mount serves. `power-loss` on the control socket
//! (or SIGUSR1) cuts the power; SIGTERM unmounts and writes the tree back to DIR.
//! Exit codes: 0 clean unmount, 1 error, 2 usage.

// A command-line tool reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use dossier_tests::lazyfs::{Options, serve};

const USAGE: &str =
    "usage: dossier-lazyfs --backing DIR --mount MOUNTPOINT --control SOCKET [--max-mib N]";

fn main() -> ExitCode {
    let opts = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("dossier-lazyfs: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("dossier-lazyfs: {msg}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let (mut backing, mut mountpoint, mut control) = (None, None, None);
    let mut max_mib: u64 = 1024;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backing" => backing = Some(PathBuf::from(value()?)),
            "--mount" => mountpoint = Some(PathBuf::from(value()?)),
            "--control" => control = Some(PathBuf::from(value()?)),
            "--max-mib" => {
                let v = value()?;
                max_mib = v
                    .parse()
                    .map_err(|_| format!("--max-mib takes a number, not {v:?}"))?;
            }
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Options {
        backing: backing.ok_or("--backing DIR is required")?,
        mountpoint: mountpoint.ok_or("--mount MOUNTPOINT is required")?,
        control: control.ok_or("--control SOCKET is required")?,
        max_bytes: max_mib << 20,
    })
}
