//! Shared helpers for dossier's end-to-end tests, vector checks and benchmarks.
//!
//! The end-to-end tests drive the real `dossier` binary (see [`dossier_bin`]) against node
//! homes in temporary directories. A [`Lab`] owns one temporary directory; each [`Node`] is
//! a home inside it with its own passphrase-encrypted keyring. [`Outcome`] captures one
//! command's exit code and output and offers assertions that print the full command and its
//! output when they fail.
//!
//! Everything here is deterministic apart from the keys the binary generates: test data
//! comes from [`pseudo_random_bytes`] and file names are fixed.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Environment variable that overrides where the `dossier` binary is.
pub const DOSSIER_BIN_ENV: &str = "DOSSIER_BIN";

/// The passphrase every test node uses unless a test says otherwise (>= 12 characters).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Longest any single command may run before the test fails (a hang is a bug).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a generic error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the command line was wrong.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: verification failed (tampered, truncated, bad signature, not for this node).
pub const EXIT_VERIFICATION: i32 = 3;
/// Exit code: a key differs from the pinned one.
pub const EXIT_PIN_MISMATCH: i32 = 4;
/// Exit code: the sender is not a pinned contact.
pub const EXIT_UNKNOWN_SENDER: i32 = 5;

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// The `dossier` binary to test: `$DOSSIER_BIN` if set, else `target/<profile>/dossier`
/// next to the test executable (which cargo puts in `target/<profile>/deps/`).
///
/// Panics with instructions if the binary does not exist: `cargo test -p dossier-tests`
/// does not build other packages' binaries, so run `cargo build -p dossier` first.
pub fn dossier_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(locate_dossier_bin).clone()
}

fn locate_dossier_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(DOSSIER_BIN_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "${DOSSIER_BIN_ENV} is set to {} but no such file exists",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("the test executable's own path");
    let deps = exe
        .parent()
        .expect("the test executable lives in a directory");
    let profile_dir = if deps.file_name() == Some(OsStr::new("deps")) {
        deps.parent().expect("deps/ has a parent")
    } else {
        deps
    };
    let bin = profile_dir.join("dossier");
    assert!(
        bin.is_file(),
        "the dossier binary was not found at {}.\n\
         Build it first with `cargo build -p dossier` (the end-to-end tests drive the real binary; \
         `cargo test` alone does not build another package's binary), or point ${DOSSIER_BIN_ENV} at it.",
        bin.display()
    );
    if let Some(newer) = source_newer_than(&bin) {
        panic!(
            "the dossier binary at {} is older than {}: the tests would exercise stale code.\n\
             Rebuild it with `cargo build -p dossier` (or set ${DOSSIER_BIN_ENV} to skip this check).",
            bin.display(),
            newer.display()
        );
    }
    bin
}

/// A source file of the binary (cli/, relay/, crates/*) modified after `bin`.
fn source_newer_than(bin: &Path) -> Option<PathBuf> {
    fn newest(path: &Path, best: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(meta) = fs::metadata(path) else { return };
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(path) {
                for e in entries.flatten() {
                    newest(&e.path(), best);
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            // Only sources: an edited Cargo.toml that changes nothing is not relinked by
            // cargo, so its newer mtime would be a false alarm.
            if let Ok(m) = meta.modified() {
                if best.as_ref().is_none_or(|(t, _)| m > *t) {
                    *best = Some((m, path.to_path_buf()));
                }
            }
        }
    }
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let root = workspace_root();
    let mut best = None;
    for dir in [
        "cli",
        "relay",
        "crates/bundle",
        "crates/node",
        "crates/wire",
    ] {
        for sub in ["src", "build.rs"] {
            newest(&root.join(dir).join(sub), &mut best);
        }
    }
    best.filter(|(t, _)| *t > built).map(|(_, p)| p)
}

/// Directory holding the shared FHIR samples: `$DOSSIER_SAMPLE_DIR` if set, else
/// `<workspace>/../shared/data/fhir`.
pub fn fhir_sample_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOSSIER_SAMPLE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/fhir")
}

/// File name of the HL7 International Patient Summary sample.
pub const IPS_SAMPLE_NAME: &str = "ips-bundle-minimal.json";

/// The IPS sample bundle, if the shared sample data is present.
pub fn ips_sample() -> Option<Vec<u8>> {
    fs::read(fhir_sample_dir().join(IPS_SAMPLE_NAME)).ok()
}

