//! Command-line definitions (names fixed by DESIGN.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// End-to-end encrypted exchange of medical records across borders.
///
/// Exit codes: 0 success, 1 error, 2 usage, 3 verification failed (tampered, bad signature,
/// not for this node), 4 pinned key mismatch or a key its owner revoked, 5 sender not a
/// pinned contact, 6 refused by
/// the disclosure policy (HOME/policy.toml; `dossier policy show`), nothing sent.
#[derive(Debug, Parser)]
#[command(name = "dossier", version, about, long_about = None)]
pub struct Cli {
    /// Node home directory (default: $DOSSIER_HOME, else the platform data directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Who is running this command, recorded in the audit trail (default:
    /// $DOSSIER_OPERATOR, else the OS user).
    #[arg(long, global = true, value_name = "NAME")]
    pub operator: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command asked for JSON output (errors then also go out as JSON on stderr).
    pub fn json_requested(&self) -> bool {
        match &self.command {
            Command::Init(a) => a.json,
            Command::Card(a) => a.json,
            Command::Contacts {
                command: ContactsCommand::List { json },
            } => *json,
            Command::Seal(a) => a.json,
            Command::Open(a) => a.json,
            Command::Relay {
                command: RelayCommand::Show { json },
            } => *json,
            Command::Send(a) => a.json,
            Command::Sync(a) => a.json,
            Command::Inbox(a) | Command::Outbox(a) => a.json,
            Command::Status(a) => a.json,
            Command::Audit(a) => a.json,
            Command::Disclosures(a) => a.json,
            Command::Policy {
                command: PolicyCommand::Show { json },
            } => *json,
            Command::Consent { command } => command.json(),
            Command::Purge(a) => a.json,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create this node's identity (a facility, or a patient with --patient).
    Init(InitArgs),
    /// Print or save this node's public, self-signed card.
    Card(CardArgs),
    /// Manage pinned contacts.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Rotate or export keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Seal files into an offline bundle file for pinned contacts.
    Seal(SealArgs),
    /// Verify a bundle (a file, or an inbox bundle id) and unpack its parts into a directory.
    Open(OpenArgs),
    /// Choose the relay and pin its key.
    Relay {
        #[command(subcommand)]
        command: RelayCommand,
    },
    /// Seal files for pinned contacts, queue them in the outbox and upload to the relay.
    Send(SendArgs),
    /// Upload the outbox, receive and verify new bundles, collect delivery receipts.
    Sync(SyncArgs),
    /// List received bundles (verified, and quarantined ones).
    Inbox(ListArgs),
    /// List sent bundles with their delivery state per recipient.
    Outbox(ListArgs),
    /// Show one bundle's delivery timeline and receipts.
    Status(StatusArgs),
    /// Run a complete exchange between three parties in a temporary directory.
    Demo(DemoArgs),
    /// List this node's tamper-evident audit trail, verify it, or print its head.
    Audit(AuditArgs),
    /// Account for disclosures: what left this node about a patient, or to a facility.
    Disclosures(DisclosuresArgs),
    /// Show the disclosure policy in effect (HOME/policy.toml, else the safe defaults).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Record, withdraw or list patients' consents to their records going to a country.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Delete copies whose retention period (policy.toml) ran out; `sync` does it too.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Only list what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Print what was deleted as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DisclosuresArgs {
    /// Every bundle about this patient reference that left this node.
    #[arg(
        long,
        value_name = "REF",
        required_unless_present = "to",
        conflicts_with = "to"
    )]
    pub patient: Option<String>,
    /// Every bundle sent to this facility, grouped by patient (e.g. after its key leaked).
    #[arg(long, value_name = "FACILITY")]
    pub to: Option<String>,
    /// Only bundles sealed on or after DATE (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Also deliver the accounting to the patient's own node (its contact id) as a bundle.
    #[arg(long, value_name = "ID", requires = "patient")]
    pub send_to_patient: Option<String>,
    /// Print the accounting as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print each setting with its value and where it comes from.
    Show {
        /// Print a JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Record that the patient agrees to their records going to COUNTRY.
    Grant {
        /// The patient reference, as given to `--patient` when sealing.
        #[arg(long, value_name = "REF")]
        patient: String,
        /// ISO 3166-1 alpha-2 country code, e.g. TH.
        #[arg(long, value_name = "CC")]
        country: String,
        /// Last day the consent covers (YYYY-MM-DD, UTC, inclusive); none for no end date.
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Print the grant as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw the patient's current consent for COUNTRY (the grant is kept, marked
    /// revoked).
    Revoke {
        /// The patient reference.
        #[arg(long, value_name = "REF")]
        patient: String,
        /// ISO 3166-1 alpha-2 country code.
        #[arg(long, value_name = "CC")]
        country: String,
        /// Print the revoked grant as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List grants, including ended ones (all patients unless --patient).
    List {
        /// Only this patient's grants.
        #[arg(long, value_name = "REF")]
        patient: Option<String>,
        /// Only grants for this country.
        #[arg(long, value_name = "CC")]
        country: Option<String>,
        /// Print a JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl ConsentCommand {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match self {
            ConsentCommand::Grant { json, .. }
            | ConsentCommand::Revoke { json, .. }
            | ConsentCommand::List { json, .. } => *json,
        }
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Print the entries (or the verification result) as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain and its anchor; exit 3 naming the first bad entry.
    Verify,
    /// Print the current head (seq and hash) for an auditor's records.
    Head,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Unique id, e.g. us-mercy-intl (a-z, 0-9, '-', '.').
    #[arg(long)]
    pub id: String,
    /// Display name, e.g. "Mercy Hospital International Office".
    #[arg(long)]
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, e.g. US, TH, IN.
    #[arg(long)]
    pub country: String,
    /// This node is a patient's own device rather than a facility.
    #[arg(long)]
    pub patient: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CardArgs {
    /// Write the card to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print a JSON summary (id, name, country, fingerprint) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Pin a contact's card (unverified unless --verified matches its fingerprint).
    Add {
        /// The card file.
        card: PathBuf,
        /// The fingerprint you confirmed with the contact out of band.
        #[arg(long, value_name = "FINGERPRINT")]
        verified: Option<String>,
    },
    /// List pinned contacts.
    List {
        /// Print a JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Mark a contact verified after comparing fingerprints out of band.
    Verify {
        /// Contact id.
        id: String,
        /// The fingerprint as read to you by the contact.
        fingerprint: String,
    },
    /// Remove a pinned contact.
    Remove {
        /// Contact id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Make new keys; the new card is signed by the old key so contacts can follow.
    Rotate,
    /// Write this node's X25519 identity as a standard age identity file.
    ExportAge {
        /// Confirm that you want the private key written in plain text.
        #[arg(long)]
        yes: bool,
        /// Where to write it (must not exist).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Revoke this node's current key (lost or stolen device, leaked keyring): a signed
    /// revocation goes to the relay, which refuses the key from then on, and to every
    /// contact at its next sync. Then run `dossier key rotate`.
    Revoke {
        /// Why, in one line of at most 200 characters, e.g. "laptop stolen". The relay and
        /// every contact can read it: never put patient details in it.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        /// Confirm without being asked (required when not run from a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Record,
    Careplan,
    Message,
}

/// What `--redact` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedactArg {
    /// Direct identifiers in FHIR JSON and XML records: Patient identifiers (SSN, MRN),
    /// telecom, address lines and postal codes, contacts and related persons, also in
    /// narrative text.
    Identifiers,
}

/// What `seal` and `send` share: recipients, kind, subject, thread, patient, and the
/// disclosure-policy options.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Recipient contact id (repeat for several).
    #[arg(long = "to", value_name = "ID", required = true)]
    pub to: Vec<String>,
    /// What the bundle carries.
    #[arg(long, value_enum, default_value = "record")]
    pub kind: KindArg,
    /// Subject line (encrypted: it travels only inside the bundle; the sender's outbox keeps a copy).
    #[arg(long)]
    pub subject: Option<String>,
    /// Conversation thread id.
    #[arg(long)]
    pub thread: Option<String>,
    /// Patient reference such as an MRN (encrypted).
    #[arg(long)]
    pub patient: Option<String>,
    /// Remove direct identifiers from every FHIR JSON and XML record before sealing; the
    /// patient appears under a random pseudonym, and the table to re-link it stays on this
    /// node only, encrypted (HOME/relink/). Other files are sent as they are.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub redact: Option<RedactArg>,
    /// Send a minor's record to another country unredacted, overriding the policy's
    /// [minors] rule. Needs --reason; the override is recorded in the audit trail.
    #[arg(long, requires = "reason")]
    pub allow_minor: bool,
    /// Why the --allow-minor override is justified (at most 200 characters, kept in the
    /// audit trail). Do not put the patient's name or other patient details in it.
    #[arg(long, value_name = "TEXT", requires = "allow_minor")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct SealArgs {
    /// Recipients and what the bundle is about.
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// The bundle file to create.
    #[arg(short = 'o', long = "output", value_name = "OUT.dossier")]
    pub output: PathBuf,
    /// Files and directories to seal.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The bundle file, or the id (32 hex digits) of a bundle in the inbox.
    #[arg(value_name = "FILE|BUNDLE-ID")]
    pub file: PathBuf,
    /// Directory to unpack into (new or empty).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory instead of deleting it at the end.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Use the relay at ADDR, accepting only the TLS key whose pin is PIN.
    Set {
        /// HOST:PORT of the relay (UDP), as given by its operator.
        addr: String,
        /// The relay's pin (sha256:…), as printed by `dossier-relay init`; get it over a
        /// trusted channel.
        #[arg(long)]
        pin: String,
        /// Flag a sent bundle overdue when it has no delivery receipt after SECS seconds
        /// (default 3600).
        #[arg(long, value_name = "SECS")]
        overdue_after: Option<u64>,
    },
    /// Show the configured relay.
    Show {
        /// Print a JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Recipients and what the bundle is about.
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Files and directories to seal.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print a JSON object (bundle_id, state) on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Keep running: sync again on new-mail notices, when a bundle is queued, and every
    /// --interval seconds, until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between periodic syncs with --watch.
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "watch")]
    pub interval: u64,
    /// Print a JSON summary on stdout (not with --watch).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The bundle id (32 hex digits).
    pub bundle_id: String,
    /// Print a JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}
