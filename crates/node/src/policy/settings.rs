//! `HOME/policy.toml`: the settings, their safe defaults, and reading them strictly.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};

use dossier_bundle::{CountryCode, Timestamp};
use serde::Deserialize;

use crate::error::NodeError;
use crate::fsutil::{create_new_private, parent_of, sync_dir};
use crate::home::NodeHome;

/// Largest policy file read (it is a few hundred bytes; this bounds a damaged file).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Longest retention period, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Range accepted for `minors.age_of_majority`.
pub const AGE_OF_MAJORITY_RANGE: std::ops::RangeInclusive<u8> = 10..=25;

const TEMPLATE: &str = include_str!("template.toml");

/// Where bundles may be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermittedCountries {
    /// `["*"]`: any country.
    Any,
    /// Only these.
    Only(BTreeSet<CountryCode>),
}

impl PermittedCountries {
    /// Whether a recipient in `country` is allowed.
    pub fn permits(&self, country: CountryCode) -> bool {
        match self {
            PermittedCountries::Any => true,
            PermittedCountries::Only(set) => set.contains(&country),
        }
    }
}

impl<'de> Deserialize<'de> for PermittedCountries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let list = Vec::<String>::deserialize(d)?;
        if list.iter().any(|c| c == "*") {
            if list.len() == 1 {
                return Ok(PermittedCountries::Any);
            }
            return Err(D::Error::custom(
                "\"*\" (any country) cannot be combined with country codes; use [\"*\"] alone or list the countries",
            ));
        }
        if list.is_empty() {
            return Err(D::Error::custom(
                "the list is empty, so nothing could be sent; list the countries your agreements cover, or [\"*\"] for any",
            ));
        }
        let mut set = BTreeSet::new();
        for c in &list {
            let code = CountryCode::parse(c).map_err(|_| {
                D::Error::custom(format!(
                    "{c:?} is not an ISO 3166-1 alpha-2 country code in capitals (such as \"US\", \"TH\", \"IN\"), nor \"*\""
                ))
            })?;
            set.insert(code);
        }
        Ok(PermittedCountries::Only(set))
    }
}

/// `[minors]`: records about minors stay in the country.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinorsPolicy {
    /// Whether the rule applies.
    pub protect: bool,
    /// Below this age (whole years) a patient is a minor.
    pub age_of_majority: u8,
}

impl Default for MinorsPolicy {
    fn default() -> Self {
        Self {
            protect: true,
            age_of_majority: 18,
        }
    }
}

/// `[consent]`: whether records abroad need a recorded consent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentPolicy {
    /// Whether a current grant for (patient, destination country) is required.
    pub required: bool,
}

/// How long `purge` keeps one kind of copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Never purged (`0` in the file).
    Forever,
    /// Purged this many days after it started counting.
    Days(u32),
}

impl Keep {
    fn from_days(days: u32) -> Self {
        if days == 0 {
            Keep::Forever
        } else {
            Keep::Days(days)
        }
    }

    /// Whether something whose period started at `since` is due for purging at `now`.
    pub fn is_due(self, since: Timestamp, now: Timestamp) -> bool {
        match self {
            Keep::Forever => false,
            Keep::Days(d) => now.unix().saturating_sub(since.unix()) >= i64::from(d) * 86_400,
        }
    }
}

/// `[retention]`: how long copies are kept before `dossier purge` deletes them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Received bundles, from when they were opened (0 = forever).
    pub opened_inbox_days: u32,
    /// Sent bundles' sealed copies in the outbox, from when they were sent (0 = forever).
    pub sent_days: u32,
    /// Plaintext exports written by `open`, from when they were written (0 = forever).
    pub exports_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            opened_inbox_days: 90,
            sent_days: 90,
            exports_days: 30,
        }
    }
}

impl RetentionPolicy {
    /// How long opened inbox items are kept.
    pub fn opened_inbox(&self) -> Keep {
        Keep::from_days(self.opened_inbox_days)
    }

    /// How long sent copies are kept.
    pub fn sent(&self) -> Keep {
        Keep::from_days(self.sent_days)
    }

    /// How long plaintext exports are kept.
    pub fn exports(&self) -> Keep {
        Keep::from_days(self.exports_days)
    }
}

/// A node's disclosure policy (`HOME/policy.toml`; the defaults when the file is absent).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Destination countries allowed.
    pub permitted_countries: PermittedCountries,
    /// Records only to contacts with a verified fingerprint.
    pub records_require_verified_contact: bool,
    /// Minors' records stay in the country.
    pub minors: MinorsPolicy,
    /// Consent for records abroad.
    pub consent: ConsentPolicy,
    /// Retention periods for `purge`.
    pub retention: RetentionPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            permitted_countries: PermittedCountries::Any,
            records_require_verified_contact: true,
            minors: MinorsPolicy::default(),
            consent: ConsentPolicy::default(),
            retention: RetentionPolicy::default(),
        }
    }
}

