//! The QUIC endpoint (docs/protocol.md §15.1): TLS 1.3 with the relay's self-signed
//! identity, and transport limits that bound what one node can make the relay hold.
//!
//! Per connection: at most [`MAX_STREAMS_PER_CONNECTION`] concurrent request streams, no
//! node-opened unidirectional streams (only the relay pushes notices), a receive window of
//! [`CONNECTION_RECEIVE_WINDOW`] across all streams. A connection silent for
//! [`IDLE_TIMEOUT`] is dropped; the relay sends keep-alives every [`KEEP_ALIVE`] so an idle
//! node waiting for notices stays reachable through NATs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::data_dir::DataDir;
use crate::error::RelayError;
use crate::tls;

/// Concurrent request streams one node may have open.
pub(crate) const MAX_STREAMS_PER_CONNECTION: u32 = 32;
/// Bytes one stream may have in flight towards the relay.
pub(crate) const STREAM_RECEIVE_WINDOW: u32 = 8 << 20;
/// Bytes one connection may have in flight towards the relay, all streams together.
pub(crate) const CONNECTION_RECEIVE_WINDOW: u32 = 16 << 20;
/// Bytes the relay buffers unacknowledged towards one node.
pub(crate) const CONNECTION_SEND_WINDOW: u64 = 8 << 20;
/// A connection with no traffic for this long is dropped.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Keep-alive interval from the relay's side.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the endpoint is made from.
pub(crate) struct EndpointSetup {
    /// TLS identity and transport limits.
    pub server: quinn::ServerConfig,
    /// Endpoint-wide settings: stateless-reset and connection-id keys that survive
    /// restarts, so that nodes still connected to a crashed relay process learn at their
    /// next keep-alive that it is gone (a stateless reset) instead of at their idle timeout.
    pub endpoint: quinn::EndpointConfig,
    /// `sha256:…` of the relay's public key.
    pub pin: String,
}

/// The server and endpoint configuration from the relay's identity.
pub(crate) fn setup(dir: &DataDir) -> Result<EndpointSetup, RelayError> {
    let identity = tls::load(dir)?;
    let pin = identity.pin.clone();
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(identity.stateless_reset_key()));
    let cid_key = identity.connection_id_key();
    endpoint.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let crypto = tls::server_crypto(dir, identity)?;
    let mut server = quinn::ServerConfig::with_crypto(crypto);
    server.transport_config(Arc::new(transport()));
    Ok(EndpointSetup {
        server,
        endpoint,
        pin,
    })
}

fn transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(CONNECTION_SEND_WINDOW)
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(IDLE_TIMEOUT)
                .unwrap_or_else(|_| IdleTimeout::from(VarInt::from_u32(60_000))),
        ));
    // Congestion control for both short and lossy long-haul paths (the relay is the sender
    // on downloads): see dossier-transport.
    dossier_transport::tune(&mut t);
    t
}

/// Binds the UDP socket and starts the endpoint (needs a tokio runtime).
pub(crate) fn bind(setup: EndpointSetup, addr: SocketAddr) -> Result<quinn::Endpoint, RelayError> {
    let bind_error = |source| RelayError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| bind_error(std::io::Error::other("no async runtime to drive QUIC")))?;
    quinn::Endpoint::new(setup.endpoint, Some(setup.server), socket, runtime).map_err(bind_error)
}
