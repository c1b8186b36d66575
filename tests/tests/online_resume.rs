//! Interrupted transfers resume instead of starting over: the relay is killed (SIGKILL)
//! during an upload and again during the download; after it restarts, `sync` sends only
//! what the relay lacks and fetches only what the recipient lacks, and the bundle arrives
//! byte-identical exactly once.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use dossier_tests::*;

/// The issue asks for a 200 MiB transfer interrupted mid-way.
const BIG: usize = 200 * 1024 * 1024;
/// Kill the relay once this much has moved.
const CUT_AT: u64 = 8 * 1024 * 1024;

fn largest_part(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Waits until a `.part` file in `dir` holds at least [`CUT_AT`] bytes, or `child` exits.
/// Returns whether the threshold was reached while the child still ran.
fn wait_for_partial(dir: &Path, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if largest_part(dir) >= CUT_AT {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn a_large_transfer_cut_twice_by_relay_crashes_resumes_and_arrives_once() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let port = free_udp_port();
    let mut relay = RelayProcess::init_on(&lab, &format!("127.0.0.1:{port}"));
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    relay.start();
    coordinator.use_relay(&relay);
    clinic.use_relay(&relay);

    let input_dir = lab.fresh_dir("in");
    let input: PathBuf = input_dir.join("ct-series.dcm");
    write_file(&input, &pseudo_random_bytes(0xB16, BIG));

    // 1. The relay dies while the upload is under way: `send` leaves the bundle queued.
    let input_arg = input.to_str().unwrap();
    let mut send = spawn_dossier(
        &coordinator,
        &["send", "--to", CLINIC_ID, "--json", input_arg],
    );
    let cut = wait_for_partial(&relay.data.join("incoming"), &mut send);
    relay.kill();
    let sent = finish_spawned(send, "dossier (spawned)");
    assert!(
        cut,
        "the upload finished before it could be interrupted (machine too fast for this test?)\n{}",
        sent.describe()
    );
    sent.ok().stderr_has("NOT yet accepted by the relay");
    let doc = sent.json();
    assert_eq!(doc["state"], "queued");
    let id = doc["bundle_id"].as_str().unwrap().to_owned();
    let length = doc["length"].as_u64().unwrap();

    // 2. After the restart, sync sends only the missing bytes.
    relay.start();
    let summary = coordinator.sync();
    let up = &summary["uploaded"][0];
    assert_eq!(up["bundle_id"], id.as_str(), "{summary}");
    let bytes_sent = up["bytes_sent"].as_u64().unwrap();
    assert!(
        bytes_sent < length,
        "resumed: sent {bytes_sent} of {length} bytes, not all again"
    );

    // 3. The relay dies while the clinic downloads: its partial file stays.
    let incoming = clinic.home.join("inbox").join("incoming");
    let mut sync = spawn_dossier(&clinic, &["sync", "--json"]);
    let cut = wait_for_partial(&incoming, &mut sync);
    relay.kill();
    let first = finish_spawned(sync, "dossier (spawned)");
    assert!(
        cut,
        "the download finished before it could be interrupted\n{}",
        first.describe()
    );
    first.failed();
    assert!(
        clinic.inbox().is_empty(),
        "nothing enters the inbox half-way"
    );

    // 4. After the restart the download resumes and the bundle arrives once.
    relay.start();
    let summary = clinic.sync();
    let got = &summary["received"][0];
    assert_eq!(got["bundle_id"], id.as_str(), "{summary}");
    assert!(
        got["resumed_from"].as_u64().unwrap() > 0,
        "the download resumed: {got}"
    );
    assert_eq!(clinic.sync()["received"].as_array().map(Vec::len), Some(0));
    let inbox = clinic.inbox();
    assert_eq!(inbox.len(), 1);
    let out = lab.fresh_path("opened");
    clinic.run(&["open", &id, "-o", out.to_str().unwrap()]).ok();
    assert_eq!(
        sha256_file(&out.join("ct-series.dcm")),
        sha256_file(&input),
        "byte-identical after two interruptions"
    );
    coordinator.sync();
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "delivered");
}

/// `sync --watch` stopped (SIGTERM) while a download is stalled mid-way — the case where the
/// shutdown signal used to wait for the transfer to give up — exits within seconds, keeps
/// the bytes received, and the next `sync` resumes after them.
#[test]
fn sync_watch_stops_promptly_during_a_stalled_download_and_the_next_sync_resumes() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let Cast {
        lab,
        relay,
        coordinator,
        clinic,
        ..
    } = Cast::start();
    let input = lab.fresh_dir("in").join("mri-series.dcm");
    write_file(&input, &pseudo_random_bytes(0x57, BIG / 2));
    let sent = coordinator.send_outcome(&[CLINIC_ID], &[], &[&input]);
    sent.ok();
    let id = sent.json()["bundle_id"].as_str().unwrap().to_owned();

    let incoming = clinic.home.join("inbox").join("incoming");
    let mut watch = spawn_dossier(&clinic, &["sync", "--watch"]);
    let cut = wait_for_partial(&incoming, &mut watch);
    let relay_pid = Pid::from_raw(relay.pid().expect("relay running") as i32);
    kill(relay_pid, Signal::SIGSTOP).expect("freeze the relay");
    if !cut || clinic.inbox().len() == 1 {
        kill(relay_pid, Signal::SIGCONT).expect("thaw the relay");
        let _ = kill(Pid::from_raw(watch.id() as i32), Signal::SIGTERM);
        let out = finish_spawned(watch, "dossier sync --watch");
        panic!(
            "the download finished before it could be stalled\n{}",
            out.describe()
        );
    }
    let held = largest_part(&incoming);
    let asked = Instant::now();
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let stopped = finish_spawned(watch, "dossier sync --watch");
    let took = asked.elapsed();
    kill(relay_pid, Signal::SIGCONT).expect("thaw the relay");
    stopped.ok();
    assert!(
        took < Duration::from_secs(5),
        "stopped {took:?} after SIGTERM, during a stalled download\n{}",
        stopped.describe()
    );
    assert!(clinic.inbox().is_empty(), "nothing filed half-way");
    assert!(
        largest_part(&incoming) >= held,
        "the bytes received are kept"
    );

    let summary = clinic.sync();
    let got = &summary["received"][0];
    assert_eq!(got["bundle_id"], id.as_str(), "{summary}");
    assert!(
        got["resumed_from"].as_u64().unwrap() >= held,
        "resumed: {got}"
    );
    assert_eq!(clinic.inbox().len(), 1);
}
