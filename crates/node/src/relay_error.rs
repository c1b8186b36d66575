//! Errors of the relay connection, and what the user should do about each.
//!
//! Peer refusals are kept apart from transport failures so callers can decide what a bundle
//! becomes: a connection problem leaves it queued (retried later), a refusal of the node
//! (wrong pin, not enrolled) is an error the user must fix, and a refusal of one bundle for
//! good (too large, conflicting) stops its retries.

use dossier_wire::RefusalCode;

/// What went wrong talking to the relay. Every message says what to do; none carries record
/// content (the relay has none to send, and the node sends it none).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The relay could not be reached (down, wrong address, no network).
    #[error(
        "cannot reach the relay at {address} ({detail}); check that it is running and that `dossier relay set` has the right address"
    )]
    Unreachable {
        /// The configured address.
        address: String,
        /// What failed.
        detail: String,
    },
    /// The relay presented a TLS key other than the pinned one.
    #[error(
        "the relay at {address} presented a key that does not match the pin; refusing it.\n  \
         pinned:    {expected}\n  presented: {presented}\n\
         Nothing was sent. Ask the relay's operator for its pin (printed by `dossier-relay init`) over a trusted channel; \
         if the relay really changed keys, run `dossier relay set {address} --pin NEW-PIN`. Otherwise someone may be \
         intercepting the connection"
    )]
    PinMismatch {
        /// The configured address.
        address: String,
        /// The pin in relay.json.
        expected: String,
        /// The pin of the key the relay presented.
        presented: String,
    },
    /// The relay refused this node at authentication.
    #[error("the relay refused this node ({code}): {message}. {advice}")]
    AuthRefused {
        /// Refusal code.
        code: &'static str,
        /// The relay's explanation.
        message: String,
        /// What to do.
        advice: &'static str,
    },
    /// The relay refused one request.
    #[error("the relay refused the request ({}): {message}", code_name(*code))]
    Refused {
        /// Refusal code.
        code: RefusalCode,
        /// The relay's explanation.
        message: String,
    },
    /// The connection broke during a request.
    #[error("the connection to the relay broke ({0}); run the command again to resume")]
    ConnectionLost(String),
    /// The relay answered outside the protocol.
    #[error(
        "the relay answered outside the protocol ({0}); it may run another version of dossier-relay — ask its operator"
    )]
    Protocol(String),
    /// A local file could not be read or written during a transfer.
    #[error("{what} failed during a transfer: {source}")]
    Local {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl RelayError {
    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            RelayError::Unreachable { .. } | RelayError::ConnectionLost(_) => true,
            RelayError::Refused { code, .. } => {
                matches!(
                    code,
                    RefusalCode::Internal | RefusalCode::OverQuota | RefusalCode::StorageFull
                )
            }
            _ => false,
        }
    }

    /// Whether the relay could not be reached or the connection broke (retrying with a new
    /// connection may help).
    pub fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            RelayError::Unreachable { .. } | RelayError::ConnectionLost(_)
        )
    }

    /// Whether the relay refused this one bundle for good (retrying cannot help).
    pub fn refuses_bundle_for_good(&self) -> bool {
        matches!(
            self,
            RelayError::Refused {
                code: RefusalCode::TooLarge
                    | RefusalCode::Conflict
                    | RefusalCode::HashMismatch
                    | RefusalCode::Malformed,
                ..
            }
        )
    }

    /// Whether the relay refused this node because its key was revoked (docs/protocol.md
    /// §17): the relay holds the revocation.
    pub fn is_key_revoked(&self) -> bool {
        matches!(self, RelayError::AuthRefused { code, .. } if *code == code_name(RefusalCode::KeyRevoked))
    }

    /// Whether the relay reached and refused the whole node (not one bundle).
    pub fn refuses_node(&self) -> bool {
        matches!(
            self,
            RelayError::PinMismatch { .. } | RelayError::AuthRefused { .. }
        )
    }
}

/// The protocol name of a refusal code (`not_enrolled`, `over_quota`, …).
pub fn code_name(code: RefusalCode) -> &'static str {
    match code {
        RefusalCode::NotEnrolled => "not_enrolled",
        RefusalCode::Revoked => "revoked",
        RefusalCode::KeyRevoked => "key_revoked",
        RefusalCode::BadSignature => "bad_signature",
        RefusalCode::VersionUnsupported => "version_unsupported",
        RefusalCode::NotAuthenticated => "not_authenticated",
        RefusalCode::TooLarge => "too_large",
        RefusalCode::OverQuota => "over_quota",
        RefusalCode::UnknownBundle => "unknown_bundle",
        RefusalCode::Conflict => "conflict",
        RefusalCode::HashMismatch => "hash_mismatch",
        RefusalCode::Malformed => "malformed",
        RefusalCode::Internal => "internal",
        RefusalCode::StorageFull => "storage_full",
    }
}

pub(crate) fn auth_refusal(code: RefusalCode, message: String) -> RelayError {
    let advice = match code {
        RefusalCode::NotEnrolled => {
            "Send your card (`dossier card -o FILE`) to the relay's operator and ask them to run `dossier-relay enroll`"
        }
        RefusalCode::Revoked => {
            "The relay's operator revoked this node's enrollment; ask them why before anything else"
        }
        RefusalCode::KeyRevoked => {
            "Unless you already did, run `dossier key rotate`; send the new card (`dossier card -o FILE`) to the relay's operator to enroll, and have every contact check the new fingerprint with you by phone"
        }
        RefusalCode::BadSignature => {
            "The relay holds another card for this id (did you rotate keys?); send the operator your current card"
        }
        RefusalCode::VersionUnsupported => {
            "Upgrade dossier, or ask the operator to upgrade the relay"
        }
        _ => "Ask the relay's operator",
    };
    RelayError::AuthRefused {
        code: code_name(code),
        message,
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_decides_what_becomes_of_the_bundle() {
        let refused = |code| RelayError::Refused {
            code,
            message: "m".into(),
        };
        let down = RelayError::Unreachable {
            address: "h:1".into(),
            detail: "d".into(),
        };
        assert!(down.is_connection_problem() && down.is_transient() && !down.refuses_node());
        let pin = RelayError::PinMismatch {
            address: "h:1".into(),
            expected: "sha256:a".into(),
            presented: "sha256:b".into(),
        };
        assert!(pin.refuses_node() && !pin.is_transient());
        assert!(pin.to_string().contains("sha256:a") && pin.to_string().contains("sha256:b"));
        let auth = auth_refusal(RefusalCode::NotEnrolled, "who?".into());
        assert!(auth.refuses_node());
        assert!(auth.to_string().contains("dossier-relay enroll"));
        for c in [
            RefusalCode::TooLarge,
            RefusalCode::Conflict,
            RefusalCode::HashMismatch,
        ] {
            assert!(refused(c).refuses_bundle_for_good());
        }
        assert!(refused(RefusalCode::OverQuota).is_transient());
        assert!(!refused(RefusalCode::OverQuota).refuses_bundle_for_good());
        assert_eq!(code_name(RefusalCode::OverQuota), "over_quota");
        // A full relay disk is the relay's condition, not the bundle's: queue and retry.
        let full = refused(RefusalCode::StorageFull);
        assert!(full.is_transient() && !full.refuses_bundle_for_good() && !full.refuses_node());
        assert!(full.to_string().contains("storage_full"));
    }
}
