//! Store behaviour with simulated time, on a temporary data directory. Reopening the store
//! stands in for a relay restart.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;

const T0: i64 = 1_700_000_000;
const ID1: &str = "0123456789abcdef0123456789abcdef";
const ID2: &str = "fedcba9876543210fedcba9876543210";

fn limits() -> Limits {
    Limits {
        max_bundle_bytes: 1 << 20,
        quota_bytes_per_facility: 4 << 20,
        ..Limits::default()
    }
}

fn open(dir: &Path) -> RedbStore {
    RedbStore::open(dir, limits()).unwrap()
}

/// A store with three enrolled facilities.
fn enrolled(dir: &Path) -> RedbStore {
    let s = open(dir);
    for f in ["us-a", "th-b", "in-c"] {
        s.enroll(f, format!("card of {f}").as_bytes(), T0).unwrap();
    }
    s
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn meta(id: &str, to: &[&str], body: &[u8]) -> DepositMeta {
    DepositMeta {
        bundle_id: id.into(),
        sender: "us-a".into(),
        recipients: to.iter().map(|s| (*s).into()).collect(),
        length: body.len() as u64,
        sha256: Sha256::digest(body).into(),
    }
}

fn upload(s: &RedbStore, m: &DepositMeta, now: i64) -> Box<dyn DepositUpload> {
    match s.begin_deposit(m, now).unwrap() {
        DepositStart::Upload(u) => u,
        other => panic!("expected an upload, got {other:?}"),
    }
}

fn deposit(s: &RedbStore, m: &DepositMeta, body: &[u8], now: i64) -> Accepted {
    let mut u = upload(s, m, now);
    assert_eq!(u.offset(), 0);
    for chunk in body.chunks(1000) {
        u.write_all(chunk).unwrap();
    }
    u.finish(now).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read_blob(s: &RedbStore, id: &str, who: &str) -> Vec<u8> {
    let mut held = s.open_blob(id, who).unwrap();
    let mut out = Vec::new();
    held.reader.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, held.length);
    out
}

fn ids(entries: &[MailboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.bundle_id.as_str()).collect()
}

#[test]
fn deposit_for_two_recipients_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(5000, 1);
    let m = meta(ID1, &["th-b", "in-c"], &b);
    let accepted = deposit(&s, &m, &b, T0 + 5);
    assert_eq!(accepted.accepted_at, T0 + 5);

    for who in ["th-b", "in-c"] {
        let mb = s.mailbox(who, 0, 10).unwrap();
        assert_eq!(ids(&mb), [ID1]);
        assert_eq!(mb[0].from, "us-a");
        assert_eq!(mb[0].length, 5000);
        assert_eq!(mb[0].sha256, m.sha256);
        assert_eq!(mb[0].deposited_at, T0 + 5);
        assert_eq!(read_blob(&s, ID1, who), b);
    }
    assert!(s.mailbox("us-a", 0, 10).unwrap().is_empty());
    assert_eq!(files_in(&dir.path().join("blobs")), [ID1]);
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert_eq!(s.usage("us-a").unwrap(), 5000);
}

#[test]
fn mailbox_is_oldest_first_bounded_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let (b1, b2) = (body(10, 1), body(20, 2));
    deposit(&s, &meta(ID1, &["th-b"], &b1), &b1, T0);
    deposit(&s, &meta(ID2, &["th-b"], &b2), &b2, T0 + 1);
    let all = s.mailbox("th-b", 0, 10).unwrap();
    assert_eq!(ids(&all), [ID1, ID2]);
    assert!(all[0].seq < all[1].seq);
    assert_eq!(ids(&s.mailbox("th-b", 0, 1).unwrap()), [ID1]);
    assert_eq!(ids(&s.mailbox("th-b", all[0].seq, 10).unwrap()), [ID2]);
    assert!(s.mailbox("th-b", u64::MAX, 10).unwrap().is_empty());
}

#[test]
fn resume_after_restart_continues_from_held_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let b = body(10_000, 7);
    let m = meta(ID1, &["th-b"], &b);
    {
        let s = enrolled(dir.path());
        let mut u = upload(&s, &m, T0);
        u.write_all(&b[..4321]).unwrap();
        // Connection dropped, relay killed: neither the writer nor the store is finished.
    }
    let s = open(dir.path());
    assert_eq!(
        s.recovery(),
        &Recovery::default(),
        "a recorded partial is kept"
    );
    assert!(s.mailbox("th-b", 0, 10).unwrap().is_empty());
    let mut u = upload(&s, &m, T0 + 60);
    assert_eq!(u.offset(), 4321);
    u.write_all(&b[4321..]).unwrap();
    u.finish(T0 + 61).unwrap();
    assert_eq!(read_blob(&s, ID1, "th-b"), b);
    assert_eq!(s.usage("us-a").unwrap(), 10_000, "charged once");
}

