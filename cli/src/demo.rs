//! `dossier demo`: a real online exchange between three parties through an embedded relay,
//! narrated.
//!
//! Everything runs for real in a temporary directory: a `dossier-relay` (its redb store and
//! TLS key in the temp dir) serving on 127.0.0.1; three node homes (a US care coordinator, a
//! clinic in Thailand and the patient), each with its own encrypted keyring; cards pinned
//! both ways and enrolled at the relay; the relay pinned by every node. The coordinator sends
//! an HL7 IPS summary plus an imaging file to the clinic and the patient, the clinic sends a
//! care plan back, the coordinator sends follow-up instructions to the patient; everyone
//! syncs; each sender's timeline shows the signed delivery receipts. Finally a tampered copy
//! of a bundle is refused offline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use dossier_bundle::card::CardDetails;
use dossier_bundle::{BundleKind, CountryCode, FacilityId, Keyring, PartyKind, Timestamp};
use dossier_node::audit::{Actor, Operator, VerifyReport};
use dossier_node::opening::open_file;
use dossier_node::relay_client::{NoProgress, runtime};
use dossier_node::relay_config::RelayConfig;
use dossier_node::sealing::SealOptions;
use dossier_node::sync::{self, NoEvents, SendOutcome, SyncContext};
use dossier_node::{ContactBook, NodeError, NodeHome, identity, inbox, outbox};
use dossier_node::{disclosures, retention};
use secrecy::SecretString;

use crate::cli::DemoArgs;
use crate::output::Out;

static EMBEDDED_IPS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-ips.json"));
const IPS_NAME: &str = "ips-bundle-minimal.json";

struct Party {
    label: &'static str,
    home: NodeHome,
    details: CardDetails,
    /// The person acting at this node (recorded in its audit trail).
    actor: Actor,
}

