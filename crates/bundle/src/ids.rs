//! Validated identifiers: facility ids, ISO 3166-1 country codes, display names, bundle ids.
//!
//! Everything a person types or a peer sends is checked here once, so the rest of dossier
//! can hold these types without re-validating (docs/protocol.md §1).

use std::fmt;

/// Why an identifier was refused. Messages say what is allowed so the user can fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// The facility id breaks the allowed alphabet or length.
    #[error(
        "facility id must be 3-64 characters of a-z, 0-9, '-' and '.', starting and ending \
         with a letter or digit (e.g. us-mercy-intl)"
    )]
    BadFacilityId,
    /// The country code is not an assigned ISO 3166-1 alpha-2 code.
    #[error("country must be an ISO 3166-1 alpha-2 code in capitals, such as US, TH or IN")]
    BadCountry,
    /// The display name is empty, too long, or holds control characters.
    #[error("name must be 1-128 characters, with no control characters or surrounding spaces")]
    BadName,
    /// The bundle id is not 32 lowercase hex digits.
    #[error("bundle id must be 32 lowercase hexadecimal digits")]
    BadBundleId,
}

/// A facility's (or patient's) unique id, e.g. `us-mercy-intl`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FacilityId(String);

impl FacilityId {
    /// Checks `s` against the id alphabet (docs/protocol.md §1.1).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        let ok_len = (3..=64).contains(&bytes.len());
        let ok_chars = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.');
        let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok_len && ok_chars && edge(bytes.first()) && edge(bytes.last()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadFacilityId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FacilityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Assigned ISO 3166-1 alpha-2 codes (249 entries).
const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// An assigned ISO 3166-1 alpha-2 country code, in capitals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Accepts only assigned codes, written in capitals (`TH`, not `th` or `THA`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match ISO_3166_ALPHA2.binary_search(&s) {
            Ok(_) => {
                let b = s.as_bytes();
                Ok(Self([b[0], b[1]]))
            }
            Err(_) => Err(IdError::BadCountry),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII capitals by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a human display name (facility or patient name on a card).
pub fn check_display_name(s: &str) -> Result<(), IdError> {
    let n = s.chars().count();
    if (1..=128).contains(&n) && !s.chars().any(char::is_control) && s.trim() == s {
        Ok(())
    } else {
        Err(IdError::BadName)
    }
}

/// A bundle's id: 128 random bits as 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleId(String);

impl BundleId {
    /// A fresh random id from the operating system's generator.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b)?;
        Ok(Self(b.iter().map(|x| format!("{x:02x}")).collect()))
    }

    /// Checks the form (docs/protocol.md §1.3).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadBundleId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! serde_via_parse {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                <$t>::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_parse!(FacilityId);
serde_via_parse!(CountryCode);
serde_via_parse!(BundleId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_table_is_sorted_and_complete() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        for cc in ["US", "TH", "IN", "MX", "TR", "KR", "DE"] {
            assert!(CountryCode::parse(cc).is_ok(), "{cc}");
        }
        for bad in ["us", "USA", "XX", "UK", "", "T"] {
            assert_eq!(CountryCode::parse(bad), Err(IdError::BadCountry), "{bad}");
        }
    }

    #[test]
    fn facility_ids() {
        for ok in ["us-mercy-intl", "th.bangkok-clinic", "p-0001", "abc"] {
            assert!(FacilityId::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "ab",
            "-abc",
            "abc-",
            "ABC",
            "a b c",
            "a/b/c",
            "a..",
            long.as_str(),
            "ab\u{e9}",
        ] {
            assert_eq!(FacilityId::parse(bad), Err(IdError::BadFacilityId), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_display_name("Bumrungrad International Clinic").is_ok());
        assert!(check_display_name("Hôpital Saint-Louis").is_ok());
        for bad in ["", " padded", "line\nbreak", &"x".repeat(129)] {
            assert!(check_display_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bundle_ids() {
        let id = BundleId::random().unwrap();
        assert_eq!(BundleId::parse(id.as_str()).unwrap(), id);
        assert!(BundleId::parse("ABCDEF0123456789abcdef0123456789").is_err());
        assert!(BundleId::parse("abc").is_err());
    }
}
