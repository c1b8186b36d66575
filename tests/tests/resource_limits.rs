//! Resource limits of a real `dossier-relay` process (issue 5, item 7):
//!
//! 1. **Disk full**: the relay's data directory on a small ext4 file system (loop device;
//!    tmpfs where loop devices are unavailable). A deposit that does not fit is refused with
//!    `storage_full`, naming the cause and the fix; the sending node keeps it queued;
//!    bundles accepted before stay intact and deliverable; the relay keeps serving, and
//!    once recipients' acknowledgements free space the queued bundle goes through; after a
//!    restart the store opens cleanly and the log shows no panic.
//! 2. **Stalled clients**: recipients that stop reading mid-download (SIGSTOPped `dossier
//!    sync`, and bare clients that keep the connection alive but never read), and senders
//!    that open a deposit and then send nothing or trickle bytes: the relay's resident
//!    memory stays under a bound derived from its windows, it drops the stalled transfers
//!    after its time-outs, and other nodes are served meanwhile.
//! 3. **Quotas under load**: concurrent senders of one facility pushing past its quota: the
//!    accepted total never exceeds it, the rest is refused `over_quota` and stays queued,
//!    and another facility is unaffected.
//!
//! The tests need root for mounting (test 1) and skip it with a message otherwise.

use std::time::{Duration, Instant};

use dossier_tests::limits::{SmallDisk, memory_kib, move_relay_data};
use dossier_tests::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;

fn records(lab: &Lab, name: &str, bytes: u64, seed: u64) -> std::path::PathBuf {
    let dir = lab.fresh_dir("in").join(name);
    write_file(
        &dir.join("scan.bin"),
        &pseudo_random_bytes(seed, bytes as usize),
    );
    dir
}

fn outbox_entry(node: &Node, id: &str) -> Value {
    node.outbox()
        .into_iter()
        .find(|e| e["bundle_id"] == id)
        .unwrap_or_else(|| panic!("{id} is in the outbox"))
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| v["bundle_id"].as_str().map(str::to_owned))
        .collect()
}

/// Asserts the relay log shows no panic and no store corruption.
fn assert_clean_log(relay: &RelayProcess) {
    let log = relay.log_text();
    for bad in ["panicked", "inconsistent", "corrupt"] {
        assert!(!log.contains(bad), "relay log contains {bad:?}:\n{log}");
    }
}

