//! Authentication of a node on a new connection (docs/protocol.md §15.2).
//!
//! The node opens the first bidirectional stream and sends `Auth {version, facility,
//! signature}`: an Ed25519 signature, by the key on its **enrolled** card, over this
//! connection's TLS exporter value and its facility id. Because the exporter is unique to
//! the TLS session, a proof seen on one connection is worthless on another. The relay
//! answers `Welcome`, or `Refused` with `version_unsupported`, `not_enrolled`, `revoked`,
//! `key_revoked` (the enrolled card's key was revoked by its holder, §17) or `bad_signature`
//! (checked in that order) and then closes the connection.
//!
//! [`verify`] is the decision, free of sockets and clocks; [`authenticate`] is the I/O.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dossier_bundle::relay_auth::{self, EXPORTER_BYTES};
use dossier_bundle::{FacilityCard, FacilityId};
use dossier_wire::{ClientMessage, RefusalCode, ServerMessage};
use quinn::Connection;

use super::framing::{ReadFrameError, read_frame, write_frame};
use super::refusal::{internal, refused};
use super::{Context, blocking, close_code};
use crate::clock::now_unix;
use crate::store::{Enrollment, RevocationRecord};

/// How long a node has, after the handshake, to open its first stream and prove itself.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused node is given to read the refusal before the connection closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Decides an `Auth` request. `enrollment` is the store's record for the claimed facility,
/// `key_revoked` the revocation of its enrolled card's key, if there is one.
pub(crate) fn verify(
    version: u32,
    facility: &str,
    signature_b64: &str,
    exporter: &[u8; EXPORTER_BYTES],
    enrollment: Option<&Enrollment>,
    key_revoked: Option<&RevocationRecord>,
) -> Result<FacilityId, ServerMessage> {
    if version != dossier_wire::PROTOCOL_VERSION {
        return Err(refused(
            RefusalCode::VersionUnsupported,
            format!(
                "this relay speaks protocol version {}, the node asked for {version}; upgrade \
                 the older of the two",
                dossier_wire::PROTOCOL_VERSION
            ),
        ));
    }
    let not_enrolled = || {
        refused(
            RefusalCode::NotEnrolled,
            format!(
                "facility {} is not enrolled at this relay; send your card (`dossier card`) to \
                 the relay operator and ask them to run `dossier-relay enroll`",
                printable(facility)
            ),
        )
    };
    let id = FacilityId::parse(facility).map_err(|_| not_enrolled())?;
    let enrollment = enrollment.ok_or_else(not_enrolled)?;
    if enrollment.revoked_at.is_some() {
        return Err(refused(
            RefusalCode::Revoked,
            format!(
                "facility {id}'s enrollment at this relay was revoked; contact the relay operator"
            ),
        ));
    }
    let card = match FacilityCard::parse(&enrollment.card) {
        Ok(card) if card.id() == &id => card,
        _ => {
            tracing::error!(facility = %id, "enrolled card does not parse or names another id");
            return Err(internal());
        }
    };
    if let Some(revoked) = key_revoked.filter(|r| r.key == card.key_id().to_hex()) {
        return Err(super::revocation::auth_refusal(id.as_str(), &card, revoked));
    }
    let bad_signature = || {
        refused(
            RefusalCode::BadSignature,
            format!(
                "the authentication signature does not verify under the card enrolled for {id}; \
                 if you rotated your keys, send your new card to the relay operator to enroll \
                 again"
            ),
        )
    };
    let signature: [u8; 64] = B64
        .decode(signature_b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(bad_signature)?;
    if relay_auth::verify(&card, exporter, &signature) {
        Ok(id)
    } else {
        Err(bad_signature())
    }
}

/// Up to 64 printable ASCII characters of an untrusted id, for messages.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// A node whose proof verified, not yet told so: the caller registers it for notices first,
/// so a deposit that commits right after the node reads `Welcome` cannot miss it.
pub(crate) struct Verified {
    pub facility: FacilityId,
    send: quinn::SendStream,
}

impl Verified {
    /// Answers `Welcome`. `false` if the node is already gone.
    pub(crate) async fn welcome(mut self, conn: &Connection) -> bool {
        let welcome = ServerMessage::Welcome {
            facility: self.facility.to_string(),
            relay_time: now_unix(),
        };
        if write_frame(&mut self.send, &welcome).await.is_err() {
            return false;
        }
        let _ = self.send.finish();
        tracing::info!(facility = %self.facility, remote = %conn.remote_address(), "authenticated");
        true
    }
}

/// Runs the authentication exchange on `conn` up to the verdict. Returns the verified
/// facility (to be welcomed); on any failure the connection has been refused and closed.
pub(crate) async fn authenticate(conn: &Connection, ctx: &Arc<Context>) -> Option<Verified> {
    let remote = conn.remote_address();
    let (mut send, mut recv) = match tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(_)) => return None,
        Err(_) => {
            tracing::info!(%remote, "no authentication within the time limit");
            conn.close(close_code::AUTH_REFUSED, b"not_authenticated");
            return None;
        }
    };
    let msg = match read_frame::<ClientMessage>(&mut recv, AUTH_TIMEOUT).await {
        Ok(msg) => msg,
        Err(ReadFrameError::Stream(_)) | Err(ReadFrameError::Ended) => {
            conn.close(close_code::AUTH_REFUSED, b"not_authenticated");
            return None;
        }
        Err(e) => {
            let why = refused(
                RefusalCode::NotAuthenticated,
                format!(
                    "the first message on a connection must be a valid auth frame ({}); \
                     update dossier",
                    describe(&e)
                ),
            );
            refuse(conn, &mut send, &why).await;
            return None;
        }
    };
    let ClientMessage::Auth {
        version,
        facility,
        signature,
    } = msg
    else {
        let why = refused(
            RefusalCode::NotAuthenticated,
            "authenticate first: the first message on a connection must be auth",
        );
        refuse(conn, &mut send, &why).await;
        return None;
    };
    let mut exporter = [0u8; EXPORTER_BYTES];
    if conn
        .export_keying_material(&mut exporter, dossier_wire::AUTH_EXPORTER_LABEL, b"")
        .is_err()
    {
        tracing::error!(%remote, "TLS exporter unavailable");
        refuse(conn, &mut send, &internal()).await;
        return None;
    }
    let enrollment = {
        let store = Arc::clone(&ctx.store);
        let claimed = facility.clone();
        blocking(move || {
            let enrollment = store.enrollment(&claimed)?;
            // Is the enrolled card's key one its holder revoked (§17)?
            let card = enrollment
                .as_ref()
                .and_then(|e| FacilityCard::parse(&e.card).ok());
            let revoked = match card {
                Some(card) => store.key_revocation(&claimed, &card.key_id().to_hex())?,
                None => None,
            };
            Ok((enrollment, revoked))
        })
        .await
    };
    let (enrollment, key_revoked) = match enrollment {
        Ok(e) => e,
        Err(e) => {
            refuse(conn, &mut send, &super::refusal::from_store(&e)).await;
            return None;
        }
    };
    match verify(
        version,
        &facility,
        &signature,
        &exporter,
        enrollment.as_ref(),
        key_revoked.as_ref(),
    ) {
        Ok(facility) => Some(Verified { facility, send }),
        Err(why) => {
            if let ServerMessage::Refused(r) = &why {
                tracing::info!(facility = %printable(&facility), %remote, code = ?r.code, "authentication refused");
            }
            refuse(conn, &mut send, &why).await;
            None
        }
    }
}

