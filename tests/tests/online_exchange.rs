//! Online exchange through a real `dossier-relay` process on loopback: `send`, `sync`,
//! signed delivery receipts, `inbox`/`outbox`/`status`, `open BUNDLE-ID`; a wrong relay pin,
//! a relay that is down at send time, an unenrolled sender, repeated syncs, and a bundle from
//! an unpinned sender that is quarantined and reported `rejected` to its sender.

use dossier_tests::*;
use serde_json::Value;

const RECORDS: &str = "treatment-history-r4";

fn entry<'a>(list: &'a [Value], bundle_id: &str) -> Vec<&'a Value> {
    list.iter()
        .filter(|v| v["bundle_id"] == bundle_id)
        .collect()
}

fn recipient<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["recipients"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("status names {id}: {status}"))
}

#[test]
fn records_reach_clinic_and_patient_and_receipts_come_back() {
    let c = Cast::start();
    let outgoing = c.lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 2 * 1024 * 1024, 0xA11CE);
    let expected = tree_digests(&outgoing);

    let sent = c.coordinator.send(
        &[CLINIC_ID, PATIENT_ID],
        &PHI.seal_args(),
        &[records.as_path()],
    );
    assert_eq!(sent["state"], "accepted", "{sent}");
    let id = sent["bundle_id"].as_str().expect("bundle_id").to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(c.coordinator.delivery_state(&id, CLINIC_ID), "accepted");
    let scan = pseudo_random_bytes(0xA11CE, 2 * 1024 * 1024);
    assert_relay_holds_no_plaintext(&c.relay, &scan);

    // Each recipient syncs: the bundle is verified, stored, acknowledged, receipted.
    for node in [&c.clinic, &c.patient] {
        let summary = node.sync();
        let received = summary["received"].as_array().expect("received list");
        assert_eq!(received.len(), 1, "{summary}");
        assert_eq!(received[0]["bundle_id"], id.as_str());
        assert_eq!(received[0]["from"], COORDINATOR_ID);
        let inbox = node.inbox();
        let item = entry(&inbox, &id);
        assert_eq!(item.len(), 1, "{inbox:?}");
        let item = item[0];
        assert_eq!(item["from"], COORDINATOR_ID);
        assert_eq!(item["to"], serde_json::json!([CLINIC_ID, PATIENT_ID]));
        assert_eq!(item["kind"], "record");
        assert_eq!(item["subject"], PHI.subject);
        assert_eq!(item["verified"], true);
        assert!(item["created_at"].is_string() && item["received_at"].is_string());
        // Stored encrypted at rest: the inbox file is the age ciphertext.
        let stored = node.home.join("inbox").join(format!("{id}.dossier"));
        let head = std::fs::read(&stored).expect("inbox file");
        assert!(head.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(mode_of(&stored), 0o600);
    }

    // The sender collects both receipts, checked against its pins.
    let summary = c.coordinator.sync();
    assert_eq!(
        summary["receipts"].as_array().map(Vec::len),
        Some(2),
        "{summary}"
    );
    let status = c.coordinator.status(&id);
    assert_eq!(status["bundle_id"], id.as_str());
    for who in [CLINIC_ID, PATIENT_ID] {
        let r = recipient(&status, who);
        assert_eq!(r["state"], "delivered", "{status}");
        assert!(r["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
        assert_eq!(r["receipt_verified"], true);
    }
    assert_eq!(status["overdue"], false);
    let outbox = c.coordinator.outbox();
    let sent_item = entry(&outbox, &id);
    assert_eq!(sent_item.len(), 1);
    assert_eq!(sent_item[0]["state"], "delivered");
    assert_eq!(
        sent_item[0]["to"],
        serde_json::json!([CLINIC_ID, PATIENT_ID])
    );

    // `open BUNDLE-ID` opens the inbox copy, byte-identical.
    let out = c.lab.fresh_path("opened-by-clinic");
    let opened = c
        .clinic
        .run(&["open", &id, "-o", out.to_str().unwrap(), "--json"]);
    opened.ok();
    assert_eq!(opened.json()["bundle_id"], id.as_str());
    assert_eq!(tree_digests(&out), expected);

    // Syncing again receives nothing new and makes no second inbox entry; the only news
    // for the sender is the clinic's signed `opened` receipt, once.
    let again = c.clinic.sync();
    assert_eq!(
        again["received"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    assert_eq!(entry(&c.clinic.inbox(), &id).len(), 1);
    let again = c.coordinator.sync();
    assert_eq!(
        again["receipts"].as_array().map(Vec::len),
        Some(1),
        "{again}"
    );
    assert_eq!(c.coordinator.delivery_state(&id, CLINIC_ID), "opened");
    assert_eq!(c.coordinator.delivery_state(&id, PATIENT_ID), "delivered");
    let once_more = c.coordinator.sync();
    assert_eq!(
        once_more["receipts"].as_array().map(Vec::len),
        Some(0),
        "{once_more}"
    );

    // The relay never saw the subject, the patient reference, a file name or content.
    assert_relay_holds_no_plaintext(&c.relay, &scan);
}

/// Scans the relay's data directory and log for the protected strings and for 64-byte
/// windows of the imaging part.
fn assert_relay_holds_no_plaintext(relay: &RelayProcess, scan: &[u8]) {
    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    files(&relay.data, &mut all);
    all.push(relay.log.clone());
    let mut needles: Vec<&[u8]> = protected_strings(RECORDS)
        .into_iter()
        .map(str::as_bytes)
        .collect();
    for start in [0, scan.len() / 2, scan.len() - 64] {
        needles.push(&scan[start..start + 64]);
    }
    for f in all {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for n in &needles {
            assert!(
                !contains_bytes(&bytes, n),
                "{} holds protected bytes ({} bytes, starting {:?})",
                f.display(),
                n.len(),
                String::from_utf8_lossy(&n[..n.len().min(16)])
            );
        }
    }
}

#[test]
fn a_relay_with_another_key_is_refused_and_nothing_is_sent() {
    let c = Cast::start();
    let wrong_pin = format!("sha256:{}", "ab".repeat(32));
    c.coordinator.relay_set(c.relay.address(), &wrong_pin).ok();
    let input = c.lab.fresh_dir("in").join("note.txt");
    write_file(&input, b"follow-up in two weeks");
    let out = c
        .coordinator
        .send_outcome(&[CLINIC_ID], &[], &[input.as_path()]);
    out.code(EXIT_ERROR)
        .stderr_has("does not match the pin")
        .stderr_has(&wrong_pin)
        .stderr_has(&c.relay.pin)
        .stderr_has("dossier relay set");
    // The bundle is kept, queued, not accepted.
    let outbox = c.coordinator.outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["state"], "queued");
    // `sync` refuses the same way.
    c.coordinator
        .run(&["sync"])
        .code(EXIT_ERROR)
        .stderr_has("does not match the pin");
    // With the right pin, sync uploads it.
    c.coordinator.use_relay(&c.relay);
    let summary = c.coordinator.sync();
    assert_eq!(summary["uploaded"].as_array().map(Vec::len), Some(1));
}

#[test]
fn relay_down_at_send_queues_and_a_later_sync_delivers() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let port = free_udp_port();
    let mut relay = RelayProcess::init_on(&lab, &format!("127.0.0.1:{port}"));
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    let addr = format!("127.0.0.1:{port}");
    for n in [&coordinator, &clinic] {
        n.relay_set(&addr, &relay.pin).ok();
    }

    let input = lab.fresh_dir("in").join("discharge.pdf");
    write_file(&input, b"%PDF-1.4 discharge summary");
    let out = coordinator.send_outcome(&[CLINIC_ID], &[], &[input.as_path()]);
    out.ok().stderr_has("NOT yet accepted by the relay");
    let doc = out.json();
    assert_eq!(doc["state"], "queued");
    let id = doc["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "queued");

    relay.start();
    assert_eq!(
        relay.address(),
        addr,
        "the relay came up where it was configured"
    );
    let summary = coordinator.sync();
    assert_eq!(
        summary["uploaded"][0]["bundle_id"],
        id.as_str(),
        "{summary}"
    );
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "accepted");
    clinic.sync();
    assert_eq!(entry(&clinic.inbox(), &id).len(), 1);
    coordinator.sync();
    assert_eq!(coordinator.delivery_state(&id, CLINIC_ID), "delivered");
}

#[test]
fn an_unenrolled_sender_is_refused_with_an_error() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let mut relay = RelayProcess::init(&lab);
    relay.enroll(&clinic);
    relay.start();
    coordinator.use_relay(&relay);
    let input = lab.fresh_dir("in").join("note.txt");
    write_file(&input, b"note");
    let out = coordinator.send_outcome(&[CLINIC_ID], &[], &[input.as_path()]);
    out.code(EXIT_ERROR)
        .stderr_has("refused this node")
        .stderr_has("not_enrolled")
        .stderr_has("NOT accepted by the relay");
    assert_eq!(coordinator.outbox()[0]["state"], "queued");
}

#[test]
fn a_bundle_from_an_unpinned_sender_is_quarantined_and_rejected() {
    let lab = Lab::new();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    // The stranger knows the clinic; the clinic never pinned the stranger.
    stranger.pin(&clinic, true);
    let mut relay = RelayProcess::init(&lab);
    relay.enroll(&clinic);
    relay.enroll(&stranger);
    relay.start();
    clinic.use_relay(&relay);
    stranger.use_relay(&relay);

    let input = lab.fresh_dir("in").join("offer.txt");
    write_file(&input, b"unsolicited");
    let id = stranger.send(&[CLINIC_ID], &[], &[input.as_path()])["bundle_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let summary = clinic.sync();
    assert_eq!(summary["received"].as_array().map(Vec::len), Some(0));
    let q = &summary["quarantined"][0];
    assert_eq!(q["bundle_id"], id.as_str(), "{summary}");
    assert!(q["reason"].as_str().unwrap().contains(STRANGER_ID), "{q}");
    let inbox = clinic.inbox();
    let items = entry(&inbox, &id);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["verified"], false);
    assert_eq!(items[0]["quarantined"], true);
    assert!(
        clinic
            .home
            .join("quarantine")
            .join(format!("{id}.dossier"))
            .is_file()
    );
    // It is not opened by id.
    let out = lab.fresh_path("q-open");
    clinic
        .run(&["open", &id, "-o", out.to_str().unwrap()])
        .code(EXIT_VERIFICATION)
        .stderr_has("quarantined");
    assert_nothing_released(&out);
    // A second sync does not store it twice.
    clinic.sync();
    assert_eq!(entry(&clinic.inbox(), &id).len(), 1);

    // The stranger learns it was rejected, with the reason.
    stranger.sync();
    let status = stranger.status(&id);
    let r = recipient(&status, CLINIC_ID);
    assert_eq!(r["state"], "rejected", "{status}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("not a pinned contact"),
        "{r}"
    );
}

#[test]
fn send_output_and_errors_carry_no_protected_details() {
    let c = Cast::start();
    let outgoing = c.lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 64 * 1024, 7);
    let sent = c
        .coordinator
        .send_outcome(&[CLINIC_ID], &PHI.seal_args(), &[records.as_path()]);
    sent.ok();
    // Human send output names the bundle, not its content.
    assert_no_phi(&sent, &protected_strings(RECORDS));
    let synced = c.clinic.run(&["sync"]);
    synced.ok();
    assert_no_phi(&synced, &protected_strings(RECORDS));
}

