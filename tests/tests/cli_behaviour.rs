//! Smaller CLI behaviours: `contacts list --json` fields, fingerprint verification,
//! confirmation for exporting a secret key, argument validation, refusing to open into a
//! non-empty directory, refusing damaged cards, wrong passphrases, and private file modes.

use std::fs;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dossier_tests::*;
use serde_json::Value;

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn contacts_list_json_has_the_documented_fields() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let patient = lab.patient_node();

    assert_eq!(
        coordinator.contacts(),
        Vec::<Value>::new(),
        "empty at first"
    );

    coordinator.pin(&clinic, true);
    coordinator.pin(&patient, false);
    let list = coordinator.contacts();
    assert_eq!(list.len(), 2, "{list:?}");
    let expect = [
        (&clinic, "Bangkok Care Clinic", "TH", "facility", true),
        (&patient, "Maria Lopez", "US", "patient", false),
    ];
    for (entry, (node, name, country, kind, verified)) in list.iter().zip(expect) {
        assert_eq!(entry["id"], node.id.as_str(), "{entry}");
        assert_eq!(entry["name"], name, "{entry}");
        assert_eq!(entry["country"], country, "{entry}");
        assert_eq!(entry["kind"], kind, "{entry}");
        assert_eq!(entry["fingerprint"], node.fingerprint().as_str(), "{entry}");
        assert_eq!(entry["verified"], verified, "{entry}");
        assert!(is_utc_timestamp(&entry["pinned_at"]), "{entry}");
        if verified {
            assert!(is_utc_timestamp(&entry["verified_at"]), "{entry}");
        } else {
            assert_eq!(entry["verified_at"], Value::Null, "{entry}");
        }
    }
    // The fingerprint is six groups of five digits.
    let fp = list[0]["fingerprint"].as_str().unwrap();
    let groups: Vec<&str> = fp.split(' ').collect();
    assert_eq!(groups.len(), 6, "{fp}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())),
        "{fp}"
    );

    // Human output goes to stdout without --json and is not JSON.
    let human = coordinator.run(&["contacts", "list"]);
    human.ok();
    assert!(human.stdout.contains(CLINIC_ID) && human.stdout.contains("UNVERIFIED"));
    assert!(serde_json::from_str::<Value>(&human.stdout).is_err());
}

#[test]
fn contacts_verify_refuses_a_wrong_fingerprint_and_accepts_the_right_one() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin(&clinic, false);
    let right = clinic.fingerprint();
    let before = coordinator.contacts_bytes().unwrap();

    // One digit off.
    let mut wrong = right.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let o = coordinator.run(&["contacts", "verify", CLINIC_ID, &wrong]);
    o.code(EXIT_PIN_MISMATCH).stderr_has(&right);
    assert_eq!(coordinator.contacts_bytes().unwrap(), before, "unchanged");
    assert_eq!(coordinator.contact(CLINIC_ID).unwrap()["verified"], false);

    // Verifying a contact that does not exist is an error.
    coordinator
        .run(&["contacts", "verify", STRANGER_ID, &right])
        .failed()
        .stderr_has(STRANGER_ID);

    coordinator
        .run(&["contacts", "verify", CLINIC_ID, &right])
        .ok();
    let entry = coordinator.contact(CLINIC_ID).unwrap();
    assert_eq!(entry["verified"], true);
    assert!(is_utc_timestamp(&entry["verified_at"]), "{entry}");

    // `contacts add --verified` with a wrong fingerprint pins nothing.
    let patient = lab.patient_node();
    let card = patient.export_card();
    coordinator
        .add_card(&card, Some(&wrong))
        .code(EXIT_PIN_MISMATCH);
    assert!(coordinator.contact(PATIENT_ID).is_none());
}

#[test]
fn export_age_needs_yes_and_never_overwrites() {
    let lab = Lab::new();
    let clinic = lab.clinic();
    let target = lab.path().join("identity.txt");
    let o = clinic.run(&[
        "key".as_ref(),
        "export-age".as_ref(),
        "-o".as_ref(),
        target.as_os_str(),
    ]);
    o.code(EXIT_USAGE).stderr_has("--yes");
    assert!(!target.exists(), "no key file without --yes");

    // An existing file is never overwritten.
    fs::write(&target, b"keep me").unwrap();
    clinic
        .run(&[
            "key".as_ref(),
            "export-age".as_ref(),
            "--yes".as_ref(),
            "-o".as_ref(),
            target.as_os_str(),
        ])
        .failed();
    assert_eq!(fs::read(&target).unwrap(), b"keep me");

    // With --yes it writes a 0600 file holding the key matching the card.
    let exported = clinic.export_age_identity();
    assert_eq!(mode_of(&exported), 0o600);
    assert_eq!(read_age_identities(&exported).len(), 1);
}

