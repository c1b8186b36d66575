//! Helpers for the online end-to-end tests: a real `dossier-relay` process on loopback and
//! the node commands that talk to it (`relay set`, `send`, `sync`, `inbox`, `outbox`,
//! `status`).
//!
//! [`RelayProcess`] drives the binary as an operator would: `init --data DIR --listen ADDR
//! --json` (prints the pin), `enroll --data DIR CARD` while stopped, `serve --data DIR`
//! (prints `listening ADDR` once bound), SIGTERM to stop, SIGKILL to crash. Its stdout after
//! the first line and its stderr go to `relay.log` in the lab, for the plaintext scans.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Lab, Node, Outcome, run_command, workspace_root};

/// Environment variable that overrides where the `dossier-relay` binary is.
pub const DOSSIER_RELAY_BIN_ENV: &str = "DOSSIER_RELAY_BIN";

/// How long a relay may take to print `listening ADDR`.
pub const RELAY_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `dossier-relay` binary: `$DOSSIER_RELAY_BIN`, else next to the `dossier` binary
/// (`target/<profile>/dossier-relay`). Panics with instructions when it is missing or stale.
pub fn relay_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(locate_relay_bin).clone()
}

fn locate_relay_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(DOSSIER_RELAY_BIN_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "${DOSSIER_RELAY_BIN_ENV} is set to {} but no such file exists",
            p.display()
        );
        return p;
    }
    let dossier = crate::dossier_bin();
    let bin = dossier.with_file_name("dossier-relay");
    assert!(
        bin.is_file(),
        "the dossier-relay binary was not found at {}.\n\
         Build it first with `cargo build -p dossier-relay` (or `cargo build --workspace`), \
         or point ${DOSSIER_RELAY_BIN_ENV} at it.",
        bin.display()
    );
    let built = fs::metadata(&bin).and_then(|m| m.modified()).ok();
    if let Some(built) = built {
        let root = workspace_root();
        for dir in ["relay/src", "crates/wire/src"] {
            if let Some(newer) = newer_than(&root.join(dir), built) {
                panic!(
                    "the dossier-relay binary at {} is older than {}: rebuild it with `cargo build -p dossier-relay` \
                     (or set ${DOSSIER_RELAY_BIN_ENV} to skip this check)",
                    bin.display(),
                    newer.display()
                );
            }
        }
    }
    bin
}

fn newer_than(dir: &Path, t: std::time::SystemTime) -> Option<PathBuf> {
    let entries = fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(n) = newer_than(&p, t) {
                return Some(n);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && fs::metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m > t)
        {
            return Some(p);
        }
    }
    None
}

/// A UDP port on 127.0.0.1 that was free a moment ago (for a relay that must come back on
/// the same address after a restart).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
    s.local_addr().expect("local address").port()
}

/// A `dossier-relay` data directory and, while serving, its process.
pub struct RelayProcess {
    /// `--data`.
    pub data: PathBuf,
    /// The pin printed by `init`.
    pub pin: String,
    /// The address given to `init --listen`.
    pub listen: String,
    /// The address it is serving on (from `listening ADDR`), once started.
    pub addr: Option<String>,
    /// Where its output goes.
    pub log: PathBuf,
    child: Option<Child>,
}

impl RelayProcess {
    /// `dossier-relay init --data <lab>/relay-N --listen 127.0.0.1:0 --json`.
    pub fn init(lab: &Lab) -> Self {
        Self::init_on(lab, "127.0.0.1:0")
    }

    /// `init` with a given listen address (e.g. a fixed port from [`free_udp_port`]).
    pub fn init_on(lab: &Lab, listen: &str) -> Self {
        let data = lab.fresh_path("relay-data");
        let log = lab.fresh_path("relay-log");
        let mut cmd = Command::new(relay_bin());
        cmd.arg("init")
            .arg("--data")
            .arg(&data)
            .args(["--listen", listen, "--json"]);
        let out = run_command(cmd);
        out.ok();
        let doc = out.json();
        let pin = doc["pin"]
            .as_str()
            .unwrap_or_else(|| panic!("init --json has a pin\n{}", out.describe()))
            .to_owned();
        assert!(pin.starts_with("sha256:"), "pin form: {pin}");
        let listen = doc["listen"].as_str().unwrap_or(listen).to_owned();
        Self {
            data,
            pin,
            listen,
            addr: None,
            log,
            child: None,
        }
    }

