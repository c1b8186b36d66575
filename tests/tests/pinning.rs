//! Pinned facility keys: a re-initialised facility (same id, new keys) is refused with both
//! fingerprints shown, a rotation signed by the pinned key moves the pin, bundles from
//! before and after a rotation keep opening, and bundles from facilities nobody pinned are
//! quarantined (exit 5) without releasing anything.

use std::path::PathBuf;

use dossier_tests::*;

const RECORDS: &str = "operative-note-r2";

fn records(lab: &Lab, seed: u64) -> (PathBuf, PathBuf) {
    let outgoing = lab.fresh_dir("outgoing");
    let dir = make_records(&outgoing, RECORDS, 96 * 1024, seed);
    (outgoing, dir)
}

/// Asserts a refused open released nothing and leaked nothing.
fn assert_open_refused(
    node: &Node,
    bundle: &std::path::Path,
    out: &std::path::Path,
    code: i32,
) -> Outcome {
    let o = node.open(bundle, out);
    o.code(code);
    assert_nothing_released(out);
    assert_no_phi(&o, &protected_strings(RECORDS));
    assert!(o.stdout.trim().is_empty(), "{}", o.describe());
    o
}

#[test]
fn reinitialised_clinic_card_is_refused_showing_both_fingerprints() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let pinned_fp = clinic.fingerprint();

    // Same id, new home, new keys: an impostor or a reinstall, the node cannot tell.
    let reinit = lab.facility("clinic-reinstalled", CLINIC_ID, "Bangkok Care Clinic", "TH");
    let new_fp = reinit.fingerprint();
    assert_ne!(pinned_fp, new_fp);

    let before = coordinator.contacts_bytes().expect("contacts.json exists");
    let card = reinit.export_card();
    let refused = coordinator.add_card(&card, None);
    refused
        .code(EXIT_PIN_MISMATCH)
        .stderr_has(&pinned_fp)
        .stderr_has(&new_fp)
        .stderr_has(CLINIC_ID);
    assert_eq!(
        coordinator.contacts_bytes().as_deref(),
        Some(&before[..]),
        "contacts.json is unchanged"
    );

    // Claiming to have verified the new fingerprint does not bypass the pin either.
    let refused = coordinator.add_card(&card, Some(&new_fp));
    refused.code(EXIT_PIN_MISMATCH);
    assert_eq!(coordinator.contacts_bytes().as_deref(), Some(&before[..]));
    let entry = coordinator.contact(CLINIC_ID).expect("still pinned");
    assert_eq!(entry["fingerprint"], pinned_fp.as_str());
    assert_eq!(entry["verified"], true);

    // The documented way out: remove the old pin on purpose, then add the new card.
    coordinator.run(&["contacts", "remove", CLINIC_ID]).ok();
    coordinator.add_card(&card, None).ok();
    let entry = coordinator.contact(CLINIC_ID).expect("pinned again");
    assert_eq!(entry["fingerprint"], new_fp.as_str());
    assert_eq!(entry["verified"], false, "a new pin starts unverified");
}

#[test]
fn bundle_from_reinitialised_clinic_is_refused_with_exit_4() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let pinned_fp = clinic.fingerprint();

    let reinit = lab.facility("clinic-reinstalled", CLINIC_ID, "Bangkok Care Clinic", "TH");
    reinit.pin(&coordinator, true);
    let (_, dir) = records(&lab, 41);
    let bundle = lab.fresh_path("from-reinit");
    reinit.seal(&[COORDINATOR_ID], &PHI.seal_args(), &bundle, &[&dir]);

    let out = lab.path().join("coordinator-out");
    let refused = assert_open_refused(&coordinator, &bundle, &out, EXIT_PIN_MISMATCH);
    refused
        .stderr_has(CLINIC_ID)
        .stderr_has(&pinned_fp)
        .stderr_has(&reinit.fingerprint());

    // The genuine clinic's bundles still open.
    let bundle = lab.fresh_path("from-clinic");
    clinic.seal(&[COORDINATOR_ID], &PHI.seal_args(), &bundle, &[&dir]);
    coordinator.open(&bundle, &lab.fresh_path("ok")).ok();
}

