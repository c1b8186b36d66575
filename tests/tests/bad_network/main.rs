//! Bad networks (issue 5, item 3): a relay and two nodes in network namespaces this test
//! creates, joined by a veth pair, with the path between them made bad on purpose.
//!
//! ```text
//!  namespace dossier-PID-TAG-n                 namespace dossier-PID-TAG-r
//!  dossier (coordinator, clinic)               dossier-relay serve 10.77.0.1:PORT
//!   → 127.0.0.1:P dossier-netem ─ veth vn 10.77.0.2 ═ vr 10.77.0.1 ─ nftables:
//!     150 ms each way, 1 % of datagrams            5 % of UDP datagrams dropped
//!     5 ms late (reordered), `cut`                 in each direction
//! ```
//!
//! Loss comes from nftables (`numgen random mod 100 < 5 drop`, this kernel has no `tc
//! netem`); delay, reordering and cuts from the `dossier-netem` proxy
//! (`dossier_tests::netem`).
//!
//! - Test A moves a 100 MiB bundle through the whole bad path, reports the MB/s achieved
//!   each way and checks the recipient opens it intact (relay and node use BBR congestion
//!   control; with quinn's default CUBIC this took over an hour: docs/operations.md,
//!   "Testing over bad networks").
//! - Test B cuts the path in the middle of the upload and of the download, long enough for
//!   the QUIC connection to die, and shows each transfer resumes where it stopped (the
//!   relay's `have`, `bytes_sent`, the node's `resumed_from`) and the content arrives intact.
//!
//! Needs root, `ip netns` and `nft`; without them each test prints `SKIPPED ...: why` and
//! passes. Namespaces (and with them the veth pair and the nftables table), the relay, the
//! proxy and node commands are removed by guards, also when a test panics. Sizes and the
//! path can be changed: `DOSSIER_BADNET_MIB`, `DOSSIER_BADNET_LOSS`,
//! `DOSSIER_BADNET_DELAY_MS`, `DOSSIER_BADNET_REORDER`, `DOSSIER_BADNET_CUT_LOSS`,
//! `DOSSIER_BADNET_CUT_REORDER`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dossier_tests::*;

mod netns;
use netns::*;

/// Loss applied by nftables, each direction, in percent (`DOSSIER_BADNET_LOSS`).
const LOSS_PERCENT: u32 = 5;
/// One-way delay added by the proxy, each direction (`DOSSIER_BADNET_DELAY_MS`).
const DELAY_MS: u64 = 150;

