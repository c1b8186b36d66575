//! A heap buffer whose usable part starts on a [`BLOCK`](crate::BLOCK) boundary, as
//! `O_DIRECT` requires, obtained without `unsafe`: allocate a little more and start at
//! the first aligned byte.

/// A fixed-capacity, block-aligned byte buffer.
pub(crate) struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    capacity: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `capacity` usable bytes aligned to `align` (a power of two).
    pub(crate) fn new(capacity: usize, align: usize) -> Self {
        let storage = vec![0u8; capacity + align];
        let start = storage.as_ptr().align_offset(align);
        assert!(
            start < align,
            "align_offset on a byte pointer is always < align"
        );
        Self {
            storage,
            start,
            capacity,
            len: 0,
        }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Room left.
    pub(crate) fn room(&self) -> usize {
        self.capacity - self.len
    }

    /// Appends as much of `bytes` as fits; returns how much that was.
    pub(crate) fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// The held bytes followed by zeros up to `padded_len` (≤ capacity).
    pub(crate) fn padded(&mut self, padded_len: usize) -> &[u8] {
        assert!(padded_len >= self.len && padded_len <= self.capacity);
        let from = self.start + self.len;
        let to = self.start + padded_len;
        self.storage[from..to].fill(0);
        &self.storage[self.start..to]
    }

    /// The first `n` held bytes (aligned at the start).
    pub(crate) fn head(&self, n: usize) -> &[u8] {
        assert!(n <= self.len);
        &self.storage[self.start..self.start + n]
    }

    /// The whole capacity, to read into; [`set_len`](Self::set_len) then says how much
    /// is valid.
    pub(crate) fn whole_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.capacity]
    }

    /// Declares the first `n` bytes valid.
    pub(crate) fn set_len(&mut self, n: usize) {
        assert!(n <= self.capacity);
        self.len = n;
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub(crate) fn consume(&mut self, n: usize) {
        assert!(n <= self.len);
        let from = self.start + n;
        let to = self.start + self.len;
        self.storage.copy_within(from..to, self.start);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usable_part_is_aligned_and_keeps_bytes_in_order() {
        let mut b = AlignedBuf::new(8192, 4096);
        assert_eq!(b.head(0).as_ptr() as usize % 4096, 0);
        assert_eq!(b.fill_from(&[1, 2, 3]), 3);
        assert_eq!(b.fill_from(&vec![9u8; 10_000]), 8189);
        assert_eq!(b.room(), 0);
        b.consume(2);
        assert_eq!(b.head(3), &[3, 9, 9]);
        assert_eq!(b.len(), 8190);
        assert_eq!(b.head(0).as_ptr() as usize % 4096, 0);
    }

    #[test]
    fn padding_is_zeros() {
        let mut b = AlignedBuf::new(4096, 4096);
        b.fill_from(&[7; 10]);
        let p = b.padded(4096);
        assert_eq!(&p[..10], &[7; 10]);
        assert!(p[10..].iter().all(|&x| x == 0));
    }
}
