//! Moving bundle bodies between disk and a QUIC stream, in pipelines that keep both cores
//! busy and memory bounded.
//!
//! Upload: a blocking thread reads the outbox copy in [`CHUNK_BYTES`] pieces and hands them
//! to the async side, which passes each to QUIC as it is (`write_chunk`, no copy).
//!
//! Download: the async side hands each received piece to a writer thread, which appends it
//! to the partial file (through [`SpoolWriter`], around the page cache where possible) and
//! hashes it, and passes it on to a verifier thread running pass 1 of opening on the
//! stream as it arrives. When the last byte is in, the file is durable, its SHA-256 is
//! known and so is the verdict — without reading a gigabyte back from disk twice, as
//! checking after the download did (it made receiving 3–4× slower than the network).
//! A download that stops early leaves the bytes received in the file; the next attempt
//! (even in another process) resumes after them, and its verifier reads that prefix from
//! the file before the new bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;

use bytes::{Bytes, BytesMut};
use dossier_spool::SpoolWriter;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Largest piece handed between threads.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Pieces in flight between two stages.
const DEPTH: usize = 4;

/// Reads `len` bytes of `path` starting at `from` on a blocking thread. The receiver
/// yields the pieces in order, then closes; a read error (or a file shorter than
/// announced) arrives as the last item.
pub fn read_chunks(path: &Path, from: u64, len: u64) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(DEPTH);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let result = (|| -> io::Result<()> {
            let mut f = File::open(&path)?;
            f.seek(SeekFrom::Start(from))?;
            let mut left = len;
            while left > 0 {
                let want = left.min(CHUNK_BYTES as u64) as usize;
                let mut buf = BytesMut::zeroed(want);
                let mut filled = 0;
                while filled < want {
                    let n = f.read(&mut buf[filled..])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file is shorter than recorded",
                        ));
                    }
                    filled += n;
                }
                left -= want as u64;
                if tx.blocking_send(Ok(buf.freeze())).is_err() {
                    return Ok(()); // the uploader stopped
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// The async end of a download pipeline: where received bytes go.
pub struct DownloadSink {
    tx: Option<mpsc::Sender<Bytes>>,
    accepted: u64,
    resumed_from: u64,
}

impl DownloadSink {
    /// Bytes of the body held so far (on disk from earlier attempts, or handed over).
    pub fn held(&self) -> u64 {
        self.accepted
    }

    /// Where this pipeline started (bytes found on disk from an earlier process).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// Hands over the next bytes of the body. Fails only if the writer stopped (its error
    /// is reported by [`DownloadPipeline::finish`]).
    pub async fn accept(&mut self, bytes: Bytes) -> io::Result<()> {
        let n = bytes.len() as u64;
        let tx = self.tx.as_ref().ok_or_else(writer_gone)?;
        tx.send(bytes).await.map_err(|_| writer_gone())?;
        self.accepted += n;
        Ok(())
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the download writer stopped")
}

/// What a complete download produced.
#[derive(Debug)]
pub struct Downloaded<V> {
    /// Bytes in the file.
    pub length: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
    /// The verifier's verdict on exactly these bytes.
    pub verdict: V,
}

/// Length and SHA-256 of a body stored whole.
type Stored = (u64, [u8; 32]);

/// A running download pipeline (writer and verifier threads inside a thread scope).
pub struct DownloadPipeline<'scope, V> {
    /// Feed received bytes here.
    pub sink: DownloadSink,
    length: u64,
    writer: std::thread::ScopedJoinHandle<'scope, io::Result<Option<Stored>>>,
    verifier: std::thread::ScopedJoinHandle<'scope, V>,
}

impl<'scope, V: Send + 'scope> DownloadPipeline<'scope, V> {
    /// Opens (or resumes) `part` for a body of `length` bytes and starts the writer and
    /// the verifier, which gets a reader over the whole body from its first byte.
    pub fn start<'env, F>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        part: &Path,
        length: u64,
        verify: F,
    ) -> io::Result<Self>
    where
        F: FnOnce(&mut dyn Read) -> V + Send + 'scope,
    {
        let (spool, _created) = SpoolWriter::resume(part, length)?;
        let held = spool.len();
        let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
        let (vtx, vrx) = std_mpsc::sync_channel::<Bytes>(DEPTH);
        let prefix_path = part.to_path_buf();
        let writer = scope.spawn(move || write_and_hash(spool, &prefix_path, length, rx, vtx));
        let prefix = part.to_path_buf();
        let verifier = scope.spawn(move || {
            let mut body = BodyReader::new(prefix, held, vrx);
            verify(&mut body)
        });
        Ok(Self {
            sink: DownloadSink {
                tx: Some(tx),
                accepted: held,
                resumed_from: held,
            },
            length,
            writer,
            verifier,
        })
    }

    /// Ends the pipeline: `Ok(Some(..))` when the whole body arrived (the file is then
    /// fsynced and exactly `length` bytes long), `Ok(None)` when it stopped early (the
    /// bytes received stay in the file for the next attempt).
    pub fn finish(mut self) -> io::Result<Option<Downloaded<V>>> {
        self.sink.tx = None;
        let written = self
            .writer
            .join()
            .map_err(|_| io::Error::other("the download writer panicked"))?;
        let verdict = self
            .verifier
            .join()
            .map_err(|_| io::Error::other("the download verifier panicked"))?;
        Ok(written?.and_then(|(length, sha256)| {
            (length == self.length).then_some(Downloaded {
                length,
                sha256,
                verdict,
            })
        }))
    }
}

