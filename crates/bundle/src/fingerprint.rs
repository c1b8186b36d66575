//! Key ids and the fingerprint people read to each other on the phone.
//!
//! A [`KeyId`] names one facility key set (Ed25519 verifying key + age X25519 recipient).
//! Manifests refer to keys by their full 256-bit id; people compare the shorter
//! [`Fingerprint`]: six groups of five decimal digits (about 100 bits), the way Signal's
//! safety numbers are read aloud (docs/protocol.md §3).

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

const KEY_ID_DOMAIN: &[u8] = b"dossier/key-id/v1\0";

/// SHA-256 over the domain string, the 32-byte Ed25519 key and the age recipient string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

impl KeyId {
    /// The id of a key set: `SHA-256("dossier/key-id/v1\0" || ed25519 || age_recipient)`.
    pub fn of(signing_key: &[u8; 32], age_recipient: &str) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_ID_DOMAIN);
        h.update(signing_key);
        h.update(age_recipient.as_bytes());
        Self(h.finalize().into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits, as used in manifests.
    pub fn to_hex(&self) -> String {
        hex_lower(&self.0)
    }

    /// Parses 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = parse_hex_lower(s)?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The human fingerprint of this key set.
    pub fn fingerprint(&self) -> Fingerprint {
        let groups: Vec<String> = self.0[..30]
            .chunks(5)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect();
        Fingerprint(groups.join(" "))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeyId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("key id must be 64 lowercase hex digits"))
    }
}

/// Six groups of five digits, e.g. `01234 56789 01234 56789 01234 56789`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint as printed (groups separated by single spaces).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `typed` (as a person may type it: any spacing, dashes) is this fingerprint.
    /// Compared in constant time.
    pub fn matches(&self, typed: &str) -> bool {
        let mine: Vec<u8> = self.0.bytes().filter(u8::is_ascii_digit).collect();
        let theirs: Vec<u8> = typed
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b'-')
            .collect();
        mine.len() == theirs.len() && bool::from(mine.ct_eq(&theirs))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase hex (uppercase is refused so every value has one spelling).
pub(crate) fn parse_hex_lower(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_shape_and_matching() {
        let id = KeyId::of(&[7u8; 32], "age1example");
        let fp = id.fingerprint();
        assert_eq!(fp.as_str().len(), 6 * 5 + 5);
        assert!(
            fp.as_str()
                .split(' ')
                .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
        );
        assert!(fp.matches(fp.as_str()));
        assert!(fp.matches(&fp.as_str().replace(' ', "-")));
        assert!(fp.matches(&fp.as_str().replace(' ', "")));
        let mut wrong = fp.as_str().to_owned();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert!(!fp.matches(&wrong));
        assert!(!fp.matches(""));
    }

    #[test]
    fn key_id_hex_round_trip() {
        let id = KeyId::of(&[1u8; 32], "age1x");
        assert_eq!(KeyId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(KeyId::from_hex(&id.to_hex().to_uppercase()), None);
        assert_eq!(KeyId::from_hex("00"), None);
    }

    #[test]
    fn key_id_depends_on_both_keys() {
        let a = KeyId::of(&[1u8; 32], "age1x");
        assert_ne!(a, KeyId::of(&[2u8; 32], "age1x"));
        assert_ne!(a, KeyId::of(&[1u8; 32], "age1y"));
    }
}
