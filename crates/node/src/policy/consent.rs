//! `HOME/consent.json`: which patient agreed to their records going to which country, until
//! when, recorded by whom — with every grant kept after it ends, for the auditor.
//!
//! This file names patients (by the same reference the manifests carry), so like the
//! outbox records it is PHI-bearing local state: mode 0600, never sent, never logged. The
//! audit trail records consent actions without the patient reference.

use std::fs::File;
use std::io::{self, Read};

use dossier_bundle::limits::MAX_REF_CHARS;
use dossier_bundle::{CountryCode, Timestamp};
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::audit::Operator;
use crate::error::NodeError;
use crate::home::NodeHome;
use crate::statefile::{with_state_lock, write_json};

const CONSENT_FORMAT: &str = "dossier-consent/v1";

/// Largest register read (about 100,000 grants; this only bounds a damaged file).
pub const MAX_CONSENT_BYTES: usize = 64 * 1024 * 1024;

/// A consent request that was refused. Messages never repeat the patient reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// The patient reference is empty, too long or has control characters.
    #[error(
        "the patient reference must be 1-200 characters, with no control characters or \
         surrounding spaces (use the same reference as `--patient` when sealing)"
    )]
    BadPatientRef,
    /// `--until` is already past.
    #[error(
        "the consent end date {until} is before today ({today}); give today or a later date, \
         or no --until for consent without an end date"
    )]
    EndsInPast {
        /// The date given.
        until: Date,
        /// Today (UTC).
        today: Date,
    },
    /// `--until` is not a date.
    #[error("the consent end date must be a calendar date written YYYY-MM-DD, such as 2027-06-30")]
    BadDate,
    /// `revoke` found nothing to revoke.
    #[error(
        "there is no current consent for that patient and {country}, so nothing was revoked; \
         check the reference with `dossier consent list --patient REF`"
    )]
    NoCurrentGrant {
        /// The country given.
        country: CountryCode,
    },
}

impl ConsentError {
    /// Whether the command line was at fault (exit class usage).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ConsentError::BadPatientRef | ConsentError::BadDate | ConsentError::EndsInPast { .. }
        )
    }
}

/// How a grant stopped being current before its end date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `dossier consent revoke`.
    Revoked,
    /// A newer grant for the same patient and country replaced it.
    Superseded,
}

/// When and by whom a grant was ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEnd {
    /// When.
    pub at: Timestamp,
    /// The operator.
    pub by: String,
    /// Revoked or superseded.
    pub how: EndReason,
}

/// One recorded consent: `patient` agreed to records going to `country`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentGrant {
    /// The patient reference (PHI).
    pub patient: String,
    /// The destination country.
    pub country: CountryCode,
    /// When it was recorded.
    pub granted_at: Timestamp,
    /// The operator who recorded it.
    pub granted_by: String,
    /// Last day it covers (inclusive, UTC); `None`: no end date.
    #[serde(default, with = "opt_date", skip_serializing_if = "Option::is_none")]
    pub until: Option<Date>,
    /// Set when it was revoked or superseded; it is never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<GrantEnd>,
}

impl ConsentGrant {
    /// Whether it covers disclosures at `now`: not ended, and `until` not past.
    pub fn is_current(&self, now: Timestamp) -> bool {
        self.ended.is_none() && self.until.is_none_or(|u| u >= utc_date(now))
    }
}

/// The consent register of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentRegister {
    grants: Vec<ConsentGrant>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRegister {
    format: String,
    grants: Vec<ConsentGrant>,
}

impl ConsentRegister {
    /// Reads `HOME/consent.json` (an empty register if there is none).
    pub fn load(home: &NodeHome) -> Result<Self, NodeError> {
        let path = home.consent_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
        };
        let mut buf = Vec::new();
        f.take(MAX_CONSENT_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(NodeError::io(format!("reading {}", path.display())))?;
        if buf.len() > MAX_CONSENT_BYTES {
            return Err(NodeError::CorruptState(path, "too large"));
        }
        let stored: StoredRegister = serde_json::from_slice(&buf)
            .map_err(|_| NodeError::CorruptState(path.clone(), "not a consent register"))?;
        if stored.format != CONSENT_FORMAT {
            return Err(NodeError::CorruptState(
                path,
                "unknown format, probably from a newer dossier",
            ));
        }
        Ok(Self {
            grants: stored.grants,
        })
    }

    fn save(&self, home: &NodeHome) -> Result<(), NodeError> {
        write_json(
            &home.consent_path(),
            &StoredRegister {
                format: CONSENT_FORMAT.to_owned(),
                grants: self.grants.clone(),
            },
        )
    }

