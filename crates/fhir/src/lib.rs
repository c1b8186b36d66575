//! FHIR checks a dossier node runs before it seals a record to send abroad.
//!
//! Two duties of the sender are enforced here, in code that has no keys, sockets or clocks
//! (the day is a parameter), so it can be tested and fuzzed on its own:
//!
//! * **Minor protection.** [`birth_dates`] returns the birth date of every Patient in a
//!   record — top level, inside Bundles, `contained`, nested Bundles — and
//!   [`FhirDate::is_minor_on`] decides conservatively whether a possibly partial date
//!   (`2008`, `2008-06`) could belong to someone under the age of majority. A birthDate
//!   that is not a FHIR date is an error, never a pass.
//! * **HIPAA "minimum necessary".** [`redact_identifiers`] removes the direct identifiers
//!   of the patient and the people around them (see [`policy`] for exactly
//!   what), puts one pseudonymous identifier into each Patient so replies can be re-linked,
//!   renames ids that carried an identifier and rewrites every reference to them, scrubs
//!   the removed values out of narratives, and then refuses the record if a removed value
//!   still appears anywhere it keeps.
//!
//! [`detect()`] tells FHIR JSON and XML from other attachments, and errs towards "FHIR" so a
//! damaged record fails loudly rather than leaving unredacted.
//!
//! Every input is bounded ([`limits`]), and no error message ever holds record content:
//! places are named by structure (`entry[1].resource.birthDate`) or byte offset.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod date;
mod detect;
mod error;
pub mod limits;
mod matching;
mod narrative;
pub mod policy;
mod redaction;
mod renames;

pub(crate) mod json;
pub(crate) mod xml;

pub use date::{DatePrecision, FhirDate};
pub use detect::{FhirFormat, detect};
pub use error::FhirError;
pub use policy::{MAX_PSEUDONYM_LEN, PSEUDONYM_SYSTEM};
pub use redaction::{Redaction, RemovedItem};

/// Checks the size and encoding every entry point requires.
fn checked_text(bytes: &[u8]) -> Result<&str, FhirError> {
    limits::check_size(bytes)?;
    std::str::from_utf8(bytes).map_err(|e| FhirError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// The birth date of every Patient in the record that has one, in document order.
///
/// Patients without a birthDate contribute nothing here; use [`patient_birth_dates`] when
/// a Patient of unknown age must be treated specially.
///
/// # Errors
///
/// [`FhirError::InvalidBirthDate`] if any Patient's birthDate is not a FHIR date, and the
/// parsing and limit errors of [`FhirError`] if the record cannot be read.
pub fn birth_dates(bytes: &[u8], format: FhirFormat) -> Result<Vec<FhirDate>, FhirError> {
    Ok(patient_birth_dates(bytes, format)?
        .into_iter()
        .flatten()
        .collect())
}

/// One entry per Patient in the record, in document order: its birth date, or `None` if
/// it has no birthDate.
///
/// # Errors
///
/// As [`birth_dates`].
pub fn patient_birth_dates(
    bytes: &[u8],
    format: FhirFormat,
) -> Result<Vec<Option<FhirDate>>, FhirError> {
    let text = checked_text(bytes)?;
    match format {
        FhirFormat::Json => json::patient_birth_dates(&json::parse_resource(text)?),
        FhirFormat::Xml => xml::patient_birth_dates(&xml::parse_resource(text)?),
    }
}

/// Removes the direct identifiers of the patient and related people from a FHIR record.
///
/// What is removed is listed in [`policy`]. Each Patient gets one
/// identifier `{"system": "urn:dossier:pseudonym", "value": pseudonym}`; a resource whose
/// id contains a removed identifier or telecom value is renamed (the first such Patient to
/// `pseudonym`, others to `pseudonym-1`, `pseudonym-2`, …) and every reference, Bundle
/// `fullUrl`, `request.url` and `response.location` that named it is rewritten; an
/// Identifier elsewhere that held a removed Patient identifier (a logical reference such
/// as `subject.identifier`) is replaced by the pseudonym identifier. Narratives holding a
/// removed value are scrubbed, or replaced if they cannot be scrubbed safely. Everything
/// else — clinical resources, practitioners, organisations — is left as it was.
///
/// The output has the input's format; JSON is written compactly with members in their
/// original order and numbers exactly as written.
///
/// # Errors
///
/// [`FhirError::InvalidPseudonym`] for a pseudonym that is not 1–48 characters of
/// `[A-Za-z0-9.-]` or that contains a removed value; [`FhirError::IdentifierSurvives`]
/// when a removed identifier, telecom or address value also appears in an element that is
/// kept (the record needs review by hand); the parsing and limit errors otherwise.
pub fn redact_identifiers(
    bytes: &[u8],
    format: FhirFormat,
    pseudonym: &str,
) -> Result<Redaction, FhirError> {
    policy::check_pseudonym(pseudonym)?;
    let text = checked_text(bytes)?;
    match format {
        FhirFormat::Json => json::redact::redact(text, pseudonym),
        FhirFormat::Xml => xml::redact::redact(text, pseudonym),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_for_size_and_encoding() {
        let big = vec![b' '; limits::MAX_INPUT_BYTES + 1];
        assert!(matches!(
            birth_dates(&big, FhirFormat::Json),
            Err(FhirError::TooLarge { .. })
        ));
        assert_eq!(
            redact_identifiers(b"{\"a\":\"\xff\"}", FhirFormat::Json, "p1").unwrap_err(),
            FhirError::NotUtf8 { offset: 6 }
        );
    }
}