#[test]
fn a_resumed_upload_supersedes_the_dropped_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(30_000, 3);
    let m = meta(ID1, &["th-b"], &b);
    let mut old = upload(&s, &m, T0);
    old.write_all(&b[..10_000]).unwrap();
    // Whole 4 KiB blocks are on disk after each write; a partial block waits in memory.
    let mut new = upload(&s, &m, T0 + 1);
    assert_eq!(new.offset(), 8192);
    assert!(matches!(
        old.write_all(&b[10_000..20_000]),
        Err(StoreError::Superseded { .. })
    ));
    new.write_all(&b[8192..]).unwrap();
    assert!(matches!(old.finish(T0), Err(StoreError::Superseded { .. })));
    new.finish(T0 + 2).unwrap();
    assert_eq!(read_blob(&s, ID1, "th-b"), b);
}

#[test]
fn hash_mismatch_is_refused_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(2000, 4);
    let m = meta(ID1, &["th-b"], &b);
    let mut u = upload(&s, &m, T0);
    let mut tampered = b.clone();
    tampered[1500] ^= 1;
    u.write_all(&tampered).unwrap();
    assert!(matches!(
        u.finish(T0),
        Err(StoreError::HashMismatch { bundle_id }) if bundle_id == ID1
    ));
    assert!(s.mailbox("th-b", 0, 10).unwrap().is_empty());
    assert!(files_in(&dir.path().join("blobs")).is_empty());
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert_eq!(s.usage("us-a").unwrap(), 0);
    // The sender starts again from zero and succeeds.
    deposit(&s, &m, &b, T0 + 1);
}

#[test]
fn hash_covers_the_prefix_held_before_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let b = body(4000, 5);
    let m = meta(ID1, &["th-b"], &b);
    {
        let s = enrolled(dir.path());
        let mut u = upload(&s, &m, T0);
        u.write_all(&b[..2000]).unwrap();
    }
    // Damage the held prefix behind the store's back.
    let part = dir.path().join("incoming").join(format!("{ID1}.part"));
    let mut held = std::fs::read(&part).unwrap();
    held[10] ^= 0xff;
    std::fs::write(&part, held).unwrap();
    let s = open(dir.path());
    let mut u = upload(&s, &m, T0);
    assert_eq!(u.offset(), 2000);
    u.write_all(&b[2000..]).unwrap();
    assert!(matches!(u.finish(T0), Err(StoreError::HashMismatch { .. })));
    assert!(!part.exists());
}

#[test]
fn length_is_enforced_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(1000, 6);
    let m = meta(ID1, &["th-b"], &b);
    let mut u = upload(&s, &m, T0);
    u.write_all(&b[..600]).unwrap();
    assert!(matches!(
        u.write_all(&[0u8; 401]),
        Err(StoreError::LengthMismatch {
            expected: 1000,
            received: 1001,
            ..
        })
    ));
    assert!(matches!(
        u.finish(T0),
        Err(StoreError::LengthMismatch { received: 600, .. })
    ));
    // The short upload is kept for resuming.
    let mut u = upload(&s, &m, T0);
    assert_eq!(u.offset(), 600);
    u.write_all(&b[600..]).unwrap();
    u.finish(T0).unwrap();
}

