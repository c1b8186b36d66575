//! The crash loop's lab (nodes, relay, ledger) and what it does in a cycle: start the
//! processes of the [`Plan`], kill on schedule, restart the relay, sync everything and check.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checks::{Ledger, LogScan, Snapshot, log_mentions, problems, scan_log};
use super::children::{Job, Proc, Rng, Who, wait_all};
use super::plan::{ANCHOR_LIMIT, Plan, SendPlan};
use super::{Config, Fault, SLOW_STOP, Summary, Violation};
use crate::lazyfs::Mount;
use crate::{Lab, Node, RelayProcess, free_udp_port, pseudo_random_bytes, write_file};

/// Full syncs of every node a cycle may need before everything must have arrived.
const SETTLE_ROUNDS: u32 = 4;
/// Longest a cycle's processes may run before the driver calls it a hang.
const CYCLE_LIMIT: Duration = Duration::from_secs(150);
/// How long a `sync --watch` gets to stop on SIGTERM when no stall limit is set.
const WATCH_GRACE: Duration = Duration::from_secs(30);
/// Cycle directories (command output, inputs) kept behind the current one.
const KEEP_CYCLE_DIRS: u32 = 3;

/// The lab, its nodes and relay, and what the run has seen.
///
/// Fields drop in order: the relay dies first, then the power-loss file system under its
/// data directory unmounts, then the lab directory goes.
pub(super) struct World {
    relay: RelayProcess,
    /// The relay's data directory is this `dossier-lazyfs` mount (`Config::power_loss`).
    lazyfs: Option<Mount>,
    pub(super) lab: Lab,
    senders: Vec<Node>,
    recipients: Vec<Node>,
    ledger: Ledger,
    log_offset: u64,
    rng: Rng,
    injected: Option<String>,
}

impl World {
    /// Two senders, two recipients, pinned both ways, enrolled, relay up on a fixed port.
    pub(super) fn new(cfg: &Config) -> Self {
        let lab = Lab::new();
        let senders = vec![
            lab.coordinator(),
            lab.facility("ortho", "de-berlin-ortho", "Berlin Orthopaedics", "DE"),
        ];
        let recipients = vec![lab.clinic(), lab.patient_node()];
        for s in &senders {
            for r in &recipients {
                s.pin_both_ways(r);
            }
        }
        let listen = format!("127.0.0.1:{}", free_udp_port());
        let mut relay = RelayProcess::init_on(&lab, &listen);
        for n in senders.iter().chain(&recipients) {
            relay.enroll(n);
        }
        // Power-loss mode: what `init` and `enroll` wrote is the durable state the
        // file system starts from; the relay serves from the mount.
        let lazyfs = cfg.power_loss.as_ref().map(|bin| {
            Mount::start(bin, &relay.data)
                .unwrap_or_else(|e| panic!("mounting dossier-lazyfs on the relay's data: {e}"))
        });
        relay.start();
        for n in senders.iter().chain(&recipients) {
            n.use_relay(&relay);
            n.set_connect_timeout(1);
        }
        Self {
            lab,
            relay,
            lazyfs,
            senders,
            recipients,
            ledger: Ledger::default(),
            log_offset: 0,
            rng: Rng::new(cfg.seed),
            injected: None,
        }
    }

    fn node(&self, who: Who) -> &Node {
        match who {
            Who::Sender(i) => &self.senders[i],
            Who::Recipient(i) => &self.recipients[i],
        }
    }

