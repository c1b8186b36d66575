//! Opening a file for direct I/O (`O_DIRECT`), on the platforms that have it.

use std::fs::File;
#[cfg(target_os = "linux")]
use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// Which way the file is opened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Opens `path` for direct I/O; an error where the platform or file system does not offer
/// it (the caller then falls back to ordinary I/O).
#[cfg(target_os = "linux")]
pub(crate) fn open_direct(path: &Path, access: Access) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    match access {
        Access::Read => options.read(true),
        Access::Write => options.write(true),
    };
    options.custom_flags(libc::O_DIRECT).open(path)
}

/// Opens `path` for direct I/O; this platform has none.
#[cfg(not(target_os = "linux"))]
pub(crate) fn open_direct(_path: &Path, _access: Access) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
