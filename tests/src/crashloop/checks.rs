//! What the crash loop checks after every cycle, and the ledger it checks against.
//!
//! The ledger accumulates over the whole run: every bundle id a sender's outbox ever held or
//! a successful `dossier send` printed, and every bundle the relay ever acknowledged (its own
//! `deposit accepted` log line, a send that answered `accepted`, or an outbox that recorded
//! the acceptance). After each cycle every node has synced until nothing moves, and then:
//!
//! - **(b) acknowledged means delivered**: every acknowledged bundle is in the inbox of each
//!   of its recipients exactly once, with the ciphertext the sender deposited (SHA-256 of the
//!   inbox file against the sender's outbox), and the sender holds each recipient's
//!   `delivered` receipt;
//! - **(c) no duplicates**: no inbox lists an id twice, `inbox/` on disk holds exactly one
//!   `ID.dossier` and one `ID.json` per listed id and no leftover `incoming/ID.part`, nothing
//!   is quarantined, and no inbox holds a bundle nobody sent it;
//! - **(d) no lost outbox item**: every id ever seen is still in its sender's outbox with its
//!   ciphertext file, none was refused, and none is still waiting for the relay;
//! - **relay holds nothing stale**: once everything is delivered, `blobs/` and `incoming/`
//!   are empty (a body kept after every recipient acknowledged it is a leak).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{Node, RelayProcess, file_names, sha256_file};

/// What is known about one bundle a sender queued.
#[derive(Clone, Debug)]
pub(crate) struct Sent {
    pub sender: usize,
    pub to: Vec<String>,
    pub sha: Option<String>,
    pub cycle: u32,
}

/// Everything the run has seen, checked after every cycle.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Every bundle id seen in an outbox or printed by a successful `send`.
    pub sent: BTreeMap<String, Sent>,
    /// Bundles the relay acknowledged, with the cycle it was first known.
    pub acked: BTreeMap<String, u32>,
    /// Inbox files whose hash was already checked: (recipient index, bundle id).
    hashed: BTreeSet<(usize, String)>,
}

impl Ledger {
    pub(crate) fn note_sent(
        &mut self,
        id: &str,
        sender: usize,
        to: Vec<String>,
        sha: Option<String>,
        cycle: u32,
    ) {
        let entry = self.sent.entry(id.to_owned()).or_insert(Sent {
            sender,
            to,
            sha: None,
            cycle,
        });
        if entry.sha.is_none() {
            entry.sha = sha;
        }
    }

    pub(crate) fn note_acked(&mut self, id: &str, cycle: u32) {
        self.acked.entry(id.to_owned()).or_insert(cycle);
    }

    /// Adds what the outboxes show: new ids, and acceptances.
    pub(crate) fn absorb(&mut self, snap: &Snapshot, cycle: u32) {
        for (sender, outbox) in snap.outboxes.iter().enumerate() {
            for (id, item) in outbox {
                self.note_sent(id, sender, item.to.clone(), Some(item.sha.clone()), cycle);
                if item.accepted {
                    self.note_acked(id, cycle);
                }
            }
        }
    }
}

/// One row of `outbox --json`.
#[derive(Clone, Debug)]
pub(crate) struct OutboxItem {
    pub to: Vec<String>,
    pub sha: String,
    pub accepted: bool,
    pub refused: Option<String>,
    /// Recipient id → state (`queued`, `accepted`, `delivered`, ...).
    pub states: BTreeMap<String, String>,
}

/// One row of `inbox --json`.
#[derive(Clone, Debug)]
pub(crate) struct InboxRow {
    pub id: String,
    pub quarantined: bool,
    pub sha: Option<String>,
    pub receipt_sent: bool,
}

/// A recipient's inbox, as listed and as on disk.
#[derive(Clone, Debug, Default)]
pub(crate) struct InboxView {
    pub rows: Vec<InboxRow>,
    pub disk_bundles: BTreeSet<String>,
    pub disk_records: BTreeSet<String>,
    pub parts: Vec<String>,
    pub quarantine_files: Vec<String>,
}

/// Every node's outbox or inbox and the relay's stored files, at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub outboxes: Vec<BTreeMap<String, OutboxItem>>,
    pub inboxes: Vec<InboxView>,
    pub relay_blobs: Vec<String>,
    pub relay_parts: Vec<String>,
}

