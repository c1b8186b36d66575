//! Crash loop: the relay and nodes SIGKILLed at random moments while bundles move, with
//! the delivery guarantees checked after every cycle (issue "Hardening", item 1).
//!
//! One lab: two sending facilities and two recipients (a clinic and a patient's node), every
//! sender–recipient pair pinned both ways, all enrolled at one relay on a fixed loopback
//! port. Each cycle:
//!
//! 1. start the relay if it is down: it must print `listening` and log no store error;
//! 2. run `senders` send slots at once, each sending `bundles_per_sender` bundles one after
//!    the other (4 KiB each; every `large_every` cycles one of a few MiB) from a random
//!    sender to one or both recipients, beside recipient `sync` runs (and, when nodes are
//!    killed, sender `sync` runs and `sync --watch` processes);
//! 3. after a random delay (0–300 ms by default) SIGKILL the relay (`--kill relay|both`)
//!    and/or every syncing node process and some of the sends (`--kill node|both`); a coin
//!    toss restarts the relay at once (while the nodes retry) or after they have finished;
//! 4. sync every node until nothing moves, then check the invariants (see [`checks`]).
//!
//! With [`Config::power_loss`] the relay's data directory is a `dossier-lazyfs` mount and
//! every relay kill in step 3 is followed at once by a power cut: whatever the relay wrote
//! and did not fsync is gone when it restarts, which `kill -9` alone (page cache intact)
//! cannot show.
//!
//! Every random choice comes from the seed, so a seed reproduces the plan of a run (the
//! operating system's scheduling still varies). A violation stops the run and keeps the lab
//! directory (homes, relay data and log, the last cycles' command output) for inspection.

mod checks;
mod children;
mod plan;
mod world;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use world::World;

/// A `sync --watch` that takes longer than this to stop on SIGTERM is reported.
pub const SLOW_STOP: Duration = Duration::from_secs(2);

/// What the driver SIGKILLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillTarget {
    /// The relay, during the uploads and downloads.
    Relay,
    /// Syncing nodes (`sync`, `sync --watch`, some `send`s); the relay keeps running.
    Node,
    /// Both, at independent moments.
    Both,
}

impl KillTarget {
    /// `relay`, `node` or `both`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "relay" => Some(Self::Relay),
            "node" => Some(Self::Node),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    pub(crate) fn relay(self) -> bool {
        matches!(self, Self::Relay | Self::Both)
    }

    pub(crate) fn node(self) -> bool {
        matches!(self, Self::Node | Self::Both)
    }
}

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct Config {
    /// Cycles to run.
    pub cycles: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Send slots running at once per cycle.
    pub senders: usize,
    /// Bundles each slot sends, one after the other.
    pub bundles_per_sender: usize,
    /// Every this many cycles one bundle is large (0: never).
    pub large_every: u32,
    /// What gets killed.
    pub kill: KillTarget,
    /// Size of a small bundle's file.
    pub small_bytes: usize,
    /// Size of a large bundle's file.
    pub large_bytes: usize,
    /// Kills happen this many milliseconds into the cycle at most.
    pub max_kill_delay_ms: u64,
    /// Keep the lab directory even when the run passes.
    pub keep_lab: bool,
    /// After a relay kill, node processes that started before it and still run this much
    /// later are SIGKILLed (`None`: wait for them). A node connected to a relay that died
    /// waits out its QUIC idle time-out (12 s) before it retries; this bounds a short run.
    pub stall_limit: Option<Duration>,
    /// A fault to inject, to show that the checks catch it (self-test).
    pub fault: Option<Fault>,
    /// The `dossier-lazyfs` binary: when set, the relay's data directory is mounted on it
    /// and the power is cut (everything not fsynced dropped) right after every relay kill
    /// (see [`crate::lazyfs`]).
    pub power_loss: Option<PathBuf>,
}