#[test]
fn identical_deposit_is_idempotent_and_other_content_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(1234, 8);
    let m = meta(ID1, &["th-b", "in-c"], &b);
    deposit(&s, &m, &b, T0);

    let mut reordered = m.clone();
    reordered.recipients.reverse();
    for again in [&m, &reordered] {
        match s.begin_deposit(again, T0 + 100).unwrap() {
            DepositStart::AlreadyAccepted(a) => assert_eq!(
                a,
                Accepted {
                    bundle_id: ID1.into(),
                    accepted_at: T0
                }
            ),
            other => panic!("expected already accepted, got {other:?}"),
        }
    }
    assert_eq!(s.mailbox("th-b", 0, 10).unwrap().len(), 1);
    assert_eq!(s.usage("us-a").unwrap(), 1234);

    let other = body(1234, 9);
    let mut conflicting = vec![
        meta(ID1, &["th-b", "in-c"], &other),
        meta(ID1, &["th-b"], &b),
    ];
    let mut from_c = m.clone();
    from_c.sender = "in-c".into();
    conflicting.push(from_c);
    for c in &conflicting {
        assert!(matches!(
            s.begin_deposit(c, T0),
            Err(StoreError::Conflict { bundle_id }) if bundle_id == ID1
        ));
    }

    // Still recognised after every recipient collected it: no second delivery.
    s.ack("th-b", ID1, T0 + 1).unwrap();
    s.ack("in-c", ID1, T0 + 1).unwrap();
    assert!(matches!(
        s.begin_deposit(&m, T0 + 2).unwrap(),
        DepositStart::AlreadyAccepted(_)
    ));
    assert!(s.mailbox("th-b", 0, 10).unwrap().is_empty());
    assert!(files_in(&dir.path().join("blobs")).is_empty());
}

#[test]
fn conflict_is_detected_during_an_upload_too() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(100, 1);
    let _u = upload(&s, &meta(ID1, &["th-b"], &b), T0);
    assert!(matches!(
        s.begin_deposit(&meta(ID1, &["th-b"], &body(100, 2)), T0),
        Err(StoreError::Conflict { .. })
    ));
}

#[test]
fn acks_release_the_body_once_every_recipient_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(700, 2);
    deposit(&s, &meta(ID1, &["th-b", "in-c"], &b), &b, T0);

    assert_eq!(s.ack("th-b", ID1, T0 + 1).unwrap(), AckOutcome::Acked);
    assert_eq!(
        s.ack("th-b", ID1, T0 + 2).unwrap(),
        AckOutcome::AlreadyAcked
    );
    assert!(s.mailbox("th-b", 0, 10).unwrap().is_empty());
    assert!(matches!(
        s.open_blob(ID1, "th-b"),
        Err(StoreError::UnknownBundle { .. })
    ));
    assert_eq!(read_blob(&s, ID1, "in-c"), b);
    assert_eq!(files_in(&dir.path().join("blobs")), [ID1]);
    assert_eq!(s.usage("us-a").unwrap(), 700);

    assert_eq!(s.ack("in-c", ID1, T0 + 3).unwrap(), AckOutcome::Released);
    assert!(files_in(&dir.path().join("blobs")).is_empty());
    assert_eq!(s.usage("us-a").unwrap(), 0);
    assert_eq!(
        s.ack("in-c", ID1, T0 + 4).unwrap(),
        AckOutcome::AlreadyAcked
    );

    // Only addressed recipients, only known bundles.
    assert!(matches!(
        s.ack("us-a", ID1, T0),
        Err(StoreError::UnknownBundle { .. })
    ));
    assert!(matches!(
        s.ack("th-b", ID2, T0),
        Err(StoreError::UnknownBundle { .. })
    ));
}

#[test]
fn size_limit_and_quota_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let mut huge = meta(ID1, &["th-b"], b"x");
    huge.length = (1 << 20) + 1;
    assert!(matches!(
        s.begin_deposit(&huge, T0),
        Err(StoreError::TooLarge {
            length: 1_048_577,
            max: 1_048_576
        })
    ));

    // Four 1 MiB uploads in progress fill the 4 MiB quota; a fifth is refused.
    let mut uploads = Vec::new();
    for i in 0..4u8 {
        let b = body(1 << 20, i);
        let id = format!("{:032x}", u128::from(i) + 1);
        uploads.push((upload(&s, &meta(&id, &["th-b"], &b), T0), b));
    }
    let b = body(1, 9);
    let fifth = meta(ID2, &["th-b"], &b);
    match s.begin_deposit(&fifth, T0) {
        Err(StoreError::OverQuota {
            facility,
            used,
            requested,
            quota,
        }) => {
            assert_eq!(facility, "us-a");
            assert_eq!((used, requested, quota), (4 << 20, 1, 4 << 20));
        }
        other => panic!("expected over quota, got {other:?}"),
    }
    // Deliver one: its bytes are freed and the fifth fits.
    let (mut u, b0) = uploads.remove(0);
    u.write_all(&b0).unwrap();
    let id0 = u.meta().bundle_id.clone();
    u.finish(T0).unwrap();
    s.ack("th-b", &id0, T0).unwrap();
    assert_eq!(s.usage("us-a").unwrap(), 3 << 20);
    deposit(&s, &fifth, &b, T0);
}

