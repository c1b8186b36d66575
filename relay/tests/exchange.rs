//! Deposits, mailboxes, fetches, acknowledgements, receipts and notices over a real relay on
//! loopback (docs/protocol.md §15.3–15.4, §16; DESIGN.md invariants 5, 6 and 9).

mod common;

use std::time::Duration;

use common::{Client, Party, TestRelay, body, bundle_id, refusal, sha256_hex};
use dossier_bundle::manifest::PartyRef;
use dossier_bundle::receipt::{DeliveryReceipt, ReceiptStatus, SignedReceipt};
use dossier_bundle::{BundleId, Timestamp};
use dossier_wire::message::NoticeKind;
use dossier_wire::{ClientMessage, RefusalCode, ServerMessage};
use sha2::{Digest, Sha256};

fn accepted(msg: &ServerMessage, id: &str) {
    match msg {
        ServerMessage::DepositAccepted { bundle_id, .. } => assert_eq!(bundle_id, id),
        other => panic!("expected deposit_accepted, got {other:?}"),
    }
}

/// The next pushed notice is `kind` about `id` (within 10 s, without polling).
async fn expect_notice(client: &Client, kind: NoticeKind, id: &str) {
    let notice = tokio::time::timeout(Duration::from_secs(10), client.next_notice())
        .await
        .expect("a notice arrives");
    assert_eq!(
        notice,
        ServerMessage::Notice {
            kind,
            bundle_id: id.to_owned()
        }
    );
}

fn receipt_for(party: &Party, bundle_id: &str, ciphertext: &[u8]) -> String {
    let receipt = DeliveryReceipt {
        bundle_id: BundleId::parse(bundle_id).unwrap(),
        ciphertext_sha256: Sha256::digest(ciphertext).into(),
        recipient: PartyRef {
            id: party.id.clone(),
            key: party.card.key_id(),
        },
        status: ReceiptStatus::Delivered,
        reason: None,
        at: Timestamp::from_unix(1_900_000_000).unwrap(),
    };
    let signed = SignedReceipt::sign(receipt, &party.keys).unwrap();
    String::from_utf8(signed.to_bytes()).unwrap()
}

