//! `dossier-netem`: a UDP proxy that delays, reorders, drops and cuts traffic, for testing
//! dossier over bad networks where the kernel has no `tc netem` (see
//! `dossier_tests::netem` for what it does, and docs/operations.md, "Testing over bad
//! networks").
//!
//! ```sh
//! dossier-netem --upstream 10.0.0.1:4433 --listen 127.0.0.1:0 --delay-ms 150 \
//!     --reorder-percent 1 --reorder-extra-ms 5 [--drop-percent P] [--seed S]
//! ```
//!
//! Prints `listening ADDR`, then reads `cut MS` / `heal` / `stats` lines from stdin and
//! exits at the end of stdin. Exit codes: 0 stdin ended, 1 could not bind, 2 usage.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use dossier_tests::netem::{Netem, NetemConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match NetemConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dossier-netem: {e}");
            return ExitCode::from(2);
        }
    };
    let listen = config.listen;
    let netem = match Netem::bind(config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("dossier-netem: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout();
    let addr = netem.local_addr().map_or(listen, |a| a);
    if writeln!(stdout.lock(), "listening {addr}")
        .and_then(|()| stdout.lock().flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    let commands = std::io::stdin().lock().lines().map_while(Result::ok);
    match netem.run(commands, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dossier-netem: {e}");
            ExitCode::from(1)
        }
    }
}