    /// Runs a `dossier-relay` admin command on this data directory (no assertion).
    pub fn admin<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        let mut cmd = Command::new(relay_bin());
        let mut it = args.iter();
        if let Some(sub) = it.next() {
            cmd.arg(sub);
        }
        cmd.arg("--data").arg(&self.data);
        cmd.args(it);
        run_command(cmd)
    }

    /// `enroll --data DIR CARD` with `node`'s current card; asserts success. The relay must
    /// be stopped.
    pub fn enroll(&self, node: &Node) {
        assert!(self.child.is_none(), "enroll while the relay is stopped");
        let card = node.export_card();
        let args: Vec<OsString> = vec!["enroll".into(), card.into()];
        self.admin(&args).ok();
    }

    /// `revoke --data DIR ID`; asserts success. The relay must be stopped.
    pub fn revoke(&self, id: &str) {
        assert!(self.child.is_none(), "revoke while the relay is stopped");
        self.admin(&["revoke", id]).ok();
    }

    /// Starts `serve` and waits for `listening ADDR`.
    pub fn start(&mut self) -> &str {
        assert!(self.child.is_none(), "the relay is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("relay log");
        let mut child = Command::new(relay_bin())
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting dossier-relay serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let log_path = self.log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = tx.send(first);
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            if let Ok(mut f) = fs::OpenOptions::new().append(true).open(&log_path) {
                let _ = std::io::Write::write_all(&mut f, &rest);
            }
        });
        let line = match rx.recv_timeout(RELAY_START_TIMEOUT) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "dossier-relay serve did not print `listening ADDR` within {RELAY_START_TIMEOUT:?}; log:\n{}",
                    self.log_text()
                );
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!(
                    "dossier-relay serve printed {line:?} instead of `listening ADDR`; log:\n{}",
                    self.log_text()
                )
            })
            .to_owned();
        self.child = Some(child);
        self.addr = Some(addr);
        self.addr.as_deref().expect("just set")
    }

    /// The serving address (panics if never started).
    pub fn address(&self) -> &str {
        self.addr.as_deref().expect("the relay was started")
    }

    /// Whether `serve` is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// SIGTERM and wait (SIGKILL after 20 s); returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dossier-relay did not stop within 20 s of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The relay's log so far.
    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    /// `relay set ADDR --pin PIN` for a running relay; asserts success.
    pub fn use_relay(&self, relay: &RelayProcess) {
        self.relay_set(relay.address(), &relay.pin).ok();
    }

    /// `relay set ADDR --pin PIN` (no assertion).
    pub fn relay_set(&self, addr: &str, pin: &str) -> Outcome {
        self.run(&["relay", "set", addr, "--pin", pin])
    }

    /// `send --to ... [extra] --json inputs...` (no assertion).
    pub fn send_outcome(&self, to: &[&str], extra: &[&str], inputs: &[&Path]) -> Outcome {
        let mut args: Vec<OsString> = vec!["send".into()];
        for id in to {
            args.push("--to".into());
            args.push((*id).into());
        }
        args.extend(extra.iter().map(OsString::from));
        args.push("--json".into());
        args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
        self.run(&args)
    }

    /// `send`, asserting exit 0; returns the JSON (`bundle_id`, `state`).
    pub fn send(&self, to: &[&str], extra: &[&str], inputs: &[&Path]) -> serde_json::Value {
        let out = self.send_outcome(to, extra, inputs);
        out.ok();
        out.json()
    }

    /// `sync --json`, asserting exit 0; returns the summary.
    pub fn sync(&self) -> serde_json::Value {
        let out = self.run(&["sync", "--json"]);
        out.ok();
        out.json()
    }

    /// `inbox --json`, parsed as an array.
    pub fn inbox(&self) -> Vec<serde_json::Value> {
        json_array(self.run(&["inbox", "--json"]))
    }

    /// `outbox --json`, parsed as an array.
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        json_array(self.run(&["outbox", "--json"]))
    }

    /// `status BUNDLE-ID --json`, asserting success.
    pub fn status(&self, bundle_id: &str) -> serde_json::Value {
        self.run(&["status", bundle_id, "--json"]).ok().json()
    }

    /// The state of `recipient` in `status BUNDLE-ID --json`.
    pub fn delivery_state(&self, bundle_id: &str, recipient: &str) -> String {
        let status = self.status(bundle_id);
        status["recipients"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == recipient))
            .and_then(|r| r["state"].as_str())
            .unwrap_or_else(|| panic!("status of {bundle_id} names {recipient}: {status}"))
            .to_owned()
    }
}

