//! Power loss (issue "Hardening", item 5.2): `kill -9` leaves the page cache intact, so the
//! crash loop alone cannot show a missing fsync. Here the relay's data directory is a
//! `dossier-lazyfs` mount (`dossier_tests::lazyfs`: whatever was not fsynced — file bytes,
//! lengths, and names in directories not fsynced since — is dropped at a simulated power
//! loss), and the crash loop cuts the power right after every relay kill. Every bundle the
//! relay acknowledged must still be delivered, exactly once, and the store must reopen.
//!
//! A self-test first shows the file system really drops unsynced data, so that the loop
//! could fail. Both skip, saying why, where FUSE cannot be mounted (no `/dev/fuse`, not
//! root and no `fusermount3`, or a container that forbids mounting).
//!
//! The long run: `dossier-crashloop --cycles 300 --power-loss` (docs/operations.md,
//! "Power-loss testing").

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use dossier_tests::crashloop::{self, Config, KillTarget};
use dossier_tests::lazyfs::{Mount, unavailable};

const LAZYFS: &str = env!("CARGO_BIN_EXE_dossier-lazyfs");

/// `true` when the test can run; otherwise says why it is skipped.
fn fuse_available(test: &str) -> bool {
    match unavailable(Path::new(LAZYFS)) {
        None => true,
        Some(why) => {
            eprintln!("SKIPPED {test}: FUSE is not available here: {why}");
            false
        }
    }
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

#[test]
fn lazyfs_drops_what_was_not_fsynced_and_keeps_what_was() {
    if !fuse_available("lazyfs self-test") {
        return;
    }
    let lab = tempfile::tempdir().unwrap();
    let mnt = lab.path().join("data");
    fs::create_dir(&mnt).unwrap();
    fs::write(mnt.join("before"), b"durable at mount").unwrap();
    let mut fs_ = Mount::start(Path::new(LAZYFS), &mnt).unwrap();
    assert_eq!(fs::read(mnt.join("before")).unwrap(), b"durable at mount");

    // Written, file and directory fsynced: survives.
    let mut f = File::create(mnt.join("kept")).unwrap();
    f.write_all(b"synced bytes").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // Written but never fsynced, though its name is: the name survives, empty.
    fs::write(mnt.join("name-only"), b"lost bytes").unwrap();
    sync_dir(&mnt);
    // Fsynced but its directory never was: gone.
    let mut f = File::create(mnt.join("no-name")).unwrap();
    f.write_all(b"synced, unnamed").unwrap();
    f.sync_all().unwrap();
    drop(f);
    // A synced file overwritten in the middle and extended, unsynced: rolls back.
    let f = OpenOptions::new()
        .write(true)
        .open(mnt.join("kept"))
        .unwrap();
    f.write_all_at(b"XX", 2).unwrap();
    f.write_all_at(b" and more", 12).unwrap();
    drop(f);
    // A rename and an unlink without the directory fsync: undone.
    fs::rename(mnt.join("before"), mnt.join("renamed")).unwrap();
    fs::remove_file(mnt.join("name-only")).unwrap();
    // O_DIRECT, as dossier-spool opens bodies: accepted, or refused for the fallback.
    let direct = {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(mnt.join("direct"))
    };
    eprintln!(
        "O_DIRECT open on the mount: {:?}",
        direct.as_ref().map(|_| ())
    );
    drop(direct);

    assert_eq!(
        fs::read(mnt.join("kept")).unwrap(),
        b"syXXed bytes and more"
    );
    let r = fs_.power_loss().unwrap();
    eprintln!("power loss: {r:?}");
    assert!(r.files_rolled_back >= 2 && r.inodes_lost >= 1, "{r:?}");

    assert_eq!(fs::read(mnt.join("kept")).unwrap(), b"synced bytes");
    assert_eq!(fs::read(mnt.join("name-only")).unwrap(), b"");
    assert!(!mnt.join("no-name").exists());
    assert!(!mnt.join("direct").exists());
    assert!(!mnt.join("renamed").exists());
    assert_eq!(fs::read(mnt.join("before")).unwrap(), b"durable at mount");

    // A clean unmount writes the tree back to the backing directory.
    fs::write(mnt.join("at-exit"), b"x").unwrap();
    fs_.stop().unwrap();
    assert_eq!(fs::read(fs_.backing.join("kept")).unwrap(), b"synced bytes");
    assert_eq!(fs::read(fs_.backing.join("at-exit")).unwrap(), b"x");
}

#[test]
fn relay_sigkilled_and_power_cut_in_30_cycles_loses_and_duplicates_nothing() {
    if !fuse_available("power-loss crash loop") {
        return;
    }
    let cfg = Config {
        cycles: 30,
        seed: 0x90_4E12,
        kill: KillTarget::Relay,
        senders: 4,
        bundles_per_sender: 2,
        large_every: 10,
        large_bytes: 3 << 20,
        stall_limit: Some(Duration::from_secs(2)),
        power_loss: Some(LAZYFS.into()),
        ..Config::default()
    };
    let mut report = |line: &str| eprintln!("{line}");
    let s = match crashloop::run(&cfg, &mut report) {
        Ok(s) => s,
        Err(violation) => panic!("{violation}"),
    };
    eprintln!("{s}");
    assert_eq!(s.cycles, 30);
    assert_eq!(s.power_losses, 30, "one power cut per relay kill: {s}");
    assert_eq!(s.bundles, s.acked, "everything queued was finally accepted");
    assert!(
        s.acked_then_killed > 0,
        "some power cuts must land after acknowledgements, or the test proves nothing: {s}"
    );
    assert!(
        s.files_rolled_back + s.dirs_rolled_back > 0,
        "some cuts must drop unsynced state, or the file system did nothing: {s}"
    );
    assert!(s.delivered >= s.bundles, "{s}");
}

/// `dossier-relay init` on a fresh path: the operator hands out the pin it printed, so the
/// data directory must survive a power loss right after `init` returns.
///
/// Regression test: `DataDir::create` (relay/src/data_dir.rs) and `Layout::create`
/// (relay/src/store/files.rs) used to create the data directory with `create_dir_all` and
/// fsync it but never its parent, so the directory's own name was not durable and a power
/// loss took the whole relay (key, pin, store) with it. ext4 happens to commit the name
/// with the next fsync of anything; POSIX does not promise it.
#[test]
fn a_relay_initialised_on_a_fresh_path_survives_a_power_loss() {
    if !fuse_available("relay init under power loss") {
        return;
    }
    let lab = tempfile::tempdir().unwrap();
    let mnt = lab.path().join("disk");
    let mut fs_ = Mount::start(Path::new(LAZYFS), &mnt).unwrap();
    let data = mnt.join("relay");
    let out = std::process::Command::new(dossier_tests::relay_bin())
        .arg("init")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = fs_.power_loss().unwrap();
    assert!(
        data.join("relay.json").is_file() && data.join("store.redb").is_file(),
        "the data directory `init` reported did not survive the power loss ({r:?})"
    );
    fs_.stop().unwrap();
}
