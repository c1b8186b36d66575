//! `dossier demo`: one real exchange between three parties, narrated.
//!
//! Everything runs for real in a temporary directory: three node homes (a US care
//! coordinator, a clinic in Thailand and the patient), each with its own encrypted keyring;
//! cards exchanged and pinned; an HL7 IPS patient summary plus an imaging file sealed by the
//! coordinator for the clinic and the patient; both open it; a tampered copy is refused.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dossier_bundle::card::CardDetails;
use dossier_bundle::{BundleKind, CountryCode, FacilityId, PartyKind, Timestamp};
use dossier_node::opening::open_file;
use dossier_node::sealing::{SealOptions, seal_to_file};
use dossier_node::{ContactBook, NodeError, NodeHome, identity};
use secrecy::SecretString;

use crate::cli::DemoArgs;
use crate::output::Out;

static EMBEDDED_IPS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-ips.json"));
const IPS_NAME: &str = "ips-bundle-minimal.json";

struct Party {
    label: &'static str,
    home: NodeHome,
    details: CardDetails,
}

pub fn run(args: &DemoArgs) -> Result<(), NodeError> {
    let out = Out::new(false);
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("dossier-demo-")
        .tempdir()
        .map_err(NodeError::io("creating the demo directory"))?;
    let root = tmp.path().to_path_buf();
    let ips = sample_ips()?;
    // A throwaway passphrase: the demo's keys are deleted with its directory.
    let pass = SecretString::from(format!(
        "demo-{}",
        dossier_bundle::BundleId::random()
            .map_err(|e| NodeError::io("random")(std::io::Error::other(e)))?
    ));

    let parties = [
        party(
            &root,
            "US care coordinator",
            "us-mercy-intl",
            "Mercy Hospital International Office",
            "US",
            PartyKind::Facility,
        )?,
        party(
            &root,
            "clinic abroad",
            "th-bangkok-care",
            "Bangkok Care Clinic",
            "TH",
            PartyKind::Facility,
        )?,
        party(
            &root,
            "patient",
            "p-maria-lopez",
            "Maria Lopez",
            "US",
            PartyKind::Patient,
        )?,
    ];
    let [coordinator, clinic, patient] = &parties;

    out.say(format!("dossier demo — working in {}\n", root.display()));
    out.say("1. Each party creates its identity (keys encrypted at rest with its passphrase):");
    for p in &parties {
        let card = identity::init(&p.home, &p.details, &pass, Timestamp::now())?;
        out.say(format!(
            "   {:<20} {:<16} {} fingerprint {}",
            p.label,
            card.id(),
            card.country(),
            card.fingerprint()
        ));
    }

    out.say("\n2. They exchange cards and confirm fingerprints by phone, so each pins the others as verified:");
    for me in &parties {
        let my_id = identity::my_card(&me.home)?.id().clone();
        let mut book = ContactBook::load(&me.home)?;
        for other in parties.iter().filter(|o| o.details.id != me.details.id) {
            let card = identity::my_card(&other.home)?;
            let fp = card.fingerprint();
            book.add(card, &my_id, Some(fp.as_str()), Timestamp::now())?;
        }
        book.save(&me.home)?;
        out.say(format!(
            "   {:<20} pinned {} contact(s)",
            me.label,
            book.all().len()
        ));
    }

    let inputs = root.join("outgoing/treatment-history");
    std::fs::create_dir_all(&inputs).map_err(NodeError::io("preparing demo inputs"))?;
    std::fs::write(inputs.join(IPS_NAME), &ips).map_err(NodeError::io("preparing demo inputs"))?;
    let imaging = pseudo_random_bytes(3 * 1024 * 1024);
    std::fs::write(inputs.join("ct-chest-series.dcm"), &imaging)
        .map_err(NodeError::io("preparing demo inputs"))?;

    out.say("\n3. The coordinator seals the patient's treatment history (HL7 IPS summary + 3 MiB imaging) for the clinic and the patient:");
    let ring = identity::unlock(&coordinator.home, &pass)?;
    let bundle = root.join("treatment-history.dossier");
    let opts = SealOptions {
        to: vec![clinic.details.id.clone(), patient.details.id.clone()],
        kind: BundleKind::Record,
        subject: Some("Treatment history before knee replacement".into()),
        thread: Some("knee-2026".into()),
        patient: Some("MRN-0042".into()),
    };
    let manifest = seal_to_file(
        &coordinator.home,
        &ring,
        &opts,
        std::slice::from_ref(&inputs),
        &bundle,
        Timestamp::now(),
    )?;
    let size = std::fs::metadata(&bundle)
        .map_err(NodeError::io("reading the bundle size"))?
        .len();
    out.say(format!(
        "   bundle {} — {} parts, {size} bytes of age ciphertext, signed by {}",
        manifest.bundle_id,
        manifest.parts.len(),
        coordinator.details.id
    ));

    out.say("\n4. Each recipient verifies the signature against its pin, checks every hash, then unpacks:");
    for p in [clinic, patient, coordinator] {
        let ring = identity::unlock(&p.home, &pass)?;
        let dir = root.join(format!("opened-by-{}", p.details.id));
        let report = open_file(&p.home, &ring, &bundle, &dir)?;
        let same = std::fs::read(dir.join("treatment-history").join(IPS_NAME))
            .ok()
            .as_deref()
            == Some(&ips[..])
            && std::fs::read(dir.join("treatment-history/ct-chest-series.dcm"))
                .ok()
                .as_deref()
                == Some(&imaging[..]);
        out.say(format!(
            "   {:<20} opened it: from {} ({}), {} parts, byte-identical: {}",
            p.label,
            report.sender.id(),
            if report.sender_verified {
                "verified"
            } else {
                "unverified"
            },
            report.manifest.parts.len(),
            if same { "yes" } else { "NO" }
        ));
        if !same {
            return Err(NodeError::io("demo check")(std::io::Error::other(
                "opened parts differ from what was sealed",
            )));
        }
    }

    out.say("\n5. Someone alters one byte of a copy in transit:");
    let tampered = root.join("tampered.dossier");
    let mut bytes = std::fs::read(&bundle).map_err(NodeError::io("copying the bundle"))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&tampered, &bytes).map_err(NodeError::io("writing the tampered copy"))?;
    let ring = identity::unlock(&clinic.home, &pass)?;
    let dir = root.join("tampered-opened");
    match open_file(&clinic.home, &ring, &tampered, &dir) {
        Err(e) => {
            out.say(format!(
                "   the clinic refuses it (exit code {}): {e}",
                e.exit_class() as u8
            ));
            out.say(format!(
                "   nothing was released: {} does not exist",
                if dir.exists() {
                    "?"
                } else {
                    "the output directory"
                }
            ));
        }
        Ok(_) => {
            return Err(NodeError::io("demo check")(std::io::Error::other(
                "a tampered bundle opened",
            )));
        }
    }

    out.say(format!(
        "\nDone in {:.1} s. The relay (store-and-forward over QUIC) is the next step; this demo exchanged the bundle as a file.",
        started.elapsed().as_secs_f64()
    ));
    if args.keep {
        let kept = tmp.keep();
        out.say(format!(
            "Kept {} (demo passphrase is not saved; the homes are for inspection only).",
            kept.display()
        ));
    }
    Ok(())
}