    /// One cycle; `Ok` holds its report line.
    pub(super) fn cycle(
        &mut self,
        cfg: &Config,
        n: u32,
        sum: &mut Summary,
    ) -> Result<String, Vec<String>> {
        let t0 = Instant::now();
        let dir = self.lab.path().join("cycles").join(format!("{n:05}"));
        fs::create_dir_all(&dir).map_err(|e| vec![format!("creating {}: {e}", dir.display())])?;
        if let Some(old) = n.checked_sub(KEEP_CYCLE_DIRS + 1) {
            let _ = fs::remove_dir_all(self.lab.path().join("cycles").join(format!("{old:05}")));
        }
        let before = (sum.sends, sum.node_kills, self.ledger.sent.len());
        if !self.relay.is_running() {
            self.start_relay(n, sum)?;
        }
        let plan = Plan::draw(
            &mut self.rng,
            cfg,
            n,
            self.senders.len(),
            self.recipients.len(),
        );
        let (procs, killed_at) = self.drive(cfg, n, &plan, &dir, sum)?;
        let drove = t0.elapsed();
        let restarted_at_once = killed_at.is_some() && self.relay.is_running();
        let mut notes = Vec::new();
        for p in &procs {
            self.absorb_outcome(p, n, sum, &mut notes);
        }
        if cfg.fault == Some(Fault::LoseAcknowledgedBody) && self.injected.is_none() {
            let held = self.relay.blob_files();
            if let Some(id) = held.iter().find(|id| self.ledger.acked.contains_key(*id)) {
                let body = self.relay.data.join("blobs").join(id);
                let blobs = self.relay.data.join("blobs");
                fs::remove_file(&body)
                    .and_then(|()| fs::File::open(&blobs)?.sync_all())
                    .map_err(|e| vec![format!("injecting the fault: {e}")])?;
                notes.push(format!(
                    "FAULT INJECTED: deleted the acknowledged body {id}"
                ));
                self.injected = Some(id.clone());
            }
        }
        if !self.relay.is_running() {
            self.start_relay(n, sum)?;
        }
        let settle_start = Instant::now();
        let snap = self.settle(n, &dir, sum)?;
        let settled = settle_start.elapsed();
        sum.bundles = self.ledger.sent.len() as u64;
        sum.acked = self.ledger.acked.len() as u64;
        sum.delivered = snap.delivered() as u64;
        let kill = match (killed_at, plan.node_kill) {
            (Some(at), _) => format!(
                "relay killed {} ms into the uploads, restarted {}",
                at.as_millis(),
                if restarted_at_once {
                    "at once"
                } else {
                    "after the nodes"
                }
            ),
            (None, Some(at)) => format!(
                "{} node processes killed {} ms into the uploads",
                sum.node_kills - before.1,
                at.as_millis()
            ),
            (None, None) => "nothing killed".into(),
        };
        let node_kills = if killed_at.is_some() && plan.node_kill.is_some() {
            format!(", {} node processes killed", sum.node_kills - before.1)
        } else {
            String::new()
        };
        Ok(format!(
            "cycle {n:>4}/{}: {} sends{}; {kill}{node_kills}; {} bundles ({} new), {} acked, {} inbox entries{}; {:.1} s (run {:.1}, settle {:.1})",
            cfg.cycles,
            sum.sends - before.0,
            if plan.slots.iter().flatten().any(|s| s.large) {
                " (1 large)"
            } else {
                ""
            },
            self.ledger.sent.len(),
            self.ledger.sent.len() - before.2,
            self.ledger.acked.len(),
            snap.delivered(),
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            },
            t0.elapsed().as_secs_f64(),
            drove.as_secs_f64(),
            settled.as_secs_f64()
        ))
    }

    /// Starts the cycle's processes on schedule, kills on schedule, and waits for the rest.
    /// Returns them, and when the relay was killed (after the anchor).
    fn drive(
        &mut self,
        cfg: &Config,
        n: u32,
        plan: &Plan,
        dir: &Path,
        sum: &mut Summary,
    ) -> Result<(Vec<Proc>, Option<Duration>), Vec<String>> {
        let t0 = Instant::now();
        let log_start = self.log_offset;
        let mut procs: Vec<Proc> = Vec::new();
        for (i, &who) in plan.watches.iter().enumerate() {
            let label = format!("{}-watch-{i}", self.node(who).label);
            let args = ["sync", "--watch", "--interval", "1"].map(OsStr::new);
            procs.push(
                Proc::spawn(self.node(who), who, Job::Watch, label, dir, &args)
                    .map_err(|e| vec![e])?,
            );
        }
        let mut queues: Vec<VecDeque<&SendPlan>> =
            plan.slots.iter().map(|q| q.iter().collect()).collect();
        let mut current: Vec<Option<usize>> = vec![None; queues.len()];
        let mut anchor: Option<Instant> = None;
        let mut next_sync = 0;
        let mut sends = 0usize;
        let mut relay_killed_at = None;
        let mut relay_killed_instant: Option<Instant> = None;
        let mut nodes_killed = false;
        loop {
            let t = t0.elapsed();
            if anchor.is_none()
                && (t > ANCHOR_LIMIT
                    || log_mentions(&self.relay.log, log_start, " deposit receiving "))
            {
                anchor = Some(Instant::now());
            }
            let since = anchor.map(|a| a.elapsed());
            while let (Some(&(at, who)), Some(since)) = (plan.syncs.get(next_sync), since) {
                if at > since {
                    break;
                }
                next_sync += 1;
                let label = format!("{}-sync-{next_sync}", self.node(who).label);
                let args = ["sync", "--json"].map(OsStr::new);
                procs.push(
                    Proc::spawn(self.node(who), who, Job::SyncOnce, label, dir, &args)
                        .map_err(|e| vec![e])?,
                );
            }
            for (slot, queue) in queues.iter_mut().enumerate() {
                if current[slot].is_some_and(|i| procs[i].running()) {
                    continue;
                }
                let Some(send) = queue.pop_front() else {
                    current[slot] = None;
                    continue;
                };
                sends += 1;
                let label = format!("send-{slot}-{sends}");
                let input = dir.join(format!("{label}.bin"));
                let len = if send.large {
                    cfg.large_bytes
                } else {
                    cfg.small_bytes
                };
                let content_seed = cfg.seed ^ (u64::from(n) << 20) ^ sends as u64;
                write_file(&input, &pseudo_random_bytes(content_seed, len));
                let mut args: Vec<&OsStr> = vec![OsStr::new("send")];
                for &r in &send.to {
                    args.push(OsStr::new("--to"));
                    args.push(OsStr::new(self.recipients[r].id.as_str()));
                }
                args.push(OsStr::new("--json"));
                args.push(input.as_os_str());
                let who = Who::Sender(send.sender);
                procs.push(
                    Proc::spawn(
                        &self.senders[send.sender],
                        who,
                        Job::Send { slot },
                        label,
                        dir,
                        &args,
                    )
                    .map_err(|e| vec![e])?,
                );
                current[slot] = Some(procs.len() - 1);
            }
            if let (Some(at), Some(since)) = (plan.relay_kill, since) {
                if relay_killed_at.is_none() && since >= at {
                    self.relay.kill();
                    sum.relay_kills += 1;
                    self.cut_power(sum)?;
                    relay_killed_at = Some(since);
                    relay_killed_instant = Some(Instant::now());
                }
            }
            if let (Some(limit), Some(killed)) = (cfg.stall_limit, relay_killed_instant) {
                if killed.elapsed() >= limit {
                    for p in &mut procs {
                        if p.job != Job::Watch && p.started_before(killed) && p.kill() {
                            sum.stall_kills += 1;
                        }
                    }
                }
            }
            if relay_killed_at.is_some() && plan.restart_at_once && !self.relay.is_running() {
                self.start_relay(n, sum)?;
            }
            if let (Some(at), Some(since)) = (plan.node_kill, since) {
                if !nodes_killed && since >= at {
                    nodes_killed = true;
                    for p in &mut procs {
                        let dies = match p.job {
                            Job::Send { slot } => plan.kill_send[slot],
                            Job::SyncOnce | Job::Watch => true,
                        };
                        if dies && p.kill() {
                            sum.node_kills += 1;
                        }
                    }
                }
            }
            let kills_done = plan.relay_kill.is_none_or(|_| relay_killed_at.is_some())
                && plan.node_kill.is_none_or(|_| nodes_killed);
            let all_started =
                next_sync >= plan.syncs.len() && queues.iter().all(VecDeque::is_empty);
            let sends_done = current
                .iter()
                .all(|c| c.is_none_or(|i| !procs[i].running()));
            if kills_done && all_started && sends_done {
                // Watches that were not killed with the nodes stop the way an operator
                // stops them.
                for p in &mut procs {
                    if p.job == Job::Watch {
                        let (took, killed) = p.terminate(cfg.stall_limit.unwrap_or(WATCH_GRACE));
                        if took > SLOW_STOP {
                            sum.slow_watch_stops += 1;
                            sum.slowest_watch_stop = sum.slowest_watch_stop.max(took.as_secs_f64());
                        }
                        if killed {
                            sum.stall_kills += 1;
                        }
                    }
                }
                wait_all(&mut procs, CYCLE_LIMIT.saturating_sub(t)).map_err(|e| vec![e])?;
                return Ok((procs, relay_killed_at));
            }
            if t > CYCLE_LIMIT {
                return Err(vec![format!(
                    "cycle did not finish within {} s",
                    CYCLE_LIMIT.as_secs()
                )]);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Power-loss mode: right after a relay kill, everything the relay wrote and did not
    /// fsync is dropped (once the kernel has closed the dead process's files).
    fn cut_power(&mut self, sum: &mut Summary) -> Result<(), Vec<String>> {
        let Some(fs) = &self.lazyfs else {
            return Ok(());
        };
        let r = fs
            .power_loss()
            .map_err(|e| vec![format!("cutting the power: {e}")])?;
        sum.power_losses += 1;
        sum.files_rolled_back += r.files_rolled_back;
        sum.dirs_rolled_back += r.dirs_rolled_back;
        sum.inodes_lost += r.inodes_lost;
        Ok(())
    }

    /// Takes in what a finished process says: bundle ids printed by sends, acceptances.
    fn absorb_outcome(&mut self, p: &Proc, n: u32, sum: &mut Summary, notes: &mut Vec<String>) {
        let Job::Send { .. } = p.job else {
            return;
        };
        sum.sends += 1;
        let Who::Sender(sender) = p.who else { return };
        if p.killed {
            return;
        }
        if p.code != Some(0) {
            sum.sends_failed += 1;
            notes.push(format!("{} failed: {}", p.label, p.stderr_line()));
            return;
        }
        let doc: serde_json::Value = serde_json::from_str(&p.stdout()).unwrap_or_default();
        let (Some(id), Some(state)) = (doc["bundle_id"].as_str(), doc["state"].as_str()) else {
            notes.push(format!(
                "{} succeeded without a bundle id: {}",
                p.label,
                p.stdout()
            ));
            return;
        };
        let to = doc["to"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.ledger.note_sent(id, sender, to, None, n);
        match state {
            "accepted" => {
                sum.sends_accepted += 1;
                self.ledger.note_acked(id, n);
            }
            _ => sum.sends_queued += 1,
        }
    }

    /// Starts the relay (moving it to a new port if another program took ours meanwhile)
    /// and checks that the store opened cleanly.
    fn start_relay(&mut self, n: u32, sum: &mut Summary) -> Result<(), Vec<String>> {
        let moved = self.ensure_port().map_err(|e| vec![e])?;
        // The lines since the last scan are the killed process's last words.
        let last_words = self.scan_relay_log(n, sum)?;
        sum.acked_then_killed += last_words.accepted.len() as u64;
        self.relay.start();
        sum.relay_starts += 1;
        if moved {
            for node in self.senders.iter().chain(&self.recipients) {
                let out = node.relay_set(self.relay.address(), &self.relay.pin);
                if out.code != 0 {
                    return Err(vec![format!(
                        "relay set after a port move failed\n{}",
                        out.describe()
                    )]);
                }
            }
        }
        // `listening` is printed after `store open`: the recovery line is in the log now.
        let scan = self.scan_relay_log(n, sum)?;
        if scan.opens == 0 {
            return Err(vec![
                "the relay serves but logged no `store open` line".into(),
            ]);
        }
        Ok(())
    }

    /// The fixed port is ours unless another program on this shared machine bound it while
    /// the relay was down; then the relay and every node move to a new one.
    fn ensure_port(&mut self) -> Result<bool, String> {
        if std::net::UdpSocket::bind(&self.relay.listen).is_ok() {
            return Ok(false);
        }
        let listen = format!("127.0.0.1:{}", free_udp_port());
        let path = self.relay.data.join("relay.json");
        let text = fs::read_to_string(&path).map_err(|e| format!("reading relay.json: {e}"))?;
        let mut doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("relay.json: {e}"))?;
        doc["listen"] = serde_json::Value::from(listen.clone());
        // Fsynced: in power-loss mode an unsynced rewrite would be undone by the next cut.
        fs::File::create(&path)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, doc.to_string().as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| format!("writing relay.json: {e}"))?;
        self.relay.listen = listen;
        Ok(true)
    }

    /// Scans the relay's log since the last scan: acknowledgements into the ledger,
    /// recovery counts into the summary, store errors out as problems.
    fn scan_relay_log(&mut self, n: u32, sum: &mut Summary) -> Result<LogScan, Vec<String>> {
        let (scan, end) = scan_log(&self.relay.log, self.log_offset);
        self.log_offset = end;
        for id in &scan.accepted {
            self.ledger.note_acked(id, n);
        }
        sum.orphan_blobs_removed += scan.orphan_blobs_removed;
        sum.uploads_requeued += scan.uploads_requeued;
        sum.orphan_parts_removed += scan.orphan_parts_removed;
        sum.relay_warnings += scan.warnings;
        if scan.bad.is_empty() {
            Ok(scan)
        } else {
            Err(scan.bad.iter().map(|l| format!("RELAY LOG: {l}")).collect())
        }
    }

    /// Syncs every node (senders, recipients, senders again for the receipts) until the
    /// invariants hold, at most [`SETTLE_ROUNDS`] times.
    fn settle(&mut self, n: u32, dir: &Path, sum: &mut Summary) -> Result<Snapshot, Vec<String>> {
        for round in 1..=SETTLE_ROUNDS {
            let mut errors = Vec::new();
            for (step, side) in ["up", "down", "receipts"].iter().enumerate() {
                let nodes: Vec<Who> = if step == 1 {
                    (0..self.recipients.len()).map(Who::Recipient).collect()
                } else {
                    (0..self.senders.len()).map(Who::Sender).collect()
                };
                let mut procs = Vec::new();
                for who in nodes {
                    let label = format!("settle-{round}-{side}-{}", self.node(who).label);
                    let args = [OsStr::new("sync"), OsStr::new("--json")];
                    procs.push(
                        Proc::spawn(self.node(who), who, Job::SyncOnce, label, dir, &args)
                            .map_err(|e| vec![e])?,
                    );
                }
                wait_all(&mut procs, CYCLE_LIMIT).map_err(|e| vec![e])?;
                for p in &procs {
                    if p.code != Some(0) {
                        errors.push(format!(
                            "`sync` on {} exited {:?}: {}",
                            self.node(p.who).id,
                            p.code,
                            p.stderr_line()
                        ));
                        continue;
                    }
                    let doc: serde_json::Value =
                        serde_json::from_str(&p.stdout()).unwrap_or_default();
                    sum.redeliveries += doc["duplicates"].as_array().map_or(0, Vec::len) as u64;
                }
            }
            let snap = Snapshot::take(&self.senders, &self.recipients, &self.relay)
                .map_err(|e| vec![e])?;
            self.scan_relay_log(n, sum)?;
            self.ledger.absorb(&snap, n);
            let settled = problems(
                &mut self.ledger,
                &snap,
                &self.senders,
                &self.recipients,
                true,
            );
            if settled.is_empty() {
                return Ok(snap);
            }
            let lasting = problems(
                &mut self.ledger,
                &snap,
                &self.senders,
                &self.recipients,
                false,
            );
            if !lasting.is_empty() || round == SETTLE_ROUNDS {
                let mut all = if lasting.is_empty() { settled } else { lasting };
                if !errors.is_empty() {
                    all.push(format!("last sync errors: {}", errors.join(" | ")));
                }
                return Err(all);
            }
        }
        unreachable!("the last round returns")
    }

    /// After the last cycle: SIGTERM stops the relay cleanly, and the store opens again for
    /// an admin command (it is not left locked or damaged).
    pub(super) fn finish(&mut self, sum: &mut Summary) -> Result<(), Vec<String>> {
        let mut out = Vec::new();
        if self.relay.is_running() {
            let code = self.relay.stop();
            if code != Some(0) {
                out.push(format!("the relay exited {code:?} on SIGTERM instead of 0"));
            }
        }
        let card = self.senders[0].export_card();
        let enroll = self.relay.admin(&[OsStr::new("enroll"), card.as_os_str()]);
        if enroll.code != 0 {
            out.push(format!(
                "the store did not reopen for `enroll` after the run\n{}",
                enroll.describe()
            ));
        }
        if let Err(bad) = self.scan_relay_log(0, sum) {
            out.extend(bad);
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Stops everything and keeps the lab directory; returns the violation report.
    pub(super) fn fail(
        self,
        cfg: &Config,
        cycle: u32,
        mut problems: Vec<String>,
    ) -> Box<Violation> {
        if let Some(fs) = &self.lazyfs {
            problems.push(format!(
                "(the relay's data directory was on dossier-lazyfs: its final state is written back to {}, the file system's log is {})",
                fs.backing.display(),
                fs.log.display()
            ));
        }
        let log = self.relay.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let relay_log_tail = lines[lines.len().saturating_sub(40)..].join("\n");
        Box::new(Violation {
            seed: cfg.seed,
            cycle,
            problems,
            relay_log: self.relay.log.clone(),
            injected: self.injected.clone(),
            lab: self.keep(),
            relay_log_tail,
        })
    }

    /// Kills the relay and keeps the lab directory on disk.
    pub(super) fn keep(self) -> PathBuf {
        let World {
            lab, relay, lazyfs, ..
        } = self;
        drop(relay);
        // Unmounting writes the data directory's final state back into the lab.
        drop(lazyfs);
        let path = lab.path().to_path_buf();
        // Lab deletes its directory on drop; this one is evidence.
        std::mem::forget(lab);
        path
    }
}
