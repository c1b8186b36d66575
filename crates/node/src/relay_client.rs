//! The node's side of the relay protocol (docs/protocol.md §15): connect with the pin,
//! authenticate, then one request per bidirectional stream.
//!
//! This module moves bytes and messages; it keeps no state on disk. What to upload, where a
//! download goes and what is acknowledged is decided by [`crate::sync`]. Ciphertext is
//! streamed through fixed buffers in both directions, so memory does not grow with a
//! bundle's size, and both directions resume: a deposit from the relay's `have`, a fetch from
//! the length of the local partial file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BufMut as _;
use dossier_bundle::{FacilityId, FacilityKeys};
use dossier_wire::message::{NoticeKind, ReceiptItem, RevocationItem};
use dossier_wire::{ClientMessage, MailboxItem, ServerMessage};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use crate::relay_config::RelayConfig;
use crate::relay_error::auth_refusal;
pub use crate::relay_error::{RelayError, code_name};
use crate::relay_tls::{PinnedServerVerifier, RELAY_SERVER_NAME, client_config, provider};
use crate::transfer::DownloadSink;

const STREAM_BUFFER: usize = 256 * 1024;
/// Bytes the relay may have in flight towards this node on one stream.
const STREAM_RECEIVE_WINDOW: u32 = 8 << 20;
/// A relay that sends nothing (not even an acknowledgement) for this long is gone: the
/// transfer stops and resumes on the next attempt. Keep-alives keep a quiet connection open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(12);
const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// How long closing waits for the close frame to leave (see [`RelayConnection::close`]).
const CLOSE_GRACE: Duration = Duration::from_millis(20);
/// How long one request may wait for the relay's answer frame.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Something the relay pushed (docs/protocol.md §15.4). Hints only: the mailbox and the
/// receipt log are the truth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `new_mail` or `expired`.
    pub kind: NoticeKind,
    /// Bundle concerned.
    pub bundle_id: String,
}

/// Watches a transfer (the CLI draws a progress bar on a terminal).
pub trait TransferProgress: Send + Sync {
    /// A transfer of `total` bytes starts, `done` of them already there (resumed).
    fn start(&self, label: &str, total: u64, done: u64);
    /// `n` more bytes moved.
    fn advance(&self, n: u64);
    /// The transfer ended (successfully or not).
    fn finish(&self);
}

/// Draws nothing.
pub struct NoProgress;

impl TransferProgress for NoProgress {
    fn start(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// An authenticated connection to the relay.
pub struct RelayConnection {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    notices: mpsc::Receiver<Notice>,
    notice_task: tokio::task::JoinHandle<()>,
    /// The relay's clock at authentication (Unix seconds).
    pub relay_time: i64,
}

/// What a deposit ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// When the relay made it durable (Unix seconds, relay clock).
    pub accepted_at: i64,
    /// Bytes sent on this attempt (0 if the relay already had it all).
    pub sent: u64,
}

impl RelayConnection {
    /// Connects to the configured relay, checks its pin and authenticates as `me` with `keys`
    /// (the node's current keys).
    pub async fn connect(
        cfg: &RelayConfig,
        me: &FacilityId,
        keys: &FacilityKeys,
    ) -> Result<Self, RelayError> {
        let unreachable = |detail: String| RelayError::Unreachable {
            address: cfg.address.clone(),
            detail,
        };
        let addr = resolve(&cfg.address).await.map_err(unreachable)?;
        let provider = provider();
        let verifier = Arc::new(PinnedServerVerifier::new(&cfg.pin, provider.clone()));
        let tls = client_config(verifier.clone(), provider)
            .map_err(|e| RelayError::Protocol(format!("TLS setup: {e}")))?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| RelayError::Protocol(format!("QUIC TLS setup: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("12 s is a valid idle timeout"),
        ));
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        // As the relay does: congestion control for short and lossy long-haul paths alike
        // (this node is the sender on uploads); see dossier-transport.
        dossier_transport::tune(&mut transport);
        // A download pipeline holds a few MiB between network and disk; a receive window
        // of the same order keeps the relay sending while the verifier catches up.
        transport.stream_receive_window(quinn::VarInt::from_u32(STREAM_RECEIVE_WINDOW));
        transport.receive_window(quinn::VarInt::from_u32(2 * STREAM_RECEIVE_WINDOW));
        client.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("valid")
        } else {
            "0.0.0.0:0".parse().expect("valid")
        };
        let mut endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| unreachable(format!("cannot open a UDP socket: {e}")))?;
        endpoint.set_default_client_config(client);