fn demo_err(what: &str) -> impl FnOnce(String) -> NodeError + '_ {
    move |e| NodeError::io(what.to_owned())(std::io::Error::other(e))
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

    let rt = runtime().map_err(NodeError::io("starting the network runtime"))?;
    let relay_dir = root.join("relay");
    let localhost = "127.0.0.1:0".parse().expect("a valid socket address");
    let init = dossier_relay::init(&relay_dir, localhost)
        .map_err(|e| demo_err("creating the relay")(e.to_string()))?;
    for p in &parties {
        let card = identity::my_card(&p.home)?;
        dossier_relay::enroll(&relay_dir, &card.to_file_bytes())
            .map_err(|e| demo_err("enrolling at the relay")(e.to_string()))?;
    }
    let relay = rt
        .block_on(dossier_relay::start(&relay_dir))
        .map_err(|e| demo_err("starting the relay")(e.to_string()))?;
    let address = relay.addr().to_string();
    out.say(format!(
        "\n3. A relay starts on {address} (QUIC, TLS 1.3, redb store in the demo directory); its operator enrolls the three parties."
    ));
    out.say(format!("   relay pin {}", init.pin));
    for p in &parties {
        RelayConfig::new(&address, relay.pin())?.save(&p.home)?;
    }
    out.say("   every node pins it with `dossier relay set ADDR --pin PIN`: a relay with another key is refused");

    let rings: Vec<Keyring> = parties
        .iter()
        .map(|p| identity::unlock(&p.home, &pass))
        .collect::<Result<_, _>>()?;
    let (coord_ring, clinic_ring, patient_ring) = (&rings[0], &rings[1], &rings[2]);

    let history = root.join("outgoing/treatment-history");
    std::fs::create_dir_all(&history).map_err(NodeError::io("preparing demo inputs"))?;
    std::fs::write(history.join(IPS_NAME), &ips).map_err(NodeError::io("preparing demo inputs"))?;
    let imaging = pseudo_random_bytes(3 * 1024 * 1024);
    std::fs::write(history.join("ct-chest-series.dcm"), &imaging)
        .map_err(NodeError::io("preparing demo inputs"))?;
    let care_plan = root.join("outgoing/care-plan.json");
    std::fs::write(&care_plan, CARE_PLAN).map_err(NodeError::io("preparing demo inputs"))?;
    let follow_up = root.join("outgoing/follow-up-instructions.txt");
    std::fs::write(&follow_up, FOLLOW_UP).map_err(NodeError::io("preparing demo inputs"))?;

    let send = |p: &Party, ring: &Keyring, opts: SealOptions, input: &Path| {
        send_one(&rt, p, ring, opts, input)
    };
    let sync_party = |p: &Party, ring: &Keyring| -> Result<(), NodeError> {
        let c = ctx(p, ring)?;
        rt.block_on(sync::sync_once(&c))
    };

    out.say("\n4. The coordinator sends the treatment history (HL7 IPS summary + 3 MiB imaging) to the clinic and the patient:");
    let history_id = send(
        coordinator,
        coord_ring,
        SealOptions {
            to: vec![clinic.details.id.clone(), patient.details.id.clone()],
            kind: BundleKind::Record,
            subject: Some("Treatment history before knee replacement".into()),
            thread: Some("knee-2026".into()),
            patient: Some("MRN-0042".into()),
            redacted: false,
            overrides: Vec::new(),
        },
        &history,
    )?;
    say_sent(
        &out,
        coordinator,
        &history_id,
        &outbox::load(&coordinator.home, &history_id)?,
    );

    out.say("\n5. Clinic and patient sync: each bundle is downloaded, verified against the sender's pin, stored encrypted, acknowledged, and a signed receipt goes back:");
    for (p, ring) in [(clinic, clinic_ring), (patient, patient_ring)] {
        sync_party(p, ring)?;
        for r in inbox::list_inbox(&p.home)? {
            out.say(format!(
                "   {:<20} inbox: {} {} from {} ({} parts, verified)",
                p.label,
                r.bundle_id,
                r.kind.as_str(),
                r.from,
                r.parts
            ));
        }
    }

    out.say("\n6. The clinic replies with a care plan; the coordinator sends follow-up instructions to the patient:");
    let plan_id = send(
        clinic,
        clinic_ring,
        SealOptions {
            to: vec![coordinator.details.id.clone()],
            kind: BundleKind::Careplan,
            subject: Some("Care plan: total knee arthroplasty".into()),
            thread: Some("knee-2026".into()),
            patient: Some("MRN-0042".into()),
            redacted: false,
            overrides: Vec::new(),
        },
        &care_plan,
    )?;
    say_sent(
        &out,
        clinic,
        &plan_id,
        &outbox::load(&clinic.home, &plan_id)?,
    );
    let follow_id = send(
        coordinator,
        coord_ring,
        SealOptions {
            to: vec![patient.details.id.clone()],
            kind: BundleKind::Message,
            subject: Some("Your follow-up after surgery".into()),
            thread: Some("knee-2026".into()),
            patient: None,
            redacted: false,
            overrides: Vec::new(),
        },
        &follow_up,
    )?;
    say_sent(
        &out,
        coordinator,
        &follow_id,
        &outbox::load(&coordinator.home, &follow_id)?,
    );

    out.say("\n7. Everyone syncs (uploads, new mail, receipts):");
    for _ in 0..2 {
        for (p, ring) in parties.iter().zip(&rings) {
            sync_party(p, ring)?;
        }
    }
    for p in &parties {
        let n = inbox::list_inbox(&p.home)?.len();
        out.say(format!("   {:<20} {n} bundle(s) in the inbox", p.label));
    }

    out.say("\n8. Delivery timelines, from each sender's outbox (receipts signed by the recipients, checked against their pins):");
    for (p, id) in [
        (coordinator, &history_id),
        (clinic, &plan_id),
        (coordinator, &follow_id),
    ] {
        let Some(rec) = outbox::load(&p.home, id)? else {
            continue;
        };
        out.say(format!(
            "   bundle {} ({}) from {}",
            rec.bundle_id,
            rec.kind.as_str(),
            rec.from
        ));
        for e in &rec.timeline {
            let who = match (e.event.as_str(), e.recipient.as_deref()) {
                (_, Some(r)) => r,
                ("queued", None) => "in the sender's outbox",
                ("accepted", None) => "by the relay, durably",
                _ => "",
            };
            out.say(format!("     {}  {:<9} {who}", e.at, e.event));
        }
        for r in &rec.recipients {
            out.say(format!(
                "     -> {:<16} {}{}",
                r.id,
                r.state.as_str(),
                if r.receipt.is_some() {
                    ", signed receipt verified"
                } else {
                    ""
                }
            ));
        }
    }

    out.say("\n9. The recipients open what they received (`dossier open BUNDLE-ID -o DIR`):");
    let dir = root.join("opened-by-clinic");
    open_file(
        &clinic.home,
        clinic_ring,
        &inbox::bundle_path(&clinic.home, &history_id),
        &dir,
    )?;
    let same = std::fs::read(dir.join("treatment-history").join(IPS_NAME))
        .ok()
        .as_deref()
        == Some(&ips[..])
        && std::fs::read(dir.join("treatment-history/ct-chest-series.dcm"))
            .ok()
            .as_deref()
            == Some(&imaging[..]);
    out.say(format!(
        "   clinic opened the treatment history: byte-identical: {}",
        if same { "yes" } else { "NO" }
    ));
    // As `dossier open BUNDLE-ID` does: the sender gets a signed `opened` receipt.
    if let Some(rec) = inbox::load_inbox(&clinic.home, &history_id)? {
        let now = dossier_bundle::Timestamp::now();
        let receipt =
            retention::opened_receipt(&clinic.home, clinic_ring, &clinic.details.id, &rec, now)?;
        retention::note_opened(&clinic.home, &clinic.actor, &history_id, &receipt, now)?;
    }
    if !same {
        return Err(demo_err("demo check")(
            "opened parts differ from what was sent".into(),
        ));
    }
    let pdir = root.join("opened-by-patient");
    open_file(
        &patient.home,
        patient_ring,
        &inbox::bundle_path(&patient.home, &follow_id),
        &pdir,
    )?;
    out.say(format!(
        "   patient opened the follow-up instructions: byte-identical: {}",
        if std::fs::read(pdir.join("follow-up-instructions.txt"))
            .ok()
            .as_deref()
            == Some(FOLLOW_UP.as_bytes())
        {
            "yes"
        } else {
            "NO"
        }
    ));
    let cdir = root.join("opened-by-coordinator");
    open_file(
        &coordinator.home,
        coord_ring,
        &inbox::bundle_path(&coordinator.home, &plan_id),
        &cdir,
    )?;
    out.say(format!(
        "   coordinator opened the clinic's care plan: byte-identical: {}",
        if std::fs::read(cdir.join("care-plan.json")).ok().as_deref() == Some(CARE_PLAN.as_bytes())
        {
            "yes"
        } else {
            "NO"
        }
    ));

    out.say("\n10. Someone alters one byte of a copy in transit (e.g. sent by e-mail instead):");
    let tampered = root.join("tampered.dossier");
    let mut bytes = std::fs::read(inbox::bundle_path(&clinic.home, &history_id))
        .map_err(NodeError::io("copying the bundle"))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&tampered, &bytes).map_err(NodeError::io("writing the tampered copy"))?;
    let tdir = root.join("tampered-opened");
    match open_file(&clinic.home, clinic_ring, &tampered, &tdir) {
        Err(e) => {
            out.say(format!(
                "   the clinic refuses it (exit code {}): {e}",
                e.exit_class() as u8
            ));
            out.say(format!(
                "   nothing was released: {} does not exist",
                if tdir.exists() {
                    "?"
                } else {
                    "the output directory"
                }
            ));
        }
        Ok(_) => {
            return Err(demo_err("demo check")("a tampered bundle opened".into()));
        }
    }

    out.say("\n11. The patient asks the coordinator for an accounting of disclosures (`dossier disclosures --patient MRN-0042`):");
    sync_party(clinic, clinic_ring)?;
    sync_party(coordinator, coord_ring)?;
    let filter = disclosures::ReportFilter {
        patient: Some("MRN-0042".into()),
        ..Default::default()
    };
    for d in disclosures::report(&coordinator.home, &filter)? {
        out.say(format!(
            "   {}  bundle {} ({}, {} part(s)) sealed by {}",
            d.disclosed_at,
            d.bundle_id,
            d.kind,
            d.parts.len(),
            d.operator
        ));
        for r in &d.recipients {
            out.say(format!(
                "     to {:<16} {}  {:<9} delivered {}  opened {}",
                r.id,
                r.country,
                r.state,
                r.delivered_at.map(|t| t.to_string()).unwrap_or("-".into()),
                r.opened_at.map(|t| t.to_string()).unwrap_or("-".into())
            ));
        }
    }

    out.say("\n12. Each node's audit trail (who did what, never record content) verifies (`dossier audit verify`):");
    for p in &parties {
        match p.actor.log().verify()? {
            VerifyReport::Intact(t) => out.say(format!(
                "   {:<20} {} entries, hash chain and anchor intact",
                p.label, t.entries
            )),
            VerifyReport::Broken(b) => {
                return Err(demo_err("demo check")(format!("audit trail broken: {b}")));
            }
        }
    }

    rt.block_on(relay.shutdown())
        .map_err(|e| demo_err("stopping the relay")(e.to_string()))?;
    out.say(format!(
        "\nDone in {:.1} s. The relay held only ciphertext, sizes, ids and receipts.",
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

fn ctx<'a>(p: &'a Party, ring: &'a Keyring) -> Result<SyncContext<'a>, NodeError> {
    SyncContext::new(&p.home, ring, &NoProgress, &NoEvents, &p.actor)
}

fn send_one(
    rt: &tokio::runtime::Runtime,
    p: &Party,
    ring: &Keyring,
    mut opts: SealOptions,
    input: &Path,
) -> Result<String, NodeError> {
    let c = ctx(p, ring)?;
    // The same disclosure gate as `dossier send`: the parties have no policy.toml, so the
    // safe defaults apply (records to verified contacts; the sample patient is an adult).
    let prepared = dossier_node::gate::prepare(
        &p.home,
        &p.actor,
        dossier_node::AuditAction::Send,
        &mut opts,
        &[input.to_path_buf()],
        &dossier_node::gate::GateFlags::default(),
        Timestamp::now(),
    )?;
    match rt.block_on(sync::send(&c, &opts, prepared.inputs()))? {
        SendOutcome::Accepted(rec) => Ok(rec.bundle_id),
        SendOutcome::Queued { why, .. } => Err(demo_err("sending")(why)),
    }
}

fn say_sent(out: &Out, p: &Party, id: &str, rec: &Option<outbox::OutboxRecord>) {
    let accepted = rec
        .as_ref()
        .and_then(|r| r.upload.accepted_at)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into());
    out.say(format!(
        "   {:<20} sent {id}: sealed, queued, accepted by the relay at {accepted}",
        p.label
    ));
}

fn party(
    root: &Path,
    label: &'static str,
    id: &str,
    name: &str,
    cc: &str,
    kind: PartyKind,
) -> Result<Party, NodeError> {
    let home = NodeHome::at(&root.join(id));
    // The person acting at each node, as `--operator` would name them.
    let operator = match kind {
        PartyKind::Patient => "maria.lopez",
        _ if cc == "US" => "j.rivera",
        _ => "dr.suda",
    };
    let actor = Actor::new(&home, Operator::new(operator)?);
    Ok(Party {
        label,
        home,
        actor,
        details: CardDetails {
            id: FacilityId::parse(id)?,
            name: name.into(),
            country: CountryCode::parse(cc)?,
            kind,
        },
    })
}

const CARE_PLAN: &str = r#"{
  "resourceType": "CarePlan",
  "status": "active",
  "intent": "plan",
  "title": "Total knee arthroplasty, left",
  "activity": [
    { "detail": { "description": "Pre-operative assessment on arrival", "status": "scheduled" } },
    { "detail": { "description": "Surgery, day 2; inpatient physiotherapy days 3-6", "status": "scheduled" } }
  ]
}
"#;

const FOLLOW_UP: &str = "Follow-up instructions\n\
- Keep the dressing dry for 10 days.\n\
- Physiotherapy exercises twice a day.\n\
- Video consultation with the clinic in 2 weeks.\n";

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
