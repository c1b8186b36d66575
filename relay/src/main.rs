//! `dossier-relay`: the operator's command line over the `dossier_relay` library.
//!
//! Thin by design: argument parsing, output formatting (human text, or one JSON document on
//! stdout with `--json` and the human text on stderr), logging to stderr, exit codes
//! (0 success, 1 error, 2 usage). Everything else is the library's.

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dossier_relay::{PreviousEnrollment, RelayConfig, RelayError, StartOptions};

/// dossier's store-and-forward relay: holds ciphertext and receipts, never plaintext.
#[derive(Parser)]
#[command(name = "dossier-relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a relay: data directory, TLS key and certificate, configuration, store.
    /// Prints the relay's pin, which every node operator needs.
    Init {
        /// Data directory (created 0700; must not hold a relay already).
        #[arg(long, env = "DOSSIER_RELAY_DATA")]
        data: PathBuf,
        /// UDP address to listen on, e.g. 0.0.0.0:4433 (port 0: a free port at each start).
        #[arg(long)]
        listen: SocketAddr,
        /// Print {"pin", "listen"} as JSON on stdout (human text goes to stderr).
        #[arg(long)]
        json: bool,
        /// Largest bundle accepted, in bytes (default 8 GiB).
        #[arg(long)]
        max_bundle_bytes: Option<u64>,
        /// Bytes one facility may have held at the relay at once (default 32 GiB).
        #[arg(long)]
        quota_bytes: Option<u64>,
        /// Days undelivered bundles are kept (default 14; fractions allowed).
        #[arg(long)]
        retention_days: Option<f64>,
        /// Days receipts are kept (default 365).
        #[arg(long)]
        receipt_retention_days: Option<f64>,
        /// Most simultaneous node connections (default 128).
        #[arg(long)]
        max_connections: Option<u32>,
        /// Seconds between retention passes (default 60).
        #[arg(long)]
        expiry_check_secs: Option<u64>,
    },
    /// Admit a facility or patient, by its card file (`dossier card -o FILE`). The relay
    /// must be stopped.
    Enroll {
        /// Data directory.
        #[arg(long, env = "DOSSIER_RELAY_DATA")]
        data: PathBuf,
        /// The facility's card file.
        card: PathBuf,
    },
    /// Revoke a facility's enrollment. The relay must be stopped.
    Revoke {
        /// Data directory.
        #[arg(long, env = "DOSSIER_RELAY_DATA")]
        data: PathBuf,
        /// The facility id.
        id: String,
    },
    /// Run the relay until SIGTERM or SIGINT. Prints `listening ADDR` once bound.
    Serve {
        /// Data directory.
        #[arg(long, env = "DOSSIER_RELAY_DATA")]
        data: PathBuf,
        /// Listen here instead of the address in relay.json.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "dossier-relay: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), RelayError> {
    match command {
        Command::Init {
            data,
            listen,
            json,
            max_bundle_bytes,
            quota_bytes,
            retention_days,
            receipt_retention_days,
            max_connections,
            expiry_check_secs,
        } => {
            let mut config = RelayConfig::new(listen);
            let l = &mut config.limits;
            l.max_bundle_bytes = max_bundle_bytes.unwrap_or(l.max_bundle_bytes);
            l.quota_bytes_per_facility = quota_bytes.unwrap_or(l.quota_bytes_per_facility);
            l.retention_days = retention_days.unwrap_or(l.retention_days);
            l.receipt_retention_days = receipt_retention_days.unwrap_or(l.receipt_retention_days);
            l.max_connections = max_connections.unwrap_or(l.max_connections);
            config.expiry_check_secs = expiry_check_secs.unwrap_or(config.expiry_check_secs);
            let report = dossier_relay::init_with_config(&data, &config)?;
            let human = format!(
                "relay initialised in {}\n  listen {}\n  pin    {}\nGive the pin to every node \
                 operator over a trusted channel: dossier relay set ADDR --pin {}\nEnroll \
                 facilities with `dossier-relay enroll --data {} CARD`, then run `dossier-relay \
                 serve --data {}`.",
                report.data_dir.display(),
                report.listen,
                report.pin,
                report.pin,
                data.display(),
                data.display()
            );
            if json {
                let doc =
                    serde_json::json!({ "pin": report.pin, "listen": report.listen.to_string() });
                say_err(&human);
                say(&doc.to_string()).map_err(stdout_error)
            } else {
                say(&human).map_err(stdout_error)
            }
        }
        Command::Enroll { data, card } => {
            let bytes = read_card(&card)?;
            let report = dossier_relay::enroll(&data, &bytes)?;
            let what = match report.previous {
                PreviousEnrollment::None => "enrolled",
                PreviousEnrollment::Replaced => "re-enrolled (card replaced)",
                PreviousEnrollment::Reinstated => "re-enrolled (revocation lifted)",
            };
            say(&format!(
                "{what} {}\n  fingerprint {}\nCompare the fingerprint with the facility before it \
                 relies on this relay.",
                report.facility, report.fingerprint
            ))
            .map_err(stdout_error)
        }
        Command::Revoke { data, id } => {
            let report = dossier_relay::revoke(&data, &id)?;
            let line = if report.already_revoked {
                format!("{} was already revoked", report.facility)
            } else {
                format!(
                    "revoked {}: the relay refuses it from its next start",
                    report.facility
                )
            };
            say(&line).map_err(stdout_error)
        }
        Command::Serve { data, listen } => serve(&data, listen),
    }
}

fn serve(data: &Path, listen: Option<SocketAddr>) -> Result<(), RelayError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RelayError::Task(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let mut options = StartOptions::default();
        if let Some(addr) = listen {
            options = options.listen(addr);
        }
        let relay = dossier_relay::start_with(data, options).await?;
        say(&format!("listening {}", relay.addr())).map_err(stdout_error)?;
        dossier_relay::signal::terminated().await;
        tracing::info!("stop requested");
        relay.shutdown().await
    })
}

/// Reads a card file, refusing anything far larger than a card before reading it.
fn read_card(path: &Path) -> Result<Vec<u8>, RelayError> {
    const MAX_READ: u64 = 64 * 1024;
    let len = std::fs::metadata(path)
        .map_err(|e| io_error("reading the card file", path, e))?
        .len();
    if len > MAX_READ {
        return Err(RelayError::Card(dossier_bundle::CardError::TooLarge));
    }
    std::fs::read(path).map_err(|e| io_error("reading the card file", path, e))
}

fn io_error(context: &'static str, path: &Path, source: io::Error) -> RelayError {
    RelayError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

fn stdout_error(source: io::Error) -> RelayError {
    io_error("writing to", Path::new("standard output"), source)
}

/// One line (or block) on stdout, flushed.
fn say(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// One line (or block) on stderr.
fn say_err(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

/// Logs to stderr at the level in `DOSSIER_RELAY_LOG` (error, warn, info, debug, trace;
/// default info). Logs carry ids, sizes, counts and addresses, never record content.
fn init_logging() {
    let level = std::env::var("DOSSIER_RELAY_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false)
        .init();
}