#[test]
fn init_refuses_bad_arguments_with_exit_2_and_creates_nothing() {
    let lab = Lab::new();
    let bad = [
        ("XX", "us-mercy-intl", "Mercy"),
        ("usa", "us-mercy-intl", "Mercy"),
        ("us", "us-mercy-intl", "Mercy"),
        ("", "us-mercy-intl", "Mercy"),
        ("US", "Bad_Id", "Mercy"),
        ("US", "us-mercy-intl", " padded name "),
    ];
    for (country, id, name) in bad {
        let home = lab.fresh_path("home");
        let o = run_command({
            let mut c = std::process::Command::new(dossier_bin());
            c.arg("--home")
                .arg(&home)
                .args(["init", "--id", id, "--name", name, "--country", country])
                .env("DOSSIER_PASSPHRASE", PASSPHRASE);
            c
        });
        o.code(EXIT_USAGE);
        assert!(
            !home.join("keyring.age").exists(),
            "no identity for country {country:?} id {id:?}"
        );
    }

    // A country error says what is allowed.
    let home = lab.fresh_path("home");
    let o = run_command({
        let mut c = std::process::Command::new(dossier_bin());
        c.arg("--home")
            .arg(&home)
            .args(["init", "--id", "x-clinic", "--name", "X", "--country", "XX"])
            .env("DOSSIER_PASSPHRASE", PASSPHRASE);
        c
    });
    o.code(EXIT_USAGE).stderr_has("ISO 3166-1");

    // A short passphrase is refused with a message, and creates nothing.
    let home = lab.fresh_path("home");
    let o = run_command({
        let mut c = std::process::Command::new(dossier_bin());
        c.arg("--home")
            .arg(&home)
            .args(["init", "--id", "x-clinic", "--name", "X", "--country", "TH"])
            .env("DOSSIER_PASSPHRASE", "short");
        c
    });
    o.failed().stderr_has("passphrase");
    assert!(!home.join("keyring.age").exists());

    // Initialising an existing home again is refused and changes nothing.
    let clinic = lab.clinic();
    let keyring = fs::read(clinic.keyring_path()).unwrap();
    clinic
        .run(&[
            "init",
            "--id",
            "th-other",
            "--name",
            "Other",
            "--country",
            "TH",
        ])
        .failed()
        .stderr_has("already");
    assert_eq!(fs::read(clinic.keyring_path()).unwrap(), keyring);
    assert_eq!(clinic.card_json()["id"], CLINIC_ID);
}

#[test]
fn open_into_a_non_empty_directory_fails_and_writes_nothing() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, "lab-results-n5", 10_000, 3);
    let bundle = lab.fresh_path("bundle");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&records]);

    let parent = lab.fresh_dir("parent");
    let out = parent.join("inbox");
    write_file(&out.join("keep.txt"), b"existing file");
    let o = clinic.open(&bundle, &out);
    o.failed().stderr_has("not empty");
    assert_eq!(
        tree_digests(&out).into_keys().collect::<Vec<_>>(),
        ["keep.txt"],
        "nothing was added"
    );
    assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"existing file");
    let siblings: Vec<_> = fs::read_dir(&parent).unwrap().collect();
    assert_eq!(siblings.len(), 1, "no staging directory left beside it");
    assert_no_phi(&o, &protected_strings("lab-results-n5"));

    // An output path that is a file is refused and left alone.
    let file_out = parent.join("a-file");
    fs::write(&file_out, b"x").unwrap();
    clinic.open(&bundle, &file_out).failed();
    assert_eq!(fs::read(&file_out).unwrap(), b"x");

    // Sealing never overwrites an existing bundle file either.
    let existing = lab.fresh_path("existing");
    fs::write(&existing, b"do not overwrite").unwrap();
    coordinator
        .seal_outcome(&[CLINIC_ID], &[], &existing, &[&records])
        .failed();
    assert_eq!(fs::read(&existing).unwrap(), b"do not overwrite");
}

/// Re-encodes a card file with `edit` applied to its envelope.
fn edited_card(card: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut env: Value = serde_json::from_slice(&fs::read(card).unwrap()).unwrap();
    edit(env.as_object_mut().unwrap());
    serde_json::to_vec_pretty(&env).unwrap()
}