/// The writer thread: appends, hashes, forwards to the verifier. Returns the length and
/// hash once all `length` bytes are durable, `None` if the feed stopped before that.
fn write_and_hash(
    mut spool: SpoolWriter,
    part: &Path,
    length: u64,
    mut rx: mpsc::Receiver<Bytes>,
    verifier: std_mpsc::SyncSender<Bytes>,
) -> io::Result<Option<Stored>> {
    let mut hasher = Sha256::new();
    let held = spool.len();
    if held > 0 {
        let mut prefix = File::open(part)?.take(held);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = prefix.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    let mut verifier = Some(verifier);
    while let Some(bytes) = rx.blocking_recv() {
        if spool.len() + bytes.len() as u64 > length {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the relay sent more bytes than the bundle holds",
            ));
        }
        spool.write_all(&bytes)?;
        hasher.update(&bytes);
        // A verifier that already decided (e.g. not for this node) stops listening; the
        // body is still stored whole, for quarantine and the rejected receipt's hash.
        if let Some(v) = &verifier
            && v.send(bytes).is_err()
        {
            verifier = None;
        }
    }
    drop(verifier);
    if spool.len() != length {
        return Ok(None); // dropping the spool keeps what arrived
    }
    let length = spool.finish()?;
    Ok(Some((length, hasher.finalize().into())))
}

