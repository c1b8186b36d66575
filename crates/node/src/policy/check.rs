//! The disclosure check: may this bundle go to these recipients? A pure function of the
//! policy, the request and the time it is given — no files, no clock.

use super::consent::ConsentRegister;
use super::settings::Policy;
use crate::statefile::one_line;
use dossier_bundle::{BundleKind, CountryCode, FacilityId, Timestamp};

/// Longest override reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// One recipient as the policy sees it (from its pinned contact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientFacts {
    /// Facility id.
    pub id: FacilityId,
    /// Country on its pinned card.
    pub country: CountryCode,
    /// Whether its fingerprint was verified out of band.
    pub verified: bool,
}

/// Everything the policy needs to decide on one disclosure.
#[derive(Clone, Debug)]
pub struct DisclosureRequest<'a> {
    /// What the bundle carries.
    pub kind: BundleKind,
    /// This node's country (from its own card).
    pub own_country: CountryCode,
    /// Every recipient.
    pub recipients: &'a [RecipientFacts],
    /// The manifest's patient reference, if any (for the consent lookup only; never put
    /// into a refusal).
    pub patient_ref: Option<&'a str>,
    /// Whether the patient is under `minors.age_of_majority` at `now`, judged by the
    /// caller from the FHIR `Patient.birthDate` in the bundle (`dossier_fhir::FhirDate::
    /// is_minor_on(today, policy.minors.age_of_majority)`, which errs towards "minor" for
    /// partial dates). `None`: no birth date found; not treated as a minor.
    pub patient_is_minor: Option<bool>,
    /// Identifiers were redacted from the bundle (`--redact identifiers`).
    pub redacted: bool,
    /// `--allow-minor --reason TEXT`: the reason, when the operator overrides the minors
    /// rule. `Some("")` is refused as a usage error.
    pub minor_override_reason: Option<&'a str>,
    /// The consent register (loaded by the caller).
    pub consent: &'a ConsentRegister,
    /// The time of the decision (consent expiry and the patient's age are judged at it).
    pub now: Timestamp,
}

/// A rule that was overridden, which the caller must record in the audit trail as a
/// `policy_override` entry (with [`PolicyOverride::audit_detail`] as the detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOverride {
    /// A minor's record went to another country on the operator's stated reason.
    MinorAbroad {
        /// The operator's reason (control characters removed, cut to 200 characters).
        reason: String,
        /// The recipients abroad it went to.
        facilities: Vec<FacilityId>,
    },
}

impl PolicyOverride {
    /// Short non-PHI text for the audit entry: the rule and the reason.
    pub fn audit_detail(&self) -> String {
        match self {
            PolicyOverride::MinorAbroad { reason, .. } => format!("minors: {reason}"),
        }
    }
}

/// The policy allows the disclosure; what it relied on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Rules overridden (each to be audited).
    pub overrides: Vec<PolicyOverride>,
    /// Destination countries for which a consent grant was required and found.
    pub consented_countries: Vec<CountryCode>,
}

/// Why the policy refused a disclosure. Messages name the rule, the facility and country,
/// and the fix; never the patient reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The recipient's country is not in `permitted_countries`.
    #[error(
        "the disclosure policy does not permit sending to {country}: {facility} is in \
         {country}, which is not in permitted_countries. Nothing was sent. If your \
         data-sharing agreements cover {country}, add \"{country}\" to permitted_countries in \
         HOME/policy.toml"
    )]
    CountryNotPermitted {
        /// The recipient.
        facility: FacilityId,
        /// Its country.
        country: CountryCode,
    },
    /// A record to a contact whose fingerprint was never verified.
    #[error(
        "the disclosure policy sends records only to verified contacts, and the fingerprint of \
         {facility} has not been verified (records_require_verified_contact). Nothing was sent. \
         Compare fingerprints with {facility} over a trusted channel (phone, in person), then \
         run `dossier contacts verify {facility} FINGERPRINT`"
    )]
    UnverifiedContact {
        /// The recipient.
        facility: FacilityId,
    },
    /// A minor's record to another country.
    #[error(
        "the disclosure policy keeps records of minors in {own_country} ([minors]): the \
         patient is under {age_of_majority} and {facility} is in {country}. Nothing was sent. \
         Send with --redact identifiers, or with --allow-minor --reason TEXT if this \
         disclosure is justified (the reason is recorded in the audit trail)"
    )]
    MinorAbroad {
        /// The recipient abroad.
        facility: FacilityId,
        /// Its country.
        country: CountryCode,
        /// This node's country.
        own_country: CountryCode,
        /// The policy's age of majority.
        age_of_majority: u8,
    },
    /// No current consent for a country a record goes to.
    #[error(
        "the disclosure policy requires the patient's consent for records sent to another \
         country ([consent] required), and there is no current consent for {country} \
         ({facility}). Nothing was sent. Once the patient has agreed, record it with \
         `dossier consent grant --patient REF --country {country}`"
    )]
    NoConsent {
        /// The recipient.
        facility: FacilityId,
        /// Its country.
        country: CountryCode,
    },
    /// Consent is required but the record names no patient.
    #[error(
        "the disclosure policy requires the patient's consent for records sent to another \
         country ([consent] required), but this record has no patient reference to check \
         consent against. Nothing was sent. Seal it with --patient REF"
    )]
    ConsentNeedsPatient,
    /// `--allow-minor` without a reason.
    #[error(
        "--allow-minor needs a reason: pass --reason TEXT saying why this minor's record may \
         leave the country (it is recorded in the audit trail; do not name the patient)"
    )]
    OverrideWithoutReason,
}

