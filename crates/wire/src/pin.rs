//! The relay's pin: what every node checks the relay's TLS key against (docs/protocol.md
//! §15.1).
//!
//! The pin is `sha256:` followed by the lowercase hex SHA-256 of the certificate's
//! DER-encoded SubjectPublicKeyInfo. Hashing the public key, not the certificate, lets an
//! operator re-issue the self-signed certificate (new validity dates) without re-pinning.

use sha2::{Digest, Sha256};

/// Prefix of every pin string.
pub const PIN_PREFIX: &str = "sha256:";

/// Why a pin could not be computed or parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The certificate is not DER X.509.
    #[error("the relay's certificate is not a valid X.509 certificate")]
    BadCertificate,
    /// The text is not `sha256:` + 64 lowercase hex digits.
    #[error(
        "a relay pin looks like sha256: followed by 64 lowercase hex digits (as printed by `dossier-relay init`)"
    )]
    BadPin,
}

/// The pin of a DER certificate.
pub fn pin_of_certificate(cert_der: &[u8]) -> Result<String, PinError> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|_| PinError::BadCertificate)?;
    if !rest.is_empty() {
        return Err(PinError::BadCertificate);
    }
    Ok(pin_of_spki(cert.tbs_certificate.subject_pki.raw))
}

/// The pin of a DER SubjectPublicKeyInfo.
pub fn pin_of_spki(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let mut s = String::with_capacity(PIN_PREFIX.len() + 64);
    s.push_str(PIN_PREFIX);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Checks the form of a pin typed by an operator; returns it normalised.
pub fn parse_pin(text: &str) -> Result<String, PinError> {
    let t = text.trim();
    match t.strip_prefix(PIN_PREFIX) {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(t.to_owned())
        }
        _ => Err(PinError::BadPin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_form() {
        let p = pin_of_spki(b"key");
        assert!(p.starts_with(PIN_PREFIX));
        assert_eq!(p.len(), 7 + 64);
        assert_eq!(parse_pin(&format!(" {p}\n")), Ok(p.clone()));
        assert_eq!(parse_pin(&p.to_uppercase()), Err(PinError::BadPin));
        assert_eq!(parse_pin("sha256:abc"), Err(PinError::BadPin));
        assert_eq!(
            pin_of_certificate(b"not a cert"),
            Err(PinError::BadCertificate)
        );
    }
}