#[test]
fn malformed_and_altered_cards_are_refused_and_contacts_stay_unchanged() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    coordinator.pin(&stranger, true);
    let before = coordinator.contacts_bytes().expect("contacts.json exists");
    let good = clinic.export_card();
    let good_bytes = fs::read(&good).unwrap();
    let other = stranger.export_card();
    let other_env: Value = serde_json::from_slice(&fs::read(&other).unwrap()).unwrap();

    let altered_name = edited_card(&good, |env| {
        let body = B64.decode(env["body"].as_str().unwrap()).unwrap();
        let body = String::from_utf8(body)
            .unwrap()
            .replace("Bangkok Care Clinic", "Bangkok Care Clinix");
        env.insert("body".into(), B64.encode(body).into());
    });
    let altered_country = edited_card(&good, |env| {
        let body = B64.decode(env["body"].as_str().unwrap()).unwrap();
        let body = String::from_utf8(body).unwrap().replace("\"TH\"", "\"US\"");
        env.insert("body".into(), B64.encode(body).into());
    });
    let foreign_signature = edited_card(&good, |env| {
        env.insert("signature".into(), other_env["signature"].clone());
    });
    let swapped_key = edited_card(&good, |env| {
        // The clinic's name and id with the stranger's keys, but the clinic's signature.
        let mut body: Value =
            serde_json::from_slice(&B64.decode(env["body"].as_str().unwrap()).unwrap()).unwrap();
        let theirs: Value =
            serde_json::from_slice(&B64.decode(other_env["body"].as_str().unwrap()).unwrap())
                .unwrap();
        body["signing_key"] = theirs["signing_key"].clone();
        body["age_recipient"] = theirs["age_recipient"].clone();
        env.insert(
            "body".into(),
            B64.encode(serde_json::to_vec(&body).unwrap()).into(),
        );
    });

    let cases: Vec<(&str, Vec<u8>, Option<i32>)> = vec![
        ("not JSON", b"hello, I am a card".to_vec(), None),
        ("empty JSON object", b"{}".to_vec(), None),
        (
            "truncated card",
            good_bytes[..good_bytes.len() / 2].to_vec(),
            None,
        ),
        ("empty file", Vec::new(), None),
        ("oversized file", vec![b' '; 64 * 1024], None),
        ("altered name", altered_name, Some(EXIT_VERIFICATION)),
        ("altered country", altered_country, Some(EXIT_VERIFICATION)),
        (
            "another card's signature",
            foreign_signature,
            Some(EXIT_VERIFICATION),
        ),
        ("swapped keys", swapped_key, Some(EXIT_VERIFICATION)),
    ];
    for (what, bytes, code) in cases {
        let path = lab.fresh_path("bad-card");
        fs::write(&path, &bytes).unwrap();
        let o = coordinator.add_card(&path, None);
        match code {
            Some(c) => assert_eq!(o.code, c, "{what}\n{}", o.describe()),
            None => assert!(o.code > 0, "{what}: must be refused\n{}", o.describe()),
        }
        assert!(
            o.stderr.contains("card"),
            "{what}: says it is the card\n{}",
            o.describe()
        );
        assert_eq!(
            coordinator.contacts_bytes().unwrap(),
            before,
            "{what}: contacts.json unchanged"
        );
        // A node with no contacts does not get a contacts.json from a refused card.
        let o = clinic.add_card(&path, None);
        assert!(o.code > 0, "{what}\n{}", o.describe());
        assert!(clinic.contacts_bytes().is_none(), "{what}");
    }
    assert_eq!(coordinator.contacts().len(), 1);

    // A missing card file and the node's own card are refused too.
    coordinator
        .add_card(&lab.path().join("no-such.card"), None)
        .failed();
    coordinator
        .add_card(&coordinator.export_card(), None)
        .failed();
    assert_eq!(coordinator.contacts_bytes().unwrap(), before);

    // The genuine card still pins fine afterwards.
    coordinator.add_card(&good, None).ok();
    assert_eq!(coordinator.contacts().len(), 2);
}

