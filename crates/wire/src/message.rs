//! Relay messages, version 1 (docs/protocol.md §15.3).
//!
//! Every message is a JSON object whose `type` names it; unknown types and unknown fields
//! are refused (`deny_unknown_fields`), so a newer peer is told rather than misunderstood.
//! Ids are carried as text here and validated by whoever acts on them; this crate checks
//! only sizes, so it stays free of the identity code.

use serde::{Deserialize, Serialize};

/// Most recipients one deposit may name (mirrors the bundle format's limit).
pub const MAX_RECIPIENTS: usize = 64;
/// Most mailbox items or receipts returned in one response.
pub const MAX_LIST_ITEMS: usize = 256;
/// Largest signed receipt carried in a message, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 4096;
/// Largest signed key revocation carried in a message, in bytes (docs/protocol.md §17).
pub const MAX_REVOCATION_BYTES: usize = 4096;

/// Client → relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message on the first stream: who we are, proven by an Ed25519 signature over
    /// the TLS exporter value (so it cannot be replayed on another connection).
    Auth {
        /// Protocol version (1).
        version: u32,
        /// Facility id as enrolled.
        facility: String,
        /// Base64 Ed25519 signature (see docs/protocol.md §15.2).
        signature: String,
    },
    /// Upload a sealed bundle. The relay answers `DepositOffset`; the client then sends the
    /// bytes from that offset to `length` and finishes the stream.
    Deposit {
        /// Bundle id (32 hex digits).
        bundle_id: String,
        /// Recipient facility ids.
        recipients: Vec<String>,
        /// Ciphertext length.
        length: u64,
        /// SHA-256 of the whole ciphertext, hex.
        sha256: String,
    },
    /// List my mailbox.
    Mailbox {},
    /// Download a bundle from `offset`.
    Fetch {
        /// Bundle id.
        bundle_id: String,
        /// Resume point.
        offset: u64,
    },
    /// The bundle is durably stored at the recipient; the relay may drop its copy for us.
    Ack {
        /// Bundle id.
        bundle_id: String,
    },
    /// A signed delivery receipt for the sender.
    PostReceipt {
        /// The receipt, as produced by the recipient's node.
        receipt: String,
    },
    /// Receipts and notices for bundles I sent, after sequence number `after`.
    Receipts {
        /// Last sequence number already seen (0 for all).
        after: u64,
    },
    /// Cards of enrolled facilities (a convenience: pins still rule).
    Directory {},
    /// A signed revocation of the authenticated facility's enrolled key (docs/protocol.md
    /// §17). From then on the relay refuses that key.
    PostRevocation {
        /// The signed revocation, as produced by the revoking node.
        revocation: String,
    },
    /// Key revocations posted by any facility, after sequence number `after`.
    Revocations {
        /// Last sequence number already seen (0 for all).
        after: u64,
    },
}

/// Relay → client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// Authentication succeeded.
    Welcome {
        /// The facility id authenticated.
        facility: String,
        /// Relay clock, Unix seconds (for skew warnings).
        relay_time: i64,
    },
    /// The request was refused; `message` says what to do.
    Refused(Refusal),
    /// Send the deposit's bytes from here.
    DepositOffset {
        /// Bytes the relay already holds durably.
        have: u64,
    },
    /// The whole bundle is durable at the relay.
    DepositAccepted {
        /// Bundle id.
        bundle_id: String,
        /// Unix seconds.
        accepted_at: i64,
    },
    /// Mailbox listing.
    Mailbox {
        /// Waiting bundles, oldest first.
        items: Vec<MailboxItem>,
    },
    /// The body follows: `length - offset` raw bytes.
    Body {
        /// Total ciphertext length.
        length: u64,
        /// First byte sent.
        offset: u64,
    },
    /// Acknowledgement recorded.
    Acked,
    /// Receipt stored for the sender.
    ReceiptStored,
    /// Receipts and notices for the sender.
    Receipts {
        /// In sequence order.
        items: Vec<ReceiptItem>,
    },
    /// Enrolled cards.
    Directory {
        /// Card files as text.
        cards: Vec<String>,
    },
    /// The revocation is stored; the relay now refuses the revoked key.
    RevocationStored,
    /// Key revocations, oldest first.
    Revocations {
        /// In sequence order.
        items: Vec<RevocationItem>,
    },
    /// Pushed on a relay-opened stream: new mail, or a sent bundle expired.
    Notice {
        /// `new_mail` or `expired`.
        kind: NoticeKind,
        /// Bundle id.
        bundle_id: String,
    },
}