    /// Records that `patient` consents to records going to `country` until `until`
    /// (inclusive; `None` for no end date). A current grant for the same patient and
    /// country is superseded (kept, marked ended). Returns the new grant.
    ///
    /// Takes the home's state lock for the read-modify-write: do not call it from inside
    /// [`with_state_lock`].
    pub fn grant(
        home: &NodeHome,
        patient: &str,
        country: CountryCode,
        until: Option<Date>,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<ConsentGrant, NodeError> {
        check_patient_ref(patient)?;
        let today = utc_date(now);
        if let Some(until) = until.filter(|u| *u < today) {
            return Err(ConsentError::EndsInPast { until, today }.into());
        }
        with_state_lock(home, || {
            let mut reg = Self::load(home)?;
            reg.end_current(patient, country, operator, now, EndReason::Superseded);
            let grant = ConsentGrant {
                patient: patient.to_owned(),
                country,
                granted_at: now,
                granted_by: operator.as_str().to_owned(),
                until,
                ended: None,
            };
            reg.grants.push(grant.clone());
            reg.save(home)?;
            Ok(grant)
        })
    }

    /// Withdraws the current consent of `patient` for `country`; the grant is kept with
    /// its end recorded. Returns the revoked grant. Takes the state lock, like
    /// [`ConsentRegister::grant`].
    pub fn revoke(
        home: &NodeHome,
        patient: &str,
        country: CountryCode,
        operator: &Operator,
        now: Timestamp,
    ) -> Result<ConsentGrant, NodeError> {
        check_patient_ref(patient)?;
        with_state_lock(home, || {
            let mut reg = Self::load(home)?;
            let ended = reg.end_current(patient, country, operator, now, EndReason::Revoked);
            let Some(last) = ended else {
                return Err(ConsentError::NoCurrentGrant { country }.into());
            };
            reg.save(home)?;
            Ok(last)
        })
    }

    /// Ends every current grant for (patient, country); returns the last one ended.
    fn end_current(
        &mut self,
        patient: &str,
        country: CountryCode,
        operator: &Operator,
        now: Timestamp,
        how: EndReason,
    ) -> Option<ConsentGrant> {
        let mut last = None;
        for g in &mut self.grants {
            if g.patient == patient && g.country == country && g.is_current(now) {
                g.ended = Some(GrantEnd {
                    at: now,
                    by: operator.as_str().to_owned(),
                    how,
                });
                last = Some(g.clone());
            }
        }
        last
    }

    /// Every grant, oldest first, including ended and expired ones; only `patient`'s if
    /// given.
    pub fn list(&self, patient: Option<&str>) -> Vec<&ConsentGrant> {
        self.grants
            .iter()
            .filter(|g| patient.is_none_or(|p| g.patient == p))
            .collect()
    }

    /// The grant that currently covers records of `patient` going to `country`, if any.
    pub fn current(
        &self,
        patient: &str,
        country: CountryCode,
        now: Timestamp,
    ) -> Option<&ConsentGrant> {
        self.grants
            .iter()
            .rev()
            .find(|g| g.patient == patient && g.country == country && g.is_current(now))
    }
}

/// Reads an end date as typed for `--until` (`YYYY-MM-DD`).
pub fn parse_consent_date(text: &str) -> Result<Date, ConsentError> {
    Date::parse(text, opt_date::FORMAT).map_err(|_| ConsentError::BadDate)
}

/// The UTC calendar date of `t`.
pub fn utc_date(t: Timestamp) -> Date {
    OffsetDateTime::from_unix_timestamp(t.unix())
        .map(|d| d.date())
        .unwrap_or(Date::MIN)
}

fn check_patient_ref(patient: &str) -> Result<(), ConsentError> {
    let n = patient.chars().count();
    if (1..=MAX_REF_CHARS).contains(&n)
        && !patient.chars().any(char::is_control)
        && patient.trim() == patient
    {
        Ok(())
    } else {
        Err(ConsentError::BadPatientRef)
    }
}

/// `YYYY-MM-DD` for `Option<Date>` (the workspace builds `time` without its serde feature).
mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;
    use time::format_description::FormatItem;
    use time::macros::format_description;

    pub(super) const FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => {
                let text = d.format(FORMAT).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&text)
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| Date::parse(&t, FORMAT).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitClass;
    use time::macros::date;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn th() -> CountryCode {
        CountryCode::parse("TH").unwrap()
    }

    #[test]
    fn grant_expire_revoke_regrant_keeps_history() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let op = Operator::new("dr.lee").unwrap();
        let now = ts("2026-11-23T09:00:00Z");
        assert!(ConsentRegister::load(&home).unwrap().list(None).is_empty());

