//! A deterministic stand-in for the `fhir` fuzz target (crates/fuzz), so every
//! `cargo test` checks its properties on thousands of damaged records: the real samples
//! and the XML fixtures, mutated byte by byte and token by token.

mod common;

use common::{SAMPLES, fixture, sample};
use dossier_fhir::{FhirFormat, birth_dates, detect, patient_birth_dates, redact_identifiers};

const PSEUDONYM: &str = "px-fuzz";
/// Mutations per seed record.
const ROUNDS: usize = 300;

/// The fuzz target's properties on one input; how many formats redacted it.
fn check(data: &[u8]) -> usize {
    let mut redactions = 0;
    let detected = detect(data);
    for format in [FhirFormat::Json, FhirFormat::Xml] {
        let dates = patient_birth_dates(data, format);
        assert_eq!(
            birth_dates(data, format).ok(),
            dates
                .clone()
                .ok()
                .map(|d| d.into_iter().flatten().collect::<Vec<_>>())
        );
        let Ok(redacted) = redact_identifiers(data, format, PSEUDONYM) else {
            continue;
        };
        assert_eq!(detected, Some(format));
        assert_eq!(detect(&redacted.output), Some(format));
        assert_eq!(
            patient_birth_dates(&redacted.output, format).ok(),
            dates.ok()
        );
        let again = redact_identifiers(&redacted.output, format, PSEUDONYM)
            .expect("redacted output redacts again");
        assert_eq!(again.output, redacted.output, "redaction is not stable");
        assert!(again.relink.is_empty());
        redactions += 1;
    }
    redactions
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"<",
    b">",
    b"/>",
    b"</",
    b"&amp;",
    b"&#10;",
    b"\\u0000",
    b"\\ud800",
    b"\"resourceType\":\"Patient\"",
    b"\"identifier\":[{\"value\":\"AAA1234\"}]",
    b"\"birthDate\":\"2008-02-29\"",
    b"<Patient xmlns=\"http://hl7.org/fhir\">",
    b"</Patient>",
    b"<identifier><value value=\"NHX7731\"/></identifier>",
    b"<birthDate value=\"2011\"/>",
    b"\"reference\":\"Patient/AAA1234\"",
    b"<reference value=\"Patient/NHX7731\"/>",
    b"\"div\":\"<div xmlns='http://www.w3.org/1999/xhtml'>AAA1234</div>\"",
    b"\xff",
    b"\xc3",
];

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(64)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
            _ => {
                let end = (at + rng.below(8)).min(data.len());
                let b = b"0123456789-T:/"[rng.below(14)];
                data[at..end].fill(b);
            }
        }
    }
    data
}

#[test]
fn damaged_records_never_break_the_properties() {
    let mut seeds: Vec<Vec<u8>> = SAMPLES.iter().map(|n| sample(n)).collect();
    seeds.push(fixture("patient.xml"));
    seeds.push(fixture("bundle.xml"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut tried, mut redacted) = (0, 0);
    for seed in &seeds {
        assert_eq!(check(seed), 1);
        for _ in 0..ROUNDS {
            tried += 1;
            redacted += check(&mutate(seed, &mut rng));
        }
    }
    // Enough damaged records still redact for the redaction properties to be exercised.
    assert!(redacted * 5 > tried, "only {redacted} of {tried} redacted");
}
