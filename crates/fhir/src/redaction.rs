//! What a redaction returns, and the bookkeeping both formats share while producing it.

use std::collections::HashSet;
use std::fmt;

use crate::FhirError;
use crate::matching::{Identifying, Kind, Want, skeleton};
use crate::policy::Field;

/// The result of [`crate::redact_identifiers`].
///
/// `Debug` shows only sizes: both fields hold patient data.
#[derive(Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The redacted record, in the input's format (JSON is written compactly).
    pub output: Vec<u8>,
    /// Everything removed or renamed, in document order, for the sender to keep so it can
    /// re-link replies that quote the pseudonym. Never send this.
    pub relink: Vec<RemovedItem>,
}

/// One removed or renamed element.
///
/// `Debug` hides `resource` and `value`: they are patient data.
#[derive(Clone, PartialEq, Eq)]
pub struct RemovedItem {
    /// The resource it was removed from, as `Type/id` with the id *before* renaming
    /// (`Patient/AAA1234`), or `Type@path` for a resource without an id
    /// (`Patient@entry[1].resource`).
    pub resource: String,
    /// Where in that resource, with indexes as they were before removal:
    /// `identifier[0]`, `telecom[1]`, `address[0].line[1]`, `address[0].postalCode`,
    /// `contact[0]`, `photo[0]`, `name[0]` (RelatedPerson), `id` (a renamed id),
    /// `fullUrl` (the `fullUrl` of the Bundle entry holding the resource), or the path of
    /// an identifier elsewhere that held the patient's identifier and now holds the
    /// pseudonym (`subject.identifier`).
    pub path: String,
    /// The removed fragment as text: compact JSON (`{"system":"…","value":"…"}`,
    /// `"Bleak House"`) or an XML element (`<identifier>…</identifier>`).
    pub value: String,
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redaction")
            .field("output_bytes", &self.output.len())
            .field("relink_items", &self.relink.len())
            .finish()
    }
}

impl fmt::Debug for RemovedItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemovedItem")
            .field("path", &self.path)
            .field("value_bytes", &self.value.len())
            .finish_non_exhaustive()
    }
}

/// State of one redaction: what was removed and the values to search for afterwards.
#[derive(Debug, Default)]
pub(crate) struct Removals {
    pub(crate) items: Vec<RemovedItem>,
    pub(crate) values: Identifying,
    /// Skeletons of the removed Patient identifier values.
    pub(crate) patient_identifiers: HashSet<String>,
    /// Skeletons of the kept name parts of the person being stripped: a relative's name
    /// part equal to one of them (a shared family name) is not scrubbed from narratives,
    /// since the same word stays in the record anyway.
    pub(crate) kept_names: HashSet<String>,
}

impl Removals {
    /// Records a removed fragment.
    pub(crate) fn record(&mut self, resource: &str, path: String, value: String) {
        self.items.push(RemovedItem {
            resource: resource.to_owned(),
            path,
            value,
        });
    }

    /// Adds a removed value of a given field to the search set.
    pub(crate) fn add_value(
        &mut self,
        field: Field,
        value: &str,
        of_patient: bool,
    ) -> Result<(), FhirError> {
        match field {
            Field::Identifier => {
                self.values.add(Kind::Strong, value)?;
                if of_patient {
                    self.patient_identifiers.insert(skeleton(value));
                }
            }
            Field::Telecom => self.values.add(Kind::Strong, value)?,
            Field::Name => {
                if !self.kept_names.contains(&skeleton(value)) {
                    self.values.add(Kind::Name, value)?;
                }
            }
            // Contact and photo values are added part by part by the format walkers.
            Field::Contact | Field::Photo => {}
        }
        Ok(())
    }

    /// Whether an identifier value elsewhere is one of the patient's removed identifiers.
    pub(crate) fn is_patient_identifier(&self, value: &str) -> bool {
        let skel = skeleton(value);
        !skel.is_empty() && self.patient_identifiers.contains(&skel)
    }

    /// Refuses a pseudonym that would itself carry a removed value.
    pub(crate) fn check_pseudonym_is_clean(&self, pseudonym: &str) -> Result<(), FhirError> {
        if self
            .values
            .occurs_in(pseudonym, Want::kinds(&[Kind::Strong, Kind::Address], 1))?
        {
            return Err(FhirError::InvalidPseudonym {
                problem: "it contains one of the identifiers being removed; generate a \
                          random pseudonym instead of deriving it from the record",
            });
        }
        Ok(())
    }
}

/// Shortest identifier or telecom value whose survival in a kept element is an error.
pub(crate) const GUARD_MIN_STRONG: usize = 3;
/// Shortest address value whose survival in a kept element is an error.
const GUARD_MIN_ADDRESS: usize = 4;

/// Whether a kept value of element `element` still holds a removed value that must not
/// survive there.
pub(crate) fn survives_in(
    values: &Identifying,
    element: &str,
    value: &str,
) -> Result<bool, FhirError> {
    if values.occurs_in(value, Want::kinds(&[Kind::Strong], GUARD_MIN_STRONG))? {
        return Ok(true);
    }
    if crate::policy::skips_address_check(element) || crate::policy::looks_like_date(value) {
        return Ok(false);
    }
    values.occurs_in(value, Want::kinds(&[Kind::Address], GUARD_MIN_ADDRESS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_patient_data() {
        let item = RemovedItem {
            resource: "Patient/AAA1234".into(),
            path: "identifier[0]".into(),
            value: "{\"value\":\"AAA1234\"}".into(),
        };
        let r = Redaction {
            output: b"{}".to_vec(),
            relink: vec![item.clone()],
        };
        for text in [format!("{item:?}"), format!("{r:?}")] {
            assert!(!text.contains("AAA1234"), "{text}");
        }
    }

    #[test]
    fn survival_rules() {
        let mut r = Removals::default();
        r.add_value(Field::Identifier, "AAA1234", true).unwrap();
        r.values.add(Kind::Address, "3210").unwrap();
        assert!(survives_in(&r.values, "note", "see AAA1234").unwrap());
        assert!(survives_in(&r.values, "reference", "Patient/AAA1234").unwrap());
        assert!(survives_in(&r.values, "note", "Hamilton 3210").unwrap());
        assert!(!survives_in(&r.values, "reference", "urn:uuid:1-3210-2").unwrap());
        assert!(!survives_in(&r.values, "code", "3210").unwrap());
        assert!(r.is_patient_identifier("aaa-1234"));
        assert!(r.check_pseudonym_is_clean("px-AAA1234").is_err());
        assert!(r.check_pseudonym_is_clean("px-1").is_ok());
    }
}