/// A small FHIR-shaped JSON document, for tests that need a record but not the real sample.
pub fn synthetic_fhir_json() -> Vec<u8> {
    br#"{
  "resourceType": "Bundle",
  "type": "document",
  "entry": [
    { "resource": { "resourceType": "Patient", "name": [ { "family": "Testpatient" } ] } },
    { "resource": { "resourceType": "AllergyIntolerance", "code": { "text": "No known allergies" } } }
  ]
}
"#
    .to_vec()
}

/// Deterministic pseudo-random bytes (SplitMix64 seeded with `seed`). Not secret; the
/// same `(seed, len)` always gives the same bytes, and the data does not compress.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex(&h.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file under `dir`, as `relative/path` (with `/`) → SHA-256 hex. Panics on
/// anything that is not a regular file or directory (a bundle never produces links).
pub fn tree_digests(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let ft = fs::symlink_metadata(&path)
                .unwrap_or_else(|err| panic!("stat {}: {err}", path.display()))
                .file_type();
            if ft.is_dir() {
                walk(root, &path, out);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("inside root")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(rel, sha256_file(&path));
            } else {
                panic!("{} is neither a file nor a directory", path.display());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The permission bits (`mode & 0o777`) of `path`.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Asserts that a failed open released nothing: `out_dir` is absent or empty, and its
/// parent holds no leftover staging directory (`.dossier-open-*`) either.
pub fn assert_nothing_released(out_dir: &Path) {
    if out_dir.exists() {
        let left: Vec<_> = fs::read_dir(out_dir)
            .unwrap_or_else(|e| panic!("list {}: {e}", out_dir.display()))
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(
            left.is_empty(),
            "a refused bundle must release nothing, but {} holds {left:?}",
            out_dir.display()
        );
    }
    let parent = out_dir.parent().expect("output dir has a parent");
    if parent.exists() {
        let staging: Vec<_> = fs::read_dir(parent)
            .expect("list parent")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().starts_with(".dossier-open-"))
            .collect();
        assert!(
            staging.is_empty(),
            "a refused open left staging directories behind in {}: {staging:?}",
            parent.display()
        );
    }
}

/// Asserts that none of `secrets` (subjects, patient references, part names) appears in the
/// command's stdout or stderr.
pub fn assert_no_phi(outcome: &Outcome, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty(), "an empty secret would match everything");
        assert!(
            !outcome.stderr.contains(s) && !outcome.stdout.contains(s),
            "protected text {s:?} leaked into the output of a failing command\n{}",
            outcome.describe()
        );
    }
}

/// Whether `haystack` contains `needle` as a contiguous byte string.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// One finished command: its exit code and output.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for failure messages.
    pub command: String,
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Outcome {
    /// The command, exit code and both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.code(EXIT_OK)
    }

    /// Asserts the exit code is exactly `expected`.
    #[track_caller]
    pub fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            expected,
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// Asserts the command failed (any non-zero exit code, not a crash by signal).
    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert!(
            self.code > 0,
            "the command should have failed with an error exit code\n{}",
            self.describe()
        );
        self
    }

    /// Asserts stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr should contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e})\n{}", self.describe())
        })
    }
}

/// Runs `cmd` to completion (with [`COMMAND_TIMEOUT`]), feeding it no stdin.
pub fn run_command(mut cmd: Command) -> Outcome {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} did not finish within {COMMAND_TIMEOUT:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned();
    Outcome {
        command,
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A temporary directory holding the homes, inputs and outputs of one test.
pub struct Lab {
    dir: tempfile::TempDir,
    counter: AtomicUsize,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    /// A fresh, empty lab.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dossier-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        Self {
            dir,
            counter: AtomicUsize::new(0),
        }
    }

    /// The lab's root directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the lab that does not exist yet: `<root>/<stem>-<n>`.
    pub fn fresh_path(&self, stem: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let p = self.path().join(format!("{stem}-{n}"));
        assert!(!p.exists());
        p
    }

    /// A new, empty directory inside the lab.
    pub fn fresh_dir(&self, stem: &str) -> PathBuf {
        let p = self.fresh_path(stem);
        fs::create_dir_all(&p).expect("creating a directory");
        p
    }

    /// Initialises a facility node with home `<root>/homes/<label>` and asserts success.
    pub fn facility(&self, label: &str, id: &str, name: &str, country: &str) -> Node {
        self.init_node(label, id, name, country, false)
    }

    /// Initialises a patient node (`init --patient`) and asserts success.
    pub fn patient(&self, label: &str, id: &str, name: &str, country: &str) -> Node {
        self.init_node(label, id, name, country, true)
    }

    /// The usual cast: a US care coordinator.
    pub fn coordinator(&self) -> Node {
        self.facility(
            "coordinator",
            COORDINATOR_ID,
            "Mercy Hospital International Office",
            "US",
        )
    }

    /// The usual cast: a clinic in Thailand.
    pub fn clinic(&self) -> Node {
        self.facility("clinic", CLINIC_ID, "Bangkok Care Clinic", "TH")
    }

    /// The usual cast: the patient's own device.
    pub fn patient_node(&self) -> Node {
        self.patient("patient", PATIENT_ID, "Maria Lopez", "US")
    }

    /// The usual cast: a facility nobody sends to.
    pub fn stranger(&self) -> Node {
        self.facility("stranger", STRANGER_ID, "Lion City Health", "SG")
    }

    fn init_node(&self, label: &str, id: &str, name: &str, country: &str, patient: bool) -> Node {
        let node = Node {
            label: label.to_owned(),
            id: id.to_owned(),
            home: self.path().join("homes").join(label),
            scratch: self.path().join("scratch"),
            passphrase: PASSPHRASE.to_owned(),
            counter: AtomicUsize::new(0),
        };
        fs::create_dir_all(&node.scratch).expect("scratch dir");
        let mut args = vec!["init", "--id", id, "--name", name, "--country", country];
        if patient {
            args.push("--patient");
        }
        args.push("--json");
        let out = node.run(&args);
        out.ok();
        let card = out.json();
        assert_eq!(card["id"], id, "init --json reports the id");
        node
    }
}

