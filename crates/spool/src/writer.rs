//! [`SpoolWriter`]: one body file written front to back, resumable, fsynced at the end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::aligned::AlignedBuf;
use crate::direct::{Access, open_direct};

/// Block size for direct I/O: file offsets, write lengths and buffer addresses are
/// multiples of it. 4096 covers every common logical block size (512 and 4096).
pub const BLOCK: usize = 4096;

/// Bytes gathered before one write to the disk.
pub const BUFFER_BYTES: usize = 1 << 20;

/// How a writer puts bytes on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// `O_DIRECT` if the file system accepts it, else buffered.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// Writes one body file front to back. See the crate docs.
pub struct SpoolWriter {
    /// The file opened normally: reads, the tail of an abandoned body, the fallback.
    plain: File,
    /// The file opened for direct writes (or `plain` again when not direct).
    file: File,
    direct: bool,
    buf: AlignedBuf,
    /// Bytes written to the file (a multiple of [`BLOCK`] while direct).
    on_disk: u64,
}

impl std::fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolWriter")
            .field("direct", &self.direct)
            .field("on_disk", &self.on_disk)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl SpoolWriter {
    /// Opens `path` to continue a body of at most `limit` bytes, creating it (mode 0600)
    /// if missing, with direct I/O where possible. Bytes already in the file are kept if
    /// they can be a prefix of the body (all of them; none if there are more than
    /// `limit`); a partial last block is read back into the buffer so that direct writes
    /// continue on a block boundary. What is kept is fsynced before this returns, so
    /// [`len`](Self::len) may be promised to a peer. Returns the writer and whether the
    /// file was created (the caller then syncs its directory).
    pub fn resume(path: &Path, limit: u64) -> io::Result<(Self, bool)> {
        Self::resume_with(path, limit, WriteMode::Direct)
    }

    /// [`resume`](Self::resume) with an explicit [`WriteMode`].
    pub fn resume_with(path: &Path, limit: u64, mode: WriteMode) -> io::Result<(Self, bool)> {
        let (plain, created) = open_plain(path)?;
        let mut held = plain.metadata()?.len();
        if held > limit {
            held = 0;
        }
        plain.set_len(held)?;
        plain.sync_all()?;
        let direct_file = match mode {
            WriteMode::Direct => open_direct(path, Access::Write).ok(),
            WriteMode::Buffered => None,
        };
        let direct = direct_file.is_some();
        let file = match direct_file {
            Some(f) => f,
            None => plain.try_clone()?,
        };
        let mut buf = AlignedBuf::new(BUFFER_BYTES, BLOCK);
        let mut on_disk = held;
        if direct {
            let tail = (held % BLOCK as u64) as usize;
            on_disk = held - tail as u64;
            let mut block = vec![0u8; tail];
            plain.read_exact_at(&mut block, on_disk)?;
            buf.fill_from(&block);
        }
        Ok((
            Self {
                plain,
                file,
                direct,
                buf,
                on_disk,
            },
            created,
        ))
    }

    /// Whether bytes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes of the body accepted so far (on disk or waiting in the buffer).
    pub fn len(&self) -> u64 {
        self.on_disk + self.buf.len() as u64
    }

    /// Whether nothing has been accepted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.buf.fill_from(bytes);
            bytes = &bytes[n..];
            if self.buf.room() == 0 {
                self.write_blocks()?;
            }
        }
        Ok(())
    }

    /// Writes the buffered whole blocks (all buffered bytes when not direct), keeping a
    /// partial last block in memory.
    pub fn write_blocks(&mut self) -> io::Result<()> {
        let whole = if self.direct {
            self.buf.len() - self.buf.len() % BLOCK
        } else {
            self.buf.len()
        };
        if whole == 0 {
            return Ok(());
        }
        match self.file.write_all_at(self.buf.head(whole), self.on_disk) {
            Ok(()) => {}
            // Some file systems accept O_DIRECT at open and refuse the writes.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.fall_back_to_buffered()?;
                self.file.write_all_at(self.buf.head(whole), self.on_disk)?;
            }
            Err(e) => return Err(e),
        }
        self.on_disk += whole as u64;
        self.buf.consume(whole);
        Ok(())
    }

    /// Writes everything, trims the padding, fsyncs; the file then holds exactly
    /// [`len`](Self::len) bytes, durably. Returns that length.
    pub fn finish(mut self) -> io::Result<u64> {
        self.write_blocks()?;
        let tail = self.buf.len();
        if tail > 0 {
            // Only while direct: a partial block, written padded, then cut.
            let padded = tail.div_ceil(BLOCK) * BLOCK;
            let at = self.on_disk;
            self.file.write_all_at(self.buf.padded(padded), at)?;
            self.on_disk += tail as u64;
            self.buf.consume(tail);
            self.file.set_len(self.on_disk)?;
        }
        self.file.sync_all()?;
        Ok(self.on_disk)
    }

    /// Forgets the bytes not yet written, so that dropping the writer writes nothing more:
    /// for a writer whose body another writer has taken over.
    pub fn abandon(mut self) {
        let held = self.buf.len();
        self.buf.consume(held);
    }

    fn fall_back_to_buffered(&mut self) -> io::Result<()> {
        self.file = self.plain.try_clone()?;
        self.direct = false;
        Ok(())
    }
}

