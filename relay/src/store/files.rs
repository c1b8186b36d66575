//! File-system helpers for body files: private permissions and fsync of files and the
//! directories that name them. Paths are only ever built from validated bundle ids.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::{StoreError, is_bundle_id};

/// The data directory layout of a [`RedbStore`](super::RedbStore).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// `DATA/`.
    pub root: PathBuf,
    /// `DATA/blobs/`: complete, indexed bodies named by bundle id.
    pub blobs: PathBuf,
    /// `DATA/incoming/`: uploads in progress, `<id>.part`.
    pub incoming: PathBuf,
}

impl Layout {
    /// Paths under `root`; creates nothing.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            blobs: root.join("blobs"),
            incoming: root.join("incoming"),
        }
    }

    /// `blobs/<id>`. Panics in debug builds on an unvalidated id; callers check first.
    pub fn blob(&self, id: &str) -> PathBuf {
        debug_assert!(is_bundle_id(id));
        self.blobs.join(id)
    }

    /// `incoming/<id>.part`.
    pub fn part(&self, id: &str) -> PathBuf {
        debug_assert!(is_bundle_id(id));
        self.incoming.join(format!("{id}.part"))
    }

    /// Creates the directories (0700) and makes their names durable.
    pub fn create(&self) -> Result<(), StoreError> {
        create_private_dir(&self.root).map_err(StoreError::io("creating the data directory"))?;
        create_private_dir(&self.blobs).map_err(StoreError::io("creating blobs/"))?;
        create_private_dir(&self.incoming).map_err(StoreError::io("creating incoming/"))?;
        sync_dir(&self.root).map_err(StoreError::io("syncing the data directory"))
    }
}

/// Creates `dir` (and parents) readable by the relay's user only; leaves an existing
/// directory's permissions to the operator. The parent of every directory it creates is
/// fsynced, top down: a new directory's name is durable only once its parent is (found by
/// the power-loss tests, tests/tests/power_loss.rs — a power cut right after `init` could
/// otherwise lose the whole data directory, key and pin included).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut created = Vec::new();
    let mut at = Some(dir);
    while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        created.push(p);
        at = p.parent();
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    for new in created.iter().rev() {
        match new.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => sync_dir(parent)?,
            None => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// Creates an empty file with mode 0600 if it does not exist (so that a library which
/// creates it later does not pick looser permissions).
pub(crate) fn touch_private(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(f) => f.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the entries of `dir` (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a directory as a file; NTFS journals metadata itself.
        let _ = dir;
        Ok(())
    }
}

/// Removes a file; a file already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