#[test]
fn expiry_notifies_the_sender_and_deletes_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let retention = s.limits().retention_secs;
    let b = body(900, 3);
    let m = meta(ID1, &["th-b", "in-c"], &b);
    deposit(&s, &m, &b, T0);
    s.ack("th-b", ID1, T0 + 10).unwrap();

    let early = s.expire(T0 + retention - 1).unwrap();
    assert!(early.expired.is_empty());
    assert_eq!(read_blob(&s, ID1, "in-c"), b);

    let report = s.expire(T0 + retention).unwrap();
    assert_eq!(
        report.expired,
        [ExpiredBundle {
            bundle_id: ID1.into(),
            sender: "us-a".into(),
            recipients: vec!["in-c".into()],
        }]
    );
    assert!(!report.more);
    assert!(files_in(&dir.path().join("blobs")).is_empty());
    assert!(s.mailbox("in-c", 0, 10).unwrap().is_empty());
    assert!(matches!(
        s.open_blob(ID1, "in-c"),
        Err(StoreError::UnknownBundle { .. })
    ));
    assert_eq!(s.usage("us-a").unwrap(), 0);

    let log = s.receipts("us-a", 0, 10).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].body, NoticeBody::Expired);
    assert_eq!(log[0].recipient, "in-c");
    assert_eq!(log[0].at, T0 + retention);

    // A retry of the expired deposit is told so, not delivered.
    assert!(matches!(
        s.begin_deposit(&m, T0 + retention + 1),
        Err(StoreError::Expired { .. })
    ));
    // A second pass finds nothing new.
    assert!(s.expire(T0 + retention + 5).unwrap().expired.is_empty());
}

#[test]
fn abandoned_uploads_are_discarded_after_the_retention_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(500, 1);
    let mut u = upload(&s, &meta(ID1, &["th-b"], &b), T0);
    u.write_all(&b[..100]).unwrap();
    assert_eq!(s.usage("us-a").unwrap(), 500);
    let report = s.expire(T0 + s.limits().retention_secs).unwrap();
    assert_eq!(report.abandoned_uploads, 1);
    assert_eq!(s.usage("us-a").unwrap(), 0);
    assert!(files_in(&dir.path().join("incoming")).is_empty());
    assert!(matches!(
        u.write_all(&b[100..]),
        Err(StoreError::Superseded { .. })
    ));
}