/// One waiting bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxItem {
    /// Bundle id.
    pub bundle_id: String,
    /// Sender facility id.
    pub from: String,
    /// Ciphertext length.
    pub length: u64,
    /// SHA-256 of the ciphertext, hex.
    pub sha256: String,
    /// Unix seconds.
    pub deposited_at: i64,
}

/// A receipt or notice for a sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptItem {
    /// Relay sequence number.
    pub seq: u64,
    /// A signed receipt from a recipient, or an expiry notice by the relay.
    pub receipt: Option<String>,
    /// For relay notices: `expired`.
    pub notice: Option<NoticeKind>,
    /// Bundle id.
    pub bundle_id: String,
    /// Recipient concerned.
    pub recipient: String,
    /// Unix seconds.
    pub at: i64,
}

/// A key revocation, as kept by the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationItem {
    /// Relay sequence number (use it as the cursor of the next `Revocations` request).
    pub seq: u64,
    /// The facility that posted it (the relay checked it against its enrolled card).
    pub facility: String,
    /// The signed revocation; peers verify it against their own pin before acting on it.
    pub revocation: String,
}

/// Pushed notice kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A bundle arrived in your mailbox.
    NewMail,
    /// A bundle you sent expired undelivered.
    Expired,
}

/// A refusal with a machine code and a human message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// What went wrong and what to do (never PHI: the relay has none).
    pub message: String,
}

/// Machine-readable refusal codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The facility is not enrolled at this relay.
    NotEnrolled,
    /// The facility's enrollment was revoked.
    Revoked,
    /// The key on the facility's enrolled card was revoked by its holder (docs/protocol.md
    /// §17); the operator must enroll the facility's new card.
    KeyRevoked,
    /// The authentication signature did not verify.
    BadSignature,
    /// The protocol version is not supported.
    VersionUnsupported,
    /// A request before authentication.
    NotAuthenticated,
    /// Over the relay's size limit.
    TooLarge,
    /// Over the facility's quota.
    OverQuota,
    /// No such bundle for you.
    UnknownBundle,
    /// A deposit conflicting with one already held (same id, other content).
    Conflict,
    /// The uploaded bytes do not match the announced hash.
    HashMismatch,
    /// A malformed request.
    Malformed,
    /// The relay failed; retry later.
    Internal,
    /// The relay's storage is full: the deposit was not stored. Retry later (recipients
    /// collecting held bundles, or the operator, free space); nothing is wrong with the
    /// bundle.
    StorageFull,
}