#[test]
fn a_wrong_passphrase_exits_1_with_a_message_and_changes_nothing() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, "vaccination-card-w1", 4096, 9);
    let bundle = lab.fresh_path("bundle");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&records]);
    let wrong = "not the right passphrase at all";
    let keyring = fs::read(clinic.keyring_path()).unwrap();
    let card = fs::read(clinic.home.join("card.json")).unwrap();

    let out = lab.path().join("out");
    let sealed = lab.path().join("sealed-with-wrong");
    let exported = lab.path().join("exported.txt");
    let attempts: [(&str, Vec<&std::ffi::OsStr>); 4] = [
        (
            "open",
            vec![
                "open".as_ref(),
                bundle.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ],
        ),
        (
            "seal",
            vec![
                "seal".as_ref(),
                "--to".as_ref(),
                COORDINATOR_ID.as_ref(),
                "-o".as_ref(),
                sealed.as_os_str(),
                records.as_os_str(),
            ],
        ),
        ("key rotate", vec!["key".as_ref(), "rotate".as_ref()]),
        (
            "key export-age",
            vec![
                "key".as_ref(),
                "export-age".as_ref(),
                "--yes".as_ref(),
                "-o".as_ref(),
                exported.as_os_str(),
            ],
        ),
    ];
    for (what, args) in attempts {
        let o = clinic.run_with_passphrase(wrong, &args);
        assert_eq!(o.code, EXIT_ERROR, "{what}\n{}", o.describe());
        o.stderr_has("passphrase");
        assert!(
            !o.stderr.contains(wrong) && !o.stdout.contains(wrong),
            "{what}: the passphrase is never echoed\n{}",
            o.describe()
        );
        assert_no_phi(&o, &protected_strings("vaccination-card-w1"));
    }
    assert_nothing_released(&out);
    assert!(!sealed.exists(), "no bundle sealed");
    assert!(!exported.exists(), "no key exported");
    assert_eq!(fs::read(clinic.keyring_path()).unwrap(), keyring);
    assert_eq!(fs::read(clinic.home.join("card.json")).unwrap(), card);

    // The right one still works.
    clinic.open(&bundle, &lab.fresh_path("ok")).ok();
}

#[test]
fn keyring_contacts_and_cards_are_private_files() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    for node in [&coordinator, &clinic] {
        assert_eq!(mode_of(&node.home), 0o700, "{} home", node.label);
        assert_eq!(
            mode_of(&node.keyring_path()),
            0o600,
            "{} keyring.age",
            node.label
        );
        assert_eq!(
            mode_of(&node.contacts_path()),
            0o600,
            "{} contacts.json",
            node.label
        );
        assert_eq!(
            mode_of(&node.home.join("card.json")),
            0o600,
            "{} card.json",
            node.label
        );
    }
    clinic.run(&["key", "rotate"]).ok();
    assert_eq!(mode_of(&clinic.keyring_path()), 0o600, "after rotate");
    assert_eq!(mode_of(&clinic.home.join("cards")), 0o700);
    for entry in fs::read_dir(clinic.home.join("cards")).unwrap() {
        assert_eq!(mode_of(&entry.unwrap().path()), 0o600);
    }
    coordinator.add_card(&clinic.export_card(), None).ok();
    assert_eq!(
        mode_of(&coordinator.contacts_path()),
        0o600,
        "after an update"
    );

    // The keyring holds no secret key in clear.
    let exported = fs::read_to_string(clinic.export_age_identity()).unwrap();
    let keyring = fs::read(clinic.keyring_path()).unwrap();
    assert!(keyring.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    for line in exported
        .lines()
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
    {
        assert!(!contains_bytes(&keyring, line.as_bytes()));
        assert!(!contains_bytes(&keyring, line.to_lowercase().as_bytes()));
    }
}

#[test]
fn demo_runs_a_complete_exchange_and_cleans_up() {
    let lab = Lab::new();
    let tmp = lab.fresh_dir("tmp");
    let mut cmd = std::process::Command::new(dossier_bin());
    cmd.arg("demo")
        .env("TMPDIR", &tmp)
        .env_remove("DOSSIER_PASSPHRASE")
        .env_remove("DOSSIER_HOME");
    let o = run_command(cmd);
    o.ok();
    assert_eq!(
        o.stdout.matches("byte-identical: yes").count(),
        3,
        "clinic, patient and coordinator each open it\n{}",
        o.describe()
    );
    assert!(!o.stdout.contains("byte-identical: NO"), "{}", o.describe());
    assert!(
        o.stdout.contains("exit code 3"),
        "the tampered copy is refused with exit code 3\n{}",
        o.describe()
    );
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "the demo deletes its directory"
    );
}

#[test]
fn a_closed_stdout_does_not_crash_a_command() {
    // `dossier card | head -c0`, `dossier inbox | head -1`: the reader went away. The
    // command must not panic (exit 101) but finish what it was doing and exit as usual.
    let lab = Lab::new();
    let clinic = lab.clinic();
    for args in [&["card"][..], &["contacts", "list"], &["inbox", "--json"]] {
        let (read_end, write_end) = nix::unistd::pipe().expect("a pipe");
        drop(read_end); // every write to the pipe now fails with EPIPE
        let out = clinic
            .command(args)
            .stdout(std::process::Stdio::from(write_end))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("the command runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