impl PolicyRefusal {
    /// Whether the command line was at fault (exit class usage) rather than the policy.
    pub fn is_usage(&self) -> bool {
        matches!(self, PolicyRefusal::OverrideWithoutReason)
    }

    /// The rule, as short non-PHI text for the audit entry of the refusal.
    pub fn rule(&self) -> &'static str {
        match self {
            PolicyRefusal::CountryNotPermitted { .. } => "permitted_countries",
            PolicyRefusal::UnverifiedContact { .. } => "records_require_verified_contact",
            PolicyRefusal::MinorAbroad { .. } => "minors",
            PolicyRefusal::NoConsent { .. } | PolicyRefusal::ConsentNeedsPatient => "consent",
            PolicyRefusal::OverrideWithoutReason => "override_without_reason",
        }
    }
}

impl Policy {
    /// Decides whether the bundle described by `req` may be disclosed to its recipients.
    ///
    /// Rules, in order (the first that fails refuses the whole bundle):
    /// 1. every recipient's country is in `permitted_countries` (all kinds);
    /// 2. for records, with `records_require_verified_contact`, every recipient is verified;
    /// 3. for records about a minor (per `patient_is_minor` and `[minors] protect`), recipients in
    ///    another country need redaction or an override with a reason;
    /// 4. for records with `[consent] required`, every recipient in another country needs a
    ///    current grant for (patient, that country).
    pub fn check(&self, req: &DisclosureRequest<'_>) -> Result<PolicyDecision, PolicyRefusal> {
        let reason = match req.minor_override_reason {
            Some(r) if r.trim().is_empty() => return Err(PolicyRefusal::OverrideWithoutReason),
            Some(r) => Some(one_line(r.trim(), MAX_REASON_CHARS)),
            None => None,
        };
        let mut decision = PolicyDecision::default();

        for r in req.recipients {
            if !self.permitted_countries.permits(r.country) {
                return Err(PolicyRefusal::CountryNotPermitted {
                    facility: r.id.clone(),
                    country: r.country,
                });
            }
        }
        if req.kind != BundleKind::Record {
            return Ok(decision);
        }

        if self.records_require_verified_contact {
            if let Some(r) = req.recipients.iter().find(|r| !r.verified) {
                return Err(PolicyRefusal::UnverifiedContact {
                    facility: r.id.clone(),
                });
            }
        }

        let abroad: Vec<&RecipientFacts> = req
            .recipients
            .iter()
            .filter(|r| r.country != req.own_country)
            .collect();
        let minor = self.minors.protect && req.patient_is_minor == Some(true);
        if minor && !req.redacted {
            if let Some(first) = abroad.first() {
                match &reason {
                    Some(reason) => decision.overrides.push(PolicyOverride::MinorAbroad {
                        reason: reason.clone(),
                        facilities: abroad.iter().map(|r| r.id.clone()).collect(),
                    }),
                    None => {
                        return Err(PolicyRefusal::MinorAbroad {
                            facility: first.id.clone(),
                            country: first.country,
                            own_country: req.own_country,
                            age_of_majority: self.minors.age_of_majority,
                        });
                    }
                }
            }
        }

        if self.consent.required && !abroad.is_empty() {
            let Some(patient) = req.patient_ref else {
                return Err(PolicyRefusal::ConsentNeedsPatient);
            };
            for r in &abroad {
                if req.consent.current(patient, r.country, req.now).is_none() {
                    return Err(PolicyRefusal::NoConsent {
                        facility: r.id.clone(),
                        country: r.country,
                    });
                }
                if !decision.consented_countries.contains(&r.country) {
                    decision.consented_countries.push(r.country);
                }
            }
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeError;
    use crate::audit::Operator;
    use crate::error::ExitClass;
    use crate::home::NodeHome;
    use time::macros::date;

    const PATIENT: &str = "MRN-SECRET-4711";

    fn cc(s: &str) -> CountryCode {
        CountryCode::parse(s).unwrap()
    }

    fn rcpt(id: &str, country: &str, verified: bool) -> RecipientFacts {
        RecipientFacts {
            id: FacilityId::parse(id).unwrap(),
            country: cc(country),
            verified,
        }
    }

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
    }

    struct Case {
        kind: BundleKind,
        recipients: Vec<RecipientFacts>,
        patient: Option<&'static str>,
        minor: Option<bool>,
        redacted: bool,
        reason: Option<&'static str>,
    }

    impl Case {
        fn record(recipients: Vec<RecipientFacts>) -> Self {
            Case {
                kind: BundleKind::Record,
                recipients,
                patient: Some(PATIENT),
                minor: None,
                redacted: false,
                reason: None,
            }
        }

        fn run(
            &self,
            policy: &Policy,
            consent: &ConsentRegister,
        ) -> Result<PolicyDecision, PolicyRefusal> {
            policy.check(&DisclosureRequest {
                kind: self.kind,
                own_country: cc("US"),
                recipients: &self.recipients,
                patient_ref: self.patient,
                patient_is_minor: self.minor,
                redacted: self.redacted,
                minor_override_reason: self.reason,
                consent,
                now: now(),
            })
        }
    }

    fn assert_refusal_is_clean(err: &PolicyRefusal) {
        let msg = err.to_string();
        assert!(!msg.contains(PATIENT), "{msg}");
        let node: NodeError = err.clone().into();
        let want = if err.is_usage() {
            ExitClass::Usage
        } else {
            ExitClass::PolicyRefused
        };
        assert_eq!(node.exit_class(), want);
        assert_eq!(ExitClass::PolicyRefused as i32, 6);
    }

    #[test]
    fn defaults_allow_verified_records_anywhere_and_anything_else_unverified() {
        let p = Policy::default();
        let reg = ConsentRegister::default();
        let d = Case::record(vec![rcpt("th-bangkok-intl", "TH", true)])
            .run(&p, &reg)
            .unwrap();
        assert_eq!(d, PolicyDecision::default());
        for kind in [BundleKind::Careplan, BundleKind::Message] {
            let mut c = Case::record(vec![rcpt("th-bangkok-intl", "TH", false)]);
            c.kind = kind;
            c.run(&p, &reg).unwrap();
        }
    }

    #[test]
    fn country_allowlist_applies_to_every_kind() {
        let p = Policy::parse("permitted_countries = [\"US\", \"TH\"]").unwrap();
        let reg = ConsentRegister::default();
        for kind in [
            BundleKind::Record,
            BundleKind::Careplan,
            BundleKind::Message,
        ] {
            let mut c = Case::record(vec![
                rcpt("th-bangkok-intl", "TH", true),
                rcpt("in-delhi-care", "IN", true),
            ]);
            c.kind = kind;
            let err = c.run(&p, &reg).unwrap_err();
            assert_eq!(
                err,
                PolicyRefusal::CountryNotPermitted {
                    facility: FacilityId::parse("in-delhi-care").unwrap(),
                    country: cc("IN"),
                }
            );
            let msg = err.to_string();
            assert!(
                msg.contains("in-delhi-care") && msg.contains("add \"IN\""),
                "{msg}"
            );
            assert!(msg.contains("policy.toml"));
            assert_eq!(err.rule(), "permitted_countries");
            assert_refusal_is_clean(&err);
        }
        Case::record(vec![rcpt("us-mercy-intl", "US", true)])
            .run(&p, &reg)
            .unwrap();
    }

    #[test]
    fn records_need_verified_contacts_unless_turned_off() {
        let reg = ConsentRegister::default();
        let c = Case::record(vec![
            rcpt("th-bangkok-intl", "TH", true),
            rcpt("th-phuket-care", "TH", false),
        ]);
        let err = c.run(&Policy::default(), &reg).unwrap_err();
        assert!(matches!(err, PolicyRefusal::UnverifiedContact { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("dossier contacts verify th-phuket-care FINGERPRINT"),
            "{msg}"
        );
        assert_refusal_is_clean(&err);
        let off = Policy::parse("records_require_verified_contact = false").unwrap();
        c.run(&off, &reg).unwrap();
    }

    #[test]
    fn minors_records_stay_home_unless_redacted_or_overridden() {
        let p = Policy::default();
        let reg = ConsentRegister::default();
        let mut c = Case::record(vec![
            rcpt("us-mercy-intl", "US", true),
            rcpt("th-bangkok-intl", "TH", true),
        ]);
        c.minor = Some(true);
        let err = c.run(&p, &reg).unwrap_err();
        assert!(matches!(
            &err,
            PolicyRefusal::MinorAbroad { facility, age_of_majority: 18, .. }
                if facility.as_str() == "th-bangkok-intl"
        ));
        let msg = err.to_string();
        assert!(msg.contains("--redact identifiers") && msg.contains("--allow-minor --reason"));
        assert_refusal_is_clean(&err);

        // Domestic only: fine.
        let mut home_only = Case::record(vec![rcpt("us-mercy-intl", "US", true)]);
        home_only.minor = c.minor;
        home_only.run(&p, &reg).unwrap();

        // Redacted: fine, no override.
        c.redacted = true;
        assert!(c.run(&p, &reg).unwrap().overrides.is_empty());
        c.redacted = false;

        // Overridden with a reason: allowed and reported for auditing.
        c.reason = Some("  emergency\ntransfer ");
        let d = c.run(&p, &reg).unwrap();
        assert_eq!(
            d.overrides,
            vec![PolicyOverride::MinorAbroad {
                reason: "emergency transfer".into(),
                facilities: vec![FacilityId::parse("th-bangkok-intl").unwrap()],
            }]
        );
        assert_eq!(d.overrides[0].audit_detail(), "minors: emergency transfer");

        // Without a reason: usage error.
        c.reason = Some("  ");
        let err = c.run(&p, &reg).unwrap_err();
        assert_eq!(err, PolicyRefusal::OverrideWithoutReason);
        assert_refusal_is_clean(&err);

        // Unknown age is not a minor; nor is an adult.
        c.reason = None;
        c.minor = None;
        c.run(&p, &reg).unwrap();
        c.minor = Some(false);
        c.run(&p, &reg).unwrap();

        // Care plans and messages are not restricted; the rule can be turned off.
        let mut plan = Case::record(c.recipients.clone());
        plan.kind = BundleKind::Careplan;
        plan.minor = Some(true);
        plan.run(&p, &reg).unwrap();
        c.minor = Some(true);
        c.run(&Policy::parse("[minors]\nprotect = false").unwrap(), &reg)
            .unwrap();
    }

    #[test]
    fn consent_is_needed_per_foreign_country_when_required() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let op = Operator::new("dr.lee").unwrap();
        let p = Policy::parse("[consent]\nrequired = true").unwrap();
        let c = Case::record(vec![
            rcpt("us-mercy-intl", "US", true),
            rcpt("th-bangkok-intl", "TH", true),
        ]);
        let reg = ConsentRegister::load(&home).unwrap();
        let err = c.run(&p, &reg).unwrap_err();
        assert!(
            matches!(&err, PolicyRefusal::NoConsent { country, .. } if country.as_str() == "TH")
        );
        assert!(
            err.to_string()
                .contains("dossier consent grant --patient REF --country TH")
        );
        assert_refusal_is_clean(&err);

        // A grant for another patient does not help.
        ConsentRegister::grant(&home, "MRN-OTHER", cc("TH"), None, &op, now()).unwrap();
        let reg = ConsentRegister::load(&home).unwrap();
        assert!(c.run(&p, &reg).is_err());

        ConsentRegister::grant(
            &home,
            PATIENT,
            cc("TH"),
            Some(date!(2026 - 12 - 31)),
            &op,
            now(),
        )
        .unwrap();
        let reg = ConsentRegister::load(&home).unwrap();
        let d = c.run(&p, &reg).unwrap();
        assert_eq!(d.consented_countries, vec![cc("TH")]);

        // Expired at decision time.
        let late = DisclosureRequest {
            kind: BundleKind::Record,
            own_country: cc("US"),
            recipients: &c.recipients,
            patient_ref: Some(PATIENT),
            patient_is_minor: None,
            redacted: false,
            minor_override_reason: None,
            consent: &reg,
            now: Timestamp::parse("2027-01-01T00:00:00Z").unwrap(),
        };
        assert!(matches!(
            p.check(&late),
            Err(PolicyRefusal::NoConsent { .. })
        ));

        // Revoked.
        ConsentRegister::revoke(&home, PATIENT, cc("TH"), &op, now()).unwrap();
        let reg = ConsentRegister::load(&home).unwrap();
        assert!(c.run(&p, &reg).is_err());

        // No patient reference: refused with its own message.
        let mut anon = Case::record(c.recipients.clone());
        anon.patient = None;
        let err = anon.run(&p, &reg).unwrap_err();
        assert_eq!(err, PolicyRefusal::ConsentNeedsPatient);
        assert!(err.to_string().contains("--patient REF"));

        // Domestic records and non-record kinds need no consent; nor does the default policy.
        Case::record(vec![rcpt("us-mercy-intl", "US", true)])
            .run(&p, &reg)
            .unwrap();
        let mut msg = Case::record(c.recipients.clone());
        msg.kind = BundleKind::Message;
        msg.run(&p, &reg).unwrap();
        c.run(&Policy::default(), &reg).unwrap();
    }
}