        let timeout = Duration::from_secs(cfg.connect_timeout_secs.max(1));
        let connecting = endpoint
            .connect(addr, RELAY_SERVER_NAME)
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => {
                endpoint.close(0u32.into(), b"");
                return Err(unreachable(format!(
                    "no answer within {} s",
                    timeout.as_secs()
                )));
            }
            Ok(Err(e)) => {
                endpoint.close(0u32.into(), b"");
                if let Some(presented) = verifier.presented_mismatch() {
                    return Err(RelayError::PinMismatch {
                        address: cfg.address.clone(),
                        expected: cfg.pin.clone(),
                        presented,
                    });
                }
                return Err(match e {
                    quinn::ConnectionError::TimedOut => {
                        unreachable("the handshake timed out".into())
                    }
                    other => unreachable(format!("the handshake failed: {other}")),
                });
            }
            Ok(Ok(conn)) => conn,
        };

        let mut exporter = [0u8; dossier_bundle::relay_auth::EXPORTER_BYTES];
        conn.export_keying_material(&mut exporter, dossier_wire::AUTH_EXPORTER_LABEL, b"")
            .map_err(|_| RelayError::Protocol("TLS exporter unavailable".into()))?;
        let signature = dossier_bundle::relay_auth::sign(keys, &exporter, me);
        let auth = ClientMessage::Auth {
            version: dossier_wire::PROTOCOL_VERSION,
            facility: me.as_str().to_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
        write_frame(&mut send, &auth).await?;
        let _ = send.finish();
        let relay_time = match read_answer(&mut recv, &conn).await {
            Ok(ServerMessage::Welcome {
                facility,
                relay_time,
            }) if facility == me.as_str() => relay_time,
            Ok(ServerMessage::Welcome { .. }) => {
                return Err(RelayError::Protocol("welcomed as another facility".into()));
            }
            Ok(ServerMessage::Refused(r)) => return Err(auth_refusal(r.code, r.message)),
            Ok(other) => return Err(unexpected("Welcome", &other)),
            Err(e) => return Err(e),
        };

        let (tx, notices) = mpsc::channel(64);
        let notice_task = tokio::spawn(accept_notices(conn.clone(), tx));
        Ok(Self {
            endpoint,
            conn,
            notices,
            notice_task,
            relay_time,
        })
    }

    /// Uploads the ciphertext in `file` (resuming from what the relay already has).
    pub async fn deposit(
        &self,
        bundle_id: &str,
        recipients: &[String],
        file: &Path,
        length: u64,
        sha256_hex: &str,
        progress: &dyn TransferProgress,
    ) -> Result<Accepted, RelayError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(lost)?;
        let req = ClientMessage::Deposit {
            bundle_id: bundle_id.to_owned(),
            recipients: recipients.to_vec(),
            length,
            sha256: sha256_hex.to_owned(),
        };
        write_frame(&mut send, &req).await?;
        let have = match read_answer(&mut recv, &self.conn).await? {
            ServerMessage::DepositAccepted {
                bundle_id: id,
                accepted_at,
            } if id == bundle_id => {
                let _ = send.finish();
                return Ok(Accepted {
                    accepted_at,
                    sent: 0,
                });
            }
            ServerMessage::DepositOffset { have } if have <= length => have,
            ServerMessage::DepositOffset { have } => {
                return Err(RelayError::Protocol(format!(
                    "the relay claims {have} bytes of a {length}-byte bundle"
                )));
            }
            ServerMessage::Refused(r) => {
                return Err(RelayError::Refused {
                    code: r.code,
                    message: r.message,
                });
            }
            other => return Err(unexpected("DepositOffset", &other)),
        };
        let local = |what: &str| {
            let what = what.to_owned();
            move |source| RelayError::Local { what, source }
        };
        progress.start(&format!("upload {bundle_id}"), length, have);
        let mut chunks = crate::transfer::read_chunks(file, have, length - have);
        let mut sent = 0;
        let copied: Result<(), RelayError> = async {
            while let Some(chunk) = chunks.recv().await {
                let bytes = chunk.map_err(local("reading the outbox copy"))?;
                let n = bytes.len() as u64;
                // The piece goes to QUIC as it is, without another copy.
                send.write_chunk(bytes)
                    .await
                    .map_err(|e| write_failed(e, &self.conn))?;
                sent += n;
                progress.advance(n);
            }
            if sent != length - have {
                return Err(RelayError::Local {
                    what: "reading the outbox copy".into(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the outbox file is shorter than recorded",
                    ),
                });
            }
            send.finish()
                .map_err(|e| RelayError::ConnectionLost(e.to_string()))?;
            Ok(())
        }
        .await;
        progress.finish();
        if let Err(e) = copied {
            // A refusal may already be waiting (e.g. over quota mid-upload): prefer it.
            if let Ok(Ok(ServerMessage::Refused(r))) =
                tokio::time::timeout(Duration::from_millis(200), read_frame(&mut recv)).await
            {
                return Err(RelayError::Refused {
                    code: r.code,
                    message: r.message,
                });
            }
            return Err(e);
        }
        match read_answer(&mut recv, &self.conn).await? {
            ServerMessage::DepositAccepted {
                bundle_id: id,
                accepted_at,
            } if id == bundle_id => Ok(Accepted { accepted_at, sent }),
            ServerMessage::Refused(r) => Err(RelayError::Refused {
                code: r.code,
                message: r.message,
            }),
            other => Err(unexpected("DepositAccepted", &other)),
        }
    }

    /// Lists this node's mailbox (oldest first, at most 256 items).
    pub async fn mailbox(&self) -> Result<Vec<MailboxItem>, RelayError> {
        match self.request(&ClientMessage::Mailbox {}).await? {
            ServerMessage::Mailbox { items } => Ok(items),
            other => Err(unexpected("Mailbox", &other)),
        }
    }

    /// Downloads the rest of `item` into `sink` (from what it already holds: a resumed
    /// fetch). Returns when the relay finished the stream; the caller's pipeline checks
    /// length and hash.
    pub async fn fetch(
        &self,
        item: &MailboxItem,
        sink: &mut DownloadSink,
        progress: &dyn TransferProgress,
    ) -> Result<(), RelayError> {
        let local = |source| RelayError::Local {
            what: "writing the download".into(),
            source,
        };
        let offset = sink.held();
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(lost)?;
        let req = ClientMessage::Fetch {
            bundle_id: item.bundle_id.clone(),
            offset,
        };
        write_frame(&mut send, &req).await?;
        let _ = send.finish();
        match read_answer(&mut recv, &self.conn).await? {
            ServerMessage::Body {
                length,
                offset: from,
            } if length == item.length && from == offset => {}
            ServerMessage::Body {
                length,
                offset: from,
            } => {
                return Err(RelayError::Protocol(format!(
                    "asked for bytes {offset}.. of a {}-byte bundle, got {from}.. of {length}",
                    item.length
                )));
            }
            ServerMessage::Refused(r) => {
                return Err(RelayError::Refused {
                    code: r.code,
                    message: r.message,
                });
            }
            other => return Err(unexpected("Body", &other)),
        }
        progress.start(&format!("download {}", item.bundle_id), item.length, offset);
        // Pieces of up to STREAM_BUFFER bytes go down the pipeline; what arrived before an
        // error is handed over too, so that it is kept for resuming.
        let result: Result<(), RelayError> = async {
            let mut ended = false;
            while !ended {
                // Read into spare capacity: no zero-fill of a buffer about to be overwritten.
                let mut buf = bytes::BytesMut::with_capacity(STREAM_BUFFER);
                let mut failure = None;
                while buf.len() < STREAM_BUFFER {
                    let room = STREAM_BUFFER - buf.len();
                    match recv.read_buf(&mut (&mut buf).limit(room)).await {
                        Ok(0) => {
                            ended = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failure = Some(io_read_failed(e, &self.conn));
                            break;
                        }
                    }
                }
                let filled = buf.len();
                if sink.held() + filled as u64 > item.length {
                    return Err(RelayError::Protocol(
                        "the relay sent more bytes than the bundle holds".into(),
                    ));
                }
                if filled > 0 {
                    buf.truncate(filled);
                    sink.accept(buf.freeze()).await.map_err(local)?;
                    progress.advance(filled as u64);
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
            Ok(())
        }
        .await;
        progress.finish();
        result?;
        if sink.held() != item.length {
            return Err(RelayError::ConnectionLost(format!(
                "the download stopped at byte {} of {}",
                sink.held(),
                item.length
            )));
        }
        Ok(())
    }

    /// Tells the relay the bundle is durably stored here.
    pub async fn ack(&self, bundle_id: &str) -> Result<(), RelayError> {
        let req = ClientMessage::Ack {
            bundle_id: bundle_id.to_owned(),
        };
        match self.request(&req).await? {
            ServerMessage::Acked => Ok(()),
            other => Err(unexpected("Acked", &other)),
        }
    }

    /// Posts a signed receipt for the bundle's sender.
    pub async fn post_receipt(&self, receipt: &str) -> Result<(), RelayError> {
        let req = ClientMessage::PostReceipt {
            receipt: receipt.to_owned(),
        };
        match self.request(&req).await? {
            ServerMessage::ReceiptStored => Ok(()),
            other => Err(unexpected("ReceiptStored", &other)),
        }
    }

    /// Receipts and notices for bundles this node sent, with sequence numbers after `after`.
    pub async fn receipts(&self, after: u64) -> Result<Vec<ReceiptItem>, RelayError> {
        match self.request(&ClientMessage::Receipts { after }).await? {
            ServerMessage::Receipts { items } => Ok(items),
            other => Err(unexpected("Receipts", &other)),
        }
    }

    /// Posts a signed revocation of this node's enrolled key (docs/protocol.md §17).
    pub async fn post_revocation(&self, revocation: &str) -> Result<(), RelayError> {
        let req = ClientMessage::PostRevocation {
            revocation: revocation.to_owned(),
        };
        match self.request(&req).await? {
            ServerMessage::RevocationStored => Ok(()),
            other => Err(unexpected("RevocationStored", &other)),
        }
    }

    /// Key revocations posted by any facility, with sequence numbers after `after`.
    pub async fn revocations(&self, after: u64) -> Result<Vec<RevocationItem>, RelayError> {
        match self.request(&ClientMessage::Revocations { after }).await? {
            ServerMessage::Revocations { items } => Ok(items),
            other => Err(unexpected("Revocations", &other)),
        }
    }

    /// The next notice pushed by the relay; `None` once the connection is gone.
    pub async fn next_notice(&mut self) -> Option<Notice> {
        self.notices.recv().await
    }

    /// Whether the connection has been closed (by either side or by a timeout).
    pub fn closed_reason(&self) -> Option<String> {
        self.conn.close_reason().map(|e| e.to_string())
    }

    /// Closes the connection politely and waits briefly for the close to go out.
    ///
    /// The close frame is sent as soon as the connection driver runs; waiting for the
    /// endpoint to go idle would add QUIC's draining period (three probe timeouts, about
    /// 90 ms even on loopback) to every command for no benefit to either side. A relay that
    /// misses the frame forgets the connection at its idle timeout.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        self.notice_task.abort();
        let _ = tokio::time::timeout(CLOSE_GRACE, self.endpoint.wait_idle()).await;
    }

    async fn request(&self, req: &ClientMessage) -> Result<ServerMessage, RelayError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(lost)?;
        write_frame(&mut send, req).await?;
        let _ = send.finish();
        match read_answer(&mut recv, &self.conn).await? {
            ServerMessage::Refused(r) => Err(RelayError::Refused {
                code: r.code,
                message: r.message,
            }),
            other => Ok(other),
        }
    }
}