fn party(
    root: &Path,
    label: &'static str,
    id: &str,
    name: &str,
    cc: &str,
    kind: PartyKind,
) -> Result<Party, NodeError> {
    Ok(Party {
        label,
        home: NodeHome::at(&root.join(id)),
        details: CardDetails {
            id: FacilityId::parse(id)?,
            name: name.into(),
            country: CountryCode::parse(cc)?,
            kind,
        },
    })
}

/// The IPS sample: embedded at build time, else found beside the repository.
fn sample_ips() -> Result<Vec<u8>, NodeError> {
    if !EMBEDDED_IPS.is_empty() {
        return Ok(EMBEDDED_IPS.to_vec());
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("DOSSIER_SAMPLE_DIR") {
        candidates.push(PathBuf::from(dir).join(IPS_NAME));
    }
    candidates.push(PathBuf::from("../shared/data/fhir").join(IPS_NAME));
    for c in &candidates {
        if let Ok(b) = std::fs::read(c) {
            return Ok(b);
        }
    }
    Err(NodeError::Input {
        arg: candidates.last().cloned().unwrap_or_default(),
        problem: "the HL7 IPS sample was not embedded at build time and was not found; set DOSSIER_SAMPLE_DIR to the directory holding ips-bundle-minimal.json".into(),
    })
}

/// Deterministic filler standing in for an imaging series (xorshift; not secret).
fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
