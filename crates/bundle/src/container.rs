//! The container inside the age layer: a POSIX ustar stream (docs/protocol.md §9).
//!
//! Order is fixed: one regular-file entry per part, named `parts/<part path>`, then
//! `manifest.json`, then `manifest.sig` (64 raw bytes), then the end-of-archive marker. The
//! manifest comes last because sealing is one pass: a part's hash is known only after it has
//! been streamed. Any ustar reader (`tar -x`) unpacks the container; dossier's own reader
//! additionally refuses links, devices, unexpected names and anything out of order.

use std::io::{self, Read, Write};
use std::sync::{Arc, mpsc};

use sha2::{Digest, Sha256};

use crate::limits::{MAX_MANIFEST_BYTES, MAX_PARTS, MAX_TRAILING_PADDING};
use crate::manifest::PartPath;

/// Directory holding parts inside the container.
pub const PARTS_DIR: &str = "parts/";
/// Name of the manifest entry.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the detached signature entry.
pub const SIGNATURE_NAME: &str = "manifest.sig";

/// Whether `parts/<path>` can be stored in a ustar header: the whole name fits the 100-byte
/// name field, or it splits at a `/` into a prefix of at most 155 bytes and a name of at
/// most 100 (POSIX.1-1988 ustar; docs/protocol.md §9).
pub fn fits_ustar(path: &PartPath) -> bool {
    let full = format!("{PARTS_DIR}{path}");
    let bytes = full.as_bytes();
    if bytes.len() <= 100 {
        return true;
    }
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'/' && i <= 155 && bytes.len() - i - 1 <= 100 && i + 1 < bytes.len())
}

/// Writes the container to `W` (normally an age `StreamWriter`).
pub(crate) struct ContainerWriter<W: Write> {
    tar: tar::Builder<W>,
    mtime: u64,
}

/// Outcome of streaming one part into the container.
pub(crate) enum PartWrite {
    /// Written; the SHA-256 of the bytes.
    Done([u8; 32]),
    /// The source produced a different number of bytes than announced.
    LengthChanged,
}

impl<W: Write> ContainerWriter<W> {
    pub(crate) fn new(out: W, mtime: u64) -> Self {
        Self {
            tar: tar::Builder::new(out),
            mtime,
        }
    }

    fn header(&self, name: &str, size: u64) -> io::Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        // Never echo the name in the error: it may be a patient's file name.
        h.set_path(name)
            .map_err(|_| io::Error::other("an entry name does not fit a ustar header"))?;
        h.set_size(size);
        h.set_mode(0o600);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        Ok(h)
    }

    /// Streams exactly `length` bytes of `source` as `parts/<path>`, hashing as it goes.
    ///
    /// SHA-256 runs on a second thread fed 1 MiB chunks through a bounded channel, so hashing
    /// overlaps encryption (measured: sealing is otherwise ~15% slower than plain age).
    /// Memory stays bounded: at most [`HASH_QUEUE`] + 2 chunks exist at once.
    pub(crate) fn append_part<R: Read>(
        &mut self,
        path: &PartPath,
        length: u64,
        mut source: R,
    ) -> io::Result<PartWrite> {
        let header = self.header(&format!("{PARTS_DIR}{path}"), length)?;
        let tar = &mut self.tar;
        let (count, digest) = std::thread::scope(|scope| -> io::Result<(u64, [u8; 32])> {
            let (to_hasher, chunks) = mpsc::sync_channel::<Arc<Vec<u8>>>(HASH_QUEUE);
            let (recycle, recycled) = mpsc::channel::<Arc<Vec<u8>>>();
            let hasher = scope.spawn(move || {
                let mut h = Sha256::new();
                for chunk in chunks {
                    h.update(chunk.as_slice());
                    let _ = recycle.send(chunk);
                }
                <[u8; 32]>::from(h.finalize())
            });
            let mut tee = TeeToHasher {
                inner: (&mut source).take(length),
                to_hasher: Some(to_hasher),
                recycled,
                current: Arc::new(Vec::new()),
                pos: 0,
                count: 0,
            };
            let written = tar.append(&header, &mut tee);
            let count = tee.count;
            drop(tee);
            let digest = hasher
                .join()
                .map_err(|_| io::Error::other("hashing thread panicked"))?;
            written.map(|()| (count, digest))
        })?;
        if count != length {
            return Ok(PartWrite::LengthChanged);
        }
        let mut probe = [0u8; 1];
        if source.read(&mut probe)? != 0 {
            return Ok(PartWrite::LengthChanged);
        }
        Ok(PartWrite::Done(digest))
    }

    /// Appends a small in-memory file (the manifest or its signature).
    pub(crate) fn append_small(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let header = self.header(name, bytes.len() as u64)?;
        self.tar.append(&header, bytes)
    }

    /// Writes the end-of-archive marker and hands back the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Chunks handed to the hashing thread while sealing.