        let g = ConsentRegister::grant(&home, "MRN-1", th(), Some(date!(2026 - 11 - 30)), &op, now)
            .unwrap();
        assert_eq!(g.granted_by, "dr.lee");
        let reg = ConsentRegister::load(&home).unwrap();
        assert!(reg.current("MRN-1", th(), now).is_some());
        // `until` is inclusive, in UTC days.
        assert!(
            reg.current("MRN-1", th(), ts("2026-11-30T23:59:59Z"))
                .is_some()
        );
        assert!(
            reg.current("MRN-1", th(), ts("2026-12-01T00:00:00Z"))
                .is_none()
        );
        assert!(reg.current("MRN-2", th(), now).is_none());
        assert!(
            reg.current("MRN-1", CountryCode::parse("IN").unwrap(), now)
                .is_none()
        );

        let revoked = ConsentRegister::revoke(&home, "MRN-1", th(), &op, now).unwrap();
        assert_eq!(revoked.ended.unwrap().how, EndReason::Revoked);
        let reg = ConsentRegister::load(&home).unwrap();
        assert!(reg.current("MRN-1", th(), now).is_none());
        assert_eq!(reg.list(Some("MRN-1")).len(), 1, "revoked grants are kept");

        let err = ConsentRegister::revoke(&home, "MRN-1", th(), &op, now).unwrap_err();
        assert!(matches!(
            err,
            NodeError::Consent(ConsentError::NoCurrentGrant { .. })
        ));
        assert_eq!(err.exit_class(), ExitClass::Error);
        assert!(!err.to_string().contains("MRN-1"));

        ConsentRegister::grant(&home, "MRN-1", th(), None, &op, now).unwrap();
        let later = ts("2030-01-01T00:00:00Z");
        ConsentRegister::grant(&home, "MRN-1", th(), None, &op, later).unwrap();
        let reg = ConsentRegister::load(&home).unwrap();
        let all = reg.list(Some("MRN-1"));
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].ended.as_ref().unwrap().how, EndReason::Superseded);
        assert_eq!(reg.current("MRN-1", th(), later).unwrap().granted_at, later);
        assert_eq!(reg.list(None).len(), 3);

        // Expired grants are not superseded, just left to lapse.
        ConsentRegister::grant(&home, "MRN-3", th(), Some(date!(2026 - 11 - 23)), &op, now)
            .unwrap();
        ConsentRegister::grant(&home, "MRN-3", th(), None, &op, later).unwrap();
        let reg = ConsentRegister::load(&home).unwrap();
        assert!(reg.list(Some("MRN-3"))[0].ended.is_none());

        let text = std::fs::read_to_string(home.consent_path()).unwrap();
        assert!(text.contains("\"until\": \"2026-11-23\""), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.consent_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_requests_are_usage_errors_without_the_patient_ref() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let op = Operator::new("dr.lee").unwrap();
        let now = ts("2026-11-23T09:00:00Z");
        for bad in ["", " MRN", "MRN\n1", &"x".repeat(201)] {
            let err = ConsentRegister::grant(&home, bad, th(), None, &op, now).unwrap_err();
            assert_eq!(err.exit_class(), ExitClass::Usage);
        }
        let err =
            ConsentRegister::grant(&home, "MRN-9", th(), Some(date!(2026 - 11 - 22)), &op, now)
                .unwrap_err();
        assert_eq!(err.exit_class(), ExitClass::Usage);
        assert!(err.to_string().contains("2026-11-22"));
        assert!(!err.to_string().contains("MRN-9"));
        assert!(!home.consent_path().exists());
    }

    #[test]
    fn end_dates_parse_strictly() {
        assert_eq!(parse_consent_date("2027-06-30"), Ok(date!(2027 - 06 - 30)));
        for bad in [
            "2027-6-30",
            "2027-02-30",
            "30/06/2027",
            "2027-06-30T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_consent_date(bad), Err(ConsentError::BadDate), "{bad}");
        }
        let err: NodeError = ConsentError::BadDate.into();
        assert_eq!(err.exit_class(), ExitClass::Usage);
    }

    #[test]
    fn damaged_register_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        std::fs::write(home.consent_path(), b"{").unwrap();
        assert!(matches!(
            ConsentRegister::load(&home),
            Err(NodeError::CorruptState(..))
        ));
        std::fs::write(
            home.consent_path(),
            br#"{"format":"dossier-consent/v9","grants":[]}"#,
        )
        .unwrap();
        assert!(ConsentRegister::load(&home).is_err());
    }
}