fn json_array(out: Outcome) -> Vec<serde_json::Value> {
    match out.ok().json() {
        serde_json::Value::Array(a) => a,
        other => panic!("expected a JSON array: {other}\n{}", out.describe()),
    }
}

impl RelayProcess {
    /// `init` with a given listen address and extra `init` options (e.g.
    /// `--retention-days 0.00002 --expiry-check-secs 1`).
    pub fn init_with(lab: &Lab, listen: &str, extra: &[&str]) -> Self {
        let data = lab.fresh_path("relay-data");
        let log = lab.fresh_path("relay-log");
        let mut cmd = Command::new(relay_bin());
        cmd.arg("init")
            .arg("--data")
            .arg(&data)
            .args(["--listen", listen, "--json"])
            .args(extra);
        let out = run_command(cmd);
        out.ok();
        let doc = out.json();
        let pin = doc["pin"]
            .as_str()
            .unwrap_or_else(|| panic!("init --json has a pin\n{}", out.describe()))
            .to_owned();
        let listen = doc["listen"].as_str().unwrap_or(listen).to_owned();
        Self {
            data,
            pin,
            listen,
            addr: None,
            log,
            child: None,
        }
    }

    /// The names of the files in `DATA/blobs` (stored ciphertext bodies, one per bundle).
    pub fn blob_files(&self) -> Vec<String> {
        file_names(&self.data.join("blobs"))
    }
}

/// The names of the regular files directly in `dir`, sorted (none if it does not exist).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

impl Node {
    /// Sets `connect_timeout_secs` in the node's `relay.json` (written by `relay set`), so a
    /// test that queues with the relay down does not wait the default time-out per command.
    pub fn set_connect_timeout(&self, secs: u64) {
        let path = self.home.join("relay.json");
        let text = fs::read_to_string(&path).expect("relay.json (run `relay set` first)");
        let mut doc: serde_json::Value = serde_json::from_str(&text).expect("relay.json is JSON");
        doc["connect_timeout_secs"] = serde_json::Value::from(secs);
        fs::write(&path, doc.to_string()).expect("writing relay.json");
    }
}

impl RelayProcess {
    /// The process id of the running `serve` (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Starts `dossier ARGS` for `node` in the background, output captured.
pub fn spawn_dossier(node: &Node, args: &[&str]) -> Child {
    let mut cmd = node.command(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawning dossier")
}

/// Waits for a command started with [`spawn_dossier`]; `label` names it in assertions.
pub fn finish_spawned(child: Child, label: &str) -> Outcome {
    let out = child.wait_with_output().expect("waiting for dossier");
    Outcome {
        command: label.into(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Coordinator, clinic and patient, pinned to each other as the workflow needs (the
/// coordinator with both, fingerprints verified), enrolled at a running relay and pointed at
/// it.
pub struct Cast {
    /// The lab holding every home.
    pub lab: Lab,
    /// The running relay.
    pub relay: RelayProcess,
    /// `us-mercy-intl`.
    pub coordinator: Node,
    /// `th-bangkok-care`.
    pub clinic: Node,
    /// `p-maria-lopez`.
    pub patient: Node,
}

impl Cast {
    /// Sets the cast up and starts the relay (on a port the system picks at each start).
    pub fn start() -> Self {
        Self::start_with(RelayProcess::init)
    }

    /// Like [`Cast::start`] with the relay on one fixed port, so that it comes back at the
    /// same address after [`RelayProcess::kill`] and [`RelayProcess::start`] (nodes keep
    /// their `relay set`).
    pub fn start_on_fixed_port() -> Self {
        Self::start_with(|lab| {
            RelayProcess::init_on(lab, &format!("127.0.0.1:{}", free_udp_port()))
        })
    }

    fn start_with(init: impl FnOnce(&Lab) -> RelayProcess) -> Self {
        let lab = Lab::new();
        let coordinator = lab.coordinator();
        let clinic = lab.clinic();
        let patient = lab.patient_node();
        coordinator.pin_both_ways(&clinic);
        coordinator.pin_both_ways(&patient);
        let mut relay = init(&lab);
        for n in [&coordinator, &clinic, &patient] {
            relay.enroll(n);
        }
        relay.start();
        for n in [&coordinator, &clinic, &patient] {
            n.use_relay(&relay);
        }
        Cast {
            lab,
            relay,
            coordinator,
            clinic,
            patient,
        }
    }
}
