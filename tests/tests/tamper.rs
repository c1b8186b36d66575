//! Tampering, truncation and forgery: every damaged or re-signed bundle is refused with
//! exit code 3, no byte of it is released into the output directory, and the error output
//! names no subject, patient reference or part file name.

use std::fs;
use std::path::PathBuf;

use dossier_tests::*;

const RECORDS: &str = "discharge-notes-q4";
/// Large enough for several 64 KiB age payload chunks.
const SCAN_LEN: usize = 300 * 1024;
/// Size of one age STREAM chunk on disk: 64 KiB of plaintext plus a 16-byte tag.
const AGE_CHUNK: usize = 64 * 1024 + 16;

struct Setup {
    lab: Lab,
    coordinator: Node,
    clinic: Node,
    outgoing: PathBuf,
    records: PathBuf,
}

fn setup() -> Setup {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, SCAN_LEN, 0x7A3B);
    Setup {
        lab,
        coordinator,
        clinic,
        outgoing,
        records,
    }
}

impl Setup {
    fn seal_to_clinic(&self) -> PathBuf {
        let bundle = self.lab.fresh_path("bundle");
        self.coordinator
            .seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&self.records]);
        bundle
    }

    /// Writes `bytes` as a bundle file, has `node` open it, and checks the refusal.
    fn assert_refused(&self, node: &Node, bytes: &[u8], what: &str) {
        self.assert_refused_because(node, bytes, what, "");
    }

    /// Like [`Setup::assert_refused`], also checking the error names `reason`.
    fn assert_refused_because(&self, node: &Node, bytes: &[u8], what: &str, reason: &str) {
        let file = self.lab.fresh_path("damaged");
        fs::write(&file, bytes).unwrap();
        let out = self.lab.fresh_path("out");
        let o = node.open(&file, &out);
        assert_eq!(
            o.code,
            EXIT_VERIFICATION,
            "{what}: expected exit 3\n{}",
            o.describe()
        );
        // With --json the error is one JSON document on stderr.
        let err: serde_json::Value = serde_json::from_str(o.stderr.trim()).unwrap_or_else(|e| {
            panic!("{what}: stderr is not a JSON error ({e})\n{}", o.describe())
        });
        assert_eq!(err["exit_code"], EXIT_VERIFICATION, "{what}");
        let message = err["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && message.contains(reason),
            "{what}: the error should say {reason:?}\n{}",
            o.describe()
        );
        assert!(
            o.stdout.trim().is_empty(),
            "{what}: no JSON success document\n{}",
            o.describe()
        );
        assert_nothing_released(&out);
        assert_no_phi(&o, &protected_strings(RECORDS));
    }

    /// Opens `bytes` at `node` and checks the parts equal the originals.
    fn assert_opens(&self, node: &Node, bytes: &[u8], what: &str) {
        let file = self.lab.fresh_path("rebuilt");
        fs::write(&file, bytes).unwrap();
        let out = self.lab.fresh_path("out");
        let o = node.open(&file, &out);
        assert_eq!(o.code, EXIT_OK, "{what}: should open\n{}", o.describe());
        assert_eq!(tree_digests(&out), tree_digests(&self.outgoing), "{what}");
    }
}

/// Offset just past the age header (after the `--- MAC` line).
fn header_end(bundle: &[u8]) -> usize {
    let mac = bundle
        .windows(5)
        .position(|w| w == b"\n--- ")
        .expect("an age header has a MAC line");
    mac + 1
        + bundle[mac + 1..]
            .iter()
            .position(|b| *b == b'\n')
            .expect("the MAC line ends")
        + 1
}

fn find(bundle: &[u8], needle: &[u8]) -> usize {
    bundle
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in the bundle", String::from_utf8_lossy(needle)))
}

#[test]
fn a_flipped_byte_anywhere_is_refused_and_releases_nothing() {
    let s = setup();
    let bundle = fs::read(s.seal_to_clinic()).unwrap();
    let hdr = header_end(&bundle);
    let len = bundle.len();
    assert!(len > hdr + 4 * AGE_CHUNK, "several payload chunks");
    let stanza = find(&bundle, b"\n-> X25519 ");
    let mac = find(&bundle, b"\n--- ");
    let positions = [
        ("age version line", 5),
        ("X25519 stanza ephemeral share", stanza + 15),
        ("X25519 stanza wrapped key", stanza + 60),
        ("header MAC", mac + 10),
        ("payload nonce", hdr + 3),
        ("first payload chunk", hdr + 16 + 100),
        ("middle of the payload", hdr + (len - hdr) / 2),
        ("last 100 bytes", len - 60),
        ("final tag byte", len - 1),
    ];
    for (what, pos) in positions {
        assert!(pos < len, "{what}");
        let mut damaged = bundle.clone();
        damaged[pos] ^= 0x01;
        s.assert_refused(&s.clinic, &damaged, &format!("flip in {what} at {pos}"));
    }
    // The undamaged file still opens: the refusals above are due to the flips.
    s.assert_opens(&s.clinic, &bundle, "the original");
}

