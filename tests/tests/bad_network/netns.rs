//! The lab under the bad-network tests: network namespaces joined by a veth pair, an
//! nftables table that drops packets, and the processes run inside the namespaces (the relay,
//! the `dossier-netem` proxy, node commands) — each a guard that removes what it made when
//! dropped, also when a test panics.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dossier_tests::netem::parse_stats;
use dossier_tests::*;

/// The relay's side of the veth pair.
pub(crate) const RELAY_IP: &str = "10.77.0.1";
/// The nodes' side.
pub(crate) const NODE_IP: &str = "10.77.0.2";

/// What the proxy does to the path.
pub(crate) struct ProxyPath {
    /// One-way delay, each direction.
    pub(crate) delay_ms: u64,
    /// Share of datagrams held back so later ones overtake them.
    pub(crate) reorder_percent: u64,
    /// How much longer those are held.
    pub(crate) reorder_extra_ms: u64,
}

/// Runs a setup command; the error names it and carries its output.
pub(crate) fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{program}` cannot be started: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `cmd`, run inside network namespace `ns` (`ip netns exec NS PROGRAM ARGS`), with the
/// same environment changes and working directory.
pub(crate) fn in_ns(ns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// A network namespace this test created; deleted (after killing whatever still runs in
/// it, which can only be this test's processes) when dropped.
pub(crate) struct NetNs {
    pub(crate) name: String,
}

impl NetNs {
    pub(crate) fn add(name: String) -> Result<Self, String> {
        sh("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn exec(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        sh("ip", &full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// The nftables table dropping packets in the relay's namespace; deleted when dropped
/// (deleting the namespace would remove it too; this keeps the order explicit).
pub(crate) struct LossTable {
    pub(crate) ns: String,
}

pub(crate) const NFT_TABLE: &str = "dossier_badnet";

impl LossTable {
    pub(crate) fn install(ns: &NetNs, loss: u64, script_dir: &Path) -> Result<Self, String> {
        let script = format!(
            "table inet {NFT_TABLE} {{\n\
             \tchain ingress_loss {{ type filter hook input priority 0; policy accept;\n\
             \t\tiifname \"vr\" meta l4proto udp numgen random mod 100 < {loss} counter drop\n\
             \t}}\n\
             \tchain egress_loss {{ type filter hook output priority 0; policy accept;\n\
             \t\toifname \"vr\" meta l4proto udp numgen random mod 100 < {loss} counter drop\n\
             \t}}\n\
             }}\n"
        );
        let path = script_dir.join("loss.nft");
        std::fs::write(&path, script).map_err(|e| format!("writing {}: {e}", path.display()))?;
        ns.exec("nft", &["-f", path.to_str().expect("UTF-8 lab path")])?;
        Ok(Self {
            ns: ns.name.clone(),
        })
    }

    /// Packets dropped so far (both chains), from the rules' counters.
    pub(crate) fn dropped_packets(&self) -> u64 {
        let out = in_ns(&self.ns, &{
            let mut c = Command::new("nft");
            c.args(["list", "table", "inet", NFT_TABLE]);
            c
        })
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
        out.lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let i = words.iter().position(|w| *w == "packets")?;
                words.get(i + 1)?.parse::<u64>().ok()
            })
            .sum()
    }
}

impl Drop for LossTable {
    fn drop(&mut self) {
        let _ = sh(
            "ip",
            &[
                "netns", "exec", &self.ns, "nft", "delete", "table", "inet", NFT_TABLE,
            ],
        );
    }
}

/// The two namespaces and the veth pair between them.
pub(crate) struct Topology {
    pub(crate) nodes: NetNs,
    pub(crate) relay: NetNs,
}

/// Deletes namespaces an earlier run of these tests left behind when it was killed
/// outright (no guard runs on SIGKILL): `dossier-PID-TAG-r|n` whose PID is gone.
pub(crate) fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = name.split('-').collect();
        let ours = parts.len() == 4
            && parts[0] == "dossier"
            && matches!(parts[3], "r" | "n")
            && parts[1].parse::<u32>().is_ok();
        if ours && !Path::new("/proc").join(parts[1]).exists() {
            drop(NetNs {
                name: name.to_owned(),
            });
        }
    }
}

/// Builds the namespaces, or says why it cannot (the caller skips).
pub(crate) fn topology(tag: &str) -> Result<Topology, String> {
    remove_stale_namespaces();
    let id = std::process::id();
    // The relay's namespace goes first so it is dropped last, after the nodes' one.
    let relay = NetNs::add(format!("dossier-{id}-{tag}-r"))?;
    let nodes = NetNs::add(format!("dossier-{id}-{tag}-n"))?;
    sh(
        "ip",
        &[
            "-n",
            &relay.name,
            "link",
            "add",
            "vr",
            "type",
            "veth",
            "peer",
            "name",
            "vn",
            "netns",
            &nodes.name,
        ],
    )?;
    relay.exec(
        "ip",
        &["addr", "add", &format!("{RELAY_IP}/30"), "dev", "vr"],
    )?;
    relay.exec("ip", &["link", "set", "vr", "up"])?;
    nodes.exec(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/30"), "dev", "vn"],
    )?;
    nodes.exec("ip", &["link", "set", "vn", "up"])?;
    Ok(Topology { nodes, relay })
}

/// Why these tests cannot run here, if they cannot.
pub(crate) fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Some("not running as root (network namespaces and nftables need it)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!(
                "`{tool}` is not installed (apt-get install -y iproute2 nftables)"
            ));
        }
    }
    None
}

/// Sets everything up, or prints why not and returns `None` (the test then passes).
pub(crate) fn bad_network(test: &str, tag: &str, lab: &Lab) -> Option<(Topology, PathBuf)> {
    let skip = |why: String| {
        eprintln!("SKIPPED {test}: {why}");
        None
    };
    if let Some(why) = unavailable() {
        return skip(why);
    }
    let topo = match topology(tag) {
        Ok(t) => t,
        Err(why) => return skip(format!("no network namespaces here: {why}")),
    };
    let dir = lab.fresh_dir("netns");
    Some((topo, dir))
}

/// `dossier-relay serve` running inside the relay's namespace; killed when dropped.
pub(crate) struct NsRelay {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl NsRelay {
    pub(crate) fn start(ns: &NetNs, relay: &RelayProcess) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&relay.log)
            .expect("relay log");
        let mut serve = Command::new(relay_bin());
        serve.arg("serve").arg("--data").arg(&relay.data);
        let mut child = in_ns(&ns.name, &serve)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting dossier-relay serve in its namespace");
        let line = first_line(child.stdout.take().expect("piped stdout"), None);
        let addr = line
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening "))
            .map(str::to_owned);
        match addr {
            Some(addr) => Self { child, addr },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dossier-relay serve printed {line:?}, not `listening ADDR`; log:\n{}",
                    relay.log_text()
                );
            }
        }
    }
}

impl Drop for NsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the first line of `out` (waiting up to 30 s); the rest goes to `rest` line by
/// line, or is drained.
pub(crate) fn first_line(
    out: impl Read + Send + 'static,
    rest: Option<mpsc::Sender<String>>,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines().map_while(Result::ok);
        let _ = tx.send(lines.next());
        for l in lines {
            if let Some(rest) = &rest {
                let _ = rest.send(l);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).ok().flatten()
}

/// `dossier-netem` running in the nodes' namespace, in front of the relay.
pub(crate) struct Proxy {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
    pub(crate) answers: mpsc::Receiver<String>,
    pub(crate) addr: String,
}

impl Proxy {
    pub(crate) fn start(ns: &NetNs, upstream: &str, path: &ProxyPath) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dossier-netem"));
        cmd.args(["--upstream", upstream, "--listen", "127.0.0.1:0"])
            .args(["--delay-ms", &path.delay_ms.to_string()])
            .args(["--reorder-percent", &path.reorder_percent.to_string()])
            .args(["--reorder-extra-ms", &path.reorder_extra_ms.to_string()])
            .args(["--seed", &std::process::id().to_string()]);
        let mut child = in_ns(&ns.name, &cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting dossier-netem in the nodes' namespace");
        let stdin = child.stdin.take().expect("piped stdin");
        let (tx, answers) = mpsc::channel();
        let line = first_line(child.stdout.take().expect("piped stdout"), Some(tx));
        let addr = line
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening "))
            .map(str::to_owned);
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dossier-netem printed {line:?}, not `listening ADDR`");
        };
        Self {
            child,
            stdin,
            answers,
            addr,
        }
    }

    pub(crate) fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .expect("writing to dossier-netem");
    }

    /// Blackholes the path until [`Proxy::heal`].
    pub(crate) fn cut(&mut self) {
        self.command("cut 0");
    }

    pub(crate) fn heal(&mut self) {
        self.command("heal");
    }

    /// The proxy's counters.
    pub(crate) fn stats(&mut self) -> std::collections::HashMap<String, u64> {
        self.command("stats");
        let line = self
            .answers
            .recv_timeout(Duration::from_secs(10))
            .expect("dossier-netem answers `stats`");
        parse_stats(&line)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dossier` command running in the background with its output collected; killed when
