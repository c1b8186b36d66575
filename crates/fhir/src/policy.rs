//! What redaction removes, in one place for both formats.
//!
//! "Minimum necessary" for a record that leaves the country: the receiving clinician needs
//! the clinical content and enough to know whom it is about (name, sex, birth date), not
//! the numbers and places that tie the record to a person in the sender's systems.
//!
//! * **Patient**: every `identifier` (national ids, MRNs, insurance numbers) — replaced by
//!   one pseudonymous identifier —, every `telecom`, every `photo`, every `contact`
//!   (next-of-kin: name, telecom, address, all of it), and in each `address` the `line`,
//!   `postalCode`, `district` and `text` and any `extension` (geolocation). `city`,
//!   `state` and `country` stay: the recipient may need the jurisdiction. HIPAA Safe
//!   Harbor would also drop the city; the node's policy decides whether that is needed.
//! * **RelatedPerson**: `identifier`, `name`, `telecom`, `photo` and the same address
//!   parts. Only `patient`, `relationship` and the like remain.
//! * **Person**: `identifier`, `telecom`, `photo` and the same address parts (a Person
//!   may be the patient, so its name is treated like the patient's).
//! * **Practitioner, PractitionerRole, Organization, Location** are left as they are:
//!   they identify the care providers, not the patient, and the recipient needs them to
//!   contact the sender's clinicians.
//! * Names and birth dates of the patient are kept; this crate does not anonymise.

use crate::matching::Kind;

/// The identifier system of the pseudonym inserted into every Patient.
pub const PSEUDONYM_SYSTEM: &str = "urn:dossier:pseudonym";

/// Longest pseudonym accepted: it becomes a resource id (at most 64 characters) and
/// derived ids add a suffix.
pub const MAX_PSEUDONYM_LEN: usize = 48;

/// Resources that describe the patient or a person close to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonKind {
    Patient,
    RelatedPerson,
    Person,
}

impl PersonKind {
    /// The kind for a resource type name, if it describes a person this crate redacts.
    pub(crate) fn of(resource_type: &str) -> Option<Self> {
        match resource_type {
            "Patient" => Some(Self::Patient),
            "RelatedPerson" => Some(Self::RelatedPerson),
            "Person" => Some(Self::Person),
            _ => None,
        }
    }

    /// The elements removed whole from this kind of resource.
    pub(crate) fn removed(self) -> &'static [(&'static str, Field)] {
        match self {
            Self::Patient => &[
                ("identifier", Field::Identifier),
                ("telecom", Field::Telecom),
                ("photo", Field::Photo),
                ("contact", Field::Contact),
            ],
            Self::RelatedPerson => &[
                ("identifier", Field::Identifier),
                ("name", Field::Name),
                ("telecom", Field::Telecom),
                ("photo", Field::Photo),
            ],
            Self::Person => &[
                ("identifier", Field::Identifier),
                ("telecom", Field::Telecom),
                ("photo", Field::Photo),
            ],
        }
    }
}

/// What a removed element is, which decides which of its values are searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// An Identifier: its `value`.
    Identifier,
    /// A ContactPoint: its `value`.
    Telecom,
    /// An Attachment: nothing searchable.
    Photo,
    /// A Patient.contact: its name parts, telecom values and address parts.
    Contact,
    /// A HumanName: `family`, `given`, `text`.
    Name,
}

/// Parts removed from every address of a person, and the kind of their values.
pub(crate) const ADDRESS_PARTS: &[(&str, Option<Kind>)] = &[
    ("text", Some(Kind::Address)),
    ("line", Some(Kind::Address)),
    ("district", Some(Kind::Address)),
    ("postalCode", Some(Kind::Address)),
    ("extension", None),
];

/// Name parts whose values are searched for in narratives.
pub(crate) const NAME_PARTS: &[&str] = &["text", "family", "given"];

/// Elements that come before `identifier` in a resource; the pseudonym goes after them
/// when the Patient had no identifier.
pub(crate) const BEFORE_IDENTIFIER: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];

/// Elements whose values are not checked for surviving address values: ids, references
/// and codes coincide with short numbers (a postal code `3210` in a UUID), and
/// city/state/country are kept on purpose.
pub(crate) fn skips_address_check(element: &str) -> bool {
    matches!(
        element,
        "id" | "reference"
            | "fullUrl"
            | "url"
            | "location"
            | "system"
            | "code"
            | "version"
            | "versionId"
            | "city"
            | "state"
            | "country"
    )
}

/// Whether a value looks like a FHIR date, dateTime or instant (an address number such as
/// a postal code may equal its year).
pub(crate) fn looks_like_date(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() >= 4 && b[..4].iter().all(u8::is_ascii_digit) && (b.len() == 4 || b[4] == b'-')
}

/// Whether `name` is a plausible FHIR resource type name.
pub(crate) fn is_resource_type(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Refuses a pseudonym that cannot serve as a FHIR id and identifier value.
pub(crate) fn check_pseudonym(pseudonym: &str) -> Result<(), crate::FhirError> {
    let problem = if pseudonym.is_empty() {
        Some("it is empty; pass the pseudonym the node generated for this patient")
    } else if pseudonym.len() > MAX_PSEUDONYM_LEN {
        Some("it is longer than 48 characters; use a shorter random pseudonym")
    } else if !pseudonym
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        Some("it may only hold ASCII letters, digits, '-' and '.', so it can be a FHIR id")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(crate::FhirError::InvalidPseudonym { problem }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_must_be_usable_as_ids() {
        assert!(check_pseudonym("px-7f3a.9c").is_ok());
        assert!(check_pseudonym(&"a".repeat(48)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(49)] {
            assert!(check_pseudonym(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn date_shapes() {
        assert!(looks_like_date("2010"));
        assert!(looks_like_date("2010-05-01T10:00:00Z"));
        assert!(!looks_like_date("2010 Auckland"));
        assert!(!looks_like_date("201"));
    }
}
