//! Sealing files and directories from disk into a bundle file.
//!
//! Inputs are planned first (walked, named, sized, media types sniffed) so every rule is
//! checked before a byte is written; then the bundle is streamed into a temporary file next
//! to the output and renamed into place only when complete (never a half-written bundle).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use dossier_bundle::seal::{PartSource, SealRequest, seal};
use dossier_bundle::{
    BundleId, BundleKind, FacilityCard, FacilityId, Keyring, Manifest, PartPath, SealError,
    Timestamp,
};

use crate::contacts::ContactBook;
use crate::error::NodeError;
use crate::fsutil::write_atomic_with;
use crate::home::NodeHome;

/// What to seal, besides the files.
#[derive(Clone, Debug)]
pub struct SealOptions {
    /// Recipient ids (pinned contacts).
    pub to: Vec<FacilityId>,
    /// Kind of bundle.
    pub kind: BundleKind,
    /// Subject line.
    pub subject: Option<String>,
    /// Thread id.
    pub thread: Option<String>,
    /// Patient reference.
    pub patient: Option<String>,
    /// The inputs are copies with direct identifiers removed (`--redact identifiers`);
    /// recorded in the accounting of disclosures.
    pub redacted: bool,
    /// Disclosure-policy overrides used for this bundle, each with its reason; recorded
    /// in the accounting of disclosures.
    pub overrides: Vec<String>,
}

/// A planned part and the file it comes from.
#[derive(Debug)]
pub struct PlannedPart {
    /// Path, media type, length.
    pub source: PartSource,
    /// File on disk.
    pub file: PathBuf,
    /// The command-line argument it came from (for error messages).
    pub arg: PathBuf,
}

const READ_BUFFER: usize = 256 * 1024;
const WRITE_BUFFER: usize = 256 * 1024;

/// Walks `inputs`: a file becomes one part named by its file name; a directory becomes its
/// files, recursively, named `DIR/relative/path`. Symbolic links inside directories and
/// special files are refused (a bundle carries regular files only).
pub fn plan_parts(inputs: &[PathBuf]) -> Result<Vec<PlannedPart>, NodeError> {
    let mut out = Vec::new();
    for arg in inputs {
        let meta =
            fs::metadata(arg).map_err(|e| input_err(arg, format!("cannot be read ({e})")))?;
        let base = arg
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
            .and_then(|n| n.into_string().ok())
            .ok_or_else(|| input_err(arg, "has no usable UTF-8 file name; rename it".into()))?;
        if meta.is_file() {
            push_file(&mut out, arg, arg, &base, meta.len())?;
        } else if meta.is_dir() {
            walk_dir(&mut out, arg, arg, &base)?;
        } else {
            return Err(input_err(arg, "is not a regular file or directory".into()));
        }
    }
    Ok(out)
}

fn walk_dir(
    out: &mut Vec<PlannedPart>,
    arg: &Path,
    dir: &Path,
    prefix: &str,
) -> Result<(), NodeError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| input_err(arg, format!("a directory inside it cannot be listed ({e})")))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().into_string().map_err(|_| {
            input_err(
                arg,
                "contains a file name that is not UTF-8; rename it".into(),
            )
        })?;
        let path = entry.path();
        let rel = format!("{prefix}/{name}");
        let ft = entry
            .file_type()
            .map_err(|e| input_err(arg, format!("cannot be read ({e})")))?;
        if ft.is_symlink() {
            return Err(input_err(arg, "contains a symbolic link; bundles carry regular files only, copy the target in instead".into()));
        } else if ft.is_dir() {
            walk_dir(out, arg, &path, &rel)?;
        } else if ft.is_file() {
            let len = entry
                .metadata()
                .map_err(|e| input_err(arg, format!("cannot be read ({e})")))?
                .len();
            push_file(out, arg, &path, &rel, len)?;
        } else {
            return Err(input_err(
                arg,
                "contains a device, socket or pipe; bundles carry regular files only".into(),
            ));
        }
    }
    Ok(())
}