/// Damage the driver can do on purpose, to prove a check fails when it should.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// After the first cycle's processes finish, delete the body file of a bundle the
    /// relay acknowledged and still holds: what a store that loses acknowledged data does.
    LoseAcknowledgedBody,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cycles: 30,
            seed: 1,
            senders: 4,
            bundles_per_sender: 2,
            large_every: 10,
            kill: KillTarget::Relay,
            small_bytes: 4096,
            large_bytes: 6 << 20,
            max_kill_delay_ms: 300,
            keep_lab: false,
            stall_limit: None,
            fault: None,
            power_loss: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cycles completed.
    pub cycles: u32,
    /// `dossier send` processes started.
    pub sends: u64,
    /// Sends that answered `accepted`.
    pub sends_accepted: u64,
    /// Sends that answered `queued` (the relay was down or went down).
    pub sends_queued: u64,
    /// Sends that failed with an error (the bundle stays queued in the outbox).
    pub sends_failed: u64,
    /// Distinct bundles in the senders' outboxes.
    pub bundles: u64,
    /// Bundles the relay acknowledged.
    pub acked: u64,
    /// Bundles acknowledged by a relay process that was SIGKILLed later in the cycle.
    pub acked_then_killed: u64,
    /// Inbox entries over all recipients (a bundle for two recipients counts twice).
    pub delivered: u64,
    /// Times a bundle already in an inbox was offered again (acknowledged, not stored).
    pub redeliveries: u64,
    /// Relay processes SIGKILLed.
    pub relay_kills: u64,
    /// `dossier` processes SIGKILLed.
    pub node_kills: u64,
    /// `dossier` processes SIGKILLed because they still waited on a dead relay after the
    /// stall limit.
    pub stall_kills: u64,
    /// `sync --watch` processes that took more than [`SLOW_STOP`] to stop on SIGTERM.
    pub slow_watch_stops: u64,
    /// The longest such stop, in seconds.
    pub slowest_watch_stop: f64,
    /// Relay starts (each reopens the store).
    pub relay_starts: u64,
    /// Recovery at those starts: bodies the index did not know, removed.
    pub orphan_blobs_removed: u64,
    /// Recovery: bodies renamed but not indexed, moved back so the upload resumes.
    pub uploads_requeued: u64,
    /// Recovery: partial uploads without a record, removed.
    pub orphan_parts_removed: u64,
    /// WARN lines in the relay's log.
    pub relay_warnings: u64,
    /// Power cuts (power-loss mode: one per relay kill).
    pub power_losses: u64,
    /// At those cuts: files whose unsynced writes were dropped.
    pub files_rolled_back: u64,
    /// At those cuts: directories whose unsynced entry changes were dropped.
    pub dirs_rolled_back: u64,
    /// At those cuts: files and directories whose names had never been made durable.
    pub inodes_lost: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The lab directory, when kept.
    pub lab: Option<PathBuf>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} cycles in {:.1} s ({:.2} s per cycle)",
            self.cycles,
            self.seconds,
            self.seconds / f64::from(self.cycles.max(1))
        )?;
        writeln!(
            f,
            "sends: {} ({} accepted at once, {} queued, {} failed and stayed queued)",
            self.sends, self.sends_accepted, self.sends_queued, self.sends_failed
        )?;
        writeln!(
            f,
            "bundles: {} in outboxes, {} acknowledged by the relay ({} by a relay killed afterwards), {} inbox entries, {} redeliveries absorbed",
            self.bundles, self.acked, self.acked_then_killed, self.delivered, self.redeliveries
        )?;
        writeln!(
            f,
            "kills: {} relay, {} node processes (+{} stalled on a dead relay); {} relay starts, recovery removed {} orphan bodies, requeued {} uploads, removed {} orphan parts; {} relay WARN lines",
            self.relay_kills,
            self.node_kills,
            self.stall_kills,
            self.relay_starts,
            self.orphan_blobs_removed,
            self.uploads_requeued,
            self.orphan_parts_removed,
            self.relay_warnings
        )?;
        if self.power_losses > 0 {
            writeln!(
                f,
                "power losses: {} (dropped unsynced writes in {} files, unsynced entries in {} directories, {} never-durable files)",
                self.power_losses, self.files_rolled_back, self.dirs_rolled_back, self.inodes_lost
            )?;
        }
        if self.slow_watch_stops > 0 {
            writeln!(
                f,
                "note: {} `sync --watch` took more than {} s to stop on SIGTERM (longest {:.1} s)",
                self.slow_watch_stops,
                SLOW_STOP.as_secs(),
                self.slowest_watch_stop
            )?;
        }
        if let Some(lab) = &self.lab {
            writeln!(f, "lab kept at {}", lab.display())?;
        }
        Ok(())
    }
}

/// A broken guarantee: where, what, and where to look.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The run's seed.
    pub seed: u64,
    /// The cycle that found it (0: after the last cycle).
    pub cycle: u32,
    /// Everything wrong at that point.
    pub problems: Vec<String>,
    /// The lab directory, kept.
    pub lab: PathBuf,
    /// The relay's log file.
    pub relay_log: PathBuf,
    /// The end of the relay's log.
    pub relay_log_tail: String,
    /// The bundle a [`Fault`] damaged, if one was injected.
    pub injected: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.cycle {
            0 => "after the last cycle".to_owned(),
            n => format!("in cycle {n}"),
        };
        writeln!(f, "crash loop VIOLATION {when} (seed {}):", self.seed)?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        writeln!(f, "lab kept for inspection: {}", self.lab.display())?;
        if let Some(id) = &self.injected {
            writeln!(
                f,
                "(a fault was injected on purpose: the body of {id} was deleted)"
            )?;
        }
        writeln!(f, "relay log: {}", self.relay_log.display())?;
        writeln!(f, "--- end of the relay log ---\n{}", self.relay_log_tail)
    }
}

/// Runs the crash loop; `report` hears one line per cycle. Returns at the first cycle that
/// breaks a guarantee, keeping the lab.
pub fn run(cfg: &Config, report: &mut dyn FnMut(&str)) -> Result<Summary, Box<Violation>> {
    let started = Instant::now();
    let mut world = World::new(cfg);
    report(&format!(
        "crash loop: {} cycles, seed {}, kill {:?}{}, {} send slots x {} bundles, lab {}",
        cfg.cycles,
        cfg.seed,
        cfg.kill,
        if cfg.power_loss.is_some() {
            " + power loss"
        } else {
            ""
        },
        cfg.senders,
        cfg.bundles_per_sender,
        world.lab.path().display()
    ));
    let mut sum = Summary {
        relay_starts: 1,
        ..Summary::default()
    };
    for n in 1..=cfg.cycles {
        match catch_unwind(AssertUnwindSafe(|| world.cycle(cfg, n, &mut sum))) {
            Ok(Ok(line)) => {
                sum.cycles = n;
                report(&line);
            }
            Ok(Err(problems)) => return Err(world.fail(cfg, n, problems)),
            Err(panic) => return Err(world.fail(cfg, n, vec![panic_text(&panic)])),
        }
    }
    match catch_unwind(AssertUnwindSafe(|| world.finish(&mut sum))) {
        Ok(Ok(())) => {}
        Ok(Err(problems)) => return Err(world.fail(cfg, 0, problems)),
        Err(panic) => return Err(world.fail(cfg, 0, vec![panic_text(&panic)])),
    }
    sum.seconds = started.elapsed().as_secs_f64();
    if cfg.keep_lab {
        sum.lab = Some(world.keep());
    }
    Ok(sum)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".into());
    format!("the harness stopped: {msg}")
}