/// dropped unfinished.
pub(crate) struct Running {
    pub(crate) child: Option<Child>,
    pub(crate) label: String,
    pub(crate) out: Option<std::thread::JoinHandle<Vec<u8>>>,
    pub(crate) err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

pub(crate) fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

impl Running {
    pub(crate) fn spawn<S: AsRef<OsStr>>(ns: &NetNs, node: &Node, args: &[S]) -> Self {
        let base = node.command(args);
        let label = format!("{base:?} (in {})", ns.name);
        let mut child = in_ns(&ns.name, &base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let out = Some(collect(child.stdout.take().expect("piped")));
        let err = Some(collect(child.stderr.take().expect("piped")));
        Self {
            child: Some(child),
            label,
            out,
            err,
        }
    }

    pub(crate) fn finished(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Waits for the command, failing the test after `limit`.
    pub(crate) fn wait(mut self, limit: Duration) -> Outcome {
        let started = Instant::now();
        let mut child = self.child.take().expect("not waited yet");
        let status = loop {
            if let Some(s) = child.try_wait().expect("waiting for dossier") {
                break s;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not finish within {limit:?}; killed it", self.label);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            String::from_utf8_lossy(&h.expect("reader").join().expect("reader thread")).into_owned()
        };
        Outcome {
            command: self.label.clone(),
            code: status.code().unwrap_or(-1),
            stdout: text(self.out.take()),
            stderr: text(self.err.take()),
        }
    }

    /// Runs to completion, sampling the proxy's byte counters every 250 ms; returns the
    /// outcome, the wall time and the time the bytes actually flowed.
    pub(crate) fn measured(
        mut self,
        proxy: &mut Proxy,
        length: u64,
        limit: Duration,
    ) -> (Outcome, Transfer) {
        let started = Instant::now();
        let mut samples = Vec::new();
        while !self.finished() && started.elapsed() < limit {
            let s = proxy.stats();
            let total = s["up_bytes"] + s["down_bytes"];
            if samples.len() % 20 == 19 {
                eprintln!(
                    "bad network: {:.0} s: {:.1} MB up, {:.1} MB down through the proxy",
                    started.elapsed().as_secs_f64(),
                    s["up_bytes"] as f64 / 1e6,
                    s["down_bytes"] as f64 / 1e6
                );
            }
            samples.push((started.elapsed(), total));
            std::thread::sleep(Duration::from_millis(250));
        }
        let outcome = self.wait(
            limit
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(1)),
        );
        let wall = started.elapsed();
        (outcome, Transfer::from_samples(wall, &samples, length))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long a transfer took: the whole command (start-up, keyring, handshake, checks),
/// and the time between 5 % and 95 % of its bytes crossing the proxy (counting both
/// directions, retransmissions and acknowledgements: an estimate of the rate on the wire).
pub(crate) struct Transfer {
    pub(crate) wall: Duration,
    pub(crate) wire: Option<Duration>,
}

impl Transfer {
    pub(crate) fn from_samples(wall: Duration, samples: &[(Duration, u64)], length: u64) -> Self {
        let base = samples.first().map_or(0, |s| s.1);
        let when = |share: f64| {
            samples
                .iter()
                .find(|(_, total)| (total - base) as f64 >= share * length as f64)
                .map(|(t, _)| *t)
        };
        let wire = match (when(0.05), when(0.95)) {
            (Some(a), Some(b)) if b > a => Some(b - a),
            _ => None,
        };
        Self { wall, wire }
    }

    pub(crate) fn report(&self, what: &str, bytes: u64) {
        let mb = bytes as f64 / 1e6;
        let wire = self.wire.map_or(String::from("too short to sample"), |w| {
            format!("{:.3} MB/s on the wire", 0.9 * mb / w.as_secs_f64())
        });
        eprintln!(
            "bad network: {what}: {mb:.2} MB in {:.1} s = {:.3} MB/s for the command ({wire})",
            self.wall.as_secs_f64(),
            mb / self.wall.as_secs_f64(),
        );
    }
}
