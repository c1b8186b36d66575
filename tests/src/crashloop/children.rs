//! The `dossier` processes one crash-loop cycle runs beside the relay, and the seeded
//! pseudo-random source that decides what they do and when they die.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::Node;

/// xorshift64*: small, deterministic, not for secrets. The same seed gives the same plan
/// (which node sends what, when the relay dies); the operating system's scheduling still
/// varies between runs, so a seed reproduces the plan, not the exact interleaving.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // Never zero: xorshift would stay at zero.
        Self((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant at these sizes).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A delay uniform in `0..=max_ms` milliseconds.
    pub(crate) fn millis(&mut self, max_ms: u64) -> Duration {
        Duration::from_millis(self.below(max_ms + 1))
    }
}

/// Which node of the lab a process runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// One of the sending facilities (index into the senders).
    Sender(usize),
    /// One of the recipients (index into the recipients).
    Recipient(usize),
}

/// What a process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Job {
    /// `dossier send --to ... --json FILE` from send slot `slot`.
    Send { slot: usize },
    /// `dossier sync --json`.
    SyncOnce,
    /// `dossier sync --watch --interval 1`.
    Watch,
}

/// One `dossier` process, its output going to files in the cycle's directory.
pub(crate) struct Proc {
    pub who: Who,
    pub job: Job,
    pub label: String,
    pub out: PathBuf,
    pub err: PathBuf,
    child: Option<Child>,
    started: Instant,
    /// Exit code once finished (-1: ended by a signal).
    pub code: Option<i32>,
    /// SIGKILLed by the driver.
    pub killed: bool,
}

impl Proc {
    /// Starts `dossier ARGS` as `node`; stdout and stderr go to `<dir>/<label>.out|.err`.
    pub(crate) fn spawn(
        node: &Node,
        who: Who,
        job: Job,
        label: String,
        dir: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<Self, String> {
        let out = dir.join(format!("{label}.out"));
        let err = dir.join(format!("{label}.err"));
        let file = |p: &Path| {
            fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
        };
        let mut cmd = node.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file(&out)?))
            .stderr(Stdio::from(file(&err)?));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start dossier for {label}: {e}"))?;
        Ok(Self {
            who,
            job,
            label,
            out,
            err,
            child: Some(child),
            started: Instant::now(),
            code: None,
            killed: false,
        })
    }

    /// Whether it is still running (reaps it if it just ended).
    pub(crate) fn running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.code = Some(status.code().unwrap_or(-1));
                self.child = None;
                false
            }
            Ok(None) => true,
            Err(_) => {
                self.code = Some(-1);
                self.child = None;
                false
            }
        }
    }

    /// SIGKILL (a crash of the node in the middle of whatever it was doing) and reap.
    /// Returns whether it was still running.
    pub(crate) fn kill(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let status = child.wait().ok();
            self.code = Some(status.and_then(|s| s.code()).unwrap_or(-1));
            self.killed = true;
        }
        true
    }

    /// SIGTERM (a graceful stop, for `sync --watch`), SIGKILL after `grace`, and reap.
    /// Returns how long it took to stop, and whether it had to be killed.
    pub(crate) fn terminate(&mut self, grace: Duration) -> (Duration, bool) {
        if !self.running() {
            return (Duration::ZERO, false);
        }
        if let Some(child) = self.child.as_ref() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let asked = Instant::now();
        while self.running() {
            if asked.elapsed() > grace {
                self.kill();
                return (asked.elapsed(), true);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (asked.elapsed(), false)
    }

    /// Whether it was started before `t`.
    pub(crate) fn started_before(&self, t: Instant) -> bool {
        self.started < t
    }

    /// How long it has been running.
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Its standard output so far.
    pub(crate) fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The last non-empty line of its standard error (for reports).
    pub(crate) fn stderr_line(&self) -> String {
        fs::read_to_string(&self.err)
            .unwrap_or_default()
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Never leave a process behind, whatever path the driver took out of a cycle.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until every process in `procs` has ended, for at most `limit`.
pub(crate) fn wait_all(procs: &mut [Proc], limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let running: Vec<&Proc> = {
            let mut still = Vec::new();
            for p in procs.iter_mut() {
                if p.running() {
                    still.push(&*p);
                }
            }
            still
        };
        if running.is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            let names: Vec<String> = running
                .iter()
                .map(|p| format!("{} (running {:.1} s)", p.label, p.age().as_secs_f64()))
                .collect();
            return Err(format!(
                "dossier processes hung for more than {} s: {}",
                limit.as_secs(),
                names.join(", ")
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_others_differ() {
        let a: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next())).collect();
        let b: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next())).collect();
        let c: Vec<u64> = (0..8).scan(Rng::new(8), |r, _| Some(r.next())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut z = Rng::new(0x9E37_79B9_7F4A_7C15);
        assert_ne!(
            z.next(),
            0,
            "a seed equal to the mixing constant still works"
        );
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.below(301) <= 300));
    }
}
