//! FHIR checks on arbitrary bytes: detection, birth dates and redaction never panic;
//! whatever redacts was detected as that format, is still FHIR with the same birth
//! dates, and redacting it again changes nothing.
#![no_main]
use dossier_fhir::{FhirFormat, birth_dates, detect, patient_birth_dates, redact_identifiers};
use libfuzzer_sys::fuzz_target;

const PSEUDONYM: &str = "px-fuzz";

fuzz_target!(|data: &[u8]| {
    let detected = detect(data);
    for format in [FhirFormat::Json, FhirFormat::Xml] {
        let dates = patient_birth_dates(data, format);
        assert_eq!(
            birth_dates(data, format).ok(),
            dates.clone().ok().map(|d| d.into_iter().flatten().collect::<Vec<_>>())
        );
        let Ok(redacted) = redact_identifiers(data, format, PSEUDONYM) else {
            continue;
        };
        assert_eq!(detected, Some(format), "redacted input was not detected as {format:?}");
        assert_eq!(detect(&redacted.output), Some(format));
        assert_eq!(patient_birth_dates(&redacted.output, format).ok(), dates.ok());
        let again = redact_identifiers(&redacted.output, format, PSEUDONYM)
            .expect("redacted output redacts again");
        assert_eq!(again.output, redacted.output, "redaction is not stable");
        assert!(again.relink.is_empty(), "a second redaction removed more");
    }
});