impl ClientMessage {
    /// Checks list lengths and field sizes (the frame limit bounds the rest).
    pub fn check_sizes(&self) -> Result<(), &'static str> {
        match self {
            ClientMessage::Deposit { recipients, .. }
                if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS =>
            {
                Err("a deposit names 1 to 64 recipients")
            }
            ClientMessage::PostReceipt { receipt } if receipt.len() > MAX_RECEIPT_BYTES => {
                Err("receipt too large")
            }
            ClientMessage::PostRevocation { revocation }
                if revocation.len() > MAX_REVOCATION_BYTES =>
            {
                Err("revocation too large")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, encode};

    fn round_trip_client(m: ClientMessage) {
        assert_eq!(decode::<ClientMessage>(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn every_client_message_round_trips() {
        round_trip_client(ClientMessage::Auth {
            version: 1,
            facility: "us-a".into(),
            signature: "c2ln".into(),
        });
        round_trip_client(ClientMessage::Deposit {
            bundle_id: "0".repeat(32),
            recipients: vec!["th-b".into()],
            length: 10,
            sha256: "a".repeat(64),
        });
        round_trip_client(ClientMessage::Mailbox {});
        round_trip_client(ClientMessage::Fetch {
            bundle_id: "0".repeat(32),
            offset: 5,
        });
        round_trip_client(ClientMessage::Ack {
            bundle_id: "0".repeat(32),
        });
        round_trip_client(ClientMessage::PostReceipt {
            receipt: "r".into(),
        });
        round_trip_client(ClientMessage::Receipts { after: 3 });
        round_trip_client(ClientMessage::Directory {});
        round_trip_client(ClientMessage::PostRevocation {
            revocation: "r".into(),
        });
        round_trip_client(ClientMessage::Revocations { after: 9 });
    }

    #[test]
    fn server_messages_round_trip() {
        for m in [
            ServerMessage::Welcome {
                facility: "us-a".into(),
                relay_time: 1,
            },
            ServerMessage::Refused(Refusal {
                code: RefusalCode::OverQuota,
                message: "m".into(),
            }),
            ServerMessage::DepositOffset { have: 7 },
            ServerMessage::Body {
                length: 9,
                offset: 0,
            },
            ServerMessage::Notice {
                kind: NoticeKind::NewMail,
                bundle_id: "x".into(),
            },
            ServerMessage::RevocationStored,
            ServerMessage::Revocations {
                items: vec![RevocationItem {
                    seq: 4,
                    facility: "th-b".into(),
                    revocation: "{}".into(),
                }],
            },
            ServerMessage::Refused(Refusal {
                code: RefusalCode::KeyRevoked,
                message: "m".into(),
            }),
        ] {
            assert_eq!(decode::<ServerMessage>(&encode(&m).unwrap()).unwrap(), m);
        }
    }

    #[test]
    fn unknown_fields_and_size_checks() {
        let body = br#"{"type":"mailbox","extra":1}"#;
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        assert!(decode::<ClientMessage>(&f).is_err());
        let many = ClientMessage::Deposit {
            bundle_id: "x".into(),
            recipients: vec!["a".into(); 65],
            length: 1,
            sha256: "x".into(),
        };
        assert!(many.check_sizes().is_err());
        let big = ClientMessage::PostRevocation {
            revocation: "x".repeat(MAX_REVOCATION_BYTES + 1),
        };
        assert!(big.check_sizes().is_err());
        let unknown = br#"{"type":"revocations","after":1,"facility":"x"}"#;
        let mut f = (unknown.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(unknown);
        assert!(decode::<ClientMessage>(&f).is_err());
    }

    #[test]
    fn revocation_wire_names_are_fixed() {
        let m = ClientMessage::PostRevocation {
            revocation: "r".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"post_revocation","revocation":"r"}"#
        );
        assert_eq!(
            serde_json::to_string(&ServerMessage::RevocationStored).unwrap(),
            r#"{"type":"revocation_stored"}"#
        );
        assert_eq!(
            serde_json::to_string(&RefusalCode::KeyRevoked).unwrap(),
            r#""key_revoked""#
        );
    }

    #[test]
    fn storage_full_has_a_fixed_wire_name() {
        assert_eq!(
            serde_json::to_string(&RefusalCode::StorageFull).unwrap(),
            r#""storage_full""#
        );
        let m = ServerMessage::Refused(Refusal {
            code: RefusalCode::StorageFull,
            message: "m".into(),
        });
        assert_eq!(decode::<ServerMessage>(&encode(&m).unwrap()).unwrap(), m);
    }
}