const HASH_CHUNK: usize = 1024 * 1024;
/// Chunks that may wait for the hashing thread.
const HASH_QUEUE: usize = 4;

/// Reads `inner` in [`HASH_CHUNK`]s, sends each chunk to the hashing thread and serves the
/// same bytes to the tar writer. Chunk buffers come back from the hasher for reuse.
struct TeeToHasher<R> {
    inner: R,
    to_hasher: Option<mpsc::SyncSender<Arc<Vec<u8>>>>,
    recycled: mpsc::Receiver<Arc<Vec<u8>>>,
    current: Arc<Vec<u8>>,
    pos: usize,
    count: u64,
}

impl<R: Read> TeeToHasher<R> {
    fn refill(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.current);
        let mut vec = match Arc::try_unwrap(buf) {
            Ok(v) => v,
            Err(shared) => {
                buf = shared;
                drop(buf);
                self.recycled
                    .try_recv()
                    .ok()
                    .and_then(|a| Arc::try_unwrap(a).ok())
                    .unwrap_or_default()
            }
        };
        vec.resize(HASH_CHUNK, 0);
        let mut filled = 0;
        while filled < vec.len() {
            match self.inner.read(&mut vec[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        vec.truncate(filled);
        self.count += filled as u64;
        self.current = Arc::new(vec);
        self.pos = 0;
        if filled > 0 {
            if let Some(tx) = &self.to_hasher {
                tx.send(Arc::clone(&self.current))
                    .map_err(|_| io::Error::other("hashing thread stopped"))?;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TeeToHasher<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len() {
            self.refill()?;
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<R> Drop for TeeToHasher<R> {
    fn drop(&mut self) {
        // Closing the channel ends the hashing thread's loop.
        self.to_hasher.take();
    }
}

/// Where the parts go while a container is read. The verify pass discards them; the
/// extract pass writes them to a staging area the caller releases only after every check.
pub(crate) trait PartVisitor {
    /// Receives part `index` as a stream (normally with [`copy_part`]).
    fn visit(
        &mut self,
        index: usize,
        path: &PartPath,
        content: &mut dyn Read,
    ) -> Result<(), ContainerError>;
}

/// What reading a container found.
pub(crate) struct ContainerContents {
    /// Each part as seen: path, length, SHA-256.
    pub parts: Vec<(PartPath, u64, [u8; 32])>,
    /// `manifest.json` bytes.
    pub manifest: Vec<u8>,
    /// `manifest.sig` bytes.
    pub signature: [u8; 64],
}

/// Why a container was refused. All are "the bundle is not what the sender made".
#[derive(Debug, thiserror::Error)]
pub(crate) enum ContainerError {
    #[error("{0}")]
    Structure(&'static str),
    #[error("bundle holds more than the allowed number of parts")]
    TooManyParts,
    #[error("bad part path: {0}")]
    BadPath(crate::manifest::ManifestError),
    /// The decrypting reader failed: truncation or tampering of the age payload, or I/O.
    #[error("reading the bundle failed: {0}")]
    Read(io::Error),
    /// The visitor failed (e.g. disk full while staging).
    #[error("writing a part failed: {0}")]
    Visit(io::Error),
}

/// Reads a whole container from `input`, handing parts to `visitor` (docs/protocol.md §9.2).
pub(crate) fn read_container<R: Read>(
    input: R,
    visitor: &mut dyn PartVisitor,
) -> Result<ContainerContents, ContainerError> {
    use ContainerError::*;
    let mut archive = tar::Archive::new(input);
    let mut parts = Vec::new();
    let mut manifest: Option<Vec<u8>> = None;
    let mut signature: Option<[u8; 64]> = None;
    {
        let entries = archive.entries().map_err(Read)?;
        for entry in entries {
            let mut entry = entry.map_err(Read)?;
            if signature.is_some() {
                return Err(Structure("entry after the manifest signature"));
            }
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(Structure(
                    "container entry is not a regular file (links and devices are refused)",
                ));
            }
            let name = String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|_| Structure("container entry name is not UTF-8"))?;
            let size = entry.size();
            if let Some(rest) = name.strip_prefix(PARTS_DIR) {
                if manifest.is_some() {
                    return Err(Structure("part after the manifest"));
                }
                if parts.len() >= MAX_PARTS {
                    return Err(TooManyParts);
                }
                let index = parts.len();
                let path = PartPath::parse(rest, index).map_err(BadPath)?;
                let (count, digest) = if size >= THREADED_HASH_MIN {
                    visit_hashing_aside(&mut entry, index, &path, visitor)?
                } else {
                    let mut hashing = HashingReader {
                        inner: &mut entry,
                        hasher: Sha256::new(),
                        count: 0,
                    };
                    visitor.visit(index, &path, &mut hashing)?;
                    // Drain anything the visitor left so the hash covers the whole entry.
                    io::copy(&mut hashing, &mut io::sink()).map_err(Read)?;
                    (hashing.count, hashing.hasher.finalize().into())
                };
                if count != size {
                    return Err(Structure("part shorter than its header says"));
                }
                parts.push((path, size, digest));
            } else if name == MANIFEST_NAME {
                if manifest.is_some() {
                    return Err(Structure("two manifests"));
                }
                if size > MAX_MANIFEST_BYTES as u64 {
                    return Err(Structure("manifest larger than the limit"));
                }
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf).map_err(Read)?;
                manifest = Some(buf);
            } else if name == SIGNATURE_NAME {
                if manifest.is_none() {
                    return Err(Structure("signature before the manifest"));
                }
                if size != 64 {
                    return Err(Structure("signature is not 64 bytes"));
                }
                let mut buf = [0u8; 64];
                entry.read_exact(&mut buf).map_err(Read)?;
                signature = Some(buf);
            } else {
                return Err(Structure("unexpected entry in the container"));
            }
        }
    }
    let manifest = manifest.ok_or(Structure("no manifest: the bundle is incomplete"))?;
    let signature = signature.ok_or(Structure("no signature: the bundle is incomplete"))?;
    // Read the rest of the plaintext to its end: this makes the age layer check its final
    // chunk (truncation) and refuses data smuggled after the end-of-archive marker.
    let mut rest = archive.into_inner().take(MAX_TRAILING_PADDING + 1);
    let mut buf = [0u8; 8192];
    let mut total = 0u64;
    loop {
        let n = rest.read(&mut buf).map_err(Read)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_TRAILING_PADDING || buf[..n].iter().any(|b| *b != 0) {
            return Err(Structure("data after the end of the container"));
        }
    }
    Ok(ContainerContents {
        parts,
        manifest,
        signature,
    })
}

/// Parts at least this large are hashed on a second thread while they are read.
const THREADED_HASH_MIN: u64 = 4 * 1024 * 1024;

/// Hands part `index` (all of `entry`) to `visitor` while a second thread computes its
/// SHA-256, as sealing does: opening a large part otherwise runs decryption and hashing —
/// the two largest costs, about equal — one after the other on one core. Memory stays
/// bounded by [`HASH_QUEUE`] chunks of about [`HASH_CHUNK`]. Returns the bytes read and
/// the digest.
fn visit_hashing_aside(
    entry: &mut dyn Read,
    index: usize,
    path: &PartPath,
    visitor: &mut dyn PartVisitor,
) -> Result<(u64, [u8; 32]), ContainerError> {
    std::thread::scope(|scope| {
        let (to_hasher, chunks) = mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (recycle, recycled) = mpsc::channel::<Vec<u8>>();
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for chunk in chunks {
                h.update(&chunk);
                let _ = recycle.send(chunk);
            }
            <[u8; 32]>::from(h.finalize())
        });
        let mut tee = TeeFromReader {
            inner: entry,
            pending: Vec::with_capacity(HASH_CHUNK),
            to_hasher,
            recycled,
            count: 0,
        };
        let visited = visitor.visit(index, path, &mut tee).and_then(|()| {
            // Drain anything the visitor left so the hash covers the whole entry.
            io::copy(&mut tee, &mut io::sink()).map_err(ContainerError::Read)?;
            tee.hand_over().map_err(ContainerError::Read)
        });
        let count = tee.count;
        drop(tee); // closes the channel: the hasher finishes
        let digest = hasher
            .join()
            .map_err(|_| ContainerError::Read(io::Error::other("the hashing thread panicked")))?;
        visited.map(|()| (count, digest))
    })
}

/// Serves reads from `inner` and collects the same bytes into chunks for the hashing
/// thread; chunk buffers come back from the hasher for reuse.
struct TeeFromReader<'a> {
    inner: &'a mut dyn Read,
    pending: Vec<u8>,
    to_hasher: mpsc::SyncSender<Vec<u8>>,
    recycled: mpsc::Receiver<Vec<u8>>,
    count: u64,
}

impl TeeFromReader<'_> {
    /// Sends the bytes collected so far to the hasher.
    fn hand_over(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(HASH_CHUNK));
        next.clear();
        let full = std::mem::replace(&mut self.pending, next);
        self.to_hasher
            .send(full)
            .map_err(|_| io::Error::other("the hashing thread stopped"))
    }
}

