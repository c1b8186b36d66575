//! `dossier audit verify`: walk the whole trail and name the first entry that is wrong.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};

use super::entry::{GENESIS_HASH, LineError, parse_line};
use super::log::{AuditHead, AuditLog, RawLine, next_line};
use crate::error::NodeError;

/// The outcome of [`AuditLog::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every entry is unchanged, in order, linked, and the log reaches its anchor.
    Intact(IntactTrail),
    /// The first problem found.
    Broken(TrailBreak),
}

impl VerifyReport {
    /// Whether the trail checked out.
    pub fn is_intact(&self) -> bool {
        matches!(self, VerifyReport::Intact(_))
    }
}

/// A trail that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntactTrail {
    /// How many entries it holds.
    pub entries: u64,
    /// Its last entry's seq and hash (seq 0 and [`GENESIS_HASH`] when empty): the value to
    /// give an auditor to hold off the node.
    pub last: AuditHead,
    /// The anchor is one entry behind the log: a command stopped between writing its entry
    /// and updating `head.json`. The next append moves the anchor; nothing is missing.
    pub anchor_behind: bool,
}

/// Where the trail first goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailBreak {
    /// Sequence number of the first entry that is not as it should be (the position it
    /// should hold); `None` when the problem is the anchor file itself.
    pub seq: Option<u64>,
    /// Line of `log.jsonl`, from 1, when the problem is on a line.
    pub line: Option<u64>,
    /// What is wrong.
    pub problem: TrailProblem,
}

/// What is wrong with the first bad entry (or the anchor).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrailProblem {
    /// The line is not an audit entry at all.
    Unparseable,
    /// The line is an entry of another format version.
    NewerVersion(u64),
    /// The line is longer than the 64 KiB limit.
    TooLong,
    /// The last line stops without a newline: cut short.
    Incomplete,
    /// The entry's content does not match its hash (or is not in canonical form).
    Edited,
    /// Another entry stands where this one should: entries were removed or reordered.
    OutOfSequence {
        /// The seq found at this position.
        found: u64,
    },
    /// The entry does not name its predecessor's hash.
    BrokenLink,
    /// The anchor names this entry but the log ends before it.
    Truncated {
        /// The last entry the log holds.
        last: u64,
    },
    /// `head.json` is gone while the log holds entries.
    HeadMissing,
    /// `head.json` cannot be read.
    HeadUnreadable,
    /// The entry the anchor names has another hash than the anchor records.
    HeadMismatch,
    /// More than one entry follows the anchored one.
    BeyondAnchor {
        /// The seq the anchor names.
        anchored: u64,
    },
}

impl fmt::Display for TrailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailProblem::Unparseable => f.write_str("is not an audit entry"),
            TrailProblem::NewerVersion(v) => write!(
                f,
                "has entry format v{v}, probably written by a newer dossier; verify with that version"
            ),
            TrailProblem::TooLong => f.write_str("is longer than 64 KiB"),
            TrailProblem::Incomplete => f.write_str(
                "is cut short (the log was truncated mid-line, or a write was interrupted)",
            ),
            TrailProblem::Edited => {
                f.write_str("was edited: its content does not match its hash")
            }
            TrailProblem::OutOfSequence { found } => write!(
                f,
                "is missing or out of place: entry {found} stands there (entries were removed or reordered)"
            ),
            TrailProblem::BrokenLink => f.write_str(
                "does not link to the entry before it (entries were removed, reordered or rewritten)",
            ),
            TrailProblem::Truncated { last } => write!(
                f,
                "is missing: the anchor head.json names it but the log ends at entry {last} (the log was truncated)"
            ),
            TrailProblem::HeadMissing => {
                f.write_str("the anchor head.json is missing although the log holds entries")
            }
            TrailProblem::HeadUnreadable => f.write_str("the anchor head.json is damaged"),
            TrailProblem::HeadMismatch => f.write_str(
                "differs from the entry the anchor head.json records (the entry or the anchor was rewritten)",
            ),
            TrailProblem::BeyondAnchor { anchored } => write!(
                f,
                "and later ones follow the anchored entry {anchored}, more than an interrupted command leaves (entries were added, or head.json was rolled back)"
            ),
        }
    }
}

