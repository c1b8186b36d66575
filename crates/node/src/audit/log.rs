//! Appending to the trail and reading it back.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use dossier_bundle::Timestamp;
use serde::{Deserialize, Serialize};

use super::Operator;
use super::entry::{AuditEntry, AuditEvent, GENESIS_HASH, LineError, parse_line};
use crate::error::NodeError;
use crate::fsutil::{create_private_dir, sync_dir};
use crate::home::NodeHome;
use crate::statefile::{file_lock, read_json, write_json};

/// Longest line accepted in the log, newline excluded (entries are well under 10 KiB; this
/// only bounds what a damaged or hostile file can make us buffer).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const HEAD_FORMAT: &str = "dossier-audit-head/v1";

/// The anchor: the last entry the trail is known to hold.
///
/// Written to `HOME/audit/head.json` after every append, and meant to be copied off the
/// node (`dossier audit head`) so an auditor can later check the trail still reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Sequence number of the last entry (0 for a trail with none yet).
    pub seq: u64,
    /// Its hash ([`GENESIS_HASH`] for seq 0).
    pub hash: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredHead {
    format: String,
    seq: u64,
    hash: String,
}

/// A node's audit trail in `HOME/audit/`.
#[derive(Clone, Debug)]
pub struct AuditLog {
    dir: PathBuf,
}

/// One line read from the log, bounded.
pub(crate) enum RawLine {
    /// A whole line (newline stripped).
    Complete(Vec<u8>),
    /// The file ends without a newline after these bytes.
    Unterminated,
    /// Longer than [`MAX_LINE_BYTES`].
    TooLong,
}

/// Reads the next line, never buffering more than [`MAX_LINE_BYTES`] + 1 bytes;
/// `None` at the end of the file.
pub(crate) fn next_line<R: BufRead>(r: &mut R) -> io::Result<Option<RawLine>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(RawLine::Complete(buf)));
    }
    if n > MAX_LINE_BYTES {
        return Ok(Some(RawLine::TooLong));
    }
    Ok(Some(RawLine::Unterminated))
}

impl AuditLog {
    /// The trail of `home` (nothing is read or created until it is used).
    pub fn open(home: &NodeHome) -> Self {
        Self {
            dir: home.audit_dir(),
        }
    }

