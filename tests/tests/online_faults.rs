//! Faults around a real `dossier-relay` process on loopback: the relay SIGKILLed in the
//! middle of a 20-bundle batch and restarted (every bundle arrives exactly once), undelivered
//! bundles expiring into an `expired` notice, a revoked sender refused with an error rather
//! than a silent queue, and one ciphertext for two recipients stored once and released after
//! both have it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dossier_tests::*;
use serde_json::Value;

/// How many bundles the crash test queues.
const BATCH: usize = 20;

fn ids_in(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| v["bundle_id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn relay_killed_during_a_batch_then_restarted_delivers_every_bundle_exactly_once() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut relay = RelayProcess::init_on(&lab, &addr);
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    for n in [&coordinator, &clinic] {
        n.relay_set(&addr, &relay.pin).ok();
    }
    coordinator.set_connect_timeout(1);

    // Queue the batch while the relay is down.
    let dir = lab.fresh_dir("in");
    let mut sent = BTreeSet::new();
    for i in 0..BATCH {
        let input = dir.join(format!("lab-result-{i:02}.bin"));
        write_file(&input, &pseudo_random_bytes(0xFA17 + i as u64, 64 * 1024));
        let out = coordinator.send_outcome(&[CLINIC_ID], &[], &[input.as_path()]);
        let doc = out.ok().json();
        assert_eq!(doc["state"], "queued", "{}", out.describe());
        sent.insert(doc["bundle_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sent.len(), BATCH, "distinct bundle ids");

    // Start the relay, upload, and SIGKILL the relay once some deposits are durable.
    relay.start();
    assert_eq!(relay.address(), addr);
    let mut sync = spawn_dossier(&coordinator, &["sync", "--json"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_at_kill = 0;
    while Instant::now() < deadline {
        seen_at_kill = relay.blob_files().len();
        if seen_at_kill >= 3 || sync.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    relay.kill();
    let first = finish_spawned(sync, "dossier sync (spawned)");
    assert!(
        seen_at_kill < BATCH,
        "the batch finished before the relay could be killed ({seen_at_kill} stored)\n{}",
        first.describe()
    );
    let accepted_before: Vec<String> = coordinator
        .outbox()
        .iter()
        .filter(|e| e["state"] == "accepted")
        .filter_map(|e| e["bundle_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        accepted_before.len() < BATCH,
        "some of the batch was still unsent when the relay died: {accepted_before:?}"
    );

    // Restart on the same address; sync until everything is accepted.
    relay.start();
    assert_eq!(relay.address(), addr, "same port after the restart");
    let mut rounds = 0;
    loop {
        coordinator.sync();
        let outbox = coordinator.outbox();
        let accepted = outbox
            .iter()
            .filter(|e| e["state"] == "accepted" || e["state"] == "delivered")
            .count();
        if accepted == BATCH {
            break;
        }
        rounds += 1;
        assert!(
            rounds < 5,
            "outbox not all accepted after 5 syncs: {outbox:?}"
        );
    }

    // The clinic receives every bundle exactly once.
    for _ in 0..3 {
        clinic.sync();
    }
    let inbox = clinic.inbox();
    let got = ids_in(&inbox);
    assert_eq!(got.len(), BATCH, "one inbox entry per bundle: {got:?}");
    let distinct: BTreeSet<String> = got.into_iter().collect();
    assert_eq!(distinct, sent, "exactly the bundles sent");

    coordinator.sync();
    for id in &sent {
        assert_eq!(
            coordinator.delivery_state(id, CLINIC_ID),
            "delivered",
            "{id}"
        );
    }

    // Syncing again adds nothing anywhere.
    let again = clinic.sync();
    assert_eq!(
        again["received"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    assert_eq!(clinic.inbox().len(), BATCH);
    assert!(
        relay.blob_files().is_empty(),
        "every body released after delivery: {:?}",
        relay.blob_files()
    );
}

#[test]
fn an_undelivered_bundle_expires_and_the_sender_sees_expired() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    // 0.00002 days is about 1.7 s.
    let mut relay = RelayProcess::init_with(
        &lab,
        "127.0.0.1:0",
        &["--retention-days", "0.00002", "--expiry-check-secs", "1"],
    );
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    relay.start();
    coordinator.use_relay(&relay);

    let input = lab.fresh_dir("in").join("referral.txt");
    write_file(&input, b"referral letter");
    let doc = coordinator.send(&[CLINIC_ID], &[], &[input.as_path()]);
    let id = doc["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "accepted");
    assert_eq!(relay.blob_files().len(), 1);

    // The clinic never syncs. Wait for the retention pass, then ask.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut state = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        coordinator.sync();
        state = coordinator.delivery_state(&id, CLINIC_ID);
        if state == "expired" {
            break;
        }
    }
    assert_eq!(state, "expired", "{}", coordinator.status(&id));
    assert!(
        relay.blob_files().is_empty(),
        "the expired body is released: {:?}",
        relay.blob_files()
    );
}

#[test]
fn a_revoked_sender_is_refused_with_an_error_not_a_silent_queue() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut relay = RelayProcess::init_on(&lab, &addr);
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    relay.start();
    coordinator.use_relay(&relay);

    let dir = lab.fresh_dir("in");
    let first = dir.join("first.txt");
    write_file(&first, b"first note");
    let doc = coordinator.send(&[CLINIC_ID], &[], &[first.as_path()]);
    assert_eq!(doc["state"], "accepted", "works while enrolled: {doc}");

    relay.stop();
    relay.revoke(COORDINATOR_ID);
    relay.start();
    assert_eq!(relay.address(), addr);

    let second = dir.join("second.txt");
    write_file(&second, b"second note");
    let out = coordinator.send_outcome(&[CLINIC_ID], &[], &[second.as_path()]);
    out.code(EXIT_ERROR)
        .stderr_has("refused this node")
        .stderr_has("revoked")
        .stderr_has("NOT accepted by the relay");
    let sync = coordinator.run(&["sync", "--json"]);
    sync.code(EXIT_ERROR).stderr_has("revoked");
    assert_eq!(relay.blob_files().len(), 1, "only the first bundle is held");
}

#[test]
fn one_bundle_for_two_recipients_is_stored_once_and_released_after_both() {
    let Cast {
        lab,
        relay,
        coordinator,
        clinic,
        patient,
    } = Cast::start();

    let input = lab.fresh_dir("in").join("care-plan.bin");
    write_file(&input, &pseudo_random_bytes(0x2B, 256 * 1024));
    let doc = coordinator.send(&[CLINIC_ID, PATIENT_ID], &[], &[input.as_path()]);
    let id = doc["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(doc["state"], "accepted", "{doc}");
    assert_eq!(
        relay.blob_files(),
        std::slice::from_ref(&id),
        "one body file for two recipients"
    );

    clinic.sync();
    assert_eq!(ids_in(&clinic.inbox()), std::slice::from_ref(&id));
    assert_eq!(
        relay.blob_files(),
        std::slice::from_ref(&id),
        "still held while the patient has not fetched it"
    );

    patient.sync();
    assert_eq!(ids_in(&patient.inbox()), std::slice::from_ref(&id));
    assert!(
        relay.blob_files().is_empty(),
        "released once both acknowledged: {:?}",
        relay.blob_files()
    );
    coordinator.sync();
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "delivered");
    assert_eq!(coordinator.delivery_state(&id, PATIENT_ID), "delivered");
}

/// A node watching for mail learns that the relay process crashed at its next keep-alive —
/// the restarted relay answers with a stateless reset the node recognises, because the
/// relay's reset and connection-id keys survive restarts — instead of at its idle timeout:
/// mail sent after the restart arrives within seconds.
#[test]
fn a_watching_node_notices_a_relay_crash_at_its_next_keep_alive() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let Cast {
        lab,
        mut relay,
        coordinator,
        clinic,
        ..
    } = Cast::start_on_fixed_port();
    let dir = lab.fresh_dir("in");
    let wait_for_inbox = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(40);
        while clinic.inbox().len() < n {
            assert!(Instant::now() < deadline, "bundle {n} never arrived");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let send = |name: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("follow-up note {name}")).unwrap();
        coordinator.send_outcome(&[CLINIC_ID], &[], &[&path]).ok();
    };

    let watch = spawn_dossier(&clinic, &["sync", "--watch", "--interval", "600"]);
    send("first.txt");
    wait_for_inbox(1); // the watcher is connected and hears new mail

    relay.kill();
    relay.start();
    let restarted = Instant::now();
    send("second.txt");
    wait_for_inbox(2);
    let took = restarted.elapsed();
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    finish_spawned(watch, "dossier sync --watch").ok();
    // Keep-alives go out every 3 s; the idle timeout (what it waited for before) is 12 s.
    assert!(
        took < Duration::from_secs(8),
        "mail sent after the relay restarted arrived only after {took:?}"
    );
}
