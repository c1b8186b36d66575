//! Crash loop over the real binaries: `dossier-relay` and `dossier` nodes SIGKILLed at
//! random moments while bundles move, with the delivery guarantees checked after every
//! cycle (see `dossier_tests::crashloop` and docs/operations.md, "Crash-loop testing").
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/dossier-crashloop --cycles 1000 [--seed S] [--senders K] \
//!     [--bundles-per-sender B] [--large-every M] [--kill relay|node|both] [--keep]
//! target/release/dossier-crashloop --cycles 300 --power-loss     # root, /dev/fuse
//! ```
//!
//! `--power-loss` puts the relay's data directory on `dossier-lazyfs` (beside this binary)
//! and cuts the power after every relay kill: everything the relay did not fsync is gone
//! when it restarts (docs/operations.md, "Power-loss testing").
//!
//! Exit codes: 0 every cycle passed, 1 a guarantee was broken (the lab directory is kept
//! and its path printed), 2 usage.

// A test driver reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::process::{Command, ExitCode};

use dossier_tests::crashloop::{self, Config, KillTarget};
use dossier_tests::{DOSSIER_BIN_ENV, DOSSIER_RELAY_BIN_ENV};

const USAGE: &str = "usage: dossier-crashloop --cycles N [--seed S] [--senders K] \
[--bundles-per-sender B] [--large-every M] [--large-bytes BYTES] [--max-delay-ms MS] \
[--kill relay|node|both] [--stall-limit-ms MS] [--power-loss] [--keep]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Use the binaries beside this one (skipping the helpers' stale-source check, which is
    // meant for debug test runs). Environment changes need a fresh process: re-run self.
    if std::env::var_os(DOSSIER_BIN_ENV).is_none() {
        let me = std::env::current_exe().expect("own path");
        let dir = me.parent().expect("own directory").to_path_buf();
        let status = Command::new(&me)
            .args(&args)
            .env(DOSSIER_BIN_ENV, dir.join("dossier"))
            .env(DOSSIER_RELAY_BIN_ENV, dir.join("dossier-relay"))
            .status()
            .expect("re-running self");
        return ExitCode::from(status.code().map_or(1, |c| c as u8));
    }
    let cfg = match parse(&args) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("dossier-crashloop: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut report = |line: &str| println!("{line}");
    match crashloop::run(&cfg, &mut report) {
        Ok(summary) => {
            println!("PASS: every guarantee held.\n{summary}");
            ExitCode::SUCCESS
        }
        Err(violation) => {
            println!("{violation}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        seed: default_seed(),
        cycles: 0,
        ..Config::default()
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag} takes a number, not {v:?}"))
        }
        match flag.as_str() {
            "--cycles" => cfg.cycles = num(flag, value()?)?,
            "--seed" => cfg.seed = num(flag, value()?)?,
            "--senders" => cfg.senders = num(flag, value()?)?,
            "--bundles-per-sender" => cfg.bundles_per_sender = num(flag, value()?)?,
            "--large-every" => cfg.large_every = num(flag, value()?)?,
            "--large-bytes" => cfg.large_bytes = num(flag, value()?)?,
            "--max-delay-ms" => cfg.max_kill_delay_ms = num(flag, value()?)?,
            "--kill" => {
                let v = value()?;
                cfg.kill = KillTarget::parse(&v)
                    .ok_or_else(|| format!("--kill takes relay, node or both, not {v:?}"))?;
            }
            "--stall-limit-ms" => {
                cfg.stall_limit = Some(std::time::Duration::from_millis(num(flag, value()?)?));
            }
            "--keep" => cfg.keep_lab = true,
            "--power-loss" => cfg.power_loss = Some(dossier_tests::lazyfs::lazyfs_bin()),
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if cfg.cycles == 0 {
        return Err("--cycles N is required (N > 0)".into());
    }
    if cfg.senders == 0 || cfg.bundles_per_sender == 0 {
        return Err("--senders and --bundles-per-sender must be at least 1".into());
    }
    if let Some(bin) = &cfg.power_loss {
        if cfg.kill == KillTarget::Node {
            return Err(
                "--power-loss cuts the power when the relay is killed: use --kill relay or both"
                    .into(),
            );
        }
        if let Some(why) = dossier_tests::lazyfs::unavailable(bin) {
            return Err(format!("cannot simulate power loss here: {why}"));
        }
    }
    Ok(cfg)
}

/// A different seed per run unless one is given; the run prints it so it can be repeated.
fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
}