/// Id of the US care coordinator used across the tests.
pub const COORDINATOR_ID: &str = "us-mercy-intl";
/// Id of the clinic abroad used across the tests.
pub const CLINIC_ID: &str = "th-bangkok-care";
/// Id of the patient's node used across the tests.
pub const PATIENT_ID: &str = "p-maria-lopez";
/// Id of a facility that is nobody's intended correspondent.
pub const STRANGER_ID: &str = "sg-lion-health";

/// One node: a home directory and the passphrase that unlocks it.
pub struct Node {
    /// Short label used for the home directory name.
    pub label: String,
    /// The node's facility id.
    pub id: String,
    /// `--home`.
    pub home: PathBuf,
    scratch: PathBuf,
    passphrase: String,
    counter: AtomicUsize,
}

impl Node {
    /// A `dossier` command for this node: `--home`, `$DOSSIER_PASSPHRASE` set, and
    /// `$DOSSIER_HOME` removed so nothing leaks in from the environment.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.command_with_passphrase(&self.passphrase, args)
    }

    /// Like [`Node::command`] with another passphrase (e.g. a wrong one).
    pub fn command_with_passphrase<S: AsRef<OsStr>>(
        &self,
        passphrase: &str,
        args: &[S],
    ) -> Command {
        let mut cmd = Command::new(dossier_bin());
        cmd.arg("--home")
            .arg(&self.home)
            .args(args)
            .env("DOSSIER_PASSPHRASE", passphrase)
            .env_remove("DOSSIER_HOME");
        cmd
    }

    /// Runs `dossier --home HOME ARGS...` and returns its outcome (no assertion).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        run_command(self.command(args))
    }

    /// Runs with another passphrase.
    pub fn run_with_passphrase<S: AsRef<OsStr>>(&self, passphrase: &str, args: &[S]) -> Outcome {
        run_command(self.command_with_passphrase(passphrase, args))
    }

    /// `card --json`, parsed.
    pub fn card_json(&self) -> serde_json::Value {
        self.run(&["card", "--json"]).ok().json()
    }

    /// The node's current fingerprint (from `card --json`).
    pub fn fingerprint(&self) -> String {
        self.card_json()["fingerprint"]
            .as_str()
            .expect("card --json has a fingerprint")
            .to_owned()
    }

    /// Writes the node's current card to a new file (`card -o`) and returns its path.
    pub fn export_card(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.scratch.join(format!("{}-{n}.card", self.label));
        let out: Vec<OsString> = vec!["card".into(), "-o".into(), path.clone().into()];
        self.run(&out).ok();
        assert!(path.is_file(), "card -o wrote {}", path.display());
        path
    }

    /// Pins `other`'s current card, as verified (fingerprint confirmed) or not. Asserts
    /// success.
    pub fn pin(&self, other: &Node, verified: bool) {
        let card = other.export_card();
        let fp = verified.then(|| other.fingerprint());
        self.add_card(&card, fp.as_deref()).ok();
    }

    /// `contacts add CARD [--verified FP]` (no assertion).
    pub fn add_card(&self, card: &Path, verified: Option<&str>) -> Outcome {
        let mut args: Vec<OsString> = vec!["contacts".into(), "add".into(), card.into()];
        if let Some(fp) = verified {
            args.push("--verified".into());
            args.push(fp.into());
        }
        self.run(&args)
    }

    /// Pins each other and confirms fingerprints both ways.
    pub fn pin_both_ways(&self, other: &Node) {
        self.pin(other, true);
        other.pin(self, true);
    }

    /// `seal --to ... [extra] -o out inputs... --json`, asserting success; returns the
    /// parsed JSON summary.
    pub fn seal(
        &self,
        to: &[&str],
        extra: &[&str],
        out: &Path,
        inputs: &[&Path],
    ) -> serde_json::Value {
        let outcome = self.seal_outcome(to, extra, out, inputs);
        outcome.ok();
        assert!(out.is_file(), "seal wrote {}", out.display());
        outcome.json()
    }

    /// Like [`Node::seal`] without asserting anything.
    pub fn seal_outcome(
        &self,
        to: &[&str],
        extra: &[&str],
        out: &Path,
        inputs: &[&Path],
    ) -> Outcome {
        let mut args: Vec<OsString> = vec!["seal".into()];
        for id in to {
            args.push("--to".into());
            args.push((*id).into());
        }
        args.extend(extra.iter().map(OsString::from));
        args.push("--json".into());
        args.push("-o".into());
        args.push(out.into());
        args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
        self.run(&args)
    }

    /// `open BUNDLE -o OUT --json` (no assertion).
    pub fn open(&self, bundle: &Path, out: &Path) -> Outcome {
        let args: Vec<OsString> = vec![
            "open".into(),
            bundle.into(),
            "-o".into(),
            out.into(),
            "--json".into(),
        ];
        self.run(&args)
    }

    /// `key export-age --yes -o FILE` into a new file; returns its path.
    pub fn export_age_identity(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.scratch.join(format!("{}-{n}.agekey", self.label));
        let args: Vec<OsString> = vec![
            "key".into(),
            "export-age".into(),
            "--yes".into(),
            "-o".into(),
            path.clone().into(),
        ];
        self.run(&args).ok();
        assert!(path.is_file(), "export-age wrote {}", path.display());
        path
    }

    /// `contacts list --json`, parsed as an array.
    pub fn contacts(&self) -> Vec<serde_json::Value> {
        match self.run(&["contacts", "list", "--json"]).ok().json() {
            serde_json::Value::Array(a) => a,
            other => panic!("contacts list --json is not an array: {other}"),
        }
    }

    /// The `contacts list --json` entry for `id`, if pinned.
    pub fn contact(&self, id: &str) -> Option<serde_json::Value> {
        self.contacts().into_iter().find(|c| c["id"] == id)
    }

    /// Path of the node's `contacts.json`.
    pub fn contacts_path(&self) -> PathBuf {
        self.home.join("contacts.json")
    }

    /// Path of the node's `keyring.age`.
    pub fn keyring_path(&self) -> PathBuf {
        self.home.join("keyring.age")
    }

    /// Bytes of `contacts.json`, or `None` if it does not exist.
    pub fn contacts_bytes(&self) -> Option<Vec<u8>> {
        fs::read(self.contacts_path()).ok()
    }
}

