//! A small node-side test client for the relay protocol (docs/protocol.md §15), written
//! here from the spec so the relay is checked against the document rather than against
//! the node's own client.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dossier_bundle::card::CardDetails;
use dossier_bundle::{
    CountryCode, FacilityCard, FacilityId, FacilityKeys, PartyKind, Timestamp, relay_auth,
};
use dossier_relay::{RelayConfig, RunningRelay};
use dossier_wire::{ClientMessage, FrameCheck, RefusalCode, ServerMessage};
use quinn::{Connection, RecvStream, SendStream};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// A facility with its keys and self-signed card.
pub struct Party {
    pub id: FacilityId,
    pub keys: FacilityKeys,
    pub card: FacilityCard,
}

impl Party {
    pub fn new(id: &str) -> Self {
        let keys = FacilityKeys::generate().expect("system RNG");
        let details = CardDetails {
            id: FacilityId::parse(id).expect("test id"),
            name: format!("Facility {id}"),
            country: CountryCode::parse("US").expect("country"),
            kind: PartyKind::Facility,
        };
        let created = Timestamp::from_unix(1_800_000_000).expect("time");
        let card = FacilityCard::issue(&keys, &details, created, None, None).expect("card");
        Self {
            id: details.id,
            keys,
            card,
        }
    }

    pub fn card_bytes(&self) -> Vec<u8> {
        self.card.to_file_bytes()
    }
}

/// A relay in a temporary directory on a random loopback port.
pub struct TestRelay {
    pub dir: tempfile::TempDir,
    pub relay: RunningRelay,
}

impl TestRelay {
    /// Initialises, enrolls `parties` (while stopped, as an operator would) and starts.
    pub async fn start(parties: &[&Party]) -> Self {
        Self::start_with(parties, |_| {}).await
    }

