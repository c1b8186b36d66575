//! Open formats, no lock-in: a recipient holding only its exported age identity, Debian's
//! reference `age` tool and the system `tar` can read its records, and the detached
//! manifest signature checks with a plain Ed25519 implementation against the sender's card.
//!
//! These tests need the `age` binary on PATH (CI installs it with `apt-get install -y age`);
//! without it they fail rather than skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dossier_tests::*;

const RECORDS: &str = "referral-pack-m3";

/// The reference `age` binary on PATH, or a failure that says how to install it.
fn reference_age() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("age"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "the reference `age` tool is not on PATH; the interop tests need it. \
                 Install it with `apt-get install -y age` (tests/run does this on CI)"
            )
        })
}

/// `age -d -i IDENTITY BUNDLE | tar -x -C DIR`; returns (age exit code, age stderr, tar
/// exit code).
fn age_pipe_tar(identity: &Path, bundle: &Path, dir: &Path) -> (i32, String, i32) {
    fs::create_dir_all(dir).unwrap();
    let mut age = Command::new(reference_age())
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start age");
    let age_out = age.stdout.take().unwrap();
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-f")
        .arg("-")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::from(age_out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tar");
    let tar_result = tar.wait_with_output().expect("wait for tar");
    let age_result = age.wait_with_output().expect("wait for age");
    (
        age_result.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&age_result.stderr).into_owned(),
        tar_result.status.code().unwrap_or(-1),
    )
}

/// Checks a container unpacked by the system tar: the parts are byte-identical to
/// `expected` (keyed by part path), and the manifest and signature sit beside them.
fn check_unpacked(
    dir: &Path,
    expected: &std::collections::BTreeMap<String, String>,
) -> serde_json::Value {
    let mut all = tree_digests(dir);
    let manifest_bytes = fs::read(dir.join("manifest.json")).expect("manifest.json unpacked");
    assert_eq!(fs::read(dir.join("manifest.sig")).unwrap().len(), 64);
    all.remove("manifest.json");
    all.remove("manifest.sig");
    let parts: std::collections::BTreeMap<String, String> = all
        .into_iter()
        .map(|(k, v)| {
            (
                k.strip_prefix("parts/")
                    .unwrap_or_else(|| panic!("unexpected entry {k} outside parts/"))
                    .to_owned(),
                v,
            )
        })
        .collect();
    assert_eq!(
        &parts, expected,
        "parts unpacked by age | tar are the originals"
    );
    serde_json::from_slice(&manifest_bytes).expect("manifest.json is JSON")
}

#[test]
fn reference_age_and_tar_unpack_a_bundle_with_the_exported_identity() {
    let age_bin = reference_age();
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    coordinator.pin_both_ways(&clinic);

    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 1024 * 1024 + 123, 0xA6E);
    let expected = tree_digests(&outgoing);
    let bundle = lab.fresh_path("bundle");
    let sealed = coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&records]);

    let identity = clinic.export_age_identity();
    assert_eq!(
        mode_of(&identity),
        0o600,
        "the exported secret key is private"
    );
    let unpacked = lab.fresh_path("unpacked");
    let (age_code, age_err, tar_code) = age_pipe_tar(&identity, &bundle, &unpacked);
    assert_eq!(age_code, 0, "{} -d failed: {age_err}", age_bin.display());
    assert_eq!(tar_code, 0, "tar -x failed");
    let manifest = check_unpacked(&unpacked, &expected);
    assert_eq!(manifest["bundle_id"], sealed["bundle_id"]);
    assert_eq!(manifest["subject"], PHI.subject);
    assert_eq!(manifest["patient"], PHI.patient);
    assert_eq!(manifest["sender"]["id"], COORDINATOR_ID);
    assert_eq!(manifest["recipients"][0]["id"], CLINIC_ID);

    // The manifest signature checks with plain Ed25519 under the sender's card key,
    // over "dossier/manifest/v1" || 0x00 || manifest bytes.
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(coordinator.export_card()).unwrap()).unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&B64.decode(card["body"].as_str().unwrap()).unwrap()).unwrap();
    let key: [u8; 32] = B64
        .decode(body["signing_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let sig: [u8; 64] = fs::read(unpacked.join("manifest.sig"))
        .unwrap()
        .try_into()
        .unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    let mut signed = b"dossier/manifest/v1\0".to_vec();
    let manifest_bytes = fs::read(unpacked.join("manifest.json")).unwrap();
    signed.extend_from_slice(&manifest_bytes);
    key.verify_strict(&signed, &sig)
        .expect("manifest.sig verifies under the sender's card key");
    let mut forged = signed.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert!(key.verify_strict(&forged, &sig).is_err());

    // The stranger's exported identity cannot decrypt it with the reference tool either.
    let stranger_identity = stranger.export_age_identity();
    let out = Command::new(&age_bin)
        .arg("-d")
        .arg("-i")
        .arg(&stranger_identity)
        .arg(&bundle)
        .output()
        .expect("run age");
    assert!(!out.status.success(), "age decrypted for a non-recipient");
    assert!(
        out.stdout.is_empty(),
        "no plaintext from age for a non-recipient"
    );
}

#[test]
fn reference_age_reads_bundles_sealed_to_a_retired_key_after_rotation() {
    reference_age();
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 64 * 1024, 0xB0B);
    let expected = tree_digests(&outgoing);

    let old = lab.fresh_path("to-old-key");
    coordinator.seal(&[CLINIC_ID], &[], &old, &[&records]);
    clinic.run(&["key", "rotate"]).ok();
    coordinator.add_card(&clinic.export_card(), None).ok();
    let new = lab.fresh_path("to-new-key");
    coordinator.seal(&[CLINIC_ID], &[], &new, &[&records]);

    // One exported file holds the current and the retired identity.
    let identity = clinic.export_age_identity();
    assert_eq!(read_age_identities(&identity).len(), 2);
    for bundle in [&old, &new] {
        let dir = lab.fresh_path("unpacked");
        let (age_code, age_err, tar_code) = age_pipe_tar(&identity, bundle, &dir);
        assert_eq!(age_code, 0, "age -d: {age_err}");
        assert_eq!(tar_code, 0);
        check_unpacked(&dir, &expected);
    }
}

#[test]
fn bundles_made_by_the_reference_age_tool_without_dossier_framing_are_refused() {
    // A file encrypted by plain age to the clinic (e.g. someone bypassing dossier) is not a
    // signed bundle: the node refuses it (exit 3) and releases nothing.
    let age_bin = reference_age();
    let lab = Lab::new();
    let clinic = lab.clinic();
    let recipient = read_age_identities(&clinic.export_age_identity())
        .remove(0)
        .to_public()
        .to_string();
    let plain = lab.fresh_dir("plain").join("note.txt");
    write_file(&plain, PHI.subject.as_bytes());
    let encrypted = lab.fresh_path("plain-age");
    let status = Command::new(&age_bin)
        .arg("-r")
        .arg(&recipient)
        .arg("-o")
        .arg(&encrypted)
        .arg(&plain)
        .status()
        .expect("run age");
    assert!(status.success());
    let out = lab.path().join("out");
    let o = clinic.open(&encrypted, &out);
    o.code(EXIT_VERIFICATION);
    assert_nothing_released(&out);
    assert_no_phi(&o, &[PHI.subject]);
}
