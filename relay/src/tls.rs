//! The relay's TLS identity: a self-signed certificate whose public key *is* the relay's
//! identity (docs/protocol.md §15.1).
//!
//! Nodes trust no certificate authority here. They accept the relay only if the SHA-256 of
//! its certificate's SubjectPublicKeyInfo equals the pin the operator gave them out of band,
//! and the TLS 1.3 handshake signature verifies under that key. So the key file is the one
//! secret that matters: losing it means re-pinning every node. It is written 0600 and never
//! logged; the in-memory copy read at start is wiped once rustls has taken it.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::data_dir::DataDir;
use crate::error::RelayError;

/// The certificate's subject and DNS name; nodes send this server name (§15.1).
pub const RELAY_SERVER_NAME: &str = "dossier-relay";

/// A freshly made identity, ready to be written by `init`.
pub(crate) struct NewIdentity {
    /// Certificate, DER.
    pub cert_der: Vec<u8>,
    /// Private key, PKCS#8 DER.
    pub key_der: Zeroizing<Vec<u8>>,
}

/// Makes an ECDSA P-256 key and a self-signed certificate for [`RELAY_SERVER_NAME`].
pub(crate) fn generate(dir: &DataDir) -> Result<NewIdentity, RelayError> {
    let fail = |problem: String| RelayError::TlsIdentity {
        dir: dir.root().to_path_buf(),
        problem,
    };
    let key = rcgen::KeyPair::generate().map_err(|e| fail(format!("key generation: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![RELAY_SERVER_NAME.to_owned()])
        .map_err(|e| fail(format!("certificate parameters: {e}")))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, RELAY_SERVER_NAME);
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail(format!("self-signing: {e}")))?;
    Ok(NewIdentity {
        cert_der: cert.der().to_vec(),
        key_der: Zeroizing::new(key.serialize_der()),
    })
}

/// The identity a running relay presents.
pub(crate) struct LoadedIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// `sha256:…` of the certificate's public key.
    pub pin: String,
}

impl LoadedIdentity {
    /// The key behind this relay's QUIC stateless-reset tokens, derived from its TLS private
    /// key so that it is the same after a restart. A node still holding a connection to the
    /// relay process that crashed sends its next keep-alive to the new process, which cannot
    /// decrypt it and answers with a stateless reset; only a token made with the old key is
    /// recognised, so with a per-process random key (quinn's default) the node would sit on
    /// the dead connection until its idle timeout. Whoever can forge these tokens holds the
    /// relay's private key and could impersonate the relay anyway.
    pub(crate) fn stateless_reset_key(&self) -> ring::hmac::Key {
        ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            self.derived(b"dossier-relay/v1 QUIC stateless reset key")
                .as_ref(),
        )
    }

    /// The key of the relay's connection-id checksums (quinn drops a packet whose
    /// connection id does not carry the checksum before considering a stateless reset), for
    /// the same reason as [`stateless_reset_key`](Self::stateless_reset_key): connection
    /// ids issued before a restart must still be recognised as the relay's own.
    pub(crate) fn connection_id_key(&self) -> u64 {
        let tag = self.derived(b"dossier-relay/v1 QUIC connection id key");
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_le_bytes(first)
    }

    fn derived(&self, purpose: &[u8]) -> ring::hmac::Tag {
        let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        ring::hmac::sign(&master, purpose)
    }
}

/// Reads `relay-cert.der` and `relay-key.der` and computes the pin.
pub(crate) fn load(dir: &DataDir) -> Result<LoadedIdentity, RelayError> {
    let cert_der = dir.read(&dir.tls_cert())?;
    let key_der = Zeroizing::new(dir.read(&dir.tls_key())?);
    let pin =
        dossier_wire::pin::pin_of_certificate(&cert_der).map_err(|e| RelayError::TlsIdentity {
            dir: dir.root().to_path_buf(),
            problem: e.to_string(),
        })?;
    Ok(LoadedIdentity {
        cert: CertificateDer::from(cert_der),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        pin,
    })
}

/// The pin of the certificate in `dir`, without touching the key.
pub(crate) fn pin_of(dir: &DataDir) -> Result<String, RelayError> {
    let cert_der = dir.read(&dir.tls_cert())?;
    dossier_wire::pin::pin_of_certificate(&cert_der).map_err(|e| RelayError::TlsIdentity {
        dir: dir.root().to_path_buf(),
        problem: e.to_string(),
    })
}

/// rustls server configuration: ring, TLS 1.3 only, ALPN `dossier-relay/1`, no client
/// certificates (nodes authenticate inside the connection, §15.2), no 0-RTT.
pub(crate) fn server_crypto(
    dir: &DataDir,
    identity: LoadedIdentity,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, RelayError> {
    let fail = |problem: String| RelayError::TlsIdentity {
        dir: dir.root().to_path_buf(),
        problem,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert], identity.key)
        .map_err(|e| {
            fail(format!(
                "key and certificate do not form a usable pair: {e}"
            ))
        })?;
    tls.alpn_protocols = vec![dossier_wire::ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| fail(e.to_string()))?;
    Ok(Arc::new(quic))
}