/// The verifier's view of the body: the prefix already in the file, then the pieces as
/// they arrive. Ends when the writer stops forwarding.
struct BodyReader {
    prefix_path: PathBuf,
    prefix: Option<io::Take<File>>,
    prefix_left: u64,
    rx: std_mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl BodyReader {
    fn new(prefix_path: PathBuf, prefix_len: u64, rx: std_mpsc::Receiver<Bytes>) -> Self {
        Self {
            prefix_path,
            prefix: None,
            prefix_left: prefix_len,
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.prefix_left > 0 {
            if self.prefix.is_none() {
                self.prefix = Some(File::open(&self.prefix_path)?.take(self.prefix_left));
            }
            let n = self.prefix.as_mut().map_or(Ok(0), |p| p.read(out))?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the partial download is shorter than recorded",
                ));
            }
            self.prefix_left -= n as u64;
            if self.prefix_left == 0 {
                self.prefix = None;
            }
            return Ok(n);
        }
        while self.current.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.current = b,
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn read_all(r: &mut dyn Read) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_read_the_file_in_order_and_report_a_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let b = body(3 * CHUNK_BYTES + 17);
        std::fs::write(&path, &b).unwrap();
        let mut rx = read_chunks(&path, 5, b.len() as u64 - 5);
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.extend_from_slice(&c.unwrap());
        }
        assert_eq!(got, b[5..]);
        let mut rx = read_chunks(&path, 0, b.len() as u64 + 1);
        let mut last = None;
        while let Some(c) = rx.recv().await {
            last = Some(c);
        }
        assert_eq!(
            last.unwrap().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    fn run_download(
        part: &Path,
        b: &[u8],
        pieces: &[std::ops::Range<usize>],
    ) -> Option<Downloaded<Vec<u8>>> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        std::thread::scope(|s| {
            let mut p = DownloadPipeline::start(s, part, b.len() as u64, |r| read_all(r)).unwrap();
            rt.block_on(async {
                for r in pieces {
                    p.sink
                        .accept(Bytes::copy_from_slice(&b[r.clone()]))
                        .await
                        .unwrap();
                }
            });
            p.finish().unwrap()
        })
    }

    #[test]
    fn a_download_is_stored_hashed_and_verified_in_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let b = body(2 * CHUNK_BYTES + 999);
        let done = run_download(
            &part,
            &b,
            &[0..1000, 1000..CHUNK_BYTES + 5, CHUNK_BYTES + 5..b.len()],
        )
        .expect("complete");
        assert_eq!(done.length, b.len() as u64);
        assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(&b)));
        assert_eq!(done.verdict, b, "the verifier saw every byte in order");
        assert_eq!(std::fs::read(&part).unwrap(), b);
    }

    #[test]
    fn an_interrupted_download_resumes_and_the_verifier_sees_the_prefix_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let b = body(CHUNK_BYTES + 12_345);
        assert!(
            run_download(&part, &b, &[0..50_000, 50_000..70_000]).is_none(),
            "stopped early"
        );
        assert_eq!(
            std::fs::read(&part).unwrap(),
            b[..70_000],
            "kept for resuming"
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let done = std::thread::scope(|s| {
            let mut p = DownloadPipeline::start(s, &part, b.len() as u64, |r| read_all(r)).unwrap();
            assert_eq!(p.sink.held(), 70_000);
            assert_eq!(p.sink.resumed_from(), 70_000);
            rt.block_on(async {
                p.sink
                    .accept(Bytes::copy_from_slice(&b[70_000..]))
                    .await
                    .unwrap();
            });
            p.finish().unwrap()
        })
        .expect("complete");
        assert_eq!(done.verdict, b);
        assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(&b)));
    }

    #[test]
    fn too_many_bytes_are_an_error_not_a_longer_file() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let b = body(5000);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let r = std::thread::scope(|s| {
            let mut p = DownloadPipeline::start(s, &part, 4000, |r| read_all(r)).unwrap();
            rt.block_on(async {
                let _ = p.sink.accept(Bytes::copy_from_slice(&b)).await;
            });
            p.finish()
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_verifier_that_stops_early_does_not_stop_the_download() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let b = body(3 * CHUNK_BYTES);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let done = std::thread::scope(|s| {
            let mut p = DownloadPipeline::start(s, &part, b.len() as u64, |r| {
                let mut first = [0u8; 10];
                r.read_exact(&mut first).unwrap();
                first
            })
            .unwrap();
            rt.block_on(async {
                for c in b.chunks(100_000) {
                    p.sink.accept(Bytes::copy_from_slice(c)).await.unwrap();
                }
            });
            p.finish().unwrap()
        })
        .expect("complete");
        assert_eq!(done.verdict, b[..10]);
        assert_eq!(std::fs::read(&part).unwrap(), b);
    }
}
