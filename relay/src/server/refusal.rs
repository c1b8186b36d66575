//! What a peer is told when its request is refused (STYLE.md practice 8).
//!
//! A refusal caused by the request carries the store's own message — it names ids, sizes
//! and limits only (the relay holds nothing else) and says what to do. A failure of the
//! relay itself (`StoreError::is_internal`) is logged for the operator in full and the peer
//! is told only `internal`: retry later.

use dossier_wire::{Refusal, RefusalCode, ServerMessage};

use crate::store::StoreError;

/// A refusal message with a code and a human sentence.
pub(crate) fn refused(code: RefusalCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Refused(Refusal {
        code,
        message: message.into(),
    })
}

/// The refusal for a store error, logging internal failures.
///
/// Two mappings are choices the protocol table leaves open: a revoked *recipient* of a
/// deposit is `not_enrolled` (the deposit table lists no `revoked`; the message names the
/// facility), and a bundle id that expired undelivered is `conflict` (the id is used up;
/// the remedy is the same: seal again for a new id). An upload superseded by a newer
/// connection is `internal` — retrying resumes it.
pub(crate) fn from_store(e: &StoreError) -> ServerMessage {
    let code = match e {
        StoreError::TooLarge { .. } => RefusalCode::TooLarge,
        StoreError::OverQuota { .. } => RefusalCode::OverQuota,
        StoreError::Conflict { .. } | StoreError::Expired { .. } => RefusalCode::Conflict,
        StoreError::HashMismatch { .. } => RefusalCode::HashMismatch,
        StoreError::LengthMismatch { .. } | StoreError::Invalid(_) => RefusalCode::Malformed,
        StoreError::UnknownBundle { .. } => RefusalCode::UnknownBundle,
        StoreError::NotEnrolled { .. } | StoreError::Revoked { .. } => RefusalCode::NotEnrolled,
        StoreError::Superseded { .. } => RefusalCode::Internal,
        StoreError::StorageFull { .. } => {
            tracing::warn!(
                error = %e,
                "relay storage full: deposits are refused until space is freed"
            );
            RefusalCode::StorageFull
        }
        _ => {
            tracing::error!(error = %e, "store failure");
            return internal();
        }
    };
    if e.is_internal() {
        tracing::error!(error = %e, "store failure");
        return internal();
    }
    refused(code, e.to_string())
}

/// The relay failed; the detail is in the operator's log.
pub(crate) fn internal() -> ServerMessage {
    refused(
        RefusalCode::Internal,
        "the relay failed to handle this request; retry later (the relay operator's log has the \
         details)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(m: ServerMessage) -> RefusalCode {
        match m {
            ServerMessage::Refused(r) => r.code,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn request_errors_keep_their_message_internal_ones_do_not() {
        let e = StoreError::OverQuota {
            facility: "us-a".into(),
            used: 1,
            requested: 2,
            quota: 2,
        };
        match from_store(&e) {
            ServerMessage::Refused(r) => {
                assert_eq!(r.code, RefusalCode::OverQuota);
                assert!(r.message.contains("quota"));
            }
            other => panic!("{other:?}"),
        }
        let io = StoreError::Io {
            context: "writing /secret/path",
            source: std::io::Error::other("disk on fire"),
        };
        match from_store(&io) {
            ServerMessage::Refused(r) => {
                assert_eq!(r.code, RefusalCode::Internal);
                assert!(!r.message.contains("disk") && !r.message.contains("secret"));
            }
            other => panic!("{other:?}"),
        }
        let full = from_store(&StoreError::Io {
            context: "writing an upload file",
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
        assert_eq!(
            code(full),
            RefusalCode::Internal,
            "only the store classifies"
        );
        match from_store(&StoreError::io("writing an upload file")(
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        )) {
            ServerMessage::Refused(r) => {
                assert_eq!(r.code, RefusalCode::StorageFull);
                assert!(r.message.contains("storage is full") && r.message.contains("free space"));
                assert!(r.message.contains("stays queued"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            code(from_store(&StoreError::Revoked {
                facility: "th-b".into()
            })),
            RefusalCode::NotEnrolled
        );
        assert_eq!(
            code(from_store(&StoreError::Expired {
                bundle_id: "0".repeat(32)
            })),
            RefusalCode::Conflict
        );
    }
}