#[test]
fn receipts_are_ordered_paged_deduplicated_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(50, 1);
    deposit(&s, &meta(ID1, &["th-b", "in-c"], &b), &b, T0);

    let r1 = s
        .post_receipt(ID1, "th-b", b"signed by th-b", T0 + 1)
        .unwrap();
    let r2 = s
        .post_receipt(ID1, "in-c", b"signed by in-c", T0 + 2)
        .unwrap();
    assert!(r1 < r2);
    assert_eq!(
        s.post_receipt(ID1, "th-b", b"signed by th-b", T0 + 3)
            .unwrap(),
        r1,
        "a re-posted receipt is not logged twice"
    );
    assert!(matches!(
        s.post_receipt(ID1, "us-a", b"not a recipient", T0),
        Err(StoreError::UnknownBundle { .. })
    ));
    assert!(matches!(
        s.post_receipt(ID2, "th-b", b"unknown", T0),
        Err(StoreError::UnknownBundle { .. })
    ));
    assert!(matches!(
        s.post_receipt(ID1, "th-b", &[0u8; MAX_RECEIPT_BYTES + 1], T0),
        Err(StoreError::TooLarge { .. })
    ));

    let log = s.receipts("us-a", 0, 10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[0],
        SenderNotice {
            seq: r1,
            bundle_id: ID1.into(),
            recipient: "th-b".into(),
            at: T0 + 1,
            body: NoticeBody::Receipt(b"signed by th-b".to_vec()),
        }
    );
    assert_eq!(log[1].seq, r2);
    assert_eq!(s.receipts("us-a", r1, 10).unwrap().len(), 1);
    assert_eq!(s.receipts("us-a", 0, 1).unwrap()[0].seq, r1);
    assert!(s.receipts("us-a", r2, 10).unwrap().is_empty());
    assert!(s.receipts("th-b", 0, 10).unwrap().is_empty());

    // Receipts outlive delivery...
    s.ack("th-b", ID1, T0 + 5).unwrap();
    s.ack("in-c", ID1, T0 + 5).unwrap();
    assert_eq!(s.receipts("us-a", 0, 10).unwrap().len(), 2);
    // ...until the receipt retention ends.
    let keep = s.limits().receipt_retention_secs;
    let report = s.expire(T0 + 1 + keep).unwrap();
    assert_eq!(report.receipts_purged, 1);
    assert_eq!(s.receipts("us-a", 0, 10).unwrap().len(), 1);
    let report = s.expire(T0 + 5 + keep).unwrap();
    assert_eq!((report.receipts_purged, report.records_purged), (1, 1));
    assert!(s.receipts("us-a", 0, 10).unwrap().is_empty());
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = body(3333, 4);
    let last_seq;
    {
        let s = enrolled(dir.path());
        deposit(&s, &meta(ID1, &["th-b", "in-c"], &b), &b, T0);
        s.ack("th-b", ID1, T0 + 1).unwrap();
        last_seq = s.post_receipt(ID1, "th-b", b"receipt", T0 + 2).unwrap();
        s.revoke("in-c", T0 + 3).unwrap();
    }
    let s = open(dir.path());
    assert_eq!(s.recovery(), &Recovery::default());
    assert_eq!(s.enrollments().unwrap().len(), 3);
    assert_eq!(
        s.enrollment("in-c").unwrap().unwrap().revoked_at,
        Some(T0 + 3)
    );
    assert!(s.mailbox("th-b", 0, 10).unwrap().is_empty());
    assert_eq!(ids(&s.mailbox("in-c", 0, 10).unwrap()), [ID1]);
    assert_eq!(read_blob(&s, ID1, "in-c"), b);
    assert_eq!(s.receipts("us-a", 0, 10).unwrap().len(), 1);
    assert_eq!(s.usage("us-a").unwrap(), 3333);
    // Sequence numbers keep increasing across restarts.
    let next = s.post_receipt(ID1, "in-c", b"another", T0 + 4).unwrap();
    assert!(next > last_seq);
}

#[test]
fn open_removes_orphans_and_requeues_unindexed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let b = body(800, 5);
    let m = meta(ID2, &["th-b"], &b);
    {
        let s = enrolled(dir.path());
        let mut u = upload(&s, &m, T0);
        u.write_all(&b).unwrap();
    }
    let blobs = dir.path().join("blobs");
    let incoming = dir.path().join("incoming");
    // A crash after the rename, before the commit.
    std::fs::rename(incoming.join(format!("{ID2}.part")), blobs.join(ID2)).unwrap();
    // A crash after a release's commit, before the file was removed.
    std::fs::write(blobs.join(ID1), b"left over").unwrap();
    // A part file whose upload record never committed.
    std::fs::write(incoming.join(format!("{ID1}.part")), b"left over").unwrap();
    // Something that is not ours stays.
    std::fs::write(blobs.join("README"), b"operator's note").unwrap();

    let s = open(dir.path());
    assert_eq!(
        s.recovery(),
        &Recovery {
            orphan_blobs_removed: 1,
            uploads_requeued: 1,
            orphan_parts_removed: 1,
        }
    );
    assert_eq!(files_in(&blobs), ["README"]);
    assert_eq!(files_in(&incoming), [format!("{ID2}.part")]);
    let u = upload(&s, &m, T0 + 1);
    assert_eq!(u.offset(), 800, "nothing is re-sent");
    u.finish(T0 + 1).unwrap();
    assert_eq!(read_blob(&s, ID2, "th-b"), b);
}