#[test]
fn a_truncated_bundle_is_refused_and_releases_nothing() {
    let s = setup();
    let bundle = fs::read(s.seal_to_clinic()).unwrap();
    let hdr = header_end(&bundle);
    let len = bundle.len();
    let cuts = [
        ("empty file", 0),
        ("inside the version line", 10),
        ("inside the header", hdr - 5),
        ("right after the header", hdr),
        ("after the payload nonce", hdr + 16),
        ("at the first chunk boundary", hdr + 16 + AGE_CHUNK),
        ("at the second chunk boundary", hdr + 16 + 2 * AGE_CHUNK),
        ("in the middle", hdr + (len - hdr) / 2),
        ("17 bytes short", len - 17),
        ("one byte short", len - 1),
    ];
    for (what, cut) in cuts {
        assert!(cut < len, "{what}");
        s.assert_refused(&s.clinic, &bundle[..cut], &format!("cut {what} at {cut}"));
    }
    // Appending garbage is refused too.
    let mut longer = bundle.clone();
    longer.extend_from_slice(&[0u8; 100]);
    s.assert_refused(&s.clinic, &longer, "100 bytes appended");
}

#[test]
fn swapped_or_flipped_signatures_and_edited_contents_are_refused() {
    let s = setup();
    let stranger = s.lab.stranger();
    // The stranger trusts the coordinator: only the recipient list keeps it out.
    stranger.pin(&s.coordinator, true);

    let first = fs::read(s.seal_to_clinic()).unwrap();
    let second = fs::read(s.seal_to_clinic()).unwrap();
    let key_file = s.clinic.export_age_identity();
    let identity = read_age_identities(&key_file).remove(0);
    let clinic_recipient = identity.to_public();

    let first_tar = read_tar(&age_decrypt(&identity, &first));
    let second_tar = read_tar(&age_decrypt(&identity, &second));
    let names: Vec<&str> = first_tar.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("parts/{RECORDS}/imaging/{SCAN_NAME}").as_str(),
            format!("parts/{RECORDS}/{IPS_SAMPLE_NAME}").as_str(),
            "manifest.json",
            "manifest.sig"
        ],
        "container layout"
    );
    let sig_at = 3;
    let manifest_at = 2;
    assert_eq!(first_tar[sig_at].data.len(), 64);
    assert_ne!(
        first_tar[sig_at].data, second_tar[sig_at].data,
        "two bundles carry different signatures"
    );

    // Control: the same container, rebuilt and re-encrypted to the clinic, opens. So each
    // refusal below is caused by the one change it makes, not by the rebuilding.
    let rebuilt = age_encrypt(&clinic_recipient, &write_tar(&first_tar));
    s.assert_opens(&s.clinic, &rebuilt, "unchanged rebuilt container");

    let mut swapped = first_tar.clone();
    swapped[sig_at].data = second_tar[sig_at].data.clone();
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&swapped)),
        "signature of another bundle by the same sender",
        "signature does not verify",
    );

    let mut flipped = first_tar.clone();
    flipped[sig_at].data[17] ^= 0x80;
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&flipped)),
        "flipped signature",
        "signature does not verify",
    );

    let mut manifest_swapped = first_tar.clone();
    manifest_swapped[manifest_at].data = second_tar[manifest_at].data.clone();
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&manifest_swapped)),
        "manifest of another bundle with this bundle's signature",
        "signature does not verify",
    );

    let mut edited_part = first_tar.clone();
    edited_part[0].data[1000] ^= 0x01;
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&edited_part)),
        "one byte of a part changed, manifest and signature kept",
        "does not match its signed manifest entry",
    );

    let mut edited_manifest = first_tar.clone();
    let text = String::from_utf8(edited_manifest[manifest_at].data.clone()).unwrap();
    assert!(text.contains(PHI.subject));
    edited_manifest[manifest_at].data = text
        .replace(PHI.subject, "Left knee arthroplasty workup zq82")
        .into_bytes();
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&edited_manifest)),
        "subject edited in the signed manifest",
        "signature does not verify",
    );

    let mut dropped = first_tar.clone();
    dropped.remove(1);
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&dropped)),
        "a part removed",
        "manifest lists 2 parts",
    );

    let mut unsigned = first_tar.clone();
    unsigned.truncate(3);
    s.assert_refused_because(
        &s.clinic,
        &age_encrypt(&clinic_recipient, &write_tar(&unsigned)),
        "signature entry removed",
        "no signature",
    );

    // Surreptitious forwarding: the clinic re-encrypts the intact container to the
    // stranger. It decrypts there, but the signed recipient list does not name it.
    let stranger_key = read_age_identities(&stranger.export_age_identity()).remove(0);
    s.assert_refused_because(
        &stranger,
        &age_encrypt(&stranger_key.to_public(), &write_tar(&first_tar)),
        "container forwarded to a non-recipient",
        "does not name this node",
    );
}

#[test]
fn a_bundle_sealed_for_someone_else_is_refused_even_with_a_copy_of_the_file() {
    let s = setup();
    let patient = s.lab.patient_node();
    s.coordinator.pin(&patient, true);
    patient.pin(&s.coordinator, true);
    let bundle = s.lab.fresh_path("to-patient");
    s.coordinator
        .seal(&[PATIENT_ID], &PHI.seal_args(), &bundle, &[&s.records]);
    // The clinic is the coordinator's contact, but this bundle is only for the patient.
    s.assert_refused(
        &s.clinic,
        &fs::read(&bundle).unwrap(),
        "bundle for the patient",
    );
    // A file that is not a bundle at all is refused too.
    s.assert_refused(
        &s.clinic,
        &fs::read(s.records.join(IPS_SAMPLE_NAME)).unwrap(),
        "a plain JSON file",
    );
    let opened = s.lab.fresh_path("patient-out");
    patient.open(&bundle, &opened).ok();
    assert_eq!(tree_digests(&opened), tree_digests(&s.outgoing));
}
