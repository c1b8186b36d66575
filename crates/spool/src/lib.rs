//! Append-only body files for large ciphertexts.
//!
//! The relay stores every deposited bundle body in a file and a node stores every
//! downloaded one; both are written once, front to back, possibly across several
//! connections (a resumed transfer), and then fsynced before anyone is told they are
//! durable. A gigabyte body written through the page cache costs a memory copy per byte
//! and fills the cache with data nobody will read soon; profiling the relay on a 2-core
//! machine showed that copy (`copy_folio_from_iter_atomic`) taking about half of the
//! relay's CPU during an upload. [`SpoolWriter`] writes such bodies with `O_DIRECT`
//! where the file system supports it: whole aligned blocks straight from an aligned
//! buffer to the disk. Where it does not (tmpfs, some network file systems, other
//! platforms) the same writer falls back to ordinary buffered writes; callers cannot tell
//! the difference except in speed. [`SpoolReader`] reads such a body back the same way
//! (a relay serving a download), so that neither direction copies it through the cache.
//!
//! Direct I/O needs every write to start at a block-aligned file offset and to cover whole
//! blocks. The writer gathers bytes in an aligned buffer and writes whole blocks; a body
//! abandoned mid-way (a dropped connection) keeps its partial last block by writing it
//! through the page cache, and [`SpoolWriter::resume`] reads that block back into the
//! buffer, so a resumed transfer continues exactly after the last byte received.
//! [`SpoolWriter::finish`] writes the last, partial block padded, truncates the file to
//! the exact length, and fsyncs.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod aligned;
mod chunks;
mod direct;
mod reader;
mod writer;

pub use reader::SpoolReader;
pub use writer::{BLOCK, BUFFER_BYTES, SpoolWriter, WriteMode};
