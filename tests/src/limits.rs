//! Helpers for the resource-limit tests (`tests/tests/resource_limits.rs`): a small file
//! system to fill, the relay's memory as the kernel counts it, and a bare relay client that
//! authenticates and then misbehaves (stops reading, stops sending) as a slow or stalled
//! node would.
//!
//! * [`SmallDisk`]: an ext4 image on a loop device (what a relay runs on in production:
//!   `O_DIRECT`, fsync), or tmpfs when loop devices are unavailable, mounted for the test
//!   and always unmounted again by its `Drop`, even when the test panics.
//! * [`memory_kib`]: `VmRSS` and `VmHWM` of a process from `/proc/PID/status`.
//! * [`RawClient`]: QUIC + the relay's authentication (docs/protocol.md §15.2) with a
//!   node's own keys, then single requests whose body side the test controls.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use dossier_bundle::{FacilityId, FacilityKeys};
use dossier_wire::{ClientMessage, ServerMessage};

use crate::RelayProcess;

/// A small file system mounted for one test; unmounted (and its image removed) on drop.
pub struct SmallDisk {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// `ext4` (loop device) or `tmpfs`.
    pub kind: &'static str,
    image: Option<PathBuf>,
    /// Holds the mount point and the image; removed after unmounting.
    _dir: Option<tempfile::TempDir>,
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl SmallDisk {
    /// Mounts a file system of `mib` MiB at `dir` (created): ext4 on a loop device (image
    /// `dir` + `.img`, no blocks reserved for root), else tmpfs. `Err` says why neither
    /// worked (not root, no loop devices, no mount permission): the caller skips.
    pub fn mount(dir: &Path, mib: u64) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".into());
        }
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mount = dir.to_str().ok_or("mount point is not UTF-8")?.to_owned();
        let image = dir.with_extension("img");
        let img = image.to_str().ok_or("image path is not UTF-8")?.to_owned();
        let ext4 = (|| {
            let f = fs::File::create(&image).map_err(|e| e.to_string())?;
            f.set_len(mib << 20).map_err(|e| e.to_string())?;
            drop(f);
            sh("mkfs.ext4", &["-q", "-F", "-m", "0", &img])?;
            sh("mount", &["-o", "loop", &img, &mount])
        })();
        match ext4 {
            Ok(()) => Ok(Self {
                mount: dir.to_path_buf(),
                kind: "ext4",
                image: Some(image),
                _dir: None,
            }),
            Err(why) => {
                let _ = fs::remove_file(&image);
                let size = format!("size={mib}m");
                sh("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &mount])
                    .map_err(|tmpfs| format!("ext4 on a loop device: {why}; tmpfs: {tmpfs}"))?;
                Ok(Self {
                    mount: dir.to_path_buf(),
                    kind: "tmpfs",
                    image: None,
                    _dir: None,
                })
            }
        }
    }

    /// [`mount`](Self::mount) in a new temporary directory of its own, so that it can be
    /// created before (and so dropped after) everything that uses it.
    pub fn mount_temp(mib: u64) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("dossier-small-disk-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut disk = Self::mount(&dir.path().join("mnt"), mib)?;
        disk._dir = Some(dir);
        Ok(disk)
    }

    /// Bytes still free for an unprivileged writer (`df`'s "Avail").
    pub fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.mount)
            .output()
            .expect("running df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df prints the free bytes")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let mount = self.mount.to_string_lossy().into_owned();
        if sh("umount", &[&mount]).is_err() {
            // Something still holds it (a relay that did not stop): detach it anyway.
            let _ = sh("umount", &["-l", &mount]);
        }
        if let Some(image) = &self.image {
            let _ = fs::remove_file(image);
        }
    }
}

/// Moves a stopped relay's data directory to `to` (a directory on another file system),
/// keeping its 0700 mode, and points `relay` at it.
pub fn move_relay_data(relay: &mut RelayProcess, to: &Path) {
    assert!(!relay.is_running(), "move the data of a stopped relay");
    crate::attacks::copy_tree(&relay.data, to);
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
    fs::remove_dir_all(&relay.data).expect("removing the old data directory");
    relay.data = to.to_path_buf();
}

/// `(VmRSS, VmHWM)` of process `pid` in KiB, from `/proc/PID/status`.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Total size of the regular files under `dir` (recursively), in bytes.
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Accepts the relay's self-signed certificate without a pin (the tests' own relay), but
/// still checks the TLS 1.3 handshake signature.
#[derive(Debug)]
struct AnyRelayCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyRelayCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An authenticated relay connection whose requests the test drives by hand.
pub struct RawClient {
    endpoint: quinn::Endpoint,
    /// The connection (for opening request streams).
    pub conn: quinn::Connection,
}

impl RawClient {
    /// Connects to `addr` and authenticates as `facility` with `keys` (its enrolled keys).
    /// `stream_window` is how many bytes the relay may send ahead on one stream before this
    /// client reads them.
    pub async fn connect(
        addr: &str,
        facility: &str,
        keys: &FacilityKeys,
        stream_window: u32,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyRelayCert(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"dossier-relay/1".to_vec()];
        let quic =
            quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport
            .stream_receive_window(quinn::VarInt::from_u32(stream_window))
            .receive_window(quinn::VarInt::from_u32(stream_window.saturating_mul(4)))
            .keep_alive_interval(Some(Duration::from_secs(2)))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(Duration::from_secs(120)).expect("idle timeout"),
            ));
        client.transport_config(Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("address"))
            .map_err(|e| e.to_string())?;
        endpoint.set_default_client_config(client);
        let conn = endpoint
            .connect(
                addr.parse().map_err(|e| format!("{addr}: {e}"))?,
                "dossier-relay",
            )
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let mut exporter = [0u8; dossier_bundle::relay_auth::EXPORTER_BYTES];
        conn.export_keying_material(&mut exporter, dossier_wire::AUTH_EXPORTER_LABEL, b"")
            .map_err(|_| "no TLS exporter".to_owned())?;
        let id = FacilityId::parse(facility).map_err(|e| e.to_string())?;
        let signature = dossier_bundle::relay_auth::sign(keys, &exporter, &id);
        let auth = ClientMessage::Auth {
            version: dossier_wire::PROTOCOL_VERSION,
            facility: facility.to_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        write_message(&mut send, &auth).await?;
        let _ = send.finish();
        match read_message(&mut recv).await? {
            ServerMessage::Welcome { .. } => Ok(Self { endpoint, conn }),
            other => Err(format!("not welcomed: {other:?}")),
        }
    }

    /// Opens a request stream and sends `msg` on it.
    pub async fn request(
        &self,
        msg: &ClientMessage,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
        write_message(&mut send, msg).await?;
        Ok((send, recv))
    }

    /// Closes the connection and waits for the endpoint to go idle (at most a second).
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// Writes one frame.
pub async fn write_message(
    send: &mut quinn::SendStream,
    msg: &ClientMessage,
) -> Result<(), String> {
    let frame = dossier_wire::encode(msg).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Reads one frame (only its bytes: what follows stays in the stream).
pub async fn read_message(recv: &mut quinn::RecvStream) -> Result<ServerMessage, String> {
    let mut head = [0u8; 4];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    let len = u32::from_be_bytes(head) as usize;
    if len == 0 || len > dossier_wire::MAX_FRAME_BYTES {
        return Err(format!("frame length {len}"));
    }
    let mut frame = head.to_vec();
    frame.resize(4 + len, 0);
    recv.read_exact(&mut frame[4..])
        .await
        .map_err(|e| e.to_string())?;
    dossier_wire::decode(&frame).map_err(|e| e.to_string())
}