impl Snapshot {
    pub(crate) fn take(
        senders: &[Node],
        recipients: &[Node],
        relay: &RelayProcess,
    ) -> Result<Self, String> {
        Ok(Self {
            outboxes: senders.iter().map(read_outbox).collect::<Result<_, _>>()?,
            inboxes: recipients
                .iter()
                .map(read_inbox)
                .collect::<Result<_, _>>()?,
            relay_blobs: relay.blob_files(),
            relay_parts: file_names(&relay.data.join("incoming")),
        })
    }

    /// Inbox entries over all recipients.
    pub(crate) fn delivered(&self) -> usize {
        self.inboxes.iter().map(|i| i.rows.len()).sum()
    }
}

fn json_rows(node: &Node, what: &str) -> Result<Vec<Value>, String> {
    let out = node.run(&[what, "--json"]);
    if out.code != 0 {
        return Err(format!(
            "`{what} --json` failed on {}:\n{}",
            node.id,
            out.describe()
        ));
    }
    match serde_json::from_str(&out.stdout) {
        Ok(Value::Array(rows)) => Ok(rows),
        _ => Err(format!(
            "`{what} --json` on {} printed no JSON array:\n{}",
            node.id,
            out.describe()
        )),
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// `outbox --json`, by bundle id. An id listed twice is reported as a problem.
pub(crate) fn read_outbox(node: &Node) -> Result<BTreeMap<String, OutboxItem>, String> {
    let mut items = BTreeMap::new();
    for row in json_rows(node, "outbox")? {
        let id = string(&row["bundle_id"])
            .ok_or_else(|| format!("outbox row without bundle_id on {}: {row}", node.id))?;
        let states = row["recipients"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| Some((string(&r["id"])?, string(&r["state"])?)))
                    .collect()
            })
            .unwrap_or_default();
        let item = OutboxItem {
            to: row["to"]
                .as_array()
                .map(|a| a.iter().filter_map(string).collect())
                .unwrap_or_default(),
            sha: string(&row["ciphertext_sha256"]).unwrap_or_default(),
            accepted: !row["accepted_at"].is_null(),
            refused: string(&row["refused"]),
            states,
        };
        if items.insert(id.clone(), item).is_some() {
            return Err(format!("{}'s outbox lists bundle {id} twice", node.id));
        }
    }
    Ok(items)
}

/// `inbox --json` and the inbox directories on disk.
pub(crate) fn read_inbox(node: &Node) -> Result<InboxView, String> {
    let rows = json_rows(node, "inbox")?
        .into_iter()
        .map(|row| InboxRow {
            id: string(&row["bundle_id"]).unwrap_or_default(),
            quarantined: row["quarantined"].as_bool().unwrap_or(false),
            sha: string(&row["ciphertext_sha256"]),
            receipt_sent: row["receipt_sent"].as_bool().unwrap_or(false),
        })
        .collect();
    let mut view = InboxView {
        rows,
        ..InboxView::default()
    };
    let inbox = node.home.join("inbox");
    for name in file_names(&inbox) {
        if let Some(id) = name.strip_suffix(".dossier") {
            view.disk_bundles.insert(id.to_owned());
        } else if let Some(id) = name.strip_suffix(".json") {
            view.disk_records.insert(id.to_owned());
        }
    }
    view.parts = file_names(&inbox.join("incoming"))
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    view.quarantine_files = file_names(&node.home.join("quarantine"))
        .into_iter()
        .filter(|n| !n.starts_with(".dossier-tmp-"))
        .collect();
    Ok(view)
}