impl fmt::Display for TrailBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.seq, self.line) {
            (Some(seq), Some(line)) => write!(f, "entry {seq} (line {line}) {}", self.problem),
            (Some(seq), None) => write!(f, "entry {seq} {}", self.problem),
            _ => write!(f, "{}", self.problem),
        }
    }
}

impl AuditLog {
    /// Reads the whole trail and checks every entry: canonical form and hash (edits),
    /// consecutive seqs and links (removals, reordering), a complete last line, and that the
    /// log ends exactly at the anchor (truncation). Stops at the first problem.
    ///
    /// `Err` only when the files cannot be read at all; a damaged trail is a
    /// [`VerifyReport::Broken`].
    pub fn verify(&self) -> Result<VerifyReport, NodeError> {
        let head = self.head();
        let head_seq = head.as_ref().ok().and_then(|h| h.as_ref()).map(|h| h.seq);
        let path = self.log_path();
        let file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(NodeError::io(format!("reading {}", path.display()))(e)),
        };

        let mut prev = GENESIS_HASH.to_owned();
        let mut count = 0u64;
        let mut anchored_hash = None;
        if let Some(file) = file {
            let mut r = BufReader::new(file);
            let mut line_no = 0u64;
            while let Some(raw) =
                next_line(&mut r).map_err(NodeError::io(format!("reading {}", path.display())))?
            {
                line_no += 1;
                let expected = count + 1;
                let broken = |problem| {
                    Ok(VerifyReport::Broken(TrailBreak {
                        seq: Some(expected),
                        line: Some(line_no),
                        problem,
                    }))
                };
                let line = match raw {
                    RawLine::Complete(line) => line,
                    RawLine::Unterminated => return broken(TrailProblem::Incomplete),
                    RawLine::TooLong => return broken(TrailProblem::TooLong),
                };
                let entry = match parse_line(&line) {
                    Ok(e) => e,
                    Err(LineError::Malformed) => return broken(TrailProblem::Unparseable),
                    Err(LineError::Version(v)) => return broken(TrailProblem::NewerVersion(v)),
                    Err(LineError::Edited) => return broken(TrailProblem::Edited),
                };
                if entry.seq != expected {
                    return broken(TrailProblem::OutOfSequence { found: entry.seq });
                }
                if entry.prev != prev {
                    return broken(TrailProblem::BrokenLink);
                }
                if Some(entry.seq) == head_seq {
                    anchored_hash = Some(entry.hash.clone());
                }
                prev = entry.hash;
                count = expected;
            }
        }

        let anchor_break =
            |seq, line, problem| Ok(VerifyReport::Broken(TrailBreak { seq, line, problem }));
        let head = match head {
            Ok(h) => h,
            Err(_) => return anchor_break(None, None, TrailProblem::HeadUnreadable),
        };
        let last = AuditHead {
            seq: count,
            hash: prev,
        };
        let Some(head) = head else {
            if count == 0 {
                return Ok(VerifyReport::Intact(IntactTrail {
                    entries: 0,
                    last,
                    anchor_behind: false,
                }));
            }
            return anchor_break(None, None, TrailProblem::HeadMissing);
        };
        if head.seq > count {
            return anchor_break(
                Some(count + 1),
                None,
                TrailProblem::Truncated { last: count },
            );
        }
        let anchored_hash = if head.seq == 0 {
            GENESIS_HASH.to_owned()
        } else {
            anchored_hash.unwrap_or_default()
        };
        if anchored_hash != head.hash {
            let seq = (head.seq > 0).then_some(head.seq);
            return anchor_break(seq, seq, TrailProblem::HeadMismatch);
        }
        if count > head.seq + 1 {
            return anchor_break(
                Some(head.seq + 1),
                Some(head.seq + 1),
                TrailProblem::BeyondAnchor { anchored: head.seq },
            );
        }
        Ok(VerifyReport::Intact(IntactTrail {
            entries: count,
            last,
            anchor_behind: count == head.seq + 1,
        }))
    }
}
