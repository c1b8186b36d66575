//! [`SpoolReader`]: a body file read around the page cache where possible.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use crate::aligned::AlignedBuf;
use crate::chunks::BufferPool;
use crate::direct::{Access, open_direct};
use crate::writer::{BLOCK, BUFFER_BYTES};

/// Reads a body file front to back (seekable, for resumed downloads) with `O_DIRECT`
/// where the file system allows, so that serving a large body does not copy it through
/// the page cache; plain reads otherwise.
pub struct SpoolReader {
    file: File,
    direct: bool,
    buf: AlignedBuf,
    /// File offset of the buffer's first byte (a multiple of [`BLOCK`]).
    buf_at: u64,
    /// Where the next read starts.
    pos: u64,
    /// Buffers for [`read_piece`](Self::read_piece), reused once the pieces are dropped.
    pool: BufferPool,
}

impl std::fmt::Debug for SpoolReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolReader")
            .field("direct", &self.direct)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl SpoolReader {
    /// Opens `path` for reading from its start.
    pub fn open(path: &Path) -> io::Result<Self> {
        let plain = File::open(path)?;
        let (file, direct) = match open_direct(path, Access::Read) {
            Ok(f) => (f, true),
            Err(_) => (plain, false),
        };
        Ok(Self {
            file,
            direct,
            buf: AlignedBuf::new(if direct { BUFFER_BYTES } else { 0 }, BLOCK),
            buf_at: 0,
            pos: 0,
            pool: BufferPool::default(),
        })
    }

    /// Whether reads bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The file's length.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads the next bytes, at most `max` (and at most [`BUFFER_BYTES`]), as one shared
    /// piece; an empty piece means end of file. With direct I/O the piece is the aligned
    /// buffer the disk read into, handed out without a copy; its buffer goes back to this
    /// reader's pool when the last clone of the piece is dropped.
    pub fn read_piece(&mut self, max: usize) -> io::Result<Bytes> {
        if max == 0 {
            return Ok(Bytes::new());
        }
        if !self.direct {
            return self.read_piece_buffered(max);
        }
        let at = self.pos - self.pos % BLOCK as u64;
        let skip = (self.pos - at) as usize;
        let mut buf = self.pool.take();
        let n = match self.file.read_at(buf.whole_mut(), at) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct = false;
                self.buf.set_len(0);
                return self.read_piece_buffered(max);
            }
            Err(e) => return Err(e),
        };
        if n <= skip {
            return Ok(Bytes::new()); // end of file
        }
        buf.set_len(n);
        let take = (n - skip).min(max);
        self.pos += take as u64;
        Ok(Bytes::from_owner(self.pool.piece(buf)).slice(skip..skip + take))
    }

    fn read_piece_buffered(&mut self, max: usize) -> io::Result<Bytes> {
        let mut v = vec![0u8; max.min(BUFFER_BYTES)];
        let n = self.file.read_at(&mut v, self.pos)?;
        v.truncate(n);
        self.pos += n as u64;
        Ok(Bytes::from(v))
    }

    fn buffered(&self) -> std::ops::Range<u64> {
        self.buf_at..self.buf_at + self.buf.len() as u64
    }

    fn refill(&mut self) -> io::Result<()> {
        let at = self.pos - self.pos % BLOCK as u64;
        match self.file.read_at(self.buf.whole_mut(), at) {
            Ok(n) => {
                self.buf.set_len(n);
                self.buf_at = at;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // The file system took O_DIRECT at open but refuses the reads.
                self.direct = false;
                self.buf.set_len(0);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Read for SpoolReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.direct {
            let n = self.file.read_at(out, self.pos)?;
            self.pos += n as u64;
            return Ok(n);
        }
        if !self.buffered().contains(&self.pos) {
            self.refill()?;
            if !self.direct {
                return self.read(out);
            }
            if !self.buffered().contains(&self.pos) {
                return Ok(0); // end of file
            }
        }
        let from = (self.pos - self.buf_at) as usize;
        let avail = &self.buf.head(self.buf.len())[from..];
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SpoolReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len()?.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_byte_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let body: Vec<u8> = (0..(2 * BUFFER_BYTES + 777))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &body).unwrap();
        for from in [
            0usize,
            1,
            BLOCK - 1,
            BLOCK,
            BUFFER_BYTES + 3,
            body.len() - 1,
            body.len(),
        ] {
            let mut r = SpoolReader::open(&path).unwrap();
            assert_eq!(r.len().unwrap(), body.len() as u64);
            r.seek(SeekFrom::Start(from as u64)).unwrap();
            let mut got = Vec::new();
            let mut piece = vec![0u8; 100_003];
            loop {
                let n = r.read(&mut piece).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&piece[..n]);
            }
            assert_eq!(got, body[from..], "from {from}, direct {}", r.is_direct());
        }
    }

    #[test]
    fn pieces_cover_every_byte_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        let body: Vec<u8> = (0..(2 * BUFFER_BYTES + 777))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&path, &body).unwrap();
        for (from, max) in [
            (0usize, BUFFER_BYTES),
            (1, BUFFER_BYTES),
            (BLOCK + 5, 100_003),
            (BUFFER_BYTES, usize::MAX),
            (body.len() - 1, BUFFER_BYTES),
            (body.len(), BUFFER_BYTES),
        ] {
            let mut r = SpoolReader::open(&path).unwrap();
            r.seek(SeekFrom::Start(from as u64)).unwrap();
            let mut held = Vec::new();
            loop {
                let piece = r.read_piece(max).unwrap();
                if piece.is_empty() {
                    break;
                }
                assert!(piece.len() <= max.min(BUFFER_BYTES));
                held.push(piece);
            }
            let got: Vec<u8> = held.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(got, body[from..], "from {from}, direct {}", r.is_direct());
            // Mixed with plain reads, positions stay exact.
            let mut r = SpoolReader::open(&path).unwrap();
            let mut first = vec![0u8; 10];
            r.read_exact(&mut first).unwrap();
            let next = r.read_piece(20).unwrap();
            assert_eq!(&next[..], &body[10..30]);
            let mut after = vec![0u8; 5];
            r.read_exact(&mut after).unwrap();
            assert_eq!(after, body[30..35]);
        }
    }
}