#[test]
fn rotated_clinic_is_followed_and_bundles_from_both_sides_of_the_rotation_open() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let old_fp = clinic.fingerprint();
    let (outgoing, dir) = records(&lab, 51);
    let expected = tree_digests(&outgoing);

    // Before the rotation: the clinic seals to the coordinator, the coordinator to the
    // clinic's (soon old) key.
    let clinic_before = lab.fresh_path("clinic-before");
    clinic.seal(&[COORDINATOR_ID], &PHI.seal_args(), &clinic_before, &[&dir]);
    let to_old_key = lab.fresh_path("to-old-key");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &to_old_key, &[&dir]);

    let rotated = clinic.run(&["key", "rotate"]);
    rotated.ok();
    let new_fp = clinic.fingerprint();
    assert_ne!(old_fp, new_fp, "key rotate changes the fingerprint");
    assert!(
        rotated.stdout.contains(&old_fp) && rotated.stdout.contains(&new_fp),
        "key rotate shows both fingerprints\n{}",
        rotated.describe()
    );

    // A bundle signed with the new key, before the coordinator has seen the new card,
    // does not match the pin.
    let clinic_after = lab.fresh_path("clinic-after");
    clinic.seal(&[COORDINATOR_ID], &PHI.seal_args(), &clinic_after, &[&dir]);
    assert_open_refused(
        &coordinator,
        &clinic_after,
        &lab.path().join("too-early"),
        EXIT_PIN_MISMATCH,
    );

    // The new card is signed by the pinned key: accepted, the pin moves, trust carries over.
    let before = coordinator.contacts_bytes().unwrap();
    let card = clinic.export_card();
    let added = coordinator.add_card(&card, None);
    added.ok();
    assert!(
        added.stdout.contains(&old_fp) && added.stdout.contains(&new_fp),
        "{}",
        added.describe()
    );
    assert_ne!(coordinator.contacts_bytes().unwrap(), before);
    let entry = coordinator.contact(CLINIC_ID).expect("still pinned");
    assert_eq!(entry["fingerprint"], new_fp.as_str(), "the pin moved");
    assert_eq!(
        entry["verified"], true,
        "a signed rotation keeps verification"
    );
    assert_eq!(coordinator.contacts().len(), 1, "no duplicate contact");

    // Adding the same rotated card again changes nothing.
    let again = coordinator.contacts_bytes().unwrap();
    coordinator.add_card(&card, None).ok();
    assert_eq!(coordinator.contacts_bytes().unwrap(), again);

    // After the rotation, everything opens: new-key bundles and old-key bundles.
    for (bundle, fp) in [(&clinic_after, &new_fp), (&clinic_before, &old_fp)] {
        let out = lab.fresh_path("coordinator-out");
        let doc = coordinator.open(bundle, &out).ok().json();
        assert_eq!(doc["from"], CLINIC_ID);
        assert_eq!(
            doc["from_fingerprint"],
            fp.as_str(),
            "verified with the key that signed it"
        );
        assert_eq!(tree_digests(&out), expected);
    }
    let out = lab.fresh_path("clinic-out-old-key");
    clinic.open(&to_old_key, &out).ok();
    assert_eq!(
        tree_digests(&out),
        expected,
        "the retired key still decrypts"
    );

    // New bundles from the coordinator go to the new key and open at the clinic.
    let to_new_key = lab.fresh_path("to-new-key");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &to_new_key, &[&dir]);
    let out = lab.fresh_path("clinic-out-new-key");
    clinic.open(&to_new_key, &out).ok();
    assert_eq!(tree_digests(&out), expected);

    // The clinic's own bundles from before its rotation still open at the clinic.
    let out = lab.fresh_path("clinic-own-old");
    let doc = clinic.open(&clinic_before, &out).ok().json();
    assert_eq!(doc["from_fingerprint"], old_fp.as_str());
}

#[test]
fn a_second_rotation_is_followed_only_step_by_step() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let first_fp = clinic.fingerprint();

    clinic.run(&["key", "rotate"]).ok();
    let second_card = clinic.export_card();
    clinic.run(&["key", "rotate"]).ok();
    let third_card = clinic.export_card();
    let third_fp = clinic.fingerprint();

    // The third card is signed by the second key, which the coordinator never pinned.
    let before = coordinator.contacts_bytes().unwrap();
    coordinator
        .add_card(&third_card, None)
        .code(EXIT_PIN_MISMATCH)
        .stderr_has(&first_fp)
        .stderr_has(&third_fp);
    assert_eq!(coordinator.contacts_bytes().unwrap(), before);

    // Following the chain in order works.
    for card in [&second_card, &third_card] {
        coordinator.add_card(card, None).ok();
    }
    assert_eq!(
        coordinator.contact(CLINIC_ID).unwrap()["fingerprint"],
        third_fp.as_str()
    );
}

#[test]
fn bundle_from_an_unpinned_sender_is_refused_with_exit_5() {
    let lab = Lab::new();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    // The stranger has the clinic's card and can seal to it; the clinic never pinned the
    // stranger. (The stranger confirmed the clinic's fingerprint: the default disclosure
    // policy sends records only to verified contacts.)
    stranger.pin(&clinic, true);
    let (_, dir) = records(&lab, 61);
    let bundle = lab.fresh_path("from-stranger");
    stranger.seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&dir]);

    let out = lab.path().join("clinic-out");
    let refused = assert_open_refused(&clinic, &bundle, &out, EXIT_UNKNOWN_SENDER);
    refused.stderr_has(STRANGER_ID).stderr_has("contacts add");
    assert!(
        clinic.contacts_bytes().is_none(),
        "nothing was pinned on the way"
    );

    // Once the clinic pins the stranger, the same file opens.
    clinic.pin(&stranger, false);
    let out = lab.fresh_path("clinic-out");
    let doc = clinic.open(&bundle, &out).ok().json();
    assert_eq!(doc["from"], STRANGER_ID);
    assert_eq!(doc["from_verified"], false);
}

#[test]
fn removing_a_contact_stops_its_bundles_from_opening() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let (_, dir) = records(&lab, 71);
    let bundle = lab.fresh_path("from-clinic");
    clinic.seal(&[COORDINATOR_ID], &PHI.seal_args(), &bundle, &[&dir]);

    coordinator.run(&["contacts", "remove", CLINIC_ID]).ok();
    assert!(coordinator.contact(CLINIC_ID).is_none());
    assert_open_refused(
        &coordinator,
        &bundle,
        &lab.path().join("out"),
        EXIT_UNKNOWN_SENDER,
    );
    // Removing it again is an error, not a silent success.
    coordinator
        .run(&["contacts", "remove", CLINIC_ID])
        .failed()
        .stderr_has(CLINIC_ID);
    // And the coordinator can no longer seal to it.
    let o = coordinator.seal_outcome(&[CLINIC_ID], &[], &lab.fresh_path("b"), &[&dir]);
    o.failed().stderr_has(CLINIC_ID);
}
