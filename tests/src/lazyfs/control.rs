//! The control socket (server side, in `dossier-lazyfs`) and [`Mount`], which starts the
//! binary and talks to that socket (client side, in the tests and the crash-loop driver).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::fuse::lock;
use super::model::{Model, PowerLoss};

/// How long `power-loss` waits for the files on the mount to be closed.
const QUIET_WAIT: Duration = Duration::from_secs(10);
/// How long the binary may take to mount.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// Environment variable that overrides where the `dossier-lazyfs` binary is.
pub const LAZYFS_BIN_ENV: &str = "DOSSIER_LAZYFS_BIN";

/// One line for a [`PowerLoss`].
pub(crate) fn describe(r: &PowerLoss) -> String {
    format!(
        "files_rolled_back={} bytes_rolled_back={} dirs_rolled_back={} inodes_lost={} duplicate_dirs_dropped={}",
        r.files_rolled_back,
        r.bytes_rolled_back,
        r.dirs_rolled_back,
        r.inodes_lost,
        r.duplicate_dirs_dropped
    )
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Binds `path` and answers commands on a background thread.
pub(crate) fn listen(path: &Path, model: Arc<Mutex<Model>>) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("lazyfs-control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = answer(conn, &model);
            }
        })
        .map_err(|e| format!("control thread: {e}"))?;
    Ok(())
}

fn answer(conn: UnixStream, model: &Mutex<Model>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        let reply = match line.trim() {
            "power-loss" => power_loss(model),
            "usage" => {
                let u = lock(model).usage();
                format!(
                    "ok files={} dirs={} bytes={} unsynced_files={} unsynced_dirs={} open_handles={}",
                    u.files, u.dirs, u.bytes, u.unsynced_files, u.unsynced_dirs, u.open_handles
                )
            }
            other => format!("error unknown command {other:?}"),
        };
        writeln!(out, "{reply}")?;
        line.clear();
    }
    Ok(())
}

fn power_loss(model: &Mutex<Model>) -> String {
    let started = Instant::now();
    loop {
        {
            let mut m = lock(model);
            let open = m.open_handles();
            if open == 0 {
                let r = m.power_loss();
                return format!("ok {}", describe(&r));
            }
            if started.elapsed() > QUIET_WAIT {
                return format!("busy open_handles={open}");
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `dossier-lazyfs` binary: `$DOSSIER_LAZYFS_BIN`, else beside the `dossier` binary
/// (both are built by `cargo build --workspace`).
pub fn lazyfs_bin() -> PathBuf {
    match std::env::var_os(LAZYFS_BIN_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => crate::dossier_bin().with_file_name("dossier-lazyfs"),
    }
}

/// Why a power-loss test cannot run here, or `None` when it can: `/dev/fuse` must open,
/// and either this is root or `fusermount3` (Debian's `fuse3`) is installed; then a trial
/// mount of `bin` must work.
pub fn unavailable(bin: &Path) -> Option<String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return Some(format!("/dev/fuse cannot be opened ({e})"));
    }
    let root = nix::unistd::geteuid().is_root();
    let helper = ["/usr/bin/fusermount3", "/bin/fusermount3"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if !root && !helper {
        return Some("not root and no fusermount3 (apt-get install fuse3)".into());
    }
    if !bin.is_file() {
        return Some(format!(
            "{} is missing (cargo build -p dossier-tests)",
            bin.display()
        ));
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return Some(format!("temporary directory: {e}")),
    };
    let trial = Mount::start(bin, &dir.path().join("trial"));
    match trial {
        Ok(mut m) => m.stop().err().map(|e| format!("trial unmount failed: {e}")),
        Err(e) => Some(format!("trial mount failed: {e}")),
    }
}

/// A running `dossier-lazyfs`: `DIR` mounted over `DIR.durable`, controlled through
/// `DIR.control`, its messages in `DIR.log`.
pub struct Mount {
    /// The mounted directory.
    pub mountpoint: PathBuf,
    /// The backing directory (read at mount, written back at [`Mount::stop`]).
    pub backing: PathBuf,
    /// The binary's log (stderr).
    pub log: PathBuf,
    control: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Mounts `bin` on `mountpoint`. An existing directory at `mountpoint` moves to
    /// `<mountpoint>.durable` and becomes the backing (durable) state; otherwise both start
    /// empty.
    pub fn start(bin: &Path, mountpoint: &Path) -> Result<Self, String> {
        let with = |ext: &str| {
            let mut p = mountpoint.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        let (backing, control, log) = (with(".durable"), with(".control"), with(".log"));
        if mountpoint.is_dir() {
            std::fs::rename(mountpoint, &backing)
                .map_err(|e| format!("moving {} aside: {e}", mountpoint.display()))?;
        } else {
            std::fs::create_dir_all(&backing).map_err(|e| format!("{}: {e}", backing.display()))?;
        }
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(bin)
            .arg("--backing")
            .arg(&backing)
            .arg("--mount")
            .arg(mountpoint)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(MOUNT_TIMEOUT).unwrap_or_default();
        let mut mount = Self {
            mountpoint: mountpoint.to_path_buf(),
            backing,
            log,
            control,
            child: Some(child),
        };
        if !line.starts_with("mounted ") {
            let _ = mount.stop();
            return Err(format!(
                "dossier-lazyfs did not mount within {} s: {}",
                MOUNT_TIMEOUT.as_secs(),
                mount.log_text().trim()
            ));
        }
        Ok(mount)
    }

    fn command(&self, cmd: &str) -> Result<String, String> {
        let conn = UnixStream::connect(&self.control)
            .map_err(|e| format!("control socket {}: {e}", self.control.display()))?;
        conn.set_read_timeout(Some(QUIET_WAIT + Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let mut w = conn.try_clone().map_err(|e| e.to_string())?;
        writeln!(w, "{cmd}").map_err(|e| format!("control: {e}"))?;
        let mut line = String::new();
        BufReader::new(conn)
            .read_line(&mut line)
            .map_err(|e| format!("control: {e}"))?;
        if line.starts_with("ok") {
            Ok(line.trim().to_owned())
        } else {
            Err(format!(
                "dossier-lazyfs answered {:?} to {cmd}",
                line.trim()
            ))
        }
    }

    /// Cuts the power: drops everything not fsynced (once no file is open any more).
    pub fn power_loss(&self) -> Result<PowerLoss, String> {
        let line = self.command("power-loss")?;
        Ok(PowerLoss {
            files_rolled_back: field(&line, "files_rolled_back"),
            bytes_rolled_back: field(&line, "bytes_rolled_back"),
            dirs_rolled_back: field(&line, "dirs_rolled_back"),
            inodes_lost: field(&line, "inodes_lost"),
            duplicate_dirs_dropped: field(&line, "duplicate_dirs_dropped"),
        })
    }

    /// `usage`, as the `key=value` line the binary answers.
    pub fn usage(&self) -> Result<String, String> {
        self.command("usage")
    }

    /// The binary's messages so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts cleanly (SIGTERM: everything counts as synced and is written back to the
    /// backing directory). If the binary does not exit within 20 s it is killed and the
    /// mount detached.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let asked = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                    return Err(format!(
                        "dossier-lazyfs exited with {status}: {}",
                        self.log_text().trim()
                    ));
                }
                Ok(None) if asked.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                    return Err("dossier-lazyfs did not stop within 20 s of SIGTERM".into());
                }
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
