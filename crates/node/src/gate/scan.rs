//! Reading the inputs as the gate needs them: which parts are FHIR records, the patients'
//! birth dates, and redacted copies laid out so the bundle's part names do not change.
//!
//! The inputs are walked with [`crate::sealing::plan_parts`], one input at a time, so the
//! traversal, order, naming and refusals (symbolic links, special files) are exactly those
//! of sealing. A part is read whole only if it could be FHIR (its first byte, after a BOM
//! and white space, is `{` or `<`) and is at most `dossier_fhir::limits::MAX_INPUT_BYTES`;
//! every other attachment is only sniffed, so a multi-GiB imaging study costs one small
//! read (DESIGN.md invariant 9). A larger file that starts like JSON or XML is searched in
//! fixed-size chunks for the FHIR markers (`"resourceType"`, the FHIR XML namespace): if
//! it has one, it is refused as too large to check, failing closed, rather than leaving
//! unchecked or unredacted; if not, it is an ordinary attachment.
//!
//! With redaction, each input that holds a FHIR record is replaced by a copy under a
//! private working directory: a file input by its redacted copy under the same file name,
//! a directory input by a mirror with the same relative names in which FHIR records are
//! redacted and every other file is hard-linked (copied if it cannot be). Inputs without
//! FHIR records are passed through untouched.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use dossier_fhir::{FhirDate, FhirError, FhirFormat, limits::MAX_INPUT_BYTES};
use time::Date;
use zeroize::Zeroizing;

use crate::error::NodeError;
use crate::fsutil::{create_new_private, create_private_dir};
use crate::relink::{RelinkItem, RelinkPart};
use crate::sealing::{PlannedPart, plan_parts};

/// How much of a file is read to decide whether it could be FHIR.
const HEAD_BYTES: u64 = 4096;
/// Chunk size when searching a large file for FHIR markers.
const SEARCH_CHUNK: usize = 1024 * 1024;
/// Markers that make a large JSON or XML file count as FHIR.
const FHIR_MARKERS: [&[u8]; 2] = [b"\"resourceType\"", b"http://hl7.org/fhir"];

/// What the scan asks for.
pub(super) struct ScanRequest<'a> {
    /// Judge the patients' ages (the minors rule applies to this disclosure).
    pub minors: Option<(Date, u8)>,
    /// Redact with this pseudonym into this private working directory.
    pub redact: Option<(&'a str, &'a Path)>,
}

/// What the scan found and made.
#[derive(Default)]
pub(super) struct Scan {
    /// `Some(true)` if any Patient is a minor, `Some(false)` if birth dates were found and
    /// none is, `None` if no birth date was found (or ages were not asked for).
    pub minor: Option<bool>,
    /// FHIR records among the parts.
    pub fhir_parts: usize,
    /// Other parts (sent as they are).
    pub other_parts: usize,
    /// The inputs to seal: originals, or their redacted replacements.
    pub inputs: Vec<PathBuf>,
    /// What redaction removed, per part.
    pub relink: Vec<RelinkPart>,
}

/// Scans `inputs` (see the module docs).
pub(super) fn scan(inputs: &[PathBuf], req: &ScanRequest<'_>) -> Result<Scan, NodeError> {
    let mut out = Scan::default();
    for (i, arg) in inputs.iter().enumerate() {
        let parts = plan_parts(std::slice::from_ref(arg))?;
        let is_dir = fs::metadata(arg).is_ok_and(|m| m.is_dir());
        let mut formats = Vec::with_capacity(parts.len());
        for (n, part) in parts.iter().enumerate() {
            let place = Place { arg, is_dir, n };
            let found = read_if_fhir(part).map_err(|e| place.err(e))?;
            let format = match found {
                Some((format, bytes)) => {
                    out.fhir_parts += 1;
                    if let Some((today, age)) = req.minors {
                        let dates = dossier_fhir::patient_birth_dates(&bytes, format)
                            .map_err(|e| place.fhir(e))?;
                        judge(&mut out.minor, dates.iter().flatten(), today, age);
                    }
                    Some(format)
                }
                None => {
                    out.other_parts += 1;
                    None
                }
            };
            formats.push(format);
        }
        match req.redact {
            Some((pseudonym, work)) if formats.iter().any(Option::is_some) => {
                let root = work.join(i.to_string());
                let err = |n, e| Place { arg, is_dir, n }.err(e);
                let sub = mirror(&parts, &formats, &root, pseudonym, &mut out.relink, &err)?;
                out.inputs.push(sub);
            }
            _ => out.inputs.push(arg.clone()),
        }
    }
    Ok(out)
}

fn judge<'a>(
    minor: &mut Option<bool>,
    dates: impl Iterator<Item = &'a FhirDate>,
    today: Date,
    age: u8,
) {
    for d in dates {
        let this = d.is_minor_on(today, age);
        *minor = Some(minor.unwrap_or(false) || this);
    }
}

