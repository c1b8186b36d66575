//! TLS for the relay connection: no certificate authorities, only the pin (docs/protocol.md
//! §15.1).
//!
//! A relay's certificate is self-signed, so a CA chain proves nothing here. The node accepts
//! the relay only if the SHA-256 of the certificate's public key equals the pin the operator
//! gave it out of band (`dossier relay set --pin`), compared in constant time; and the TLS 1.3
//! handshake signature must verify under that certificate's key, which proves the relay holds
//! the private key and is not replaying someone else's certificate. TLS 1.2 is refused.
//!
//! When the key differs, the verifier records the pin it was shown so the node can tell the
//! user both values instead of a bare handshake failure.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, PeerIncompatible, SignatureScheme};
use subtle::ConstantTimeEq;

/// The server name every node sends (the relay's certificate need not carry it: only the
/// pin counts).
pub const RELAY_SERVER_NAME: &str = "dossier-relay";

/// Accepts exactly the relay whose public key hashes to the pin.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    /// The pin of a certificate that was refused, for the error message.
    presented: Mutex<Option<String>>,
}

impl PinnedServerVerifier {
    /// A verifier for `pin` (already checked by `dossier_wire::pin::parse_pin`).
    pub fn new(pin: &str, provider: Arc<CryptoProvider>) -> Self {
        Self {
            pin: pin.to_owned(),
            provider,
            presented: Mutex::new(None),
        }
    }

    /// The pin of the certificate refused by the last handshake, if one was refused.
    pub fn presented_mismatch(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|g| g.clone())
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let presented = dossier_wire::pin::pin_of_certificate(end_entity.as_ref())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let same = presented.len() == self.pin.len()
            && bool::from(presented.as_bytes().ct_eq(self.pin.as_bytes()));
        if same {
            Ok(ServerCertVerified::assertion())
        } else {
            if let Ok(mut slot) = self.presented.lock() {
                *slot = Some(presented);
            }
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // Never reached: the config offers TLS 1.3 only. Refuse rather than trust.
        Err(Error::PeerIncompatible(
            PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration for the relay: ring, TLS 1.3 only, the pin verifier, ALPN
/// `dossier-relay/1`, no client certificate (the node authenticates inside the connection).
pub fn client_config(
    verifier: Arc<PinnedServerVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![dossier_wire::ALPN.to_vec()];
    Ok(cfg)
}

/// The ring crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> Vec<u8> {
        rcgen::generate_simple_self_signed(vec![RELAY_SERVER_NAME.to_owned()])
            .unwrap()
            .cert
            .der()
            .to_vec()
    }

    #[test]
    fn accepts_exactly_the_pinned_key_and_reports_the_other() {
        let der = self_signed();
        let pin = dossier_wire::pin::pin_of_certificate(&der).unwrap();
        let name = ServerName::try_from(RELAY_SERVER_NAME).unwrap();
        let cert = CertificateDer::from(der.clone());
        let good = PinnedServerVerifier::new(&pin, provider());
        assert!(
            good.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        assert!(good.presented_mismatch().is_none());

        let other = dossier_wire::pin::pin_of_certificate(&self_signed()).unwrap();
        let wrong = PinnedServerVerifier::new(&other, provider());
        let err = wrong
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        );
        assert_eq!(wrong.presented_mismatch(), Some(pin));
    }

    #[test]
    fn refuses_garbage_and_only_offers_tls13() {
        let v = PinnedServerVerifier::new(&format!("sha256:{}", "0".repeat(64)), provider());
        let name = ServerName::try_from(RELAY_SERVER_NAME).unwrap();
        let err = v
            .verify_server_cert(
                &CertificateDer::from(b"not a certificate".to_vec()),
                &[],
                &name,
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        assert_eq!(
            err,
            Error::InvalidCertificate(CertificateError::BadEncoding)
        );
        assert!(v.presented_mismatch().is_none());
        assert!(!v.supported_verify_schemes().is_empty());
        let cfg = client_config(Arc::new(v), provider()).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![dossier_wire::ALPN.to_vec()]);
    }
}