#[test]
fn only_enrolled_unrevoked_facilities_take_part() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(10, 1);
    let mut m = meta(ID1, &["th-b"], &b);
    m.sender = "xx-stranger".into();
    assert!(matches!(
        s.begin_deposit(&m, T0),
        Err(StoreError::NotEnrolled { facility }) if facility == "xx-stranger"
    ));
    let m = meta(ID1, &["th-b", "zz-nobody"], &b);
    assert!(matches!(
        s.begin_deposit(&m, T0),
        Err(StoreError::NotEnrolled { facility }) if facility == "zz-nobody"
    ));

    let revoked = s.revoke("th-b", T0 + 1).unwrap();
    assert_eq!(revoked.revoked_at, Some(T0 + 1));
    assert_eq!(
        s.revoke("th-b", T0 + 2).unwrap().revoked_at,
        Some(T0 + 1),
        "first revocation time kept"
    );
    assert!(matches!(
        s.begin_deposit(&meta(ID1, &["th-b"], &b), T0),
        Err(StoreError::Revoked { facility }) if facility == "th-b"
    ));
    assert!(matches!(
        s.revoke("zz-nobody", T0),
        Err(StoreError::NotEnrolled { .. })
    ));

    // Re-enrolling lifts the revocation.
    s.enroll("th-b", b"new card", T0 + 5).unwrap();
    let e = s.enrollment("th-b").unwrap().unwrap();
    assert_eq!((e.card.as_slice(), e.revoked_at), (&b"new card"[..], None));
    deposit(&s, &meta(ID1, &["th-b"], &b), &b, T0 + 6);
}

#[test]
fn malformed_ids_never_reach_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(10, 1);
    for bad in [
        "../../etc/passwd",
        "0123456789ABCDEF0123456789ABCDEF",
        "",
        "0123",
    ] {
        assert!(matches!(
            s.begin_deposit(&meta(bad, &["th-b"], &b), T0),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.open_blob(bad, "th-b"),
            Err(StoreError::UnknownBundle { .. })
        ));
    }
    assert!(matches!(
        s.begin_deposit(&meta(ID1, &[], &b), T0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.begin_deposit(&meta(ID1, &["th-b", "th-b"], &b), T0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.enroll("has space", b"card", T0),
        Err(StoreError::Invalid(_))
    ));
}

#[cfg(unix)]
#[test]
fn data_is_private_to_the_relay_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("relay-data");
    let s = RedbStore::open(&root, limits()).unwrap();
    s.enroll("us-a", b"card", T0).unwrap();
    s.enroll("th-b", b"card", T0).unwrap();
    let b = body(10, 1);
    deposit(&s, &meta(ID1, &["th-b"], &b), &b, T0);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("blobs")), 0o700);
    assert_eq!(mode(&root.join("incoming")), 0o700);
    assert_eq!(mode(&root.join("store.redb")), 0o600);
    assert_eq!(mode(&root.join("blobs").join(ID1)), 0o600);
}

#[test]
fn a_second_open_of_a_live_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path());
    let err = RedbStore::open(dir.path(), limits()).unwrap_err();
    assert!(err.is_internal(), "{err}");
}

#[test]
fn refusals_say_what_to_do() {
    let e = StoreError::OverQuota {
        facility: "us-a".into(),
        used: 10,
        requested: 5,
        quota: 12,
    };
    assert!(e.to_string().contains("ask the relay operator"));
    assert!(
        StoreError::NotEnrolled {
            facility: "x".into()
        }
        .to_string()
        .contains("dossier-relay enroll")
    );
    assert!(!e.is_internal());
}

#[test]
fn the_store_is_shared_across_threads_behind_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let s: std::sync::Arc<dyn RelayStore> = std::sync::Arc::new(enrolled(dir.path()));
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                let b = body(2000 + usize::from(i), i);
                let id = format!("{:032x}", u128::from(i) + 100);
                let m = meta(&id, &["th-b", "in-c"], &b);
                let DepositStart::Upload(mut u) = s.begin_deposit(&m, T0).unwrap() else {
                    panic!("new deposit");
                };
                u.write_all(&b).unwrap();
                u.finish(T0).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mb = s.mailbox("th-b", 0, 100).unwrap();
    assert_eq!(mb.len(), 8);
    assert!(mb.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(files_in(&dir.path().join("blobs")).len(), 8);
}

#[test]
fn expiry_works_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let s = enrolled(dir.path());
    let b = body(16, 1);
    for i in 0..257u128 {
        deposit(&s, &meta(&format!("{:032x}", i + 1), &["th-b"], &b), &b, T0);
    }
    let at = T0 + s.limits().retention_secs;
    let first = s.expire(at).unwrap();
    assert_eq!((first.expired.len(), first.more), (256, true));
    let second = s.expire(at).unwrap();
    assert_eq!((second.expired.len(), second.more), (1, false));
    assert_eq!(
        s.receipts("us-a", 0, usize::MAX).unwrap().len(),
        MAX_LIST_ITEMS
    );
    assert!(files_in(&dir.path().join("blobs")).is_empty());
}