impl Drop for RelayConnection {
    fn drop(&mut self) {
        self.notice_task.abort();
        self.conn.close(0u32.into(), b"bye");
    }
}

async fn resolve(address: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve the address: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| "the address resolves to nothing".to_owned())
}

async fn accept_notices(conn: quinn::Connection, tx: mpsc::Sender<Notice>) {
    while let Ok(mut recv) = conn.accept_uni().await {
        if let Ok(Ok(ServerMessage::Notice { kind, bundle_id })) =
            tokio::time::timeout(Duration::from_secs(10), read_frame(&mut recv)).await
        {
            // A full channel only drops a hint; the next listing finds the mail anyway.
            let _ = tx.try_send(Notice { kind, bundle_id });
        }
    }
}

fn lost(e: quinn::ConnectionError) -> RelayError {
    RelayError::ConnectionLost(e.to_string())
}

fn unexpected(wanted: &str, got: &ServerMessage) -> RelayError {
    let name = serde_json::to_value(got)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    RelayError::Protocol(format!("expected {wanted}, got {name}"))
}

fn write_failed(e: quinn::WriteError, conn: &quinn::Connection) -> RelayError {
    match conn.close_reason() {
        Some(reason) => RelayError::ConnectionLost(reason.to_string()),
        None => RelayError::ConnectionLost(e.to_string()),
    }
}