/// Every way `snap` breaks the invariants, given the ledger. Empty means the cycle passed.
/// `settled` is false while nodes may still be catching up: then only the problems no
/// further sync can repair are reported (a duplicate, a lost outbox item, a hash mismatch).
pub(crate) fn problems(
    ledger: &mut Ledger,
    snap: &Snapshot,
    senders: &[Node],
    recipients: &[Node],
    settled: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let recipient_index: BTreeMap<&str, usize> = recipients
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();

    // (d) No outbox item lost; none refused; none left behind.
    for (id, sent) in &ledger.sent {
        let sender = &senders[sent.sender];
        match snap.outboxes[sent.sender].get(id) {
            None => out.push(format!(
                "LOST OUTBOX ITEM: bundle {id} (first seen in cycle {}) is no longer in {}'s outbox",
                sent.cycle, sender.id
            )),
            Some(item) => {
                let file = sender.home.join("outbox").join(format!("{id}.dossier"));
                if !file.is_file() {
                    out.push(format!(
                        "LOST OUTBOX ITEM: {}'s outbox lists {id} but {} is gone",
                        sender.id,
                        file.display()
                    ));
                }
                if let Some(why) = &item.refused {
                    out.push(format!(
                        "REFUSED: the relay refused bundle {id} from {} for good after a crash: {why}",
                        sender.id
                    ));
                } else if settled && !item.accepted {
                    out.push(format!(
                        "STILL QUEUED: bundle {id} from {} (cycle {}) was not accepted by the relay after every node synced",
                        sender.id, sent.cycle
                    ));
                }
            }
        }
    }

    // (b) Acknowledged → in each recipient's inbox exactly once, receipt back at the sender.
    for (id, cycle) in &ledger.acked {
        let Some(sent) = ledger.sent.get(id) else {
            out.push(format!(
                "UNKNOWN BUNDLE: the relay acknowledged {id} (cycle {cycle}) but no outbox ever held it"
            ));
            continue;
        };
        for to in &sent.to {
            let Some(&r) = recipient_index.get(to.as_str()) else {
                continue;
            };
            let count = snap.inboxes[r].rows.iter().filter(|x| &x.id == id).count();
            if count > 1 || (settled && count == 0) {
                out.push(format!(
                    "{}: bundle {id} (acknowledged by the relay in cycle {cycle}) is in {to}'s inbox {count} times",
                    if count == 0 { "LOST ACKNOWLEDGED BUNDLE" } else { "DUPLICATE" }
                ));
            }
            let state = snap.outboxes[sent.sender]
                .get(id)
                .and_then(|item| item.states.get(to))
                .map(String::as_str)
                .unwrap_or("absent");
            if settled && !matches!(state, "delivered" | "opened") {
                out.push(format!(
                    "NO RECEIPT: {}'s outbox shows {to} `{state}` for bundle {id} (cycle {cycle}) after every node synced",
                    senders[sent.sender].id
                ));
            }
        }
    }

    // (c) Inboxes: unique, consistent with the disk, not quarantined, not phantom, intact.
    for (r, inbox) in snap.inboxes.iter().enumerate() {
        let node = &recipients[r];
        let mut seen = BTreeSet::new();
        for row in &inbox.rows {
            if !seen.insert(row.id.as_str()) {
                out.push(format!(
                    "DUPLICATE: {}'s `inbox --json` lists {} twice",
                    node.id, row.id
                ));
            }
            if row.quarantined {
                out.push(format!(
                    "QUARANTINED: {} quarantined bundle {} (its ciphertext failed verification after the crash)",
                    node.id, row.id
                ));
                continue;
            }
            match ledger.sent.get(&row.id) {
                Some(s) if s.to.iter().any(|t| t == &node.id) => {
                    check_hash(&mut ledger.hashed, r, node, row, s, &mut out);
                }
                _ => out.push(format!(
                    "PHANTOM: {}'s inbox holds {} which no sender addressed to it",
                    node.id, row.id
                )),
            }
            if settled && !row.receipt_sent {
                out.push(format!(
                    "NO RECEIPT: {} never posted its receipt for {}",
                    node.id, row.id
                ));
            }
        }
        let listed: BTreeSet<String> = inbox
            .rows
            .iter()
            .filter(|r| !r.quarantined)
            .map(|r| r.id.clone())
            .collect();
        if inbox.disk_bundles != listed || inbox.disk_records != listed {
            out.push(format!(
                "DISK MISMATCH: {}'s inbox lists {} bundles but inbox/ holds {} .dossier and {} .json files (extra: {:?})",
                node.id,
                listed.len(),
                inbox.disk_bundles.len(),
                inbox.disk_records.len(),
                inbox
                    .disk_bundles
                    .union(&inbox.disk_records)
                    .filter(|id| !listed.contains(*id))
                    .collect::<Vec<_>>()
            ));
        }
        for part in &inbox.parts {
            let id = part.trim_end_matches(".part");
            if listed.contains(id) {
                out.push(format!(
                    "DUPLICATE: {} holds inbox/incoming/{part} beside the finished inbox entry",
                    node.id
                ));
            } else if settled {
                out.push(format!(
                    "LEFTOVER DOWNLOAD: {} still holds inbox/incoming/{part} after every node synced",
                    node.id
                ));
            }
        }
        if !inbox.quarantine_files.is_empty() {
            out.push(format!(
                "QUARANTINED: {}'s quarantine/ holds {:?}",
                node.id, inbox.quarantine_files
            ));
        }
    }

    if settled && !snap.relay_blobs.is_empty() {
        out.push(format!(
            "RELAY LEAK: every bundle is delivered but the relay still holds bodies {:?}",
            snap.relay_blobs
        ));
    }
    if settled && !snap.relay_parts.is_empty() {
        out.push(format!(
            "RELAY LEAK: every bundle is delivered but the relay still holds uploads {:?}",
            snap.relay_parts
        ));
    }
    out
}