/// Writes the replacement of one input under `root` and returns the path to seal instead.
fn mirror(
    parts: &[PlannedPart],
    formats: &[Option<FhirFormat>],
    root: &Path,
    pseudonym: &str,
    relink: &mut Vec<RelinkPart>,
    err: &dyn Fn(usize, ScanError) -> NodeError,
) -> Result<PathBuf, NodeError> {
    let local = |n: usize| move |e: io::Error| err(n, ScanError::Io(e));
    let mut top = None;
    for (n, (part, format)) in parts.iter().zip(formats).enumerate() {
        let name = part.source.path.as_str();
        let dest = root.join(name);
        if top.is_none() {
            let first = name.split('/').next().unwrap_or(name);
            top = Some(root.join(first));
        }
        create_private_dir(crate::fsutil::parent_of(&dest)).map_err(local(n))?;
        match format {
            Some(format) => {
                let bytes = read_whole(&part.file).map_err(|e| err(n, e))?;
                let redaction = dossier_fhir::redact_identifiers(&bytes, *format, pseudonym)
                    .map_err(|e| err(n, ScanError::Fhir(e)))?;
                let output = Zeroizing::new(redaction.output);
                let mut f = create_new_private(&dest).map_err(local(n))?;
                f.write_all(&output).map_err(local(n))?;
                relink.push(RelinkPart {
                    part: name.to_owned(),
                    format: match format {
                        FhirFormat::Json => "json",
                        FhirFormat::Xml => "xml",
                    }
                    .to_owned(),
                    removed: redaction
                        .relink
                        .into_iter()
                        .map(|r| RelinkItem {
                            resource: r.resource,
                            path: r.path,
                            value: r.value,
                        })
                        .collect(),
                });
            }
            None => link_or_copy(&part.file, &dest).map_err(local(n))?,
        }
    }
    // A part-less input has no FHIR record, so it never gets here.
    Ok(top.unwrap_or_else(|| root.to_path_buf()))
}

fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut src = File::open(from)?;
    let mut dst = create_new_private(to)?;
    io::copy(&mut src, &mut dst)?;
    Ok(())
}

/// Why one part could not be checked.
pub(super) enum ScanError {
    Io(io::Error),
    Fhir(FhirError),
}

/// One part, named for messages without its file name (STYLE.md §11).
struct Place<'a> {
    arg: &'a Path,
    is_dir: bool,
    n: usize,
}

impl Place<'_> {
    fn err(&self, e: ScanError) -> NodeError {
        let what = match e {
            ScanError::Io(e) => format!("cannot be read ({e})"),
            ScanError::Fhir(e) => format!("is a FHIR record that cannot be sent: {e}"),
        };
        let problem = if self.is_dir {
            format!(
                "file {} inside it (counting from 1 in name order, as sealing walks it) {what}",
                self.n + 1
            )
        } else {
            what
        };
        NodeError::Input {
            arg: self.arg.to_path_buf(),
            problem,
        }
    }

    fn fhir(&self, e: FhirError) -> NodeError {
        self.err(ScanError::Fhir(e))
    }
}

/// Reads `part` if it is a FHIR record; `None` for any other attachment.
fn read_if_fhir(part: &PlannedPart) -> Result<Option<(FhirFormat, Record)>, ScanError> {
    let mut head = Vec::new();
    File::open(&part.file)
        .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
        .map_err(ScanError::Io)?;
    if !starts_like_markup(&head) {
        return Ok(None);
    }
    if part.source.length > MAX_INPUT_BYTES as u64 {
        return if mentions_fhir(&part.file).map_err(ScanError::Io)? {
            Err(ScanError::Fhir(FhirError::TooLarge {
                size: usize::try_from(part.source.length).unwrap_or(usize::MAX),
                limit: MAX_INPUT_BYTES,
            }))
        } else {
            Ok(None)
        };
    }
    let bytes = read_whole(&part.file)?;
    Ok(dossier_fhir::detect(&bytes).map(|f| (f, bytes)))
}

/// A record's bytes, wiped when dropped.
type Record = Zeroizing<Vec<u8>>;

fn read_whole(path: &Path) -> Result<Record, ScanError> {
    let mut bytes = Zeroizing::new(Vec::new());
    File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(ScanError::Io)?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ScanError::Fhir(FhirError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        }));
    }
    Ok(bytes)
}

/// Whether the first byte after a BOM and white space opens JSON or XML.
fn starts_like_markup(head: &[u8]) -> bool {
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    body.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .is_some_and(|b| matches!(b, b'{' | b'<'))
}

/// Searches a file for a FHIR marker in fixed-size chunks (bounded memory).
fn mentions_fhir(path: &Path) -> io::Result<bool> {
    let overlap = FHIR_MARKERS.iter().map(|m| m.len()).max().unwrap_or(0) - 1;
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; SEARCH_CHUNK + overlap];
    let mut kept = 0;
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            return Ok(false);
        }
        let filled = kept + n;
        let window = &buf[..filled];
        if FHIR_MARKERS
            .iter()
            .any(|m| window.windows(m.len()).any(|w| w == *m))
        {
            return Ok(true);
        }
        kept = overlap.min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_sniffing_and_marker_search() {
        assert!(starts_like_markup(b"\xEF\xBB\xBF \n{\"a\":1}"));
        assert!(starts_like_markup(b"  <Patient/>"));
        assert!(!starts_like_markup(b"%PDF-1.7"));
        assert!(!starts_like_markup(b""));

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        // A marker straddling the chunk boundary is still found.
        let mut data = vec![b' '; SEARCH_CHUNK - 5];
        data.extend_from_slice(b"\"resourceType\"");
        data.extend(vec![b' '; 100]);
        fs::write(&p, &data).unwrap();
        assert!(mentions_fhir(&p).unwrap());
        fs::write(&p, vec![b'{'; SEARCH_CHUNK * 2 + 7]).unwrap();
        assert!(!mentions_fhir(&p).unwrap());
    }
}