#[test]
fn sync_watch_receives_new_mail_when_notified() {
    use std::io::BufRead;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let c = Cast::start();
    let mut cmd = c.clinic.command(&["sync", "--watch", "--interval", "600"]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut watch = cmd.spawn().expect("starting sync --watch");
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str, limit: Duration| -> bool {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    let connected = wait_for("connected to the relay", Duration::from_secs(30));
    if !connected {
        let _ = watch.kill();
    }
    assert!(connected, "sync --watch connected");
    // Let the first round finish, so what follows is driven by the relay's notice (the
    // periodic timer is 10 minutes away).
    std::thread::sleep(Duration::from_millis(500));

    let input = c.lab.fresh_dir("in").join("note.txt");
    write_file(&input, b"please confirm the date");
    let id = c.coordinator.send(&[CLINIC_ID], &[], &[input.as_path()])["bundle_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = wait_for(&id, Duration::from_secs(20));
    let pid = nix::unistd::Pid::from_raw(watch.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = watch.wait().expect("sync --watch exits");
    assert!(got, "the watching node received {id} without polling");
    assert_eq!(status.code(), Some(0), "SIGTERM stops sync --watch cleanly");
    assert_eq!(entry(&c.clinic.inbox(), &id).len(), 1);
    c.coordinator.sync();
    assert_eq!(c.coordinator.delivery_state(&id, CLINIC_ID), "delivered");
}