impl Policy {
    /// The policy of `home`: its `policy.toml`, or the defaults if there is none.
    pub fn load(home: &NodeHome) -> Result<Self, NodeError> {
        let path = home.policy_path();
        let bad = |problem: String| NodeError::PolicyFile {
            path: path.clone(),
            problem,
        };
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
        };
        let mut buf = Vec::new();
        f.take(MAX_POLICY_BYTES as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(NodeError::io(format!("reading {}", path.display())))?;
        if buf.len() > MAX_POLICY_BYTES {
            return Err(bad("it is larger than 64 KiB".into()));
        }
        let text = String::from_utf8(buf).map_err(|_| bad("it is not UTF-8 text".into()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses policy TOML text; the error names the key at fault.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: Policy =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        let age = self.minors.age_of_majority;
        if !AGE_OF_MAJORITY_RANGE.contains(&age) {
            return Err(format!(
                "minors.age_of_majority = {age} is outside {}-{}",
                AGE_OF_MAJORITY_RANGE.start(),
                AGE_OF_MAJORITY_RANGE.end()
            ));
        }
        let r = &self.retention;
        for (key, days) in [
            ("opened_inbox_days", r.opened_inbox_days),
            ("sent_days", r.sent_days),
            ("exports_days", r.exports_days),
        ] {
            if days > MAX_RETENTION_DAYS {
                return Err(format!(
                    "retention.{key} = {days} is more than {MAX_RETENTION_DAYS} days; use at most {MAX_RETENTION_DAYS}, or 0 to keep forever"
                ));
            }
        }
        Ok(())
    }

    /// The commented template a new node gets: every setting at its default, with what it
    /// does. Parses to [`Policy::default`].
    pub fn default_file_text() -> &'static str {
        TEMPLATE
    }

    /// Writes the template to `HOME/policy.toml` unless a policy is already there (mode
    /// 0600). Returns whether it wrote one. For `dossier init`.
    pub fn write_default(home: &NodeHome) -> Result<bool, NodeError> {
        let path = home.policy_path();
        let mut f = match create_new_private(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(NodeError::io(format!("creating {}", path.display()))(e)),
        };
        f.write_all(TEMPLATE.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| sync_dir(parent_of(&path)))
            .map_err(NodeError::io(format!("writing {}", path.display())))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitClass;

    #[test]
    fn template_parses_to_the_safe_defaults() {
        let p = Policy::parse(Policy::default_file_text()).unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.permitted_countries, PermittedCountries::Any);
        assert!(p.records_require_verified_contact);
        assert!(p.minors.protect);
        assert_eq!(p.minors.age_of_majority, 18);
        assert!(!p.consent.required);
        assert_eq!(p.retention.opened_inbox(), Keep::Days(90));
        assert_eq!(p.retention.sent(), Keep::Days(90));
        assert_eq!(p.retention.exports(), Keep::Days(30));
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
    }

    #[test]
    fn missing_file_is_defaults_and_write_default_does_not_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        assert_eq!(Policy::load(&home).unwrap(), Policy::default());
        assert!(Policy::write_default(&home).unwrap());
        assert_eq!(Policy::load(&home).unwrap(), Policy::default());
        std::fs::write(
            home.policy_path(),
            "permitted_countries = [\"TH\", \"US\"]\n",
        )
        .unwrap();
        assert!(!Policy::write_default(&home).unwrap());
        let p = Policy::load(&home).unwrap();
        assert!(
            p.permitted_countries
                .permits(CountryCode::parse("TH").unwrap())
        );
        assert!(
            !p.permitted_countries
                .permits(CountryCode::parse("IN").unwrap())
        );
        assert!(
            p.records_require_verified_contact,
            "unset keys keep defaults"
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        for (text, key) in [
            ("permited_countries = [\"TH\"]\n", "permited_countries"),
            ("[minors]\nage_of_majorty = 18\n", "age_of_majorty"),
            ("[retention]\nsent = 5\n", "sent"),
            ("[consnet]\nrequired = true\n", "consnet"),
        ] {
            std::fs::write(home.policy_path(), text).unwrap();
            let err = Policy::load(&home).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, NodeError::PolicyFile { .. }));
            assert_eq!(err.exit_class(), ExitClass::Error);
            assert!(msg.contains(key), "{msg}");
            assert!(msg.contains("policy.toml"), "{msg}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, needle) in [
            ("permitted_countries = [\"th\"]", "\"th\""),
            ("permitted_countries = [\"THA\"]", "\"THA\""),
            ("permitted_countries = [\"XX\"]", "\"XX\""),
            (
                "permitted_countries = [\"*\", \"TH\"]",
                "cannot be combined",
            ),
            ("permitted_countries = []", "empty"),
            ("permitted_countries = \"TH\"", "permitted_countries"),
            (
                "records_require_verified_contact = \"yes\"",
                "records_require",
            ),
            (
                "[minors]\nage_of_majority = 5",
                "minors.age_of_majority = 5",
            ),
            ("[minors]\nage_of_majority = 300", "age_of_majority"),
            (
                "[retention]\nsent_days = 4000",
                "retention.sent_days = 4000",
            ),
            ("[retention]\nexports_days = -1", "exports_days"),
        ] {
            let err = Policy::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn retention_zero_keeps_forever() {
        let p = Policy::parse("[retention]\nsent_days = 0\nexports_days = 1").unwrap();
        let t0 = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let later = Timestamp::parse("2036-01-01T00:00:00Z").unwrap();
        assert_eq!(p.retention.sent(), Keep::Forever);
        assert!(!p.retention.sent().is_due(t0, later));
        let day = Timestamp::parse("2026-01-02T00:00:00Z").unwrap();
        let almost = Timestamp::parse("2026-01-01T23:59:59Z").unwrap();
        assert!(p.retention.exports().is_due(t0, day));
        assert!(!p.retention.exports().is_due(t0, almost));
    }
}