#[tokio::test]
async fn deposit_list_fetch_ack_release() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let c = Party::new("in-c");
    let relay = TestRelay::start(&[&a, &b, &c]).await;
    let sender = relay.client(&a).await;
    let id = bundle_id();
    let ciphertext = body(3 * 1024 * 1024 + 17, 1);
    let (have, reply) = sender.deposit(&id, &[&b, &c], &ciphertext).await;
    assert_eq!(have, Some(0));
    accepted(&reply, &id);
    // Stored once for two recipients.
    assert!(relay.blob(&id).is_file());
    assert_eq!(
        std::fs::read_dir(relay.data().join("blobs"))
            .unwrap()
            .count(),
        1
    );

    let b_client = relay.client(&b).await;
    let ServerMessage::Mailbox { items } = b_client.request(&ClientMessage::Mailbox {}).await
    else {
        panic!("mailbox")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].bundle_id, id);
    assert_eq!(items[0].from, "us-a");
    assert_eq!(items[0].length, ciphertext.len() as u64);
    assert_eq!(items[0].sha256, sha256_hex(&ciphertext));

    let (head, bytes) = b_client.fetch(&id, 0).await;
    assert_eq!(
        head,
        ServerMessage::Body {
            length: ciphertext.len() as u64,
            offset: 0
        }
    );
    assert!(bytes == ciphertext, "fetched bytes differ");
    // Resumed download from an offset.
    let (head, tail) = b_client.fetch(&id, 1_000_000).await;
    assert_eq!(
        head,
        ServerMessage::Body {
            length: ciphertext.len() as u64,
            offset: 1_000_000
        }
    );
    assert!(tail[..] == ciphertext[1_000_000..]);

    // Not addressed to the sender; past-the-end offsets are refused.
    let (head, _) = sender.fetch(&id, 0).await;
    assert_eq!(refusal(&head), RefusalCode::UnknownBundle);
    let (head, _) = b_client.fetch(&id, ciphertext.len() as u64 + 1).await;
    assert_eq!(refusal(&head), RefusalCode::Malformed);

    let ack = ClientMessage::Ack {
        bundle_id: id.clone(),
    };
    assert_eq!(b_client.request(&ack).await, ServerMessage::Acked);
    assert_eq!(b_client.request(&ack).await, ServerMessage::Acked); // idempotent
    assert_eq!(
        b_client.request(&ClientMessage::Mailbox {}).await,
        ServerMessage::Mailbox { items: vec![] }
    );
    assert!(relay.blob(&id).is_file(), "in-c has not acknowledged yet");
    let c_client = relay.client(&c).await;
    assert_eq!(c_client.request(&ack).await, ServerMessage::Acked);
    assert!(!relay.blob(&id).exists(), "released after the last ack");
    let (head, _) = c_client.fetch(&id, 0).await;
    assert_eq!(refusal(&head), RefusalCode::UnknownBundle);
    relay.relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_interrupted_deposit_resumes_where_the_relay_stopped() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    let id = bundle_id();
    let ciphertext = body(4 * 1024 * 1024, 2);
    let half = ciphertext.len() / 2;
    let sha = sha256_hex(&ciphertext);

    let first = relay.client(&a).await;
    let (mut send, _recv, reply) = first
        .begin_deposit(&id, &[&b], ciphertext.len() as u64, &sha)
        .await;
    assert_eq!(reply, ServerMessage::DepositOffset { have: 0 });
    send.write_all(&ciphertext[..half]).await.unwrap();
    // Wait until the relay has written the first half, then drop the connection.
    let part = relay.part(&id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < half as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "relay never wrote the first half"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.conn.close(0u32.into(), b"network gone");
    drop(first);

    let second = relay.client(&a).await;
    let (have, reply) = second.deposit(&id, &[&b], &ciphertext).await;
    assert_eq!(
        have,
        Some(half as u64),
        "resumes without re-sending what the relay holds"
    );
    accepted(&reply, &id);

    let b_client = relay.client(&b).await;
    let (_, bytes) = b_client.fetch(&id, 0).await;
    assert!(
        bytes == ciphertext,
        "resumed deposit differs from the original"
    );
    relay.relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn retried_deposits_are_idempotent_and_conflicts_refused() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    let sender = relay.client(&a).await;
    let id = bundle_id();
    let ciphertext = body(10_000, 3);
    let (_, first) = sender.deposit(&id, &[&b], &ciphertext).await;
    let ServerMessage::DepositAccepted { accepted_at, .. } = first else {
        panic!("{first:?}")
    };
    // The retry is answered at once, without a DepositOffset.
    let (have, again) = sender.deposit(&id, &[&b], &ciphertext).await;
    assert_eq!(have, None);
    assert_eq!(
        again,
        ServerMessage::DepositAccepted {
            bundle_id: id.clone(),
            accepted_at
        }
    );
    let b_client = relay.client(&b).await;
    let ServerMessage::Mailbox { items } = b_client.request(&ClientMessage::Mailbox {}).await
    else {
        panic!()
    };
    assert_eq!(items.len(), 1, "a retried deposit is delivered once");
    // Same id, other content.
    let (_, conflict) = sender.deposit(&id, &[&b], &body(10_000, 4)).await;
    assert_eq!(refusal(&conflict), RefusalCode::Conflict);
}

#[tokio::test]
async fn deposit_refusals() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let stranger = Party::new("xx-stranger");
    let relay = TestRelay::start_with(&[&a, &b], |c| {
        c.limits.max_bundle_bytes = 1_000_000;
        c.limits.quota_bytes_per_facility = 1_500_000;
    })
    .await;
    let sender = relay.client(&a).await;

    // The bytes do not match the announced hash: refused, and nothing is delivered.
    let id = bundle_id();
    let ciphertext = body(50_000, 5);
    let (_, reply) = sender
        .deposit_announcing(&id, &[&b], &ciphertext, &sha256_hex(b"something else"))
        .await;
    assert_eq!(refusal(&reply), RefusalCode::HashMismatch);
    let b_client = relay.client(&b).await;
    assert_eq!(
        b_client.request(&ClientMessage::Mailbox {}).await,
        ServerMessage::Mailbox { items: vec![] }
    );

    let (_, reply) = sender
        .deposit(&bundle_id(), &[&b], &body(1_000_001, 6))
        .await;
    assert_eq!(refusal(&reply), RefusalCode::TooLarge);
    let (_, reply) = sender.deposit(&bundle_id(), &[&stranger], b"x").await;
    assert_eq!(refusal(&reply), RefusalCode::NotEnrolled);
    let (_, reply) = sender.deposit("not-an-id", &[&b], b"x").await;
    assert_eq!(refusal(&reply), RefusalCode::Malformed);
    let (_, reply) = sender
        .deposit_announcing(&bundle_id(), &[&b], b"x", "ABC")
        .await;
    assert_eq!(refusal(&reply), RefusalCode::Malformed);
    let (_, reply) = sender.deposit(&bundle_id(), &[&b], &body(900_000, 7)).await;
    assert!(matches!(reply, ServerMessage::DepositAccepted { .. }));
    let (_, reply) = sender.deposit(&bundle_id(), &[&b], &body(900_000, 8)).await;
    assert_eq!(refusal(&reply), RefusalCode::OverQuota);
    let ServerMessage::Refused(r) = reply else {
        unreachable!()
    };
    assert!(r.message.contains("quota"), "{}", r.message);

    // More bytes than announced.
    let id = bundle_id();
    let (mut send, mut recv, first) = sender
        .begin_deposit(&id, &[&b], 10, &sha256_hex(&[0; 10]))
        .await;
    assert_eq!(first, ServerMessage::DepositOffset { have: 0 });
    let _ = send.write_all(&[0u8; 20]).await;
    let _ = send.finish();
    assert_eq!(
        refusal(&common::read(&mut recv).await),
        RefusalCode::Malformed
    );
}