fn push_file(
    out: &mut Vec<PlannedPart>,
    arg: &Path,
    file: &Path,
    rel: &str,
    length: u64,
) -> Result<(), NodeError> {
    let index = out.len();
    let path = PartPath::parse(rel, index).map_err(|e| input_err(arg, e.to_string()))?;
    let mut head = Vec::with_capacity(dossier_bundle::media::SNIFF_BYTES);
    File::open(file)
        .and_then(|f| {
            f.take(dossier_bundle::media::SNIFF_BYTES as u64)
                .read_to_end(&mut head)
        })
        .map_err(|e| input_err(arg, format!("cannot be read ({e})")))?;
    let media_type = dossier_bundle::media::guess(rel, &head).to_owned();
    out.push(PlannedPart {
        source: PartSource {
            path,
            media_type,
            length,
        },
        file: file.to_path_buf(),
        arg: arg.to_path_buf(),
    });
    Ok(())
}

fn input_err(arg: &Path, problem: String) -> NodeError {
    NodeError::Input {
        arg: arg.to_path_buf(),
        problem,
    }
}

/// Resolves `--to` ids to pinned cards.
pub fn recipient_cards(
    book: &ContactBook,
    to: &[FacilityId],
) -> Result<Vec<FacilityCard>, NodeError> {
    to.iter()
        .map(|id| {
            let card = book
                .get(id)
                .map(|c| c.card.clone())
                .ok_or_else(|| NodeError::NotAContact(id.clone()))?;
            // Never seal to a key its owner revoked (docs/protocol.md §17).
            book.require_not_revoked(id)?;
            Ok(card)
        })
        .collect()
}

/// Seals `inputs` for `opts.to` into the file `out` (created atomically; must not exist).
pub fn seal_to_file(
    home: &NodeHome,
    keyring: &Keyring,
    opts: &SealOptions,
    inputs: &[PathBuf],
    out: &Path,
    now: Timestamp,
) -> Result<Manifest, NodeError> {
    if out.exists() {
        return Err(NodeError::OutputExists(out.to_path_buf()));
    }
    let me = crate::identity::my_card(home)?;
    crate::revocation::require_current_key_usable(home, &me)?;
    if opts.to.contains(me.id()) {
        return Err(SealError::SelfAsRecipient(me.id().clone()).into());
    }
    let book = ContactBook::load(home)?;
    let recipients = recipient_cards(&book, &opts.to)?;
    let plan = plan_parts(inputs)?;
    let sources: Vec<PartSource> = plan.iter().map(|p| p.source.clone()).collect();
    let req = SealRequest {
        sender: &me,
        keys: keyring.current(),
        recipients: &recipients,
        bundle_id: BundleId::random()
            .map_err(|e| NodeError::io("generating a bundle id")(std::io::Error::other(e)))?,
        kind: opts.kind,
        subject: opts.subject.clone(),
        thread: opts.thread.clone(),
        patient: opts.patient.clone(),
        created_at: now,
    };
    let mut outcome: Option<Result<Manifest, SealError>> = None;
    let written = write_atomic_with(out, |f| {
        let result = seal(
            &req,
            &sources,
            |i| File::open(&plan[i].file).map(|f| BufReader::with_capacity(READ_BUFFER, f)),
            BufWriter::with_capacity(WRITE_BUFFER, f),
        );
        let result = result.and_then(|(sealed, mut w)| {
            std::io::Write::flush(&mut w).map_err(SealError::Write)?;
            Ok(sealed.manifest)
        });
        let io_result = match &result {
            Ok(_) => Ok(()),
            Err(_) => Err(std::io::Error::other("sealing failed")),
        };
        outcome = Some(result);
        io_result
    });
    match (outcome, written) {
        (Some(Ok(manifest)), Ok(())) => Ok(manifest),
        (Some(Err(SealError::PartRead { index, source })), _) => Err(input_err(
            &plan[index].arg,
            format!("a file could not be read ({source})"),
        )),
        (Some(Err(SealError::PartChanged(index))), _) => Err(input_err(
            &plan[index].arg,
            "a file changed size while it was sealed; seal again once nothing is writing to it"
                .into(),
        )),
        (Some(Err(e)), _) => Err(e.into()),
        (_, Err(e)) => Err(NodeError::io(format!("writing {}", out.display()))(e)),
        (None, Ok(())) => unreachable!("the writer closure always runs"),
    }
}
