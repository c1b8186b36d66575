//! Reading a body as shared [`Bytes`] pieces straight from block-aligned buffers, and a
//! small pool that takes those buffers back once the network is done with them.
//!
//! A relay serving a download used to read each 1 MiB piece into a fresh zero-filled
//! vector and copy it there out of the reader's aligned buffer: two passes over every byte
//! (a memset and a memcpy) that profiling put at a fifth of the relay's CPU while it
//! served a large download. Here the `O_DIRECT` read lands in an aligned buffer that is
//! then handed out as it is (`Bytes::from_owner`); QUIC keeps the piece until the peer
//! acknowledges it, and dropping the last reference puts the buffer back into the pool of
//! the reader that made it, so a long download reuses a handful of buffers instead of
//! allocating and zeroing a new one per piece.

use std::sync::{Arc, Mutex};

use crate::aligned::AlignedBuf;
use crate::writer::{BLOCK, BUFFER_BYTES};

/// Buffers a pool keeps for reuse; more may be in flight at once (they are then freed
/// when they come back), so memory stays bounded by what the network holds.
const POOL_KEEPS: usize = 8;

/// Spare aligned buffers of [`BUFFER_BYTES`], shared by a reader and the pieces it handed
/// out.
#[derive(Clone, Default)]
pub(crate) struct BufferPool {
    spare: Arc<Mutex<Vec<AlignedBuf>>>,
}

impl BufferPool {
    /// A buffer from the pool, or a new one.
    pub(crate) fn take(&self) -> AlignedBuf {
        let reused = self.spare.lock().ok().and_then(|mut s| s.pop());
        reused.unwrap_or_else(|| AlignedBuf::new(BUFFER_BYTES, BLOCK))
    }

    /// Wraps `buf` (its first `len()` bytes valid) as a piece that returns it here when
    /// dropped.
    pub(crate) fn piece(&self, buf: AlignedBuf) -> Piece {
        Piece {
            buf: Some(buf),
            home: self.clone(),
        }
    }

    fn give_back(&self, mut buf: AlignedBuf) {
        if let Ok(mut spare) = self.spare.lock()
            && spare.len() < POOL_KEEPS
        {
            buf.set_len(0);
            spare.push(buf);
        }
    }

    #[cfg(test)]
    pub(crate) fn spare_count(&self) -> usize {
        self.spare.lock().map(|s| s.len()).unwrap_or(0)
    }
}

/// The owner behind a [`bytes::Bytes`] handed out by
/// [`SpoolReader::read_piece`](crate::SpoolReader::read_piece).
pub(crate) struct Piece {
    buf: Option<AlignedBuf>,
    home: BufferPool,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], |b| b.head(b.len()))
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.home.give_back(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_piece_returns_its_buffer_and_the_pool_stays_bounded() {
        let pool = BufferPool::default();
        let mut pieces = Vec::new();
        for i in 0..(POOL_KEEPS + 3) {
            let mut buf = pool.take();
            buf.fill_from(&[i as u8; 10]);
            pieces.push(bytes::Bytes::from_owner(pool.piece(buf)));
        }
        assert_eq!(pool.spare_count(), 0);
        assert_eq!(&pieces[2][..], &[2u8; 10]);
        drop(pieces);
        assert_eq!(pool.spare_count(), POOL_KEEPS);
        let again = pool.take();
        assert_eq!(again.len(), 0, "a reused buffer starts empty");
        assert_eq!(pool.spare_count(), POOL_KEEPS - 1);
    }
}