#[tokio::test]
async fn a_connected_recipient_hears_of_new_mail() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    let b_client = relay.client(&b).await;
    let sender = relay.client(&a).await;
    let id = bundle_id();
    let (_, reply) = sender.deposit(&id, &[&b], &body(1000, 9)).await;
    accepted(&reply, &id);
    expect_notice(&b_client, NoticeKind::NewMail, &id).await;
}

#[tokio::test]
async fn receipts_reach_the_sender() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let c = Party::new("in-c");
    let relay = TestRelay::start(&[&a, &b, &c]).await;
    let sender = relay.client(&a).await;
    let id = bundle_id();
    let ciphertext = body(2000, 10);
    sender.deposit(&id, &[&b], &ciphertext).await;

    let b_client = relay.client(&b).await;
    let (_, bytes) = b_client.fetch(&id, 0).await;
    b_client
        .request(&ClientMessage::Ack {
            bundle_id: id.clone(),
        })
        .await;
    let receipt = receipt_for(&b, &id, &bytes);
    assert_eq!(
        b_client
            .request(&ClientMessage::PostReceipt {
                receipt: receipt.clone()
            })
            .await,
        ServerMessage::ReceiptStored
    );
    // A receipt signed by someone else, or naming someone else, is refused.
    let c_client = relay.client(&c).await;
    assert_eq!(
        refusal(
            &c_client
                .request(&ClientMessage::PostReceipt {
                    receipt: receipt.clone()
                })
                .await
        ),
        RefusalCode::Malformed
    );
    let forged = receipt_for(&Party::new("th-b"), &id, &bytes);
    assert_eq!(
        refusal(
            &b_client
                .request(&ClientMessage::PostReceipt { receipt: forged })
                .await
        ),
        RefusalCode::BadSignature
    );
    // in-c was not a recipient of this bundle.
    assert_eq!(
        refusal(
            &c_client
                .request(&ClientMessage::PostReceipt {
                    receipt: receipt_for(&c, &id, &bytes)
                })
                .await
        ),
        RefusalCode::UnknownBundle
    );

    let ServerMessage::Receipts { items } =
        sender.request(&ClientMessage::Receipts { after: 0 }).await
    else {
        panic!("receipts")
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].bundle_id, id);
    assert_eq!(items[0].recipient, "th-b");
    assert_eq!(items[0].receipt.as_deref(), Some(receipt.as_str()));
    assert_eq!(items[0].notice, None);
    let parsed = SignedReceipt::parse(items[0].receipt.as_ref().unwrap().as_bytes()).unwrap();
    assert!(parsed.verify(&b.card));
    assert_eq!(
        sender
            .request(&ClientMessage::Receipts {
                after: items[0].seq
            })
            .await,
        ServerMessage::Receipts { items: vec![] }
    );
}

#[tokio::test]
async fn oversize_and_malformed_frames_are_refused() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let client = relay.client(&a).await;
    let (mut send, mut recv) = client.conn.open_bi().await.unwrap();
    let announced = (dossier_wire::MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
    send.write_all(&announced).await.unwrap();
    let reply = common::read(&mut recv).await;
    assert_eq!(refusal(&reply), RefusalCode::Malformed);
    let ServerMessage::Refused(r) = reply else {
        unreachable!()
    };
    assert!(r.message.contains("65537"), "{}", r.message);

    let (mut send, mut recv) = client.conn.open_bi().await.unwrap();
    let junk = br#"{"type":"teleport"}"#;
    send.write_all(&(junk.len() as u32).to_be_bytes())
        .await
        .unwrap();
    send.write_all(junk).await.unwrap();
    assert_eq!(
        refusal(&common::read(&mut recv).await),
        RefusalCode::Malformed
    );

    // The connection is still usable.
    assert_eq!(
        client.request(&ClientMessage::Mailbox {}).await,
        ServerMessage::Mailbox { items: vec![] }
    );
}

