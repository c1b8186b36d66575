//! Small JSON state files (outbox, inbox and quarantine records, sync position) and the lock
//! that serialises their read-modify-write cycles.
//!
//! Each record is its own file, written atomically through [`crate::fsutil`], so a crash
//! leaves either the old or the new record and never a torn one. Several `dossier` processes
//! may run at once (`sync --watch` in one terminal, `send` in another); every update of an
//! existing record takes the home's state lock for the few milliseconds between reading and
//! renaming, so one process never overwrites another's newer state.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::NodeError;
use crate::fsutil::write_atomic;
use crate::home::NodeHome;

/// Largest state record read (records are a few KiB; this only bounds a damaged file).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Reads a JSON record, or `None` if the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, NodeError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(NodeError::io(format!("reading {}", path.display())))?;
    if buf.len() > MAX_RECORD_BYTES {
        return Err(NodeError::CorruptState(path.to_path_buf(), "too large"));
    }
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|_| NodeError::CorruptState(path.to_path_buf(), "not a valid record"))
}

/// Writes a JSON record atomically (mode 0600).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), NodeError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| NodeError::io(format!("encoding {}", path.display()))(e.into()))?;
    write_atomic(path, &bytes).map_err(NodeError::io(format!("writing {}", path.display())))
}

/// The `*.json` records in `dir`, by file stem (an absent directory holds none).
pub fn record_stems(dir: &Path) -> Result<Vec<String>, NodeError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(format!("listing {}", dir.display()))(e)),
    };
    let mut stems = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(NodeError::io(format!("listing {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                if !stem.starts_with('.') {
                    stems.push(stem.to_owned());
                }
            }
        }
    }
    stems.sort();
    Ok(stems)
}

/// Runs `f` while holding the home's state lock (an exclusive `flock` on `HOME/.state.lock`).
pub fn with_state_lock<T>(
    home: &NodeHome,
    f: impl FnOnce() -> Result<T, NodeError>,
) -> Result<T, NodeError> {
    let path = home.root().join(".state.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(NodeError::io("opening the state lock"))?;
    let mut lock = fd_lock::RwLock::new(file);
    let _guard = lock
        .write()
        .map_err(NodeError::io("taking the state lock"))?;
    f()
}

/// An advisory lock on a file (`flock`), for work that one process at a time should do:
/// uploading one bundle, receiving for one home.
pub fn file_lock(path: &Path) -> Result<fd_lock::RwLock<File>, NodeError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(NodeError::io(format!("opening {}", path.display())))?;
    Ok(fd_lock::RwLock::new(file))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Length and SHA-256 of a file, streamed through a fixed buffer.
pub fn measure_file(path: &Path) -> io::Result<(u64, [u8; 32])> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, h.finalize().into()))
}

/// `dir/<stem>.<ext>`.
pub fn file_in(dir: &Path, stem: &str, ext: &str) -> PathBuf {
    dir.join(format!("{stem}.{ext}"))
}

/// Makes free text safe to store in a record or a receipt reason: control characters become
/// spaces and it is cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > max {
        s = s.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        assert_eq!(read_json::<u32>(&p).unwrap(), None);
        write_json(&p, &7u32).unwrap();
        assert_eq!(read_json::<u32>(&p).unwrap(), Some(7));
        fs::write(dir.path().join("b.dossier"), b"x").unwrap();
        fs::write(dir.path().join(".tmp.json"), b"x").unwrap();
        assert_eq!(record_stems(dir.path()).unwrap(), vec!["a".to_owned()]);
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            read_json::<u32>(&p),
            Err(NodeError::CorruptState(..))
        ));
        assert!(record_stems(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn lock_can_be_taken_repeatedly_and_measure_works() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let v = with_state_lock(&home, || with_state_lock_free(5)).unwrap();
        assert_eq!(v, 5);
        with_state_lock(&home, || Ok(())).unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"abc").unwrap();
        let (len, sha) = measure_file(&f).unwrap();
        assert_eq!(len, 3);
        assert_eq!(
            hex(&sha),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn with_state_lock_free(v: u32) -> Result<u32, NodeError> {
        Ok(v)
    }

    #[test]
    fn one_line_strips_and_cuts() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("abcdef", 4).chars().count(), 4);
    }
}