/// The inbox file is the ciphertext the sender deposited (checked once per entry).
fn check_hash(
    hashed: &mut BTreeSet<(usize, String)>,
    r: usize,
    node: &Node,
    row: &InboxRow,
    sent: &Sent,
    out: &mut Vec<String>,
) {
    if hashed.contains(&(r, row.id.clone())) {
        return;
    }
    let Some(expected) = &sent.sha else {
        return; // the sender's outbox has not shown it yet; checked next time
    };
    let file = node.home.join("inbox").join(format!("{}.dossier", row.id));
    let actual = if file.is_file() {
        sha256_file(&file)
    } else {
        String::new()
    };
    if &actual != expected || row.sha.as_deref() != Some(expected.as_str()) {
        out.push(format!(
            "CORRUPTED: {}'s inbox copy of {} hashes to {actual:?} (record says {:?}); the sender deposited {expected}",
            node.id, row.id, row.sha
        ));
    } else {
        hashed.insert((r, row.id.clone()));
    }
}

/// What one stretch of the relay's log says.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogScan {
    /// Bundle ids of `deposit accepted` lines: acknowledged once durable.
    pub accepted: Vec<String>,
    /// `store open` lines (one per start).
    pub opens: u64,
    /// Recovery counts from `store open`: orphan bodies removed, uploads requeued,
    /// orphan parts removed.
    pub orphan_blobs_removed: u64,
    pub uploads_requeued: u64,
    pub orphan_parts_removed: u64,
    /// Lines at ERROR level, or naming an inconsistent or corrupt store, or a panic.
    pub bad: Vec<String>,
    /// Lines at WARN level.
    pub warnings: u64,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=");
    let at = line.find(&key)? + key.len();
    line[at..].split_whitespace().next()
}

/// Whether the bytes of `log` after byte `from` contain `needle` (cheap enough to poll).
pub(crate) fn log_mentions(log: &Path, from: u64, needle: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(log) else {
        return false;
    };
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut tail).is_err() {
        return false;
    }
    crate::contains_bytes(&tail, needle.as_bytes())
}

