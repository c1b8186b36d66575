//! The policy in effect, setting by setting, with where each value comes from — for
//! `dossier policy show`, so an operator (or an auditor) can see what the node enforces
//! without reading TOML, and which settings are still at their defaults.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::settings::{PermittedCountries, Policy};
use crate::error::NodeError;
use crate::home::NodeHome;

/// Where a setting's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingSource {
    /// Written in `policy.toml`.
    File,
    /// Not in the file (or no file): the built-in default.
    Default,
}

impl SettingSource {
    /// `file` or `default`.
    pub fn as_str(self) -> &'static str {
        match self {
            SettingSource::File => "file",
            SettingSource::Default => "default",
        }
    }
}

/// One setting as enforced.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveSetting {
    /// Dotted key (`minors.age_of_majority`).
    pub key: &'static str,
    /// Its value.
    pub value: Value,
    /// Where the value comes from.
    pub source: SettingSource,
    /// What it does, in one line.
    pub meaning: &'static str,
}

/// The policy a node enforces, with its provenance.
#[derive(Clone, Debug)]
pub struct EffectivePolicy {
    /// `HOME/policy.toml`.
    pub path: PathBuf,
    /// Whether that file exists (if not, every setting is a default).
    pub file_exists: bool,
    /// The parsed policy.
    pub policy: Policy,
    /// Every setting, in the order of the file template.
    pub settings: Vec<EffectiveSetting>,
}

impl EffectivePolicy {
    /// Reads `HOME/policy.toml` as [`Policy::load`] does (an invalid file is the same
    /// error, naming the key) and notes which settings it sets.
    pub fn load(home: &NodeHome) -> Result<Self, NodeError> {
        let policy = Policy::load(home)?;
        let path = home.policy_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
        };
        // `Policy::load` accepted the text, so it parses as a table.
        let table: toml::Table = text
            .as_deref()
            .and_then(|t| toml::from_str(t).ok())
            .unwrap_or_default();
        let in_file = |key: &str| {
            let mut parts = key.split('.');
            let first = parts.next().unwrap_or(key);
            let mut v = table.get(first);
            for p in parts {
                v = v.and_then(|x| x.get(p));
            }
            if v.is_some() {
                SettingSource::File
            } else {
                SettingSource::Default
            }
        };
        let countries = match &policy.permitted_countries {
            PermittedCountries::Any => json!(["*"]),
            PermittedCountries::Only(set) => {
                json!(set.iter().map(|c| c.as_str()).collect::<Vec<_>>())
            }
        };
        let rows: [(&'static str, Value, &'static str); 8] = [
            (
                "permitted_countries",
                countries,
                "destination countries allowed, every kind of bundle (\"*\": any)",
            ),
            (
                "records_require_verified_contact",
                json!(policy.records_require_verified_contact),
                "records only to contacts whose fingerprint was verified",
            ),
            (
                "minors.protect",
                json!(policy.minors.protect),
                "a minor's record goes abroad only redacted or with --allow-minor --reason",
            ),
            (
                "minors.age_of_majority",
                json!(policy.minors.age_of_majority),
                "below this age (years, from Patient.birthDate) a patient is a minor",
            ),
            (
                "consent.required",
                json!(policy.consent.required),
                "records abroad need a current consent grant for (patient, country)",
            ),
            (
                "retention.opened_inbox_days",
                json!(policy.retention.opened_inbox_days),
                "days opened received bundles are kept (0: forever)",
            ),
            (
                "retention.sent_days",
                json!(policy.retention.sent_days),
                "days sealed copies of sent bundles are kept (0: forever)",
            ),
            (
                "retention.exports_days",
                json!(policy.retention.exports_days),
                "days plaintext parts written by `open` are kept (0: forever)",
            ),
        ];
        let settings = rows
            .into_iter()
            .map(|(key, value, meaning)| EffectiveSetting {
                key,
                source: in_file(key),
                value,
                meaning,
            })
            .collect();
        Ok(Self {
            path,
            file_exists: text.is_some(),
            policy,
            settings,
        })
    }

    /// The JSON form printed by `dossier policy show --json`.
    pub fn to_json(&self) -> Value {
        let settings: serde_json::Map<String, Value> = self
            .settings
            .iter()
            .map(|s| {
                (
                    s.key.to_owned(),
                    json!({ "value": s.value, "source": s.source.as_str() }),
                )
            })
            .collect();
        json!({
            "file": self.path,
            "file_exists": self.file_exists,
            "settings": settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let e = EffectivePolicy::load(&home).unwrap();
        assert!(!e.file_exists);
        assert!(
            e.settings
                .iter()
                .all(|s| s.source == SettingSource::Default)
        );
        std::fs::write(
            home.policy_path(),
            "permitted_countries = [\"US\", \"TH\"]\n[minors]\nage_of_majority = 21\n",
        )
        .unwrap();
        let e = EffectivePolicy::load(&home).unwrap();
        let j = e.to_json();
        assert_eq!(j["file_exists"], true);
        assert_eq!(
            j["settings"]["permitted_countries"]["value"],
            json!(["TH", "US"])
        );
        assert_eq!(j["settings"]["permitted_countries"]["source"], "file");
        assert_eq!(j["settings"]["minors.age_of_majority"]["value"], 21);
        assert_eq!(j["settings"]["minors.age_of_majority"]["source"], "file");
        assert_eq!(j["settings"]["minors.protect"]["source"], "default");
        assert_eq!(j["settings"]["consent.required"]["value"], false);
        // The template sets every key.
        std::fs::write(home.policy_path(), Policy::default_file_text()).unwrap();
        let e = EffectivePolicy::load(&home).unwrap();
        assert!(e.settings.iter().all(|s| s.source == SettingSource::File));
    }
}
