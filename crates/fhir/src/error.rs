//! The one error type of this crate, and the rule that keeps record content out of it.
//!
//! Every message says what is wrong and what to do next, and names a place in the record
//! only by its structure (element names and indexes, byte offsets) — never by a value, a
//! name or an id, so an error can be logged or shown without leaking the record
//! (STYLE.md §11). [`Location`] is the only way paths enter an error, and it drops any
//! element name that does not look like a FHIR element name.

use std::fmt::Write as _;

/// What went wrong while reading or redacting a FHIR record.
///
/// No variant carries record content: places are given as byte offsets or as structural
/// paths such as `entry[1].resource.birthDate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The input is larger than [`crate::limits::MAX_INPUT_BYTES`].
    #[error(
        "the record is {size} bytes, over the {limit}-byte limit for FHIR checks; \
         split it into smaller bundles at the source before sending"
    )]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The input nests deeper than the format's depth limit.
    #[error(
        "the record nests more than {limit} levels deep (near byte {offset}); real FHIR \
         records never do, so it was refused: check that the file is not damaged"
    )]
    TooDeep {
        /// The depth limit that was exceeded.
        limit: usize,
        /// Byte offset where the limit was crossed.
        offset: usize,
    },
    /// The input has more of something than a limit allows.
    #[error(
        "the record has more than {limit} {what}; split it into smaller bundles at the \
         source before sending"
    )]
    TooMany {
        /// What was counted (JSON values, XML nodes, attributes, …).
        what: &'static str,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The input is not UTF-8, which FHIR requires for both JSON and XML.
    #[error(
        "the record is not valid UTF-8 (first bad byte at {offset}); FHIR requires UTF-8: \
         re-export it from the source system"
    )]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The input is not well-formed JSON.
    #[error(
        "the record is not valid JSON ({problem} at byte {offset}); re-export it from the \
         source system"
    )]
    InvalidJson {
        /// What kind of syntax problem was found.
        problem: &'static str,
        /// Byte offset of the problem.
        offset: usize,
    },
    /// The input is not well-formed XML, or uses XML features FHIR forbids.
    #[error(
        "the record is not valid FHIR XML ({problem} near byte {offset}); re-export it \
         from the source system"
    )]
    InvalidXml {
        /// What kind of problem was found.
        problem: &'static str,
        /// Byte offset near the problem.
        offset: usize,
    },
    /// The input is well-formed but its top level is not a FHIR resource.
    #[error(
        "the record is not a FHIR resource ({problem}); only FHIR JSON or XML resources \
         can be checked: send other files as ordinary attachments"
    )]
    NotFhir {
        /// Why the top level is not a resource.
        problem: &'static str,
    },
    /// A FHIR element this crate has to read has a shape FHIR does not allow.
    #[error(
        "the FHIR element at {location} is malformed ({problem}); correct the record at \
         its source before sending"
    )]
    InvalidStructure {
        /// What is wrong with the element.
        problem: &'static str,
        /// Structural path of the element.
        location: String,
    },
    /// A Patient's birthDate is not a FHIR date, so the patient's age cannot be checked.
    #[error(
        "the Patient birthDate at {location} is not a FHIR date (YYYY, YYYY-MM or \
         YYYY-MM-DD), so the patient's age cannot be checked; correct it at the source \
         before sending"
    )]
    InvalidBirthDate {
        /// Structural path of the birthDate element.
        location: String,
    },
    /// A string given to [`crate::FhirDate`]'s parser is not a FHIR date.
    #[error("not a FHIR date: expected YYYY, YYYY-MM or YYYY-MM-DD with a real calendar day")]
    InvalidDate,
    /// The pseudonym passed to [`crate::redact_identifiers`] cannot be used.
    #[error("the pseudonym cannot be used: {problem}")]
    InvalidPseudonym {
        /// Why the pseudonym was refused.
        problem: &'static str,
    },
    /// A value that redaction removes also appears in a place that is kept, so the output
    /// would still carry it.
    #[error(
        "an identifier that redaction removes also appears at {location}, which is kept; \
         the record cannot be de-identified automatically: review it by hand before sending"
    )]
    IdentifierSurvives {
        /// Structural path of the place that still holds the value.
        location: String,
    },
}

/// A structural path (`entry[1].resource.birthDate`) built while walking a record.
///
/// Element names that do not look like FHIR element names (ASCII letters, digits and `_`,
/// at most 64 characters, starting with a letter or `_`) are written as `?`, so a hostile
/// or damaged record cannot smuggle content into an error message through its keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Location(String);

impl Location {
    /// Appends an element name; returns a mark for [`Location::truncate`].
    pub(crate) fn push_name(&mut self, name: &str) -> usize {
        let mark = self.0.len();
        if !self.0.is_empty() {
            self.0.push('.');
        }
        if is_plain_name(name) {
            self.0.push_str(name);
        } else {
            self.0.push('?');
        }
        mark
    }

    /// Appends an index; returns a mark for [`Location::truncate`].
    pub(crate) fn push_index(&mut self, index: usize) -> usize {
        let mark = self.0.len();
        let _ = write!(self.0, "[{index}]");
        mark
    }

    /// Goes back to a mark returned by a push.
    pub(crate) fn truncate(&mut self, mark: usize) {
        self.0.truncate(mark);
    }

    /// The path as text; `(root)` for the top level.
    pub(crate) fn render(&self) -> String {
        if self.0.is_empty() {
            "(root)".to_owned()
        } else {
            self.0.clone()
        }
    }
}

/// Whether a name looks like a FHIR element or resource name and may appear in messages.
pub(crate) fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_hides_names_that_are_not_element_names() {
        let mut loc = Location::default();
        loc.push_name("entry");
        loc.push_index(3);
        let mark = loc.push_name("John Smith");
        assert_eq!(loc.render(), "entry[3].?");
        loc.truncate(mark);
        loc.push_name("resource");
        assert_eq!(loc.render(), "entry[3].resource");
        assert_eq!(Location::default().render(), "(root)");
    }
}