/// Reads the complete lines of `log` after byte `from`; returns the scan and the offset
/// just past the last complete line (a line the relay is still writing is read next time).
pub(crate) fn scan_log(log: &Path, from: u64) -> (LogScan, u64) {
    let bytes = fs::read(log).unwrap_or_default();
    let start = (from as usize).min(bytes.len());
    let end = bytes[start..]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(start, |i| start + i + 1);
    let text = String::from_utf8_lossy(&bytes[start..end]);
    let mut scan = LogScan::default();
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if line.contains(" ERROR ")
            || ["inconsistent", "corrupt", "panicked"]
                .iter()
                .any(|w| lower.contains(w))
        {
            scan.bad.push(line.to_owned());
        }
        if line.contains(" WARN ") {
            scan.warnings += 1;
        }
        if line.contains(" deposit accepted ") {
            if let Some(id) = field(line, "bundle_id") {
                scan.accepted.push(id.to_owned());
            }
        }
        if line.contains(" store open ") {
            scan.opens += 1;
            let n = |k| {
                field(line, k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            scan.orphan_blobs_removed += n("orphan_blobs_removed");
            scan.uploads_requeued += n("uploads_requeued");
            scan.orphan_parts_removed += n("orphan_parts_removed");
        }
    }
    (scan, end as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn node(root: &Path, label: &str, id: &str) -> Node {
        Node {
            label: label.into(),
            id: id.into(),
            home: root.join(label),
            scratch: root.join("scratch"),
            passphrase: String::new(),
            counter: AtomicUsize::new(0),
        }
    }

    /// One sender, one recipient, one bundle sent, accepted, delivered and receipted, with
    /// the files on disk: the state after a good cycle.
    fn delivered_world(root: &Path) -> (Vec<Node>, Vec<Node>, Ledger, Snapshot) {
        let sender = node(root, "s", "us-mercy-intl");
        let recipient = node(root, "r", "th-bangkok-care");
        let id = "0123456789abcdef0123456789abcdef";
        let body = b"ciphertext";
        let sha = crate::sha256_hex(body);
        crate::write_file(
            &sender.home.join("outbox").join(format!("{id}.dossier")),
            body,
        );
        crate::write_file(
            &recipient.home.join("inbox").join(format!("{id}.dossier")),
            body,
        );
        crate::write_file(
            &recipient.home.join("inbox").join(format!("{id}.json")),
            b"{}",
        );
        let item = OutboxItem {
            to: vec![recipient.id.clone()],
            sha: sha.clone(),
            accepted: true,
            refused: None,
            states: [(recipient.id.clone(), "delivered".to_owned())].into(),
        };
        let mut snap = Snapshot {
            outboxes: vec![[(id.to_owned(), item)].into()],
            inboxes: vec![InboxView::default()],
            ..Snapshot::default()
        };
        snap.inboxes[0].rows.push(InboxRow {
            id: id.into(),
            quarantined: false,
            sha: Some(sha),
            receipt_sent: true,
        });
        snap.inboxes[0].disk_bundles.insert(id.into());
        snap.inboxes[0].disk_records.insert(id.into());
        let mut ledger = Ledger::default();
        ledger.absorb(&snap, 1);
        (vec![sender], vec![recipient], ledger, snap)
    }

    #[test]
    fn a_delivered_cycle_has_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r, mut ledger, snap) = delivered_world(dir.path());
        assert_eq!(
            problems(&mut ledger, &snap, &s, &r, true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_acknowledged_bundle_missing_from_the_inbox_is_lost_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r, mut ledger, mut snap) = delivered_world(dir.path());
        snap.inboxes[0] = InboxView::default();
        assert!(
            problems(&mut ledger, &snap, &s, &r, false).is_empty(),
            "may still arrive"
        );
        let found = problems(&mut ledger, &snap, &s, &r, true).join("\n");
        assert!(found.contains("LOST ACKNOWLEDGED BUNDLE"), "{found}");
    }

    #[test]
    fn a_second_copy_a_lost_outbox_item_and_altered_bytes_are_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (s, r, mut ledger, mut snap) = delivered_world(dir.path());
        let row = snap.inboxes[0].rows[0].clone();
        snap.inboxes[0].rows.push(row);
        let found = problems(&mut ledger, &snap, &s, &r, false).join("\n");
        assert!(found.contains("DUPLICATE"), "{found}");

        let (s, r, mut ledger, mut snap) = delivered_world(dir.path());
        snap.outboxes[0].clear();
        let found = problems(&mut ledger, &snap, &s, &r, false).join("\n");
        assert!(found.contains("LOST OUTBOX ITEM"), "{found}");

        let (s, r, mut ledger, snap) = delivered_world(dir.path());
        let id = &snap.inboxes[0].rows[0].id;
        crate::write_file(
            &r[0].home.join("inbox").join(format!("{id}.dossier")),
            b"other",
        );
        let found = problems(&mut ledger, &snap, &s, &r, false).join("\n");
        assert!(found.contains("CORRUPTED"), "{found}");
    }

    #[test]
    fn the_log_scan_reads_complete_lines_and_finds_acks_recoveries_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        let text = "2026-11-23T13:40:39Z  INFO store open orphan_blobs_removed=1 uploads_requeued=2 orphan_parts_removed=0\n\
                    2026-11-23T13:40:40Z  INFO deposit accepted bundle_id=4131056b271f8fb809b3556c6ca3f78f sender=us-mercy-intl length=8635 recipients=1\n\
                    2026-11-23T13:40:41Z ERROR store failure error=relay store is inconsistent (x)\n\
                    2026-11-23T13:40:41Z  WARN something\n\
                    2026-11-23T13:40:42Z  INFO deposit accepted bundle_id=partial";
        fs::write(&log, text).unwrap();
        let (scan, end) = scan_log(&log, 0);
        assert_eq!(scan.accepted, ["4131056b271f8fb809b3556c6ca3f78f"]);
        assert_eq!(
            (scan.opens, scan.orphan_blobs_removed, scan.uploads_requeued),
            (1, 1, 2)
        );
        assert_eq!(scan.bad.len(), 1);
        assert_eq!(scan.warnings, 1);
        assert_eq!(
            end as usize,
            text.rfind('\n').unwrap() + 1,
            "the unfinished line waits"
        );
        let (again, end2) = scan_log(&log, end);
        assert!(again.accepted.is_empty() && end2 == end);
    }
}
