//! Timing a command and its peak memory, for the benchmark binaries.
//!
//! A benchmark re-runs itself as `BENCH --measure CMD ARGS...`: that wrapper's only child is
//! the command, so `getrusage(RUSAGE_CHILDREN)` after waiting gives exactly the command's
//! peak RSS, whatever other commands the benchmark ran before.

use std::process::{Command, Stdio};
use std::time::Instant;

/// First argument that turns a benchmark binary into the measuring wrapper.
pub const MEASURE_FLAG: &str = "--measure";

/// One timed command.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// CPU seconds (user + system) the command used, across all its threads.
    pub cpu_seconds: f64,
}

/// Runs `cmd` under a fresh wrapper (this executable with [`MEASURE_FLAG`]) and returns its
/// time and peak RSS. Panics if the command fails: a benchmark of a failure is meaningless.
pub fn measure(cmd: &mut Command) -> Measurement {
    let me = std::env::current_exe().expect("own path");
    let mut wrapper = Command::new(me);
    wrapper.arg(MEASURE_FLAG).arg(cmd.get_program());
    wrapper.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapper.env(k, v);
        }
    }
    let out = wrapper
        .stderr(Stdio::inherit())
        .output()
        .expect("run measure wrapper");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let (Some(secs), Some(rss), Some(cpu)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("measurement failed: {text}");
    };
    Measurement {
        seconds: secs.parse().expect("seconds"),
        max_rss_kib: rss.parse().expect("rss"),
        cpu_seconds: cpu.parse().expect("cpu seconds"),
    }
}

/// The wrapper side: runs `cmd`, waits, prints `seconds max_rss_kib cpu_seconds` on stdout; exits 1 with
/// the command's stderr if it failed.
#[allow(clippy::print_stdout)] // the wrapper's report to its parent is its stdout
pub fn measure_child(cmd: &[String]) {
    let start = Instant::now();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        eprintln!(
            "{} failed: {}",
            cmd[0],
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let cpu = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let cpu_seconds = cpu(usage.user_time()) + cpu(usage.system_time());
    println!("{seconds} {} {cpu_seconds}", usage.max_rss());
}
