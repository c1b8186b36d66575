//! Opening a bundle file into a directory: all checks first, then an atomic release.
//!
//! Pass 1 ([`dossier_bundle::open::verify`]) writes nothing. Pass 2 streams the parts into a
//! private staging directory (0700, beside the output so a rename is atomic); only with the
//! [`Released`](dossier_bundle::open::Released) proof are they moved into the output
//! directory. On any failure the staging directory is removed and the output directory is
//! left exactly as it was.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use dossier_bundle::open::{PartSink, Released, extract, verify};
use dossier_bundle::{FacilityCard, Keyring, Manifest, PartPath};

use crate::contacts::{ContactBook, Pins};
use crate::error::NodeError;
use crate::fsutil::{create_new_private, create_private_dir, parent_of, sync_dir};
use crate::home::NodeHome;

const IO_BUFFER: usize = 256 * 1024;

/// What was opened and from whom.
#[derive(Debug)]
pub struct OpenReport {
    /// The verified manifest.
    pub manifest: Manifest,
    /// The sender's pinned card.
    pub sender: FacilityCard,
    /// Whether the sender's fingerprint was confirmed out of band (own bundles count).
    pub sender_verified: bool,
    /// Where the parts are now.
    pub out_dir: PathBuf,
}

/// Verifies the bundle in `file` and releases its parts into `out_dir` (new or empty).
pub fn open_file(
    home: &NodeHome,
    keyring: &Keyring,
    file: &Path,
    out_dir: &Path,
) -> Result<OpenReport, NodeError> {
    check_output_dir(out_dir)?;
    let me = crate::identity::my_card(home)?;
    let mut own_cards = vec![me.clone()];
    own_cards.extend(crate::identity::my_retired_cards(home)?);
    let book = ContactBook::load(home)?;
    let pins = Pins {
        book: &book,
        own_cards: &own_cards,
    };

    let open_input = || -> Result<BufReader<File>, NodeError> {
        let f = File::open(file).map_err(|e| NodeError::Input {
            arg: file.to_path_buf(),
            problem: format!("cannot be read ({e})"),
        })?;
        Ok(BufReader::with_capacity(IO_BUFFER, f))
    };
    let verified = verify(open_input()?, keyring, me.id(), &pins)?;

    let parent = parent_of(out_dir);
    let staging = tempfile::Builder::new()
        .prefix(".dossier-open-")
        .tempdir_in(parent)
        .map_err(NodeError::io(format!(
            "creating a staging directory in {}",
            parent.display()
        )))?;
    fs::set_permissions(
        staging.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .map_err(NodeError::io("securing the staging directory"))?;
    let mut sink = StagingSink {
        root: staging.path().to_path_buf(),
    };
    let released = extract(open_input()?, keyring, &verified, &mut sink)?;
    release(released, staging, out_dir)?;

    let sender = verified.sender().clone();
    let sender_verified = if sender.id() == me.id() {
        true
    } else {
        book.get(sender.id()).is_some_and(|c| c.verified)
    };
    Ok(OpenReport {
        manifest: verified.manifest().clone(),
        sender,
        sender_verified,
        out_dir: out_dir.to_path_buf(),
    })
}

fn check_output_dir(out_dir: &Path) -> Result<(), NodeError> {
    let parent = parent_of(out_dir);
    if !parent.is_dir() {
        return Err(NodeError::Input {
            arg: out_dir.to_path_buf(),
            problem: format!(
                "its parent directory {} does not exist; create it first",
                parent.display()
            ),
        });
    }
    match fs::read_dir(out_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(NodeError::OutputNotEmpty(out_dir.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NodeError::Input {
            arg: out_dir.to_path_buf(),
            problem: format!("is not a usable directory ({e})"),
        }),
    }
}

/// Moves the staged parts into `out_dir`. Needs the proof that extraction checked them.
fn release(_proof: Released, staging: tempfile::TempDir, out_dir: &Path) -> Result<(), NodeError> {
    let what = || format!("moving the opened parts into {}", out_dir.display());
    if !out_dir.exists() {
        let staged = staging.keep();
        if let Err(e) = fs::rename(&staged, out_dir) {
            let _ = fs::remove_dir_all(&staged);
            return Err(NodeError::io(what())(e));
        }
        fs::set_permissions(out_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(NodeError::io(what()))?;
        return sync_dir(parent_of(out_dir)).map_err(NodeError::io(what()));
    }
    // The directory exists and was empty when we checked; move entries one by one, never
    // replacing anything that appeared meanwhile.
    for entry in fs::read_dir(staging.path()).map_err(NodeError::io(what()))? {
        let entry = entry.map_err(NodeError::io(what()))?;
        let target = out_dir.join(entry.file_name());
        if target.exists() {
            return Err(NodeError::OutputNotEmpty(out_dir.to_path_buf()));
        }
        fs::rename(entry.path(), &target).map_err(NodeError::io(what()))?;
    }
    sync_dir(out_dir).map_err(NodeError::io(what()))
}

/// Writes parts under the staging root, fsyncing each.
struct StagingSink {
    root: PathBuf,
}

impl PartSink for StagingSink {
    fn write_part(
        &mut self,
        _index: usize,
        path: &PartPath,
        content: &mut dyn Read,
    ) -> io::Result<()> {
        let mut target = self.root.clone();
        let comps: Vec<&str> = path.components().collect();
        for dir in &comps[..comps.len() - 1] {
            target.push(dir);
            if !target.is_dir() {
                create_private_dir(&target)?;
            }
        }
        target.push(comps[comps.len() - 1]);
        let mut file = io::BufWriter::with_capacity(IO_BUFFER, create_new_private(&target)?);
        io::copy(content, &mut file)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}