/// The age X25519 identities in an identity file written by `key export-age`, in file
/// order (current key first).
pub fn read_age_identities(path: &Path) -> Vec<age::x25519::Identity> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let ids: Vec<_> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(|l| {
            l.parse::<age::x25519::Identity>()
                .unwrap_or_else(|e| panic!("{} holds an invalid age identity: {e}", path.display()))
        })
        .collect();
    assert!(!ids.is_empty(), "{} holds no age identity", path.display());
    ids
}

/// Decrypts an age file with `identity` (in memory; for test-sized bundles).
pub fn age_decrypt(identity: &age::x25519::Identity, ciphertext: &[u8]) -> Vec<u8> {
    age::decrypt(identity, ciphertext).expect("age decryption with the exported identity")
}

/// Encrypts `plaintext` to one age X25519 recipient.
pub fn age_encrypt(recipient: &age::x25519::Recipient, plaintext: &[u8]) -> Vec<u8> {
    age::encrypt(recipient, plaintext).expect("age encryption")
}

/// One entry of a bundle's inner tar container.
#[derive(Clone, Debug)]
pub struct TarEntry {
    /// The entry's header as read.
    pub header: tar::Header,
    /// The entry's name.
    pub name: String,
    /// The entry's content.
    pub data: Vec<u8>,
}