/// Writes `path` until the file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("creating the filler");
    let block = vec![0x5au8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_refuses_the_deposit_keeps_it_queued_and_loses_nothing() {
    let started = Instant::now();
    // Mounted first, so it is unmounted after the relay using it is gone.
    let disk = match SmallDisk::mount_temp(64) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small file system for the relay ({why})");
            return;
        }
    };
    let Cast {
        lab,
        mut relay,
        coordinator,
        clinic,
        patient: _,
    } = Cast::start();
    relay.stop();
    move_relay_data(&mut relay, &disk.mount.join("data"));
    relay.start();
    for n in [&coordinator, &clinic] {
        n.relay_set(relay.address(), &relay.pin).ok();
    }
    let free_at_start = disk.available();
    eprintln!(
        "relay data on {} ({} MiB free)",
        disk.kind,
        free_at_start / MIB
    );

    // Two bundles that fit, then one that does not.
    let a = coordinator.send(&[CLINIC_ID], &[], &[&records(&lab, "a", 16 * MIB, 1)]);
    let b = coordinator.send(&[CLINIC_ID], &[], &[&records(&lab, "b", 16 * MIB, 2)]);
    for doc in [&a, &b] {
        assert_eq!(doc["state"], "accepted", "{doc}");
    }
    let (a, b) = (
        a["bundle_id"].as_str().unwrap().to_owned(),
        b["bundle_id"].as_str().unwrap().to_owned(),
    );
    let free = disk.available();
    let too_big = free + 8 * MIB;
    let out = coordinator.send_outcome(&[CLINIC_ID], &[], &[&records(&lab, "c", too_big, 3)]);
    eprintln!("{}", out.describe());
    out.code(EXIT_ERROR)
        .stderr_has("storage_full")
        .stderr_has("stays queued");
    let c = coordinator
        .outbox()
        .into_iter()
        .find(|e| e["bundle_id"] != a.as_str() && e["bundle_id"] != b.as_str())
        .expect("the refused bundle is in the outbox");
    let c_id = c["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(c["state"], "queued", "kept queued, not dropped: {c}");
    // The half-written upload did not stay behind holding the space.
    assert!(
        disk.available() + MIB >= free,
        "the refused upload's bytes were released: {} MiB free, {} before",
        disk.available() / MIB,
        free / MIB
    );

    // What was accepted before is intact.
    for id in [&a, &b] {
        let blob = relay.data.join("blobs").join(id);
        assert_eq!(
            sha256_file(&blob),
            outbox_entry(&coordinator, id)["ciphertext_sha256"]
                .as_str()
                .unwrap(),
            "body of {id} intact"
        );
    }

    // Something else fills the disk to the last block (the relay is not alone on it).
    let filler = disk.mount.join("filler");
    fill(&filler);
    assert!(disk.available() < MIB, "{} bytes free", disk.available());
    // The relay keeps serving on the full disk: the sender's retry is refused again and
    // stays queued; the recipient's download and acknowledgement (index commits) work.
    let again = coordinator.sync();
    assert_eq!(
        ids(again["deferred"].as_array().unwrap()),
        std::slice::from_ref(&c_id),
        "{again}"
    );
    assert_eq!(outbox_entry(&coordinator, &c_id)["state"], "queued");
    let got = clinic.sync();
    let mut received = ids(got["received"].as_array().unwrap());
    received.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(
        received, expected,
        "downloaded and acknowledged with the disk full: {got}"
    );
    std::fs::remove_file(&filler).expect("removing the filler");
    let inbox = ids(&clinic.inbox());
    assert!(
        inbox.contains(&a) && inbox.contains(&b),
        "delivered: {inbox:?}"
    );
    assert!(
        !relay.blob_files().contains(&a) && !relay.blob_files().contains(&b),
        "released after acknowledgement"
    );

    // Space is free again: the queued bundle goes through at the next sync.
    let sync = coordinator.sync();
    assert_eq!(
        ids(sync["uploaded"].as_array().unwrap()),
        std::slice::from_ref(&c_id),
        "{sync}"
    );
    clinic.sync();
    assert!(ids(&clinic.inbox()).contains(&c_id));
    coordinator.sync();
    for id in [&a, &b, &c_id] {
        assert_eq!(coordinator.delivery_state(id, CLINIC_ID), "delivered");
    }

    // A restart finds a clean store.
    assert_eq!(relay.stop(), Some(0), "SIGTERM stops it cleanly");
    relay.start();
    coordinator.relay_set(relay.address(), &relay.pin).ok();
    let d = coordinator.send(&[CLINIC_ID], &[], &[&records(&lab, "d", MIB, 4)]);
    assert_eq!(d["state"], "accepted", "{d}");
    assert_eq!(relay.stop(), Some(0));
    assert_clean_log(&relay);
    let log = relay.log_text();
    assert!(log.contains("store open"));
    assert!(log.contains("relay storage full"), "the operator is told");
    eprintln!("disk-full test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Ids of the bundles in `node`'s outbox directory (queued or not).
fn outbox_ids(node: &Node) -> Vec<String> {
    file_names(&node.home.join("outbox"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".dossier").map(str::to_owned))
        .collect()
}

/// Bytes the relay holds on disk for `ids`: bodies plus uploads in progress.
fn held_bytes(relay: &RelayProcess, ids: &[String]) -> u64 {
    ids.iter()
        .map(|id| {
            let blob = relay.data.join("blobs").join(id);
            let part = relay.data.join("incoming").join(format!("{id}.part"));
            [blob, part]
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn concurrent_senders_of_one_facility_never_exceed_its_quota() {
    const QUOTA: u64 = 40 * MIB;
    const SENDERS: usize = 6;
    const SIZE: u64 = 9 * MIB;
    let started = Instant::now();
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let mut relay =
        RelayProcess::init_with(&lab, "127.0.0.1:0", &["--quota-bytes", &QUOTA.to_string()]);
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    relay.start();
    coordinator.use_relay(&relay);
    clinic.use_relay(&relay);

    // Six sends of 9 MiB at once from the coordinator (54 MiB against a 40 MiB quota), and
    // two from the clinic (another facility) meanwhile.
    let inputs: Vec<_> = (0..SENDERS)
        .map(|i| records(&lab, &format!("c{i}"), SIZE, 100 + i as u64))
        .collect();
    let other: Vec<_> = (0..2)
        .map(|i| records(&lab, &format!("t{i}"), SIZE, 200 + i as u64))
        .collect();
    let mut running: Vec<_> = inputs
        .iter()
        .map(|dir| {
            let d = dir.to_str().unwrap();
            (
                "coordinator",
                spawn_dossier(&coordinator, &["send", "--to", CLINIC_ID, "--json", d]),
            )
        })
        .collect();
    for dir in &other {
        let d = dir.to_str().unwrap();
        running.push((
            "clinic",
            spawn_dossier(&clinic, &["send", "--to", COORDINATOR_ID, "--json", d]),
        ));
    }
    // While they run, the coordinator's bytes at the relay never exceed the quota.
    let mut peak = 0;
    while running
        .iter_mut()
        .any(|(_, c)| c.try_wait().ok().flatten().is_none())
    {
        peak = peak.max(held_bytes(&relay, &outbox_ids(&coordinator)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let outcomes: Vec<(&str, Outcome)> = running
        .into_iter()
        .map(|(who, c)| (who, finish_spawned(c, who)))
        .collect();
    let mut accepted = 0u64;
    for (who, out) in &outcomes {
        if *who == "clinic" {
            out.ok();
            assert_eq!(out.json()["state"], "accepted", "other facility unaffected");
            continue;
        }
        if out.code == 0 {
            assert_eq!(out.json()["state"], "accepted", "{}", out.describe());
            accepted += 1;
        } else {
            out.code(EXIT_ERROR)
                .stderr_has("over_quota")
                .stderr_has("quota")
                .stderr_has("stays queued");
        }
    }
    let outbox = coordinator.outbox();
    let lengths: u64 = outbox
        .iter()
        .filter(|e| e["state"] == "accepted")
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    let queued = outbox.iter().filter(|e| e["state"] == "queued").count();
    eprintln!(
        "quota {} MiB: {accepted} of {SENDERS} accepted ({:.1} MiB), {queued} queued; peak held on disk {:.1} MiB",
        QUOTA / MIB,
        lengths as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert!(
        lengths <= QUOTA,
        "accepted {lengths} bytes over a {QUOTA} quota"
    );
    assert!(peak <= QUOTA, "held {peak} bytes over a {QUOTA} quota");
    assert_eq!(
        accepted,
        QUOTA / (SIZE + MIB),
        "as many as fit are accepted (the quota is not leaked by refusals)"
    );
    assert_eq!(
        queued as u64 + accepted,
        SENDERS as u64,
        "the rest stay queued: {outbox:?}"
    );
    assert!(
        relay
            .data
            .join("incoming")
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );

    // As the clinic collects, quota frees and the queued bundles go through.
    let mut rounds = 0;
    while coordinator.outbox().iter().any(|e| e["state"] == "queued") {
        clinic.sync();
        coordinator.sync();
        rounds += 1;
        assert!(rounds <= 4, "queued bundles never went through");
    }
    clinic.sync();
    assert_eq!(
        clinic.inbox().len(),
        SENDERS,
        "every bundle delivered exactly once"
    );
    coordinator.sync();
    assert_eq!(coordinator.inbox().len(), 2);
    assert_clean_log(&relay);
    eprintln!("quota test: {:.1} s", started.elapsed().as_secs_f64());
}

/// What the relay may hold for one stalled body transfer: its connection's send window
/// (bytes QUIC keeps until the peer acknowledges them) plus the pieces between disk and
/// network (channel depth 2 + one being written, 1 MiB each). See docs/operations.md.
const PER_STALLED_TRANSFER: u64 = 8 * MIB + 3 * MIB;

/// Samples the relay's VmRSS until `stop` is set; returns the highest in KiB.
fn sample_rss(
    pid: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(memory_kib(pid).0);
            std::thread::sleep(Duration::from_millis(100));
        }
        max
    })
}

#[test]
fn stalled_clients_cannot_hold_relay_memory_and_are_dropped() {
    use dossier_tests::attacks::Insider;
    use dossier_tests::limits::{RawClient, read_message};
    use dossier_wire::{ClientMessage, ServerMessage};

    const STALLED_FETCHES: usize = 6;
    const SILENT_DEPOSITS: usize = 3;
    const TRICKLING_DEPOSITS: usize = 2;
    let started = Instant::now();
    let Cast {
        lab,
        relay,
        coordinator,
        clinic,
        patient,
    } = Cast::start();
    let pid = relay.pid().expect("relay running");
    // One large bundle for the clinic and the patient.
    let size = 64 * MIB;
    let big = coordinator.send(
        &[CLINIC_ID, PATIENT_ID],
        &[],
        &[&records(&lab, "big", size, 7)],
    );
    assert_eq!(big["state"], "accepted", "{big}");
    let big_id = big["bundle_id"].as_str().unwrap().to_owned();
    let (rss_before, hwm_before) = memory_kib(pid);

    // A real node stopped mid-download: `dossier sync` SIGSTOPped once bytes arrive.
    let stopped = spawn_dossier(&patient, &["sync", "--json"]);
    let part = patient
        .home
        .join("inbox")
        .join("incoming")
        .join(format!("{big_id}.part"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 4 * MIB {
        assert!(
            Instant::now() < deadline,
            "the patient's download never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped_pid = nix::unistd::Pid::from_raw(stopped.id() as i32);
    nix::sys::signal::kill(stopped_pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_rss(pid, stop.clone());
    let clinic_keys = Insider::of(&clinic).keys;
    let coordinator_keys = Insider::of(&coordinator).keys;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let addr = relay.address().to_owned();

    // Bare clients that ask for the body and never read it (but keep the connection
    // alive), and senders that open a deposit and then go silent or trickle.
    let (fetches, mut deposits) = rt.block_on(async {
        let mut fetches = Vec::new();
        for _ in 0..STALLED_FETCHES {
            let c = RawClient::connect(&addr, CLINIC_ID, &clinic_keys, 16 << 20)
                .await
                .expect("clinic connects");
            let (mut send, mut recv) = c
                .request(&ClientMessage::Fetch {
                    bundle_id: big_id.clone(),
                    offset: 0,
                })
                .await
                .expect("fetch request");
            let _ = send.finish();
            match read_message(&mut recv).await.expect("fetch answer") {
                ServerMessage::Body { length, .. } => assert!(length >= size),
                other => panic!("{other:?}"),
            }
            fetches.push((c, recv));
        }
        let mut deposits = Vec::new();
        for i in 0..SILENT_DEPOSITS + TRICKLING_DEPOSITS {
            let c = RawClient::connect(&addr, COORDINATOR_ID, &coordinator_keys, 1 << 20)
                .await
                .expect("coordinator connects");
            let (mut send, mut recv) = c
                .request(&ClientMessage::Deposit {
                    bundle_id: format!("{:032x}", 0xdead_0000u64 + i as u64),
                    recipients: vec![CLINIC_ID.to_owned()],
                    length: 32 * MIB,
                    sha256: "ab".repeat(32),
                })
                .await
                .expect("deposit request");
            match read_message(&mut recv).await.expect("deposit answer") {
                ServerMessage::DepositOffset { have: 0 } => {}
                other => panic!("{other:?}"),
            }
            // The trickling ones send 1 KiB now, and more later.
            if i >= SILENT_DEPOSITS {
                send.write_all(&[0u8; 1024]).await.expect("trickle");
            }
            deposits.push((c, send, recv));
        }
        (fetches, deposits)
    });
    eprintln!(
        "stalled: 1 SIGSTOPped node, {STALLED_FETCHES} fetches not read, {SILENT_DEPOSITS} silent and {TRICKLING_DEPOSITS} trickling deposits"
    );

    // Meanwhile other nodes are served: the clinic downloads the whole bundle and the
    // coordinator deposits another.
    let served = Instant::now();
    let got = clinic.sync();
    assert_eq!(
        ids(got["received"].as_array().unwrap()),
        std::slice::from_ref(&big_id)
    );
    let small = coordinator.send(&[CLINIC_ID], &[], &[&records(&lab, "small", MIB, 8)]);
    assert_eq!(small["state"], "accepted", "{small}");
    let served = served.elapsed();
    eprintln!("other nodes served in {:.1} s", served.as_secs_f64());
    assert!(
        served < Duration::from_secs(30),
        "served before any time-out"
    );

    // Keep trickling (1 KiB every 5 s) until past the relay's 30 s time-outs.
    rt.block_on(async {
        let until = tokio::time::Instant::now() + Duration::from_secs(36);
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(5)).await;
            for (_, send, _) in deposits.iter_mut().skip(SILENT_DEPOSITS) {
                let _ = send.write_all(&[0u8; 1024]).await;
            }
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_rss = sampler.join().expect("sampler");
    let (rss_after, hwm_after) = memory_kib(pid);
    // Body transfers that were open at once: the stalled fetches, the SIGSTOPped node's and
    // the clinic's own download; each deposit holds at most its 1 MiB read buffer and two
    // in the channel. 16 MiB of slack for the allocator's per-thread arenas.
    let fetches_open = (STALLED_FETCHES + 2) as u64;
    let deposits_open = (SILENT_DEPOSITS + TRICKLING_DEPOSITS + 1) as u64;
    let bound = hwm_before * 1024
        + fetches_open * PER_STALLED_TRANSFER
        + deposits_open * 3 * MIB
        + 16 * MIB;
    eprintln!(
        "relay memory: before VmRSS {} MiB (VmHWM {} MiB); while stalled max VmRSS {} MiB; after VmRSS {} MiB, VmHWM {} MiB; bound {} MiB",
        rss_before / 1024,
        hwm_before / 1024,
        max_rss / 1024,
        rss_after / 1024,
        hwm_after / 1024,
        bound / MIB
    );
    assert!(
        max_rss * 1024 <= bound && hwm_after * 1024 <= bound,
        "relay memory over the bound"
    );

    // The relay dropped the stalled fetches (stream reset after its write time-out) and
    // the silent deposits (after its body time-out); the body is never served whole to them.
    rt.block_on(async {
        for (c, mut recv) in fetches {
            let mut n = 0u64;
            let mut buf = vec![0u8; 1 << 20];
            let end = loop {
                match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await {
                    Ok(Ok(Some(k))) => n += k as u64,
                    Ok(Ok(None)) => break "finished",
                    Ok(Err(_)) => break "reset",
                    Err(_) => break "still open",
                }
            };
            assert_eq!(end, "reset", "stalled fetch dropped ({n} bytes read)");
            assert!(n < size);
            c.close().await;
        }
        for (i, (c, _send, mut recv)) in deposits.into_iter().enumerate() {
            let answer =
                tokio::time::timeout(Duration::from_secs(5), read_message(&mut recv)).await;
            if i < SILENT_DEPOSITS {
                assert!(
                    matches!(answer, Ok(Err(_))),
                    "silent deposit {i} dropped: {answer:?}"
                );
            }
            c.close().await;
        }
    });
    let log = relay.log_text();
    assert!(
        log.matches("node silent for too long").count() >= SILENT_DEPOSITS,
        "the relay logged the silent deposits"
    );

    // The stopped node resumes where it stopped once it runs again.
    nix::sys::signal::kill(stopped_pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let _ = finish_spawned(stopped, "stopped sync");
    patient.sync();
    assert!(ids(&patient.inbox()).contains(&big_id));
    assert_clean_log(&relay);
    drop(rt);
    eprintln!(
        "stalled-clients test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