impl Read for TeeFromReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.pending.extend_from_slice(&out[..n]);
        self.count += n as u64;
        if self.pending.len() >= HASH_CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }
}

/// A visitor that reads every part to its end and keeps nothing (the verify pass).
pub(crate) struct Discard;

impl PartVisitor for Discard {
    fn visit(
        &mut self,
        _: usize,
        _: &PartPath,
        content: &mut dyn Read,
    ) -> Result<(), ContainerError> {
        copy_part(content, &mut io::sink()).map(|_| ())
    }
}

/// Reads a plaintext container from `data`, discarding parts: the fuzzing entry point for
/// the container reader (crates/fuzz). Returns whether the container was accepted.
#[doc(hidden)]
pub fn fuzz_read_container(data: &[u8]) -> bool {
    read_container(data, &mut Discard).is_ok()
}

/// Copies `content` into `out`, telling a failure to read the bundle (tampering,
/// truncation) apart from a failure to write the part (disk full, permissions).
pub(crate) fn copy_part<W: Write + ?Sized>(
    content: &mut dyn Read,
    out: &mut W,
) -> Result<u64, ContainerError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match content.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ContainerError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(ContainerError::Visit)?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ContainerWriter::new(Vec::new(), 0);
        for (p, data) in parts {
            let path = PartPath::parse(p, 0).unwrap();
            assert!(matches!(
                w.append_part(&path, data.len() as u64, *data).unwrap(),
                PartWrite::Done(_)
            ));
        }
        w.append_small(MANIFEST_NAME, b"{}").unwrap();
        w.append_small(SIGNATURE_NAME, &[0u8; 64]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = build(&[("a.json", b"hello"), ("d/b.bin", &[1, 2, 3])]);
        let c = read_container(&bytes[..], &mut Discard).unwrap();
        assert_eq!(c.parts.len(), 2);
        assert_eq!(c.parts[0].1, 5);
        assert_eq!(c.parts[0].2, <[u8; 32]>::from(Sha256::digest(b"hello")));
        assert_eq!(c.manifest, b"{}");
    }

    #[test]
    fn large_parts_hashed_aside_match_inline_hashing_whatever_the_visitor_reads() {
        let big: Vec<u8> = (0..(THREADED_HASH_MIN as usize * 2 + 12_345))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let exact = THREADED_HASH_MIN as usize;
        let bytes = build(&[
            ("big.bin", &big),
            ("small.txt", b"hi"),
            ("exact.bin", &big[..exact]),
        ]);
        let c = read_container(&bytes[..], &mut Discard).unwrap();
        assert_eq!(c.parts[0].1, big.len() as u64);
        assert_eq!(c.parts[0].2, <[u8; 32]>::from(Sha256::digest(&big)));
        assert_eq!(c.parts[1].2, <[u8; 32]>::from(Sha256::digest(b"hi")));
        assert_eq!(
            c.parts[2].2,
            <[u8; 32]>::from(Sha256::digest(&big[..exact]))
        );

        // A visitor that reads a little and stops: the rest is drained into the hash.
        struct FirstBytes(Vec<u8>);
        impl PartVisitor for FirstBytes {
            fn visit(
                &mut self,
                _: usize,
                _: &PartPath,
                content: &mut dyn Read,
            ) -> Result<(), ContainerError> {
                content
                    .take(3)
                    .read_to_end(&mut self.0)
                    .map_err(ContainerError::Read)?;
                Ok(())
            }
        }
        let mut first = FirstBytes(Vec::new());
        let c = read_container(&bytes[..], &mut first).unwrap();
        assert_eq!(c.parts[0].2, <[u8; 32]>::from(Sha256::digest(&big)));
        assert_eq!(&first.0[..3], &big[..3]);

        // A large part cut short is refused, not hashed as complete.
        let cut = &bytes[..bytes.len() / 3];
        assert!(read_container(cut, &mut Discard).is_err());
    }

    #[test]
    fn fits_ustar_agrees_with_the_tar_writer() {
        let mut cases = Vec::new();
        for a in [1usize, 50, 93, 94, 99, 100, 120, 148, 149, 150, 160] {
            for b in [1usize, 20, 60, 99, 100] {
                cases.push(format!("{}/{}", "a".repeat(a.min(100)), "b".repeat(b)));
                cases.push(format!(
                    "{}/{}/{}",
                    "d".repeat(a.min(100)),
                    "e".repeat(40),
                    "f".repeat(b)
                ));
            }
        }
        cases.push("x".repeat(94));
        cases.push("x".repeat(95));
        for c in cases {
            let Ok(path) = PartPath::parse(&c, 0) else {
                continue;
            };
            let mut h = tar::Header::new_ustar();
            let tar_ok = h.set_path(format!("{PARTS_DIR}{path}")).is_ok();
            assert_eq!(fits_ustar(&path), tar_ok, "{} bytes: {c}", c.len());
        }
    }

    #[test]
    fn length_change_is_detected() {
        let mut w = ContainerWriter::new(Vec::new(), 0);
        let path = PartPath::parse("x", 0).unwrap();
        assert!(matches!(
            w.append_part(&path, 10, &b"short"[..]).unwrap(),
            PartWrite::LengthChanged
        ));
        let mut w = ContainerWriter::new(Vec::new(), 0);
        assert!(matches!(
            w.append_part(&path, 2, &b"longer"[..]).unwrap(),
            PartWrite::LengthChanged
        ));
    }

    fn raw_entry(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        // Write the name field directly: `set_path` itself refuses `..`.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_entry_type(kind);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn refuses_links_traversal_and_strangers() {
        for (name, kind) in [
            ("parts/link", tar::EntryType::Symlink),
            ("parts/hard", tar::EntryType::Link),
            ("parts/dir", tar::EntryType::Directory),
            ("parts/../escape", tar::EntryType::Regular),
            ("other.txt", tar::EntryType::Regular),
        ] {
            let bytes = raw_entry(name, kind, b"");
            assert!(read_container(&bytes[..], &mut Discard).is_err(), "{name}");
        }
    }

    #[test]
    fn refuses_trailing_data_and_missing_signature() {
        let mut bytes = build(&[("a", b"x")]);
        bytes.extend_from_slice(&[1u8; 512]);
        assert!(read_container(&bytes[..], &mut Discard).is_err());
        let mut w = ContainerWriter::new(Vec::new(), 0);
        w.append_small(MANIFEST_NAME, b"{}").unwrap();
        let bytes = w.finish().unwrap();
        assert!(read_container(&bytes[..], &mut Discard).is_err());
    }
}
