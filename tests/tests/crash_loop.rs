//! The crash loop in CI (issue "Hardening", item 1): 30 cycles with the relay SIGKILLed in
//! the middle of concurrent uploads and downloads, 10 cycles with syncing nodes SIGKILLed
//! instead, and a self-test showing that a relay which loses an acknowledged body is caught.
//! The long run is `dossier-crashloop --cycles 1000` (docs/operations.md, "Crash-loop
//! testing"); the driver and its checks live in `dossier_tests::crashloop`.
//!
//! Sized for two shared cores in a debug build (the three tests together took 88–126 s on
//! the project's machine): four send slots of two bundles each per cycle, a 3 MiB bundle every
//! tenth cycle, and nodes still waiting on a dead relay's connection SIGKILLed after 2 s
//! instead of waiting out their 12 s QUIC idle time-out (the long run waits).

use std::time::Duration;

use dossier_tests::crashloop::{self, Config, Fault, KillTarget, Summary};

fn config(cycles: u32, seed: u64, kill: KillTarget) -> Config {
    Config {
        cycles,
        seed,
        kill,
        senders: 4,
        bundles_per_sender: 2,
        large_every: 10,
        large_bytes: 3 << 20,
        stall_limit: Some(Duration::from_secs(2)),
        ..Config::default()
    }
}

/// Runs the loop, printing each cycle (visible with `--nocapture`); panics with the whole
/// report at the first violation, keeping the lab directory for inspection.
fn run(cfg: &Config) -> Summary {
    let mut report = |line: &str| eprintln!("{line}");
    match crashloop::run(cfg, &mut report) {
        Ok(summary) => {
            eprintln!("{summary}");
            summary
        }
        Err(violation) => panic!("{violation}"),
    }
}

#[test]
fn relay_sigkilled_in_30_cycles_loses_and_duplicates_nothing() {
    let s = run(&config(30, 0xC0FFEE, KillTarget::Relay));
    assert_eq!(s.cycles, 30);
    assert_eq!(s.relay_kills, 30, "one relay crash per cycle");
    assert_eq!(s.bundles, s.acked, "everything queued was finally accepted");
    assert!(
        s.acked_then_killed > 0,
        "some kills must land after acknowledgements, or the test proves nothing: {s}"
    );
    assert!(s.delivered >= s.bundles, "{s}");
}

#[test]
fn syncing_nodes_sigkilled_in_10_cycles_lose_and_duplicate_nothing() {
    let s = run(&config(10, 0x5EED, KillTarget::Node));
    assert_eq!(s.cycles, 10);
    assert_eq!(s.relay_kills, 0);
    assert!(s.node_kills > 0, "some node processes were killed: {s}");
    assert_eq!(s.bundles, s.acked, "every outbox item was finally accepted");
}

#[test]
fn the_checks_catch_a_relay_that_loses_an_acknowledged_body() {
    let cfg = Config {
        fault: Some(Fault::LoseAcknowledgedBody),
        // The first cycle that ends with an acknowledged body still held loses it; the run
        // must stop there.
        ..config(6, 0xBAD, KillTarget::Relay)
    };
    let mut report = |line: &str| eprintln!("{line}");
    let violation = match crashloop::run(&cfg, &mut report) {
        Ok(summary) => panic!(
            "no violation in 6 cycles: either no cycle ended with an acknowledged body to \
             delete, or its loss went unnoticed:\n{summary}"
        ),
        Err(v) => v,
    };
    let id = violation
        .injected
        .clone()
        .unwrap_or_else(|| panic!("a violation before any fault was injected:\n{violation}"));
    eprintln!("{violation}");
    let text = violation.problems.join("\n");
    assert!(
        text.contains(&id),
        "the report names the lost bundle:\n{violation}"
    );
    // The lab was kept as evidence; this one is ours to clean.
    assert!(violation.lab.is_dir(), "{}", violation.lab.display());
    std::fs::remove_dir_all(&violation.lab).expect("removing the kept lab");
}