    /// `HOME/audit`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `HOME/audit/log.jsonl`: one entry per line.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log.jsonl")
    }

    /// `HOME/audit/head.json`: the anchor.
    pub fn head_path(&self) -> PathBuf {
        self.dir.join("head.json")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join("lock")
    }

    fn broken(&self, problem: impl Into<String>) -> NodeError {
        NodeError::AuditBroken {
            dir: self.dir.clone(),
            problem: problem.into(),
        }
    }

    /// The anchor, or `None` if there is no trail yet (or its anchor was removed).
    pub fn head(&self) -> Result<Option<AuditHead>, NodeError> {
        let stored: Option<StoredHead> = read_json(&self.head_path())
            .map_err(|_| self.broken("has a damaged anchor (head.json)"))?;
        match stored {
            None => Ok(None),
            Some(h) if h.format == HEAD_FORMAT && is_hash(&h.hash) => Ok(Some(AuditHead {
                seq: h.seq,
                hash: h.hash,
            })),
            Some(_) => Err(self.broken(
                "has an anchor (head.json) in an unknown format, probably from a newer dossier",
            )),
        }
    }

    fn write_head(&self, head: &AuditHead) -> Result<(), NodeError> {
        write_json(
            &self.head_path(),
            &StoredHead {
                format: HEAD_FORMAT.to_owned(),
                seq: head.seq,
                hash: head.hash.clone(),
            },
        )
    }

    /// Records `event` as done by `operator` at `now` and returns the entry written.
    ///
    /// The entry is durable (fsynced) when this returns `Ok`. Callers treat an error as the
    /// failure of the whole operation: an action that cannot be audited is not done.
    /// Concurrent appends, from threads or processes, are serialised by a lock on
    /// `HOME/audit/lock` and receive distinct, consecutive sequence numbers.
    pub fn append(
        &self,
        operator: &Operator,
        event: &AuditEvent,
        now: Timestamp,
    ) -> Result<AuditEntry, NodeError> {
        create_private_dir(&self.dir)
            .map_err(NodeError::io(format!("creating {}", self.dir.display())))?;
        let mut lock = file_lock(&self.lock_path())?;
        let _guard = lock
            .write()
            .map_err(NodeError::io("taking the audit trail lock"))?;

        let log_path = self.log_path();
        let existing = match File::open(&log_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(NodeError::io(format!("reading {}", log_path.display()))(e)),
        };
        let tail = match existing {
            Some(mut f) => read_tail(&mut f)
                .map_err(NodeError::io(format!("reading {}", log_path.display())))?,
            None => Tail::default(),
        };

        let head = match self.head()? {
            Some(h) => h,
            None if tail.len == 0 => {
                // A new trail: anchor "no entries" first, so that from now on a missing
                // anchor always means it was removed.
                let genesis = AuditHead {
                    seq: 0,
                    hash: GENESIS_HASH.to_owned(),
                };
                self.write_head(&genesis)?;
                genesis
            }
            None => {
                return Err(self.broken("has entries but its anchor (head.json) is missing"));
            }
        };
        let last = self.reconcile(&head, &tail)?;

        let entry = AuditEntry::build(last.seq + 1, &last.hash, operator, event, now);
        let mut line = entry.to_line().into_bytes();
        line.push(b'\n');

        let created = tail.len == 0 && !log_path.exists();
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(NodeError::io(format!("opening {}", log_path.display())))?;
        if let Err(e) = log.write_all(&line).and_then(|()| log.sync_data()) {
            // Leave no torn line behind: cut back to the last whole entry (we hold the lock,
            // so nobody else has appended since `tail.len` was measured).
            let _ = log.set_len(tail.len).and_then(|()| log.sync_data());
            return Err(NodeError::io(format!("writing {}", log_path.display()))(e));
        }
        if created {
            sync_dir(&self.dir)
                .map_err(NodeError::io(format!("syncing {}", self.dir.display())))?;
        }
        // If this fails the entry is durable but unanchored; the next append finds the log
        // exactly one valid entry ahead and moves the anchor (see the module docs).
        self.write_head(&AuditHead {
            seq: entry.seq,
            hash: entry.hash.clone(),
        })?;
        Ok(entry)
    }

    /// Checks the end of the log against the anchor and returns the entry to chain onto,
    /// moving the anchor forward when an earlier append stopped between the two writes.
    fn reconcile(&self, head: &AuditHead, tail: &Tail) -> Result<AuditHead, NodeError> {
        if tail.unterminated {
            return Err(self.broken("ends with an unfinished line"));
        }
        if head.seq == 0 && head.hash != GENESIS_HASH {
            return Err(self.broken("has an anchor (head.json) with a wrong starting hash"));
        }
        let Some(last_line) = &tail.last else {
            if tail.len > 0 {
                return Err(self.broken("ends with a line longer than 64 KiB"));
            }
            if head.seq == 0 {
                return Ok(head.clone());
            }
            return Err(self.broken(format!(
                "is empty but its anchor (head.json) says it holds {} entries",
                head.seq
            )));
        };
        let last = parse_line(last_line)
            .map_err(|_| self.broken("ends with a line that is not a valid entry"))?;
        if last.seq == head.seq && last.hash == head.hash {
            return Ok(head.clone());
        }
        let one_ahead = last.seq == head.seq + 1
            && last.prev == head.hash
            && match (&tail.before_last, head.seq) {
                (None, 0) => tail.last_is_first,
                (Some(line), seq) if seq > 0 => {
                    parse_line(line).is_ok_and(|e| e.seq == head.seq && e.hash == head.hash)
                }
                _ => false,
            };
        if !one_ahead {
            return Err(self.broken(format!(
                "does not match its anchor (head.json names entry {}, the log ends at entry {})",
                head.seq, last.seq
            )));
        }
        let repaired = AuditHead {
            seq: last.seq,
            hash: last.hash,
        };
        self.write_head(&repaired)?;
        Ok(repaired)
    }

    /// Every entry, oldest first. Each line is checked as it is read (bounded length,
    /// canonical form, hash matches content); the first that fails stops the listing with
    /// its line number. Use [`AuditLog::verify`] to check the chain and the anchor too.
    pub fn entries(&self) -> Result<Vec<AuditEntry>, NodeError> {
        let mut out = Vec::new();
        self.each_entry(|e| {
            out.push(e);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Whether the trail still holds entry `earlier.seq` with hash `earlier.hash`: the
    /// auditor's check of a head recorded off the node at an earlier review. Reads the
    /// trail up to that entry; a damaged line before it is an error.
    pub fn contains(&self, earlier: &AuditHead) -> Result<bool, NodeError> {
        if earlier.seq == 0 {
            return Ok(earlier.hash == GENESIS_HASH);
        }
        let mut same = false;
        self.each_entry(|e| {
            if e.seq == earlier.seq {
                same = e.hash == earlier.hash;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(same)
    }

    /// Streams the entries to `f`, oldest first, with the checks of [`AuditLog::entries`],
    /// until `f` breaks or the log ends. Memory use does not grow with the trail.
    pub fn each_entry(
        &self,
        mut f: impl FnMut(AuditEntry) -> ControlFlow<()>,
    ) -> Result<(), NodeError> {
        let path = self.log_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
        };
        let mut r = BufReader::new(file);
        let mut line_no = 0u64;
        while let Some(raw) =
            next_line(&mut r).map_err(NodeError::io(format!("reading {}", path.display())))?
        {
            line_no += 1;
            let bad = |what: &str| self.broken(format!("has a bad line {line_no} ({what})"));
            match raw {
                RawLine::Complete(line) => match parse_line(&line) {
                    Ok(e) => {
                        if f(e).is_break() {
                            return Ok(());
                        }
                    }
                    Err(LineError::Version(v)) => {
                        return Err(bad(&format!(
                            "entry format v{v}, probably from a newer dossier"
                        )));
                    }
                    Err(LineError::Edited) => return Err(bad("content does not match its hash")),
                    Err(LineError::Malformed) => return Err(bad("not an audit entry")),
                },
                RawLine::Unterminated => return Err(bad("unfinished")),
                RawLine::TooLong => return Err(bad("longer than 64 KiB")),
            }
        }
        Ok(())
    }
}

/// Whether `s` looks like a hex SHA-256.
pub(crate) fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The last two whole lines of the log, read from its end (appends never read the whole
/// trail; `verify` does).
#[derive(Default)]
struct Tail {
    /// File length in bytes.
    len: u64,
    /// The file does not end with a newline.
    unterminated: bool,
    /// The last line (without newline).
    last: Option<Vec<u8>>,
    /// The line before it, when there is one.
    before_last: Option<Vec<u8>>,
    /// `last` starts at offset 0 (it is the only line).
    last_is_first: bool,
}

fn read_tail(f: &mut File) -> io::Result<Tail> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(Tail::default());
    }
    // Two maximal lines with their newlines, plus the newline ending the line before them.
    let window = (2 * (MAX_LINE_BYTES as u64 + 1) + 1).min(len);
    let start = len - window;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(window as usize);
    f.take(window).read_to_end(&mut buf)?;
    let mut tail = Tail {
        len,
        ..Tail::default()
    };
    if buf.last() != Some(&b'\n') {
        tail.unterminated = true;
        return Ok(tail);
    }
    buf.pop();
    // Pieces of the window, last first; the first piece is only whole if the window
    // reaches the start of the file.
    let pieces: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    let whole = |i: usize| i > 0 || start == 0;
    let n = pieces.len();
    if n >= 1 && whole(n - 1) {
        tail.last = Some(pieces[n - 1].to_vec());
        tail.last_is_first = n == 1 && start == 0;
    }
    if n >= 2 && whole(n - 2) {
        tail.before_last = Some(pieces[n - 2].to_vec());
    }
    Ok(tail)
}