/// Reads every entry of a tar stream.
pub fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .expect("tar entries")
        .map(|e| {
            let mut e = e.expect("tar entry");
            let name = String::from_utf8(e.path_bytes().into_owned()).expect("UTF-8 name");
            let header = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("tar entry data");
            TarEntry { header, name, data }
        })
        .collect()
}

/// Writes entries back into a tar stream, fixing each header's size and checksum.
pub fn write_tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = e.header.clone();
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, &e.data[..]).expect("tar append");
    }
    b.into_inner().expect("tar finish")
}

/// Writes `bytes` to `path`, creating parent directories.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes).expect("write");
}

/// Protected details used for bundles in the tests, checked for leaks in failure output.
pub struct Phi {
    /// `--subject`.
    pub subject: &'static str,
    /// `--patient`.
    pub patient: &'static str,
    /// `--thread`.
    pub thread: &'static str,
}

/// The subject, patient reference and thread the tests seal with.
pub const PHI: Phi = Phi {
    subject: "Left knee arthroplasty workup zq81",
    patient: "MRN-0042-77193",
    thread: "knee-thread-5521",
};

impl Phi {
    /// The `seal` arguments that set these details.
    pub fn seal_args(&self) -> [&'static str; 6] {
        [
            "--subject",
            self.subject,
            "--patient",
            self.patient,
            "--thread",
            self.thread,
        ]
    }
}

/// A directory of records to seal: `<parent>/<name>/` holding the IPS sample (or a
/// synthetic FHIR document when the sample is absent) and `imaging/<scan>` of
/// `binary_len` pseudo-random bytes. Returns the directory.
pub fn make_records(parent: &Path, name: &str, binary_len: usize, seed: u64) -> PathBuf {
    let dir = parent.join(name);
    let ips = ips_sample().unwrap_or_else(synthetic_fhir_json);
    write_file(&dir.join(IPS_SAMPLE_NAME), &ips);
    write_file(
        &dir.join("imaging").join(SCAN_NAME),
        &pseudo_random_bytes(seed, binary_len),
    );
    dir
}

/// File name of the binary "imaging" part [`make_records`] writes.
pub const SCAN_NAME: &str = "ct-knee-series-f3.dcm";

/// Names that must never appear in error output for a failed open of a [`make_records`]
/// bundle, together with [`PHI`].
pub fn protected_strings(records_dir_name: &'static str) -> Vec<&'static str> {
    vec![
        PHI.subject,
        PHI.patient,
        PHI.thread,
        IPS_SAMPLE_NAME,
        SCAN_NAME,
        records_dir_name,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_bytes_are_deterministic_and_seed_dependent() {
        assert_eq!(pseudo_random_bytes(1, 1000), pseudo_random_bytes(1, 1000));
        assert_ne!(pseudo_random_bytes(1, 1000), pseudo_random_bytes(2, 1000));
        assert_eq!(pseudo_random_bytes(1, 13).len(), 13);
        assert_eq!(
            &pseudo_random_bytes(1, 1000)[..13],
            &pseudo_random_bytes(1, 13)[..]
        );
        // Not trivially compressible: every byte value shows up in 64 KiB.
        let data = pseudo_random_bytes(3, 64 * 1024);
        let mut seen = [false; 256];
        data.iter().for_each(|b| seen[*b as usize] = true);
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn tree_digests_lists_nested_files_with_hashes() {
        let dir = tempfile::tempdir().unwrap();
        write_file(&dir.path().join("a/b/c.bin"), b"abc");
        write_file(&dir.path().join("top.txt"), b"");
        let t = tree_digests(dir.path());
        assert_eq!(t.len(), 2);
        assert_eq!(t["a/b/c.bin"], sha256_hex(b"abc"));
        assert_eq!(
            t["top.txt"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn nothing_released_accepts_absent_or_empty_and_rejects_content() {
        let dir = tempfile::tempdir().unwrap();
        assert_nothing_released(&dir.path().join("absent"));
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert_nothing_released(&empty);
        write_file(&empty.join("leak"), b"x");
        let r = std::panic::catch_unwind(|| assert_nothing_released(&empty));
        assert!(r.is_err(), "a file in the output directory is detected");
    }
}

// Online exchange helpers (a real `dossier-relay` process, `send`/`sync`/`inbox`/`outbox`).
pub mod attacks;
pub mod crashloop;
pub mod lazyfs;
pub mod limits;
pub mod measure;
pub mod netem;
mod online;
pub use online::*;