    /// Like [`start`](Self::start), with the configuration adjusted first.
    pub async fn start_with(parties: &[&Party], adjust: impl FnOnce(&mut RelayConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = RelayConfig::new("127.0.0.1:0".parse().unwrap());
        adjust(&mut config);
        dossier_relay::init_with_config(dir.path(), &config).expect("init");
        for p in parties {
            dossier_relay::enroll(dir.path(), &p.card_bytes()).expect("enroll");
        }
        let relay = dossier_relay::start(dir.path()).await.expect("start");
        Self { dir, relay }
    }

    pub fn addr(&self) -> SocketAddr {
        self.relay.addr()
    }

    pub fn pin(&self) -> String {
        self.relay.pin().to_owned()
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn blob(&self, bundle_id: &str) -> PathBuf {
        self.dir.path().join("blobs").join(bundle_id)
    }

    pub fn part(&self, bundle_id: &str) -> PathBuf {
        self.dir
            .path()
            .join("incoming")
            .join(format!("{bundle_id}.part"))
    }

    /// A connected, authenticated client for `party`.
    pub async fn client(&self, party: &Party) -> Client {
        let client = Client::connect(self.addr(), &self.pin()).await;
        match client.auth(party).await {
            ServerMessage::Welcome { facility, .. } => assert_eq!(facility, party.id.as_str()),
            other => panic!("auth failed: {other:?}"),
        }
        client
    }
}

/// Accepts exactly the relay whose public key hashes to the pin, and checks the TLS 1.3
/// handshake signature under that key.
#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = dossier_wire::pin::pin_of_certificate(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if pin == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// A QUIC connection to the relay.
pub struct Client {
    pub endpoint: quinn::Endpoint,
    pub conn: Connection,
}

impl Client {
    /// Connects, checking the pin. Panics if the handshake fails.
    pub async fn connect(addr: SocketAddr, pin: &str) -> Self {
        Self::try_connect(addr, pin).await.expect("handshake")
    }

    /// Connects, checking the pin.
    pub async fn try_connect(addr: SocketAddr, pin: &str) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinVerifier {
            pin: pin.to_owned(),
            provider: Arc::clone(&provider),
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![dossier_wire::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let conn = endpoint
            .connect(addr, dossier_relay::RELAY_SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { endpoint, conn })
    }

    /// This connection's exporter value (§15.2).
    pub fn exporter(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.conn
            .export_keying_material(&mut out, dossier_wire::AUTH_EXPORTER_LABEL, b"")
            .unwrap();
        out
    }

    /// Authenticates as `party` over this connection's exporter.
    pub async fn auth(&self, party: &Party) -> ServerMessage {
        let sig = relay_auth::sign(&party.keys, &self.exporter(), &party.id);
        self.auth_raw(1, party.id.as_str(), &B64.encode(sig)).await
    }

    /// Sends an `Auth` with any fields.
    pub async fn auth_raw(&self, version: u32, facility: &str, signature: &str) -> ServerMessage {
        self.request(&ClientMessage::Auth {
            version,
            facility: facility.to_owned(),
            signature: signature.to_owned(),
        })
        .await
    }

    /// One request frame on a new stream, one answer frame.
    pub async fn request(&self, msg: &ClientMessage) -> ServerMessage {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("open stream");
        write(&mut send, msg).await;
        let _ = send.finish();
        read(&mut recv).await
    }

    /// Starts a deposit: sends the request and returns the streams and the first answer.
    pub async fn begin_deposit(
        &self,
        bundle_id: &str,
        recipients: &[&Party],
        length: u64,
        sha256: &str,
    ) -> (SendStream, RecvStream, ServerMessage) {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("open stream");
        write(
            &mut send,
            &ClientMessage::Deposit {
                bundle_id: bundle_id.to_owned(),
                recipients: recipients.iter().map(|p| p.id.to_string()).collect(),
                length,
                sha256: sha256.to_owned(),
            },
        )
        .await;
        let first = read(&mut recv).await;
        (send, recv, first)
    }

    /// A whole deposit of `body`, announcing `sha256` (normally the body's).
    pub async fn deposit_announcing(
        &self,
        bundle_id: &str,
        recipients: &[&Party],
        body: &[u8],
        sha256: &str,
    ) -> (Option<u64>, ServerMessage) {
        let (mut send, mut recv, first) = self
            .begin_deposit(bundle_id, recipients, body.len() as u64, sha256)
            .await;
        let ServerMessage::DepositOffset { have } = first else {
            return (None, first);
        };
        send.write_all(&body[have as usize..])
            .await
            .expect("upload");
        send.finish().unwrap();
        (Some(have), read(&mut recv).await)
    }

    /// A whole deposit of `body`.
    pub async fn deposit(
        &self,
        bundle_id: &str,
        recipients: &[&Party],
        body: &[u8],
    ) -> (Option<u64>, ServerMessage) {
        self.deposit_announcing(bundle_id, recipients, body, &sha256_hex(body))
            .await
    }

    /// Fetches a body from `offset`: the `Body` header (or refusal) and the bytes.
    pub async fn fetch(&self, bundle_id: &str, offset: u64) -> (ServerMessage, Vec<u8>) {
        let (mut send, mut recv) = self.conn.open_bi().await.expect("open stream");
        write(
            &mut send,
            &ClientMessage::Fetch {
                bundle_id: bundle_id.to_owned(),
                offset,
            },
        )
        .await;
        let _ = send.finish();
        let head = read(&mut recv).await;
        let body = match head {
            ServerMessage::Body { .. } => recv.read_to_end(usize::MAX).await.expect("body"),
            _ => Vec::new(),
        };
        (head, body)
    }

    /// The next relay-pushed notice.
    pub async fn next_notice(&self) -> ServerMessage {
        let mut recv = self.conn.accept_uni().await.expect("notice stream");
        read(&mut recv).await
    }
}

/// Writes one frame.
pub async fn write(send: &mut SendStream, msg: &ClientMessage) {
    let frame = dossier_wire::encode(msg).unwrap();
    send.write_all(&frame).await.expect("write frame");
}

/// Reads exactly one frame.
pub async fn read(recv: &mut RecvStream) -> ServerMessage {
    let mut buf = Vec::new();
    loop {
        let want = match dossier_wire::check(&buf).expect("frame from the relay") {
            FrameCheck::Complete(n) => return dossier_wire::decode(&buf[..n]).expect("decode"),
            FrameCheck::Incomplete if buf.len() < 4 => 4,
            FrameCheck::Incomplete => 4 + u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
        };
        let filled = buf.len();
        buf.resize(want, 0);
        let n = recv
            .read(&mut buf[filled..])
            .await
            .expect("read frame")
            .expect("stream ended inside a frame");
        buf.truncate(filled + n);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random bundle id.
pub fn bundle_id() -> String {
    dossier_bundle::BundleId::random().unwrap().to_string()
}

/// Deterministic pseudo-random bytes (no plaintext worth the name, but not all zeros).
pub fn body(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 0x9e37_0000;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as u8
        })
        .collect()
}

/// The refusal code of a message, panicking if it is not a refusal.
pub fn refusal(msg: &ServerMessage) -> RefusalCode {
    match msg {
        ServerMessage::Refused(r) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
