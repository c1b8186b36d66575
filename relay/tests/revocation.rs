//! Key revocations through the relay (docs/protocol.md §15.3, §17): a facility posts a
//! revocation signed by its enrolled key; the relay keeps it for every node to list, closes
//! the connections made with that key, refuses the key from then on, and lets the facility
//! back in only with a new enrolled card.

mod common;

use std::time::Duration;

use common::{Client, Party, TestRelay, refusal};
use dossier_bundle::revocation::{Revocation, SignedRevocation};
use dossier_bundle::{FacilityKeys, Timestamp};
use dossier_wire::{ClientMessage, RefusalCode, ServerMessage};

fn signed_by(party: &Party, keys: &FacilityKeys, reason: &str) -> String {
    let r = Revocation {
        facility: party.id.clone(),
        key: keys.key_id(),
        reason: reason.into(),
        revoked_at: Timestamp::from_unix(1_800_000_100).unwrap(),
    };
    String::from_utf8(SignedRevocation::sign(r, keys).unwrap().to_bytes()).unwrap()
}

fn post(revocation: &str) -> ClientMessage {
    ClientMessage::PostRevocation {
        revocation: revocation.to_owned(),
    }
}

#[tokio::test]
async fn a_revoked_key_is_listed_and_refused_until_a_new_card_is_enrolled() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    let b_conn = relay.client(&b).await;
    let a_conn = relay.client(&a).await;

    let text = signed_by(&b, &b.keys, "laptop stolen");
    assert_eq!(
        b_conn.request(&post(&text)).await,
        ServerMessage::RevocationStored
    );

    // Every node can list it, paged by seq.
    match a_conn
        .request(&ClientMessage::Revocations { after: 0 })
        .await
    {
        ServerMessage::Revocations { items } => {
            assert_eq!(items.len(), 1);
            assert_eq!(items[0].seq, 1);
            assert_eq!(items[0].facility, "th-b");
            assert_eq!(items[0].revocation, text);
            let parsed = SignedRevocation::parse(items[0].revocation.as_bytes()).unwrap();
            assert!(parsed.verify(&b.card).is_ok());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a_conn
            .request(&ClientMessage::Revocations { after: 1 })
            .await,
        ServerMessage::Revocations { items: vec![] }
    );

    // The connection made with the revoked key is closed shortly after the answer...
    let err = tokio::time::timeout(Duration::from_secs(10), b_conn.conn.closed())
        .await
        .expect("the relay closes the revoked key's connection");
    assert!(
        matches!(err, quinn::ConnectionError::ApplicationClosed(ref c) if &c.reason[..] == b"key_revoked"),
        "{err:?}"
    );
    // ...and the key is refused from now on, with a message that says what to do.
    let again = Client::connect(relay.addr(), &relay.pin()).await;
    match again.auth(&b).await {
        ServerMessage::Refused(r) => {
            assert_eq!(r.code, RefusalCode::KeyRevoked);
            assert!(r.message.contains("revoked"), "{}", r.message);
            assert!(r.message.contains("new card"), "{}", r.message);
            assert!(r.message.contains("enroll"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }

    // Enrolling the revoked card again is refused at the operator's desk...
    let err = relay.relay.enroll(b.card_bytes()).await.unwrap_err();
    assert!(
        matches!(err, dossier_relay::RelayError::KeyRevoked { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("revoked"), "{err}");
    // ...but the facility's new card lets it back in, and posting the revocation again
    // (a retry) does not add a second entry.
    let b2 = Party::new("th-b");
    relay.relay.enroll(b2.card_bytes()).await.unwrap();
    let b2_conn = relay.client(&b2).await;
    assert_eq!(
        refusal(&b2_conn.request(&post(&text)).await),
        RefusalCode::BadSignature,
        "a revocation of a key other than the enrolled one is refused"
    );
    match a_conn
        .request(&ClientMessage::Revocations { after: 0 })
        .await
    {
        ServerMessage::Revocations { items } => assert_eq!(items.len(), 1),
        other => panic!("{other:?}"),
    }
    relay.relay.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_facilitys_own_enrolled_key_can_be_revoked() {
    let a = Party::new("us-a");
    let b = Party::new("th-b");
    let relay = TestRelay::start(&[&a, &b]).await;
    let a_conn = relay.client(&a).await;

    // a posting b's revocation (even a genuine one) is refused: facilities revoke their own.
    let for_b = signed_by(&b, &b.keys, "lost");
    assert_eq!(
        refusal(&a_conn.request(&post(&for_b)).await),
        RefusalCode::Malformed
    );
    // A revocation naming a's enrolled key but signed by another key is refused.
    let stranger = FacilityKeys::generate().unwrap();
    let forged = signed_by(&a, &stranger, "lost");
    assert_eq!(
        refusal(&a_conn.request(&post(&forged)).await),
        RefusalCode::BadSignature
    );
    // Garbage and oversized revocations are refused.
    assert_eq!(
        refusal(&a_conn.request(&post("{}")).await),
        RefusalCode::Malformed
    );
    assert_eq!(
        refusal(&a_conn.request(&post(&"x".repeat(5000))).await),
        RefusalCode::Malformed
    );
    // Nothing was stored, and a is still welcome.
    assert_eq!(
        a_conn
            .request(&ClientMessage::Revocations { after: 0 })
            .await,
        ServerMessage::Revocations { items: vec![] }
    );
    let again = Client::connect(relay.addr(), &relay.pin()).await;
    assert!(matches!(
        again.auth(&a).await,
        ServerMessage::Welcome { .. }
    ));
    relay.relay.shutdown().await.unwrap();
}