#[tokio::test]
async fn directory_lists_enrolled_unrevoked_cards() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    relay.relay.revoke("th-b").await.unwrap();
    let client = relay.client(&a).await;
    let ServerMessage::Directory { cards } = client.request(&ClientMessage::Directory {}).await
    else {
        panic!()
    };
    assert_eq!(cards.len(), 1);
    let card = dossier_bundle::FacilityCard::parse(cards[0].as_bytes()).unwrap();
    assert_eq!(card, a.card);
}

#[tokio::test]
async fn an_expired_bundle_is_reported_to_its_sender() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start_with(&[&a, &b], |c| {
        c.limits.retention_days = 1.0 / 86_400.0; // one second
        c.expiry_check_secs = 1;
    })
    .await;
    let sender = relay.client(&a).await;
    let id = bundle_id();
    let (_, reply) = sender.deposit(&id, &[&b], &body(500, 11)).await;
    accepted(&reply, &id);
    expect_notice(&sender, NoticeKind::Expired, &id).await;
    assert!(!relay.blob(&id).exists());
    let ServerMessage::Receipts { items } =
        sender.request(&ClientMessage::Receipts { after: 0 }).await
    else {
        panic!()
    };
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].notice, Some(NoticeKind::Expired));
    assert_eq!(items[0].recipient, "th-b");
    assert_eq!(items[0].receipt, None);
    // The id is used up.
    let (_, reply) = sender.deposit(&id, &[&b], &body(500, 11)).await;
    assert_eq!(refusal(&reply), RefusalCode::Conflict);
}

#[tokio::test]
async fn shutdown_closes_connections_and_frees_the_store() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let client = relay.client(&a).await;
    let dir = relay.dir;
    assert!(dir.path().join("serving.addr").is_file());
    tokio::time::timeout(Duration::from_secs(15), relay.relay.shutdown())
        .await
        .expect("shutdown is prompt")
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), client.conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(err, quinn::ConnectionError::ApplicationClosed(ref c) if c.error_code == quinn::VarInt::from_u32(0)),
        "{err:?}"
    );
    assert!(!dir.path().join("serving.addr").exists());
    // The store is closed: the operator's commands work again, and so does a restart.
    dossier_relay::revoke(dir.path(), "us-a").unwrap();
    let again = dossier_relay::start(dir.path()).await.unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test]
async fn operator_commands_say_the_relay_is_running() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let err = dossier_relay::enroll(relay.data(), &Party::new("th-b").card_bytes()).unwrap_err();
    assert!(
        matches!(err, dossier_relay::RelayError::StoreBusy { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("stop the relay"), "{err}");
    // The running relay enrolls instead.
    let b = Party::new("th-b");
    relay.relay.enroll(b.card_bytes()).await.unwrap();
    relay.client(&b).await;
}

#[tokio::test]
async fn init_refuses_an_initialised_directory_and_enroll_checks_cards() {
    let dir = tempfile::tempdir().unwrap();
    let report = dossier_relay::init(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(report.pin.starts_with("sha256:") && report.pin.len() == 71);
    let again = dossier_relay::init(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert!(matches!(
        again,
        dossier_relay::RelayError::AlreadyInitialised { .. }
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("relay-key.der")), 0o600);
        assert_eq!(mode(&dir.path().join("relay.json")), 0o600);
    }
    let a = Party::new("us-a");
    let mut card = a.card_bytes();
    let n = card.len();
    card[n / 2] ^= 1; // tampered
    assert!(dossier_relay::enroll(dir.path(), &card).is_err());
    let report = dossier_relay::enroll(dir.path(), &a.card_bytes()).unwrap();
    assert_eq!(report.facility, "us-a");
    assert_eq!(report.fingerprint, a.card.fingerprint().to_string());
    assert_eq!(report.previous, dossier_relay::PreviousEnrollment::None);
    let not_init = tempfile::tempdir().unwrap();
    assert!(matches!(
        dossier_relay::enroll(not_init.path(), &a.card_bytes()).unwrap_err(),
        dossier_relay::RelayError::NotInitialised { .. }
    ));
    assert!(dossier_relay::revoke(dir.path(), "th-nobody").is_err());
    let started = dossier_relay::start(dir.path()).await.unwrap();
    assert_eq!(started.pin(), report_pin(dir.path()));
    started.shutdown().await.unwrap();

    fn report_pin(dir: &std::path::Path) -> String {
        let der = std::fs::read(dir.join("relay-cert.der")).unwrap();
        dossier_wire::pin::pin_of_certificate(&der).unwrap()
    }
    let _ = Client::try_connect; // the client module is shared
}
