//! Key revocation through a real `dossier-relay` (docs/protocol.md §17): the clinic revokes
//! its key after a laptop theft; the relay refuses that key at once; the coordinator and
//! the patient learn of it at their next sync and from then on send nothing to it and
//! accept nothing signed by it — neither through the relay nor as an offline file; the
//! clinic's new card, signed by the revoked key, does not move anyone's pin until it is
//! checked out of band and pinned again; a node that meets the clinic only later refuses
//! the revoked card too.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use dossier_tests::*;
use serde_json::Value;

/// Copies a node's home, as a thief copying the laptop's disk would.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// `dossier --home HOME ARGS` with the test passphrase, for a home that is no lab node.
fn run_in(home: &Path, args: &[&str]) -> Outcome {
    let mut cmd = std::process::Command::new(dossier_bin());
    cmd.arg("--home")
        .arg(home)
        .args(args)
        .env("DOSSIER_PASSPHRASE", PASSPHRASE)
        .env_remove("DOSSIER_HOME");
    run_command(cmd)
}

fn note(lab: &Lab, text: &str) -> std::path::PathBuf {
    let path = lab.fresh_dir("in").join("note.txt");
    write_file(&path, text.as_bytes());
    path
}

fn list(summary: &Value, key: &str) -> Vec<Value> {
    summary[key]
        .as_array()
        .unwrap_or_else(|| panic!("sync summary has {key}: {summary}"))
        .clone()
}

#[test]
fn a_revoked_key_is_refused_after_sync() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let patient = lab.patient_node();
    // A facility that meets the clinic only after the revocation.
    let late = lab.stranger();
    coordinator.pin_both_ways(&clinic);
    patient.pin_both_ways(&clinic);
    coordinator.pin_both_ways(&patient);
    // A fixed port, so the relay keeps its address across the operator's restart.
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut relay = RelayProcess::init_on(&lab, &addr);
    for n in [&coordinator, &clinic, &patient, &late] {
        relay.enroll(n);
    }
    let old_clinic_card = clinic.export_card();
    relay.start();
    for n in [&coordinator, &clinic, &patient, &late] {
        n.relay_set(&addr, &relay.pin).ok();
    }

    // Before the theft: an offline file and a bundle through the relay, both signed by the
    // clinic's (soon revoked) key, neither opened by the coordinator yet.
    let offline = lab.fresh_path("careplan").with_extension("dossier");
    clinic.seal(
        &[COORDINATOR_ID],
        &["--kind", "careplan"],
        &offline,
        &[note(&lab, "discharge plan").as_path()],
    );
    let online = clinic.send(&[COORDINATOR_ID], &[], &[note(&lab, "op note").as_path()]);
    assert_eq!(online["state"], "accepted", "{online}");
    let online_id = online["bundle_id"].as_str().unwrap().to_owned();
    // The thief's copy of the laptop.
    let thief_home = lab.path().join("homes").join("thief");
    copy_dir(&clinic.home, &thief_home);

    // The clinic revokes its key; the relay is up, so it gets the revocation at once.
    let revoked = clinic.run(&["key", "revoke", "--reason", "laptop stolen", "--yes"]);
    revoked.ok();
    assert!(
        revoked.stdout.contains("stored the revocation"),
        "{}",
        revoked.describe()
    );
    // The clinic itself no longer signs with that key.
    clinic
        .send_outcome(&[COORDINATOR_ID], &[], &[note(&lab, "x").as_path()])
        .code(EXIT_ERROR)
        .stderr_has("revoked")
        .stderr_has("dossier key rotate");
    // A bad reason is a usage error; without --yes (and no terminal) nothing happens.
    patient
        .run(&["key", "revoke", "--reason", "two\nlines", "--yes"])
        .code(EXIT_USAGE);
    patient
        .run(&["key", "revoke", "--reason", "test"])
        .code(EXIT_USAGE)
        .stderr_has("--yes");

    // The relay refuses the revoked key: the thief's copy cannot connect.
    let thief = run_in(&thief_home, &["sync"]);
    thief
        .code(EXIT_ERROR)
        .stderr_has("key_revoked")
        .stderr_has("revoked by its holder");

    // The coordinator syncs: the clinic is revoked, and the bundle it deposited with the
    // revoked key is quarantined, not opened.
    let summary = coordinator.sync();
    let revocations = list(&summary, "revoked");
    assert_eq!(revocations.len(), 1, "{summary}");
    assert_eq!(revocations[0]["id"], CLINIC_ID);
    assert_eq!(revocations[0]["reason"], "laptop stolen");
    assert!(list(&summary, "received").is_empty(), "{summary}");
    let quarantined = list(&summary, "quarantined");
    assert_eq!(quarantined.len(), 1, "{summary}");
    assert_eq!(quarantined[0]["bundle_id"], online_id.as_str());
    assert!(
        quarantined[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("revoked")),
        "{summary}"
    );
    let contact = coordinator.contact(CLINIC_ID).expect("still pinned");
    assert_eq!(contact["revoked"]["reason"], "laptop stolen", "{contact}");
    assert!(contact["revoked"]["at"].is_string(), "{contact}");
    assert!(coordinator.contact(PATIENT_ID).unwrap()["revoked"].is_null());
    // Applying is audited without the free-text reason.
    let audit = coordinator.run(&["audit", "--json"]).ok().stdout.clone();
    assert!(audit.contains("contact_revoked"), "{audit}");
    assert!(!audit.contains("laptop stolen"), "{audit}");
    // A second sync applies nothing twice.
    assert!(list(&coordinator.sync(), "revoked").is_empty());

    // Nothing is sent to the revoked key, through the relay or as a file.
    let input = note(&lab, "follow-up");
    coordinator
        .send_outcome(&[CLINIC_ID], &[], &[input.as_path()])
        .code(EXIT_PIN_MISMATCH)
        .stderr_has("revoked its key")
        .stderr_has("laptop stolen");
    let nothing = lab.fresh_path("not-sealed");
    coordinator
        .seal_outcome(&[CLINIC_ID], &[], &nothing, &[input.as_path()])
        .code(EXIT_PIN_MISMATCH);
    assert!(!nothing.exists());
    // Nothing signed by it is accepted: the offline file is refused and releases nothing.
    let out = lab.fresh_path("opened");
    coordinator
        .open(&offline, &out)
        .code(EXIT_PIN_MISMATCH)
        .stderr_has("revoked");
    assert_nothing_released(&out);

    // The third party learns of it the same way.
    let summary = patient.sync();
    assert_eq!(list(&summary, "revoked").len(), 1, "{summary}");
    patient
        .send_outcome(&[CLINIC_ID], &[], &[input.as_path()])
        .code(EXIT_PIN_MISMATCH);

    // A node that pins the clinic only later is not fooled by the old card either: the
    // revocation it fetched before is checked against every card it pins.
    late.sync();
    late.add_card(&old_clinic_card, None)
        .code(EXIT_PIN_MISMATCH)
        .stderr_has("revoked");
    assert!(late.contact(CLINIC_ID).is_none());

    // The clinic makes new keys. The relay still refuses it until the operator enrolls the
    // new card, and says so.
    let rotated = clinic.run(&["key", "rotate"]);
    rotated.ok();
    assert!(
        rotated.stdout.contains("dossier-relay enroll"),
        "{}",
        rotated.describe()
    );
    clinic
        .run(&["sync"])
        .code(EXIT_ERROR)
        .stderr_has("key_revoked")
        .stderr_has("enroll");
    relay.stop();
    let again = relay.admin(&[
        OsString::from("enroll"),
        old_clinic_card.clone().into_os_string(),
    ]);
    assert_ne!(again.code, 0, "the revoked card is not enrolled again");
    assert!(again.stderr.contains("revoked"), "{}", again.describe());
    relay.enroll(&clinic);
    relay.start();
    clinic.sync();

    // The new card is signed by the revoked key: the coordinator's pin does not move.
    let new_card = clinic.export_card();
    let refused = coordinator.add_card(&new_card, None);
    refused
        .code(EXIT_PIN_MISMATCH)
        .stderr_has("revoked")
        .stderr_has("contacts remove");
    assert!(coordinator.contact(CLINIC_ID).unwrap()["revoked"].is_object());
    // The old card cannot simply come back either, even after removing the pin.
    coordinator.run(&["contacts", "remove", CLINIC_ID]).ok();
    coordinator
        .add_card(&old_clinic_card, None)
        .code(EXIT_PIN_MISMATCH)
        .stderr_has("revoked");
    // After the phone call, the operator pins the new card again, and exchange resumes.
    let fp = clinic.fingerprint();
    coordinator.add_card(&new_card, Some(&fp)).ok();
    let contact = coordinator.contact(CLINIC_ID).unwrap();
    assert!(contact["revoked"].is_null(), "{contact}");
    assert_eq!(contact["verified"], true);
    let sent = coordinator.send(&[CLINIC_ID], &[], &[input.as_path()]);
    let received = clinic.sync();
    assert_eq!(
        list(&received, "received")
            .iter()
            .filter(|r| r["bundle_id"] == sent["bundle_id"])
            .count(),
        1,
        "{received}"
    );
    // The file signed with the revoked key stays refused.
    let out = lab.fresh_path("opened-again");
    assert_ne!(coordinator.open(&offline, &out).code, 0);
    assert_nothing_released(&out);
}

