//! UTC timestamps as they appear in cards and manifests.
//!
//! The format is fixed to RFC 3339 in UTC with whole seconds (`2026-11-23T09:00:00Z`) so two
//! implementations produce identical bytes for identical instants (docs/protocol.md §2).

use std::fmt;
use time::{OffsetDateTime, UtcOffset, format_description::FormatItem, macros::format_description};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Seconds since the Unix epoch, UTC, rendered as `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A timestamp string that is not in the one accepted form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("timestamp is not of the form YYYY-MM-DDTHH:MM:SSZ (UTC, whole seconds)")]
pub struct TimestampError;

impl Timestamp {
    /// The instant `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: i64) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TimestampError)?;
        if !(1970..=9999).contains(&t.year()) {
            return Err(TimestampError);
        }
        Ok(Self(secs))
    }

    /// The current time from the system clock (only for callers above this crate's
    /// clock-free core: binaries and tests).
    pub fn now() -> Self {
        let secs = OffsetDateTime::now_utc().unix_timestamp();
        Self(secs)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// Parses the canonical form; anything else (offsets, fractions, lowercase) is refused.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        if s.len() != 20 {
            return Err(TimestampError);
        }
        let t = time::PrimitiveDateTime::parse(s, FORMAT).map_err(|_| TimestampError)?;
        Self::from_unix(t.assume_offset(UtcOffset::UTC).unix_timestamp())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from_unix_timestamp(self.0).map_err(|_| fmt::Error)?;
        let s = t.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_canonical_form() {
        let t = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        assert_eq!(t.unix(), 1_795_424_400);
        assert_eq!(t.to_string(), "2026-11-23T09:00:00Z");
    }

    #[test]
    fn refuses_other_forms() {
        for bad in [
            "2026-11-23T09:00:00+00:00",
            "2026-11-23T09:00:00.5Z",
            "2026-11-23 09:00:00Z",
            "2026-11-23T09:00:00z",
            "2026-13-01T00:00:00Z",
            "",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(TimestampError), "{bad}");
        }
    }
}