/// `var` as a number, else `default`.
fn setting(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loss_percent() -> u64 {
    setting("DOSSIER_BADNET_LOSS", LOSS_PERCENT.into())
}

fn delay_ms() -> u64 {
    setting("DOSSIER_BADNET_DELAY_MS", DELAY_MS)
}

/// Share of datagrams (percent) the proxy holds back so later ones overtake them
/// (`DOSSIER_BADNET_REORDER`), and by how much.
const REORDER_PERCENT: u64 = 1;
const REORDER_EXTRA_MS: u64 = 5;

fn reorder_percent() -> u64 {
    setting("DOSSIER_BADNET_REORDER", REORDER_PERCENT)
}

/// Size of the bundle cut mid-way: large enough that a third of it is several of the 1 MiB
/// steps in which relay and node write partial files.
const CUT_TEST_MIB: u64 = 24;
/// How far below the partial file's size a resumed transfer may restart (whole blocks).
const SLACK: u64 = 64 << 10;
/// Longest one transfer of the default-sized tests may take before the test fails.
const TRANSFER_LIMIT: Duration = Duration::from_secs(150);

/// The bundle size: `DOSSIER_BADNET_MIB` if set, else `default_mib`.
fn bundle_bytes(default_mib: u64) -> usize {
    setting("DOSSIER_BADNET_MIB", default_mib) as usize * 1024 * 1024
}

/// The relay, two nodes pinned to each other and pointed at the proxy, all in namespaces.
/// Fields drop in this order: processes first, then the nftables table, the lab's files
/// and last the namespaces.
struct World {
    proxy: Proxy,
    /// Kept for its `Drop`: stops the relay.
    _relay_serve: NsRelay,
    relay: RelayProcess,
    loss: LossTable,
    coordinator: Node,
    clinic: Node,
    lab: Lab,
    topo: Topology,
}

/// Sets up a world whose path loses `loss` % of datagrams each way and delivers `reorder`
/// % late.
fn world(test: &str, tag: &str, loss: u64, reorder: u64) -> Option<World> {
    let lab = Lab::new();
    let (topo, dir) = bad_network(test, tag, &lab)?;
    let loss_table = match LossTable::install(&topo.relay, loss, &dir) {
        Ok(l) => l,
        Err(why) => {
            eprintln!("SKIPPED {test}: nftables cannot drop packets here: {why}");
            return None;
        }
    };
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let relay = RelayProcess::init_on(&lab, &format!("{RELAY_IP}:0"));
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    let relay_serve = NsRelay::start(&topo.relay, &relay);
    let path = ProxyPath {
        delay_ms: delay_ms(),
        reorder_percent: reorder,
        reorder_extra_ms: REORDER_EXTRA_MS,
    };
    let proxy = Proxy::start(&topo.nodes, &relay_serve.addr, &path);
    for n in [&coordinator, &clinic] {
        n.relay_set(&proxy.addr, &relay.pin).ok();
        // A handshake over 300 ms of round trip and 5 % loss can take a few seconds.
        n.set_connect_timeout(20);
    }
    eprintln!(
        "bad network: relay {} in {}, proxy {} in {}, {} % loss, {} ms each way, \
         {} % of datagrams {REORDER_EXTRA_MS} ms late",
        relay_serve.addr,
        topo.relay.name,
        proxy.addr,
        topo.nodes.name,
        loss,
        delay_ms(),
        reorder
    );
    Some(World {
        proxy,
        _relay_serve: relay_serve,
        relay,
        loss: loss_table,
        coordinator,
        clinic,
        lab,
        topo,
    })
}

impl World {
    fn run<S: AsRef<OsStr>>(&self, node: &Node, args: &[S]) -> Running {
        Running::spawn(&self.topo.nodes, node, args)
    }

    /// A directory holding one file of `len` pseudo-random bytes.
    fn records(&self, len: usize, seed: u64) -> (PathBuf, PathBuf) {
        let dir = self.lab.fresh_dir("records");
        let file = dir.join("ct-series.dcm");
        write_file(&file, &pseudo_random_bytes(seed, len));
        (dir, file)
    }

    /// `send` while the path is cut, so the bundle is sealed and queued without network
    /// time; the upload is then a `sync` of its own. Returns (bundle id, length).
    fn send_queued(&mut self, file: &Path) -> (String, u64) {
        self.proxy.cut();
        self.coordinator.set_connect_timeout(1);
        let out = self
            .run(
                &self.coordinator,
                &["send", "--to", CLINIC_ID, "--json", file.to_str().unwrap()],
            )
            .wait(Duration::from_secs(120));
        self.proxy.heal();
        self.coordinator.set_connect_timeout(20);
        out.ok();
        let doc = out.json();
        assert_eq!(doc["state"], "queued", "{}", out.describe());
        (
            doc["bundle_id"].as_str().unwrap().to_owned(),
            doc["length"].as_u64().unwrap(),
        )
    }

    fn open_and_compare(&self, id: &str, original: &Path) {
        let out = self.lab.fresh_path("opened");
        let opened = self
            .run(&self.clinic, &["open", id, "-o", out.to_str().unwrap()])
            .wait(Duration::from_secs(120));
        opened.ok();
        assert_eq!(
            sha256_file(&out.join("ct-series.dcm")),
            sha256_file(original),
            "the bundle arrived byte-identical"
        );
    }
}

/// Waits until a `.part` file in `dir` holds at least `at` bytes. Panics if the command
/// ends first (the transfer was too fast to cut) or after `limit`.
fn wait_for_partial(dir: &Path, at: u64, cmd: &mut Running, limit: Duration) -> u64 {
    let started = Instant::now();
    loop {
        let have = std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if have >= at {
            return have;
        }
        assert!(
            !cmd.finished(),
            "{} ended before {at} bytes had moved: nothing to cut",
            cmd.label
        );
        assert!(
            started.elapsed() < limit,
            "{} moved only {have} of {at} bytes in {limit:?}",
            cmd.label
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Moves a bundle of `mib` MiB (unless `DOSSIER_BADNET_MIB` says otherwise) from the
/// coordinator to the clinic over the bad path, reports the MB/s each way, and checks the
/// clinic opens it intact.
fn exchange_over_bad_path(test: &str, tag: &str, mib: u64, limit: Duration) {
    let Some(mut w) = world(test, tag, loss_percent(), reorder_percent()) else {
        return;
    };
    let (_, file) = w.records(bundle_bytes(mib), 0xBAD);
    let (id, length) = w.send_queued(&file);

    let up = w.run(&w.coordinator, &["sync", "--json"]);
    let (out, up_time) = up.measured(&mut w.proxy, length, limit);
    out.ok();
    let summary = out.json();
    assert_eq!(
        summary["uploaded"][0]["bundle_id"],
        id.as_str(),
        "{summary}"
    );
    up_time.report("upload (coordinator sync)", length);

    let down = w.run(&w.clinic, &["sync", "--json"]);
    let (out, down_time) = down.measured(&mut w.proxy, length, limit);
    out.ok();
    let summary = out.json();
    assert_eq!(
        summary["received"][0]["bundle_id"],
        id.as_str(),
        "{summary}"
    );
    down_time.report("download (clinic sync)", length);

    let stats = w.proxy.stats();
    let lost = w.loss.dropped_packets();
    eprintln!(
        "bad network: nftables dropped {lost} datagrams, the proxy reordered {} and forwarded \
         {} up / {} down",
        stats["reordered"], stats["up_packets"], stats["down_packets"]
    );
    if loss_percent() > 0 {
        assert!(lost > 0, "the path really lost packets");
    }
    if reorder_percent() > 0 {
        assert!(stats["reordered"] > 0, "the path really reordered packets");
    }
    w.open_and_compare(&id, &file);
}

/// The issue's target: a 100 MiB bundle over the full bad path (5 % loss, 150 ms each way,
/// reordering), each way in well under a minute now that relay and node use BBR (about
/// 25 KB/s, over an hour, with quinn's default CUBIC: docs/operations.md, "Testing over
/// bad networks").
#[test]
fn a_100_mib_bundle_crosses_a_lossy_slow_reordering_path_intact() {
    exchange_over_bad_path(
        "a_100_mib_bundle_crosses_a_lossy_slow_reordering_path_intact",
        "f",
        100,
        TRANSFER_LIMIT,
    );
}

/// A cut longer than the QUIC idle time-out, once in the middle of the upload and once in
/// the middle of the download, on the full bad path (loss and reordering as in test A;
/// `DOSSIER_BADNET_CUT_LOSS`, `DOSSIER_BADNET_CUT_REORDER` change them).
#[test]
fn a_transfer_cut_mid_way_resumes_where_it_stopped() {
    let Some(mut w) = world(
        "a_transfer_cut_mid_way_resumes_where_it_stopped",
        "b",
        setting("DOSSIER_BADNET_CUT_LOSS", LOSS_PERCENT.into()),
        setting("DOSSIER_BADNET_CUT_REORDER", REORDER_PERCENT),
    ) else {
        return;
    };
    let (_, file) = w.records(bundle_bytes(CUT_TEST_MIB), 0xC07);
    let (id, length) = w.send_queued(&file);
    // Both ends write their partial files in steps of up to 1 MiB: cut well inside.
    let cut_at = length / 3;

    // 1. The path goes dark during the upload, for longer than the node's QUIC idle
    //    time-out: the connection dies and `sync` gives up, the bundle still queued.
    w.coordinator.set_connect_timeout(2);
    let mut up = w.run(&w.coordinator, &["sync", "--json"]);
    let had = wait_for_partial(
        &w.relay.data.join("incoming"),
        cut_at,
        &mut up,
        TRANSFER_LIMIT,
    );
    let cut = Instant::now();
    w.proxy.cut();
    let first = up.wait(Duration::from_secs(90));
    eprintln!(
        "bad network: upload cut after {had} of {length} bytes; sync gave up after \
         {:.1} s (exit {})",
        cut.elapsed().as_secs_f64(),
        first.code
    );
    assert!(
        !serde_json::from_str::<serde_json::Value>(&first.stdout)
            .is_ok_and(|d| d["uploaded"].as_array().is_some_and(|a| !a.is_empty())),
        "the upload cannot have finished through a cut path\n{}",
        first.describe()
    );
    w.proxy.heal();
    w.coordinator.set_connect_timeout(20);

    // 2. Healed: the next sync sends only what the relay lacks.
    let (out, time) = w.run(&w.coordinator, &["sync", "--json"]).measured(
        &mut w.proxy,
        length - had,
        TRANSFER_LIMIT,
    );
    out.ok();
    let summary = out.json();
    let up = &summary["uploaded"][0];
    assert_eq!(up["bundle_id"], id.as_str(), "{summary}");
    let sent = up["bytes_sent"].as_u64().unwrap();
    assert!(
        sent < length - had / 2,
        "resumed: sent {sent} of {length} bytes after the relay already held {had}"
    );
    let log = w.relay.log_text();
    let resumed_at = log
        .lines()
        .filter(|l| l.contains("deposit receiving") && l.contains(&id))
        .filter_map(|l| field(l, "have"))
        .max()
        .unwrap_or(0);
    // The relay keeps what it held, cut back to whole blocks at most.
    assert!(
        resumed_at + SLACK >= had && resumed_at + sent == length,
        "the relay resumed the deposit at {resumed_at}, having held {had}, and {sent} bytes \
         followed; log:\n{log}"
    );
    time.report("resumed upload", sent);

    // 3. The path goes dark during the download: the clinic keeps its partial file.
    w.clinic.set_connect_timeout(2);
    let incoming = w.clinic.home.join("inbox").join("incoming");
    let mut down = w.run(&w.clinic, &["sync", "--json"]);
    let had = wait_for_partial(&incoming, cut_at, &mut down, TRANSFER_LIMIT);
    let cut = Instant::now();
    w.proxy.cut();
    let first = down.wait(Duration::from_secs(90));
    eprintln!(
        "bad network: download cut after {had} of {length} bytes; sync gave up after \
         {:.1} s (exit {})",
        cut.elapsed().as_secs_f64(),
        first.code
    );
    w.proxy.heal();
    w.clinic.set_connect_timeout(20);
    assert!(
        w.run(&w.clinic, &["inbox", "--json"])
            .wait(Duration::from_secs(60))
            .ok()
            .json()
            .as_array()
            .is_some_and(Vec::is_empty),
        "nothing enters the inbox half-way"
    );

    // 4. Healed: the download resumes from the partial file and the bundle arrives once.
    let (out, time) =
        w.run(&w.clinic, &["sync", "--json"])
            .measured(&mut w.proxy, length - had, TRANSFER_LIMIT);
    out.ok();
    let summary = out.json();
    let got = &summary["received"][0];
    assert_eq!(got["bundle_id"], id.as_str(), "{summary}");
    let from = got["resumed_from"].as_u64().unwrap();
    assert!(
        from + SLACK >= had,
        "the download resumed at {from}, after the {had} bytes held: {got}"
    );
    time.report("resumed download", length - from);
    w.open_and_compare(&id, &file);
}

/// The number after `NAME=` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