/// A failed read of a stream (through its `AsyncRead` view, whose errors are quinn's
/// `ReadError` inside an `io::Error`): the connection's close reason when there is one.
fn io_read_failed(e: std::io::Error, conn: &quinn::Connection) -> RelayError {
    match conn.close_reason() {
        Some(reason) => RelayError::ConnectionLost(reason.to_string()),
        None => RelayError::ConnectionLost(e.to_string()),
    }
}

async fn write_frame(send: &mut quinn::SendStream, msg: &ClientMessage) -> Result<(), RelayError> {
    msg.check_sizes()
        .map_err(|e| RelayError::Protocol(format!("request too large: {e}")))?;
    let frame = dossier_wire::encode(msg)
        .map_err(|e| RelayError::Protocol(format!("cannot encode the request: {e}")))?;
    send.write_all(&frame)
        .await
        .map_err(|e| RelayError::ConnectionLost(e.to_string()))
}

/// Reads one answer frame, with a time limit; a connection closed by the relay (e.g. after
/// an authentication refusal) is reported with the relay's reason.
async fn read_answer(
    recv: &mut quinn::RecvStream,
    conn: &quinn::Connection,
) -> Result<ServerMessage, RelayError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, read_frame(recv)).await {
        Err(_) => Err(RelayError::ConnectionLost(format!(
            "no answer within {} s",
            ANSWER_TIMEOUT.as_secs()
        ))),
        Ok(Err(RelayError::ConnectionLost(detail))) => Err(RelayError::ConnectionLost(
            conn.close_reason().map_or(detail, |r| r.to_string()),
        )),
        Ok(other) => other,
    }
}

/// Reads one frame (docs/protocol.md §15.2): the length is checked against the limit before
/// the body is read.
async fn read_frame(recv: &mut quinn::RecvStream) -> Result<ServerMessage, RelayError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => {
            RelayError::ConnectionLost("the relay closed the stream without answering".into())
        }
        quinn::ReadExactError::ReadError(e) => RelayError::ConnectionLost(e.to_string()),
    })?;
    if let Err(e) = dossier_wire::check(&header) {
        return Err(RelayError::Protocol(e.to_string()));
    }
    let len = u32::from_be_bytes(header) as usize;
    let mut frame = vec![0u8; 4 + len];
    frame[..4].copy_from_slice(&header);
    recv.read_exact(&mut frame[4..])
        .await
        .map_err(|e| RelayError::ConnectionLost(e.to_string()))?;
    dossier_wire::decode(&frame).map_err(|e| RelayError::Protocol(e.to_string()))
}

/// A tokio runtime for one command (two workers: the QUIC driver keeps running while a
/// worker verifies a large bundle).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
