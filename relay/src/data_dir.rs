//! The relay's data directory: which file is where, and how the relay's own small files
//! (configuration, TLS identity, the bound address) are written.
//!
//! ```text
//! DATA/                 0700
//!   relay.json          configuration (listen address, limits); written last by `init`,
//!                       so its presence means "initialised"
//!   relay-key.der       TLS private key, PKCS#8 DER, 0600 — the relay's identity
//!   relay-cert.der      self-signed certificate, DER; its public key is the pin
//!   serving.addr        the address a running relay is bound to (removed on clean exit)
//!   store.redb          index: enrollments, mailboxes, receipts        (the store's)
//!   blobs/<id>          accepted ciphertext bodies                      (the store's)
//!   incoming/<id>.part  uploads in progress                            (the store's)
//! ```
//!
//! Every file is written to a temporary name in the same directory, fsynced, renamed and
//! the directory fsynced, so a crash leaves the old or the new file, never a torn one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::RelayError;

/// Paths inside a relay data directory. Creates nothing by itself.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `relay.json`.
    pub fn config(&self) -> PathBuf {
        self.root.join("relay.json")
    }

    /// `relay-key.der`.
    pub fn tls_key(&self) -> PathBuf {
        self.root.join("relay-key.der")
    }

    /// `relay-cert.der`.
    pub fn tls_cert(&self) -> PathBuf {
        self.root.join("relay-cert.der")
    }

    /// `serving.addr`.
    pub fn serving_addr(&self) -> PathBuf {
        self.root.join("serving.addr")
    }

    /// Fails with [`RelayError::NotInitialised`] unless `init` completed here.
    pub(crate) fn require_initialised(&self) -> Result<(), RelayError> {
        if self.config().is_file() {
            Ok(())
        } else {
            Err(RelayError::NotInitialised {
                dir: self.root.clone(),
            })
        }
    }

    /// Creates the directory 0700 (an existing one is tightened to 0700).
    pub(crate) fn create(&self) -> Result<(), RelayError> {
        // Durably: the parents of new directories are fsynced (a power cut right after
        // `init` must not lose the key and pin just handed to operators).
        crate::store::files::create_private_dir(&self.root)
            .map_err(RelayError::io("creating the data directory", &self.root))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .map_err(RelayError::io("restricting the data directory", &self.root))?;
        }
        Ok(())
    }

    /// Writes `bytes` to `path` (in this directory) atomically, mode 0600.
    pub(crate) fn write_private(&self, path: &Path, bytes: &[u8]) -> Result<(), RelayError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.root)
            .map_err(RelayError::io("creating a temporary file in", &self.root))?;
        // tempfile creates files 0600 on Unix.
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(RelayError::io("writing", path))?;
        tmp.persist(path)
            .map_err(|e| RelayError::io("renaming into place", path)(e.error))?;
        sync_dir(&self.root)
    }

    /// Removes a file if present (used for `serving.addr`).
    pub(crate) fn remove(&self, path: &Path) -> Result<(), RelayError> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(RelayError::io("removing", path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Reads a file the relay wrote.
    pub(crate) fn read(&self, path: &Path) -> Result<Vec<u8>, RelayError> {
        fs::read(path).map_err(RelayError::io("reading", path))
    }
}

fn sync_dir(dir: &Path) -> Result<(), RelayError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(RelayError::io("syncing the directory", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