fn describe(e: &ReadFrameError) -> String {
    match e {
        ReadFrameError::Wire(w) => w.to_string(),
        ReadFrameError::TimedOut => "it did not arrive in time".into(),
        ReadFrameError::Ended => "the stream ended early".into(),
        ReadFrameError::Stream(s) => s.to_string(),
    }
}

/// Sends the refusal, gives the node a moment to read it, and closes the connection with
/// the refusal code as the reason.
async fn refuse(conn: &Connection, send: &mut quinn::SendStream, why: &ServerMessage) {
    let reason = match why {
        ServerMessage::Refused(r) => serde_json::to_string(&r.code)
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned(),
        _ => String::new(),
    };
    if write_frame(send, why).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
    }
    conn.close(close_code::AUTH_REFUSED, reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_bundle::card::CardDetails;
    use dossier_bundle::{CountryCode, FacilityKeys, PartyKind, Timestamp};

    fn facility(id: &str) -> (FacilityKeys, Enrollment) {
        let keys = FacilityKeys::generate().unwrap();
        let details = CardDetails {
            id: FacilityId::parse(id).unwrap(),
            name: "Test".into(),
            country: CountryCode::parse("US").unwrap(),
            kind: PartyKind::Facility,
        };
        let card = FacilityCard::issue(
            &keys,
            &details,
            Timestamp::from_unix(1).unwrap(),
            None,
            None,
        )
        .unwrap();
        let e = Enrollment {
            facility: id.into(),
            card: card.to_file_bytes(),
            enrolled_at: 1,
            revoked_at: None,
        };
        (keys, e)
    }

    fn code(r: Result<FacilityId, ServerMessage>) -> RefusalCode {
        match r {
            Err(ServerMessage::Refused(r)) => r.code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decides_in_protocol_order() {
        let (keys, mut e) = facility("us-a");
        let id = FacilityId::parse("us-a").unwrap();
        let exporter = [7u8; 32];
        let sig = B64.encode(relay_auth::sign(&keys, &exporter, &id));
        assert_eq!(
            verify(1, "us-a", &sig, &exporter, Some(&e), None).unwrap(),
            id
        );
        assert_eq!(
            code(verify(2, "us-a", &sig, &exporter, Some(&e), None)),
            RefusalCode::VersionUnsupported
        );
        assert_eq!(
            code(verify(1, "us-a", &sig, &exporter, None, None)),
            RefusalCode::NotEnrolled
        );
        assert_eq!(
            code(verify(1, "US A\n", &sig, &exporter, Some(&e), None)),
            RefusalCode::NotEnrolled
        );
        assert_eq!(
            code(verify(1, "us-a", &sig, &[8u8; 32], Some(&e), None)),
            RefusalCode::BadSignature
        );
        assert_eq!(
            code(verify(1, "us-a", "not base64", &exporter, Some(&e), None)),
            RefusalCode::BadSignature
        );
        // The enrolled key revoked by its holder: refused whatever the signature, with a
        // message that says so; a revocation of another key changes nothing.
        let card = FacilityCard::parse(&e.card).unwrap();
        let mut revoked = RevocationRecord {
            seq: 1,
            facility: "us-a".into(),
            key: card.key_id().to_hex(),
            posted_at: 1_800_000_000,
            revocation: b"{}".to_vec(),
        };
        match verify(1, "us-a", &sig, &exporter, Some(&e), Some(&revoked)) {
            Err(ServerMessage::Refused(r)) => {
                assert_eq!(r.code, RefusalCode::KeyRevoked);
                assert!(r.message.contains("revoked") && r.message.contains("enroll"));
            }
            other => panic!("{other:?}"),
        }
        revoked.key = "00".repeat(32);
        assert_eq!(
            verify(1, "us-a", &sig, &exporter, Some(&e), Some(&revoked)).unwrap(),
            id
        );
        e.revoked_at = Some(2);
        assert_eq!(
            code(verify(1, "us-a", &sig, &exporter, Some(&e), None)),
            RefusalCode::Revoked
        );
    }
}