#[test]
fn a_revocation_made_while_the_relay_is_down_is_posted_by_the_next_sync() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut relay = RelayProcess::init_on(&lab, &addr);
    relay.enroll(&coordinator);
    relay.enroll(&clinic);
    for n in [&coordinator, &clinic] {
        n.relay_set(&addr, &relay.pin).ok();
        n.set_connect_timeout(1);
    }

    // The relay is down: the revocation is made, kept, and the key is refused locally.
    let revoked = clinic.run(&["key", "revoke", "--reason", "keyring leaked", "--yes"]);
    revoked.ok();
    assert!(
        revoked.stdout.contains("could not be reached") && revoked.stdout.contains("kept"),
        "{}",
        revoked.describe()
    );
    let kept = clinic.home.join("revocations").join("outgoing.json");
    assert_eq!(mode_of(&kept), 0o600);
    let input = note(&lab, "x");
    clinic
        .send_outcome(&[COORDINATOR_ID], &[], &[input.as_path()])
        .code(EXIT_ERROR)
        .stderr_has("revoked");
    // Rotating now would let contacts see the new card before the revocation.
    clinic
        .run(&["key", "rotate"])
        .code(EXIT_ERROR)
        .stderr_has("has not reached the relay");

    // The relay is back: the clinic's next sync posts it (and then stops: its key is
    // revoked), and the coordinator's next sync applies it.
    relay.start();
    clinic.run(&["sync"]).code(EXIT_ERROR).stderr_has("revoked");
    let summary = coordinator.sync();
    assert_eq!(list(&summary, "revoked").len(), 1, "{summary}");
    coordinator
        .send_outcome(&[CLINIC_ID], &[], &[input.as_path()])
        .code(EXIT_PIN_MISMATCH);
    // Posted for good: rotation is allowed now.
    clinic.run(&["key", "rotate"]).ok();
}
