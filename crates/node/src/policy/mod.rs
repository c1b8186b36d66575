//! The disclosure policy and the consent register: what may leave this node, for whom.
//!
//! HIPAA's minimum-necessary and authorization rules, and most data-sharing agreements
//! between facilities, limit *where* records may go, not just *how*. This module holds a
//! node's own rules in `HOME/policy.toml` ([`Policy`], parsed strictly: an unknown or
//! misspelt key is an error naming it) and the patients' consents in `HOME/consent.json`
//! ([`ConsentRegister`]), and decides each disclosure with [`Policy::check`] — a pure
//! function of the policy, a [`DisclosureRequest`] and the time passed in, so every rule is
//! unit-tested without files or clocks.
//!
//! The rules and their defaults (the commented template is [`Policy::default_file_text`]):
//!
//! | setting | default | effect |
//! | --- | --- | --- |
//! | `permitted_countries` | `["*"]` | recipients outside the list are refused (every kind) |
//! | `records_require_verified_contact` | `true` | records only to verified fingerprints |
//! | `[minors] protect`, `age_of_majority` | `true`, `18` | a minor's record does not go abroad unless redacted or overridden with a reason |
//! | `[consent] required` | `false` | records abroad need a current grant for (patient, country) |
//! | `[retention]` `opened_inbox_days`, `sent_days`, `exports_days` | `90`, `90`, `30` | what `purge` deletes; `0` keeps forever, at most 3650 |
//!
//! "Abroad" means a recipient whose pinned card names another country than this node's own
//! card. A refusal is a [`PolicyRefusal`] (exit code 6 through
//! [`crate::NodeError::Policy`]); an allowed disclosure returns a [`PolicyDecision`] listing
//! every override used, which the caller records in the audit trail.

mod check;
mod consent;
mod effective;
mod settings;

pub use check::{
    DisclosureRequest, MAX_REASON_CHARS, PolicyDecision, PolicyOverride, PolicyRefusal,
    RecipientFacts,
};
pub use consent::{
    ConsentError, ConsentGrant, ConsentRegister, EndReason, GrantEnd, MAX_CONSENT_BYTES,
    parse_consent_date, utc_date,
};
pub use effective::{EffectivePolicy, EffectiveSetting, SettingSource};
pub use settings::{
    AGE_OF_MAJORITY_RANGE, ConsentPolicy, Keep, MAX_POLICY_BYTES, MAX_RETENTION_DAYS, MinorsPolicy,
    PermittedCountries, Policy, RetentionPolicy,
};