impl Drop for SpoolWriter {
    /// An abandoned body (a dropped connection) keeps what arrived for the next resume:
    /// the buffered whole blocks, and a partial last block through the page cache.
    /// Errors are ignored: the next [`resume`](SpoolWriter::resume) measures the file.
    fn drop(&mut self) {
        if self.buf.len() > 0 && self.write_blocks().is_ok() {
            let tail = self.buf.len();
            if tail > 0
                && self
                    .plain
                    .write_all_at(self.buf.head(tail), self.on_disk)
                    .is_ok()
            {
                self.on_disk += tail as u64;
                self.buf.consume(tail);
            }
        }
    }
}

fn open_plain(path: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).mode(0o600);
    match options.open(path) {
        Ok(f) => Ok((f, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok((options.create_new(true).open(path)?, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn both_modes() -> [WriteMode; 2] {
        [WriteMode::Direct, WriteMode::Buffered]
    }

    #[test]
    fn a_body_written_in_odd_pieces_comes_back_exactly() {
        for mode in both_modes() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("body");
            let body = pattern(3 * BUFFER_BYTES + 12_345, 1);
            let (mut w, created) =
                SpoolWriter::resume_with(&path, body.len() as u64, mode).unwrap();
            assert!(created);
            for piece in body.chunks(70_001) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.len(), body.len() as u64);
            assert_eq!(w.finish().unwrap(), body.len() as u64);
            assert_eq!(std::fs::read(&path).unwrap(), body, "{mode:?}");
        }
    }

    #[test]
    fn a_dropped_writer_keeps_every_byte_and_resumes_after_it() {
        for mode in both_modes() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("body");
            let body = pattern(2 * BUFFER_BYTES + 5_000, 2);
            let cut = BUFFER_BYTES + 7_777;
            let (mut w, _) = SpoolWriter::resume_with(&path, body.len() as u64, mode).unwrap();
            let direct = w.is_direct();
            w.write_all(&body[..cut]).unwrap();
            drop(w);

            let (mut w, created) =
                SpoolWriter::resume_with(&path, body.len() as u64, mode).unwrap();
            assert!(!created);
            let kept = w.len() as usize;
            assert_eq!(kept, cut, "direct: {direct}");
            assert_eq!(w.is_direct(), direct);
            assert_eq!(std::fs::read(&path).unwrap(), body[..kept]);
            w.write_all(&body[kept..]).unwrap();
            w.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), body);
        }
    }

    #[test]
    fn an_abandoned_writer_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let body = pattern(3 * BLOCK, 5);
        let (mut w, _) = SpoolWriter::resume(&path, body.len() as u64).unwrap();
        w.write_all(&body[..BLOCK + 10]).unwrap();
        w.write_blocks().unwrap();
        let direct = w.is_direct();
        w.abandon();
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            on_disk,
            if direct {
                BLOCK as u64
            } else {
                BLOCK as u64 + 10
            }
        );
    }

    #[test]
    fn more_bytes_than_the_body_can_hold_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        std::fs::write(&path, pattern(10_000, 3)).unwrap();
        let (w, created) = SpoolWriter::resume(&path, 9_999).unwrap();
        assert!(!created);
        assert_eq!(w.len(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn an_empty_body_and_a_sub_block_body() {
        for mode in both_modes() {
            for len in [0usize, 1, BLOCK - 1, BLOCK, BLOCK + 1] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("body");
                let body = pattern(len, 4);
                let (mut w, _) = SpoolWriter::resume_with(&path, len as u64, mode).unwrap();
                w.write_all(&body).unwrap();
                assert_eq!(w.finish().unwrap(), len as u64);
                assert_eq!(std::fs::read(&path).unwrap(), body, "{mode:?} {len}");
            }
        }
    }

    #[test]
    fn new_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let (w, _) = SpoolWriter::resume(&path, 10).unwrap();
        drop(w);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
