//! Authentication on connect (docs/protocol.md §15.1–15.2; DESIGN.md invariant 4: deny by
//! default): only enrolled, unrevoked facilities proving their key on *this* connection get
//! in, and every refusal is a clear code followed by a closed connection.

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Client, Party, TestRelay, refusal};
use dossier_bundle::relay_auth;
use dossier_wire::{ClientMessage, RefusalCode, ServerMessage};

/// After a refusal the relay closes the connection with close code 1 and the refusal code.
async fn assert_closed_with(client: &Client, reason: &str) {
    let err = tokio::time::timeout(Duration::from_secs(5), client.conn.closed())
        .await
        .expect("relay closes the connection");
    match err {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, quinn::VarInt::from_u32(1));
            assert_eq!(&close.reason[..], reason.as_bytes());
        }
        other => panic!("unexpected close: {other:?}"),
    }
}

#[tokio::test]
async fn enrolled_facility_is_welcomed() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let client = Client::connect(relay.addr(), &relay.pin()).await;
    match client.auth(&a).await {
        ServerMessage::Welcome {
            facility,
            relay_time,
        } => {
            assert_eq!(facility, "us-a");
            assert!(relay_time > 1_700_000_000);
        }
        other => panic!("{other:?}"),
    }
    // And requests work on the connection afterwards.
    assert_eq!(
        client.request(&ClientMessage::Mailbox {}).await,
        ServerMessage::Mailbox { items: vec![] }
    );
    relay.relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn unenrolled_facility_is_refused_and_disconnected() {
    let a = Party::new("us-a");
    let stranger = Party::new("xx-stranger");
    let relay = TestRelay::start(&[&a]).await;
    let client = Client::connect(relay.addr(), &relay.pin()).await;
    let reply = client.auth(&stranger).await;
    assert_eq!(refusal(&reply), RefusalCode::NotEnrolled);
    let ServerMessage::Refused(r) = reply else {
        unreachable!()
    };
    assert!(r.message.contains("dossier-relay enroll"), "{}", r.message);
    assert_closed_with(&client, "not_enrolled").await;
}

#[tokio::test]
async fn revoked_facility_is_refused() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let dir = tempfile::tempdir().unwrap();
    dossier_relay::init(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    dossier_relay::enroll(dir.path(), &a.card_bytes()).unwrap();
    dossier_relay::enroll(dir.path(), &b.card_bytes()).unwrap();
    let report = dossier_relay::revoke(dir.path(), "th-b").unwrap();
    assert!(!report.already_revoked);
    let relay = dossier_relay::start(dir.path()).await.unwrap();
    let client = Client::connect(relay.addr(), relay.pin()).await;
    assert_eq!(refusal(&client.auth(&b).await), RefusalCode::Revoked);
    assert_closed_with(&client, "revoked").await;
    relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoking_a_connected_facility_closes_its_connection() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let client = relay.client(&a).await;
    relay.relay.revoke("us-a").await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), client.conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(err, quinn::ConnectionError::ApplicationClosed(ref c) if &c.reason[..] == b"revoked"),
        "{err:?}"
    );
    let again = Client::connect(relay.addr(), &relay.pin()).await;
    assert_eq!(refusal(&again.auth(&a).await), RefusalCode::Revoked);
}

#[tokio::test]
async fn a_proof_over_another_exporter_is_refused() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    // A proof captured from one connection...
    let first = Client::connect(relay.addr(), &relay.pin()).await;
    let replayed = B64.encode(relay_auth::sign(&a.keys, &first.exporter(), &a.id));
    // ...is worthless on another.
    let second = Client::connect(relay.addr(), &relay.pin()).await;
    assert_ne!(first.exporter(), second.exporter());
    let reply = second.auth_raw(1, "us-a", &replayed).await;
    assert_eq!(refusal(&reply), RefusalCode::BadSignature);
    assert_closed_with(&second, "bad_signature").await;
    // A signature by another key over the right exporter fails too.
    let impostor = Party::new("us-a");
    let third = Client::connect(relay.addr(), &relay.pin()).await;
    assert_eq!(
        refusal(&third.auth(&impostor).await),
        RefusalCode::BadSignature
    );
}

#[tokio::test]
async fn other_versions_and_requests_before_auth_are_refused() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let client = Client::connect(relay.addr(), &relay.pin()).await;
    let sig = B64.encode(relay_auth::sign(&a.keys, &client.exporter(), &a.id));
    assert_eq!(
        refusal(&client.auth_raw(2, "us-a", &sig).await),
        RefusalCode::VersionUnsupported
    );
    assert_closed_with(&client, "version_unsupported").await;

    let client = Client::connect(relay.addr(), &relay.pin()).await;
    assert_eq!(
        refusal(&client.request(&ClientMessage::Mailbox {}).await),
        RefusalCode::NotAuthenticated
    );
}

#[tokio::test]
async fn a_wrong_pin_fails_the_handshake() {
    let a = Party::new("us-a");
    let relay = TestRelay::start(&[&a]).await;
    let wrong = format!("sha256:{}", "0".repeat(64));
    assert!(Client::try_connect(relay.addr(), &wrong).await.is_err());
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_at_the_handshake() {
    let a = Party::new("us-a");
    let relay = TestRelay::start_with(&[&a], |c| c.limits.max_connections = 1).await;
    let first = relay.client(&a).await;
    let second = Client::try_connect(relay.addr(), &relay.pin()).await;
    assert!(second.is_err(), "second connection should be refused");
    // The slot frees when the first node leaves.
    first.conn.close(0u32.into(), b"bye");
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = Client::try_connect(relay.addr(), &relay.pin()).await {
            assert!(matches!(c.auth(&a).await, ServerMessage::Welcome { .. }));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
