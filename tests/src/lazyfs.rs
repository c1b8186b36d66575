//! `dossier-lazyfs`: a FUSE file system that forgets, on command, everything that was not
//! fsynced — a simulated power loss (issue "Hardening", item 5.2). `kill -9` leaves the
//! page cache intact, so the crash loop alone cannot show a missing fsync; with the relay's
//! data directory on this file system and the power cut after every kill, it can. The idea
//! is Jepsen's LazyFS (buffer what was not synced, drop it on a "crash"); this is our own,
//! much smaller implementation.
//!
//! # The durability model
//!
//! The whole tree lives in memory ([`model::Model`]): the directory given as `--backing`
//! is read in at mount (all of it counts as durable) and the tree is written back to it at
//! a clean unmount (SIGTERM), when everything counts as synced, as after `umount`.
//!
//! - **File data**: a `write` (at any offset) and a change of length (`ftruncate`,
//!   `set_len`, `O_TRUNC`) are visible at once and durable only after `fsync` or
//!   `fdatasync` of that file (the two are the same here). Until then they live in the
//!   file's current copy only.
//! - **Directory entries**: creating, linking, renaming and removing a name are visible at
//!   once and durable only after `fsync` of the directory that holds the name. A rename is
//!   two changes: the new name is durable with the destination directory, the removal of
//!   the old one with the source directory (a crash between the two syncs leaves both
//!   names). An `fsync` of a file does *not* make its name durable — POSIX does not promise
//!   it (fsync(2): "an explicit fsync() on a file descriptor for the directory is also
//!   needed"), though ext4 happens to. This is stricter than ext4, XFS or btrfs, which
//!   commit all earlier metadata changes together.
//! - **A new inode** survives a power loss only if a durable entry names it; it then holds
//!   what its last `fsync` left (nothing, if none: a zero-length file).
//! - **Power loss** ([`model::Model::power_loss`]): every file goes back to its bytes and
//!   length at its last `fsync`, every directory to its entries at its last `fsync`,
//!   inodes no durable name reaches disappear, and open handles are forgotten. Unsynced
//!   writes are dropped whole: no torn or reordered writes are simulated.
//! - Not modelled: metadata (mode, owner, times change at once and for good), `O_SYNC` /
//!   `O_DSYNC` (treated as ordinary writes, so a program relying on them would look
//!   broken here), symbolic links, special files, extended attributes, `fallocate`.
//! - Memory: every file is held twice (current and durable copies); the total is capped
//!   by `--max-mib` (default 1024), beyond which writes fail with `ENOSPC`.
//!
//! The kernel must not serve anything the model no longer holds after a power loss, so the
//! FUSE shell ([`fuse`]) lets it cache nothing (see there). Inode numbers are never
//! reused: a number the kernel still remembers names nothing after a power loss.
//!
//! # Control
//!
//! `--control SOCKET` (a Unix socket) takes one command per line: `power-loss` waits until
//! no file on the mount is open (the kernel releases a killed process's files shortly
//! after it dies, and the FUSE requests it had in flight come before that release), drops
//! the unsynced state and answers `ok files_rolled_back=N ...`, or `busy open_handles=N`
//! after 10 s; `usage` answers `ok files=N dirs=N bytes=N unsynced_files=N ...`. SIGUSR1
//! also cuts the power (without waiting); SIGTERM or SIGINT unmounts, writes the tree back
//! and exits 0. [`Mount`] drives the binary from tests.
//!
//! Mounting needs `/dev/fuse` and either root (fuser mounts with `mount(2)` directly, no
//! libfuse) or Debian's `fuse3` package (`fusermount3`).

mod control;
mod fuse;
pub mod model;

pub use control::{Mount, lazyfs_bin, unavailable};

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};

use model::{Model, Owner};

/// `dossier-lazyfs` options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Read in at mount as the durable state; the tree is written back here at unmount.
    pub backing: PathBuf,
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// The control socket to create.
    pub control: PathBuf,
    /// Cap on file contents held in memory (current and durable copies together).
    pub max_bytes: u64,
}

/// Mounts, prints `mounted MOUNTPOINT` on stdout, serves until SIGTERM/SIGINT or an
/// unmount, then writes the tree back to the backing directory.
pub fn serve(opts: &Options) -> Result<(), String> {
    // Signals are taken by `sigwait` below: block them before any thread exists so that
    // every thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let md = std::fs::metadata(&opts.backing)
        .map_err(|e| format!("backing directory {}: {e}", opts.backing.display()))?;
    let owner = Owner {
        uid: md.uid(),
        gid: md.gid(),
    };
    let mut model = Model::new(opts.max_bytes, owner);
    model
        .set_meta(
            model::ROOT,
            Some((md.permissions().mode() & 0o7777) as u16),
            None,
            None,
            None,
            None,
        )
        .map_err(|e| format!("root: {e}"))?;
    model
        .import(&opts.backing)
        .map_err(|e| format!("reading {}: {e}", opts.backing.display()))?;
    let model = Arc::new(Mutex::new(model));

    let on_unmount = Box::new(|| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGTERM);
    });
    let fs = fuse::LazyFs::new(Arc::clone(&model), opts.max_bytes, on_unmount);
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("dossier-lazyfs".into()),
        fuser::MountOption::Subtype("lazyfs".into()),
        fuser::MountOption::RW,
        fuser::MountOption::NoAtime,
    ];
    let session = fuser::Session::new(fs, &opts.mountpoint, &config)
        .map_err(|e| format!("mounting on {}: {e}", opts.mountpoint.display()))?;
    let background = session
        .spawn()
        .map_err(|e| format!("starting the FUSE session: {e}"))?;
    // (An error from here on drops `background`, which unmounts.)
    control::listen(&opts.control, Arc::clone(&model))?;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "mounted {}", opts.mountpoint.display());
    let _ = out.flush();

    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                let r = fuse::lock(&model).power_loss();
                eprintln!(
                    "dossier-lazyfs: power loss (SIGUSR1): {}",
                    control::describe(&r)
                );
            }
            Ok(_) => break,
            Err(e) => return Err(format!("waiting for signals: {e}")),
        }
    }
    let _ = std::fs::remove_file(&opts.control);
    background
        .umount_and_join()
        .map_err(|e| format!("unmounting {}: {e}", opts.mountpoint.display()))?;
    let mut m = fuse::lock(&model);
    m.sync_all();
    m.export(&opts.backing)
        .map_err(|e| format!("writing back to {}: {e}", opts.backing.display()))?;
    let u = m.usage();
    eprintln!(
        "dossier-lazyfs: unmounted; {} files, {} directories written back to {}",
        u.files,
        u.dirs,
        opts.backing.display()
    );
    Ok(())
}
