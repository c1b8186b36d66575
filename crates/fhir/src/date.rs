//! FHIR `date` values with their partial precision, and a conservative "is a minor" test.
//!
//! A FHIR birthDate may be `YYYY`, `YYYY-MM` or `YYYY-MM-DD`. Rounding a partial date to
//! its first day would make a patient born late in that year look a year older than they
//! may be, and let a minor's record leave as an adult's. [`FhirDate::is_minor_on`]
//! therefore judges by the *latest* day the value allows: if anyone the date could
//! describe is under the threshold, the patient counts as a minor.
//!
//! Birthdays on 29 February are taken to fall on 1 March in common years — the later of
//! the two conventions in use, so again the patient stays a minor for the extra day.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

use crate::FhirError;

/// How much of a [`FhirDate`] is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatePrecision {
    /// `YYYY`.
    Year,
    /// `YYYY-MM`.
    Month,
    /// `YYYY-MM-DD`.
    Day,
}

/// A FHIR `date`: a year, optionally a month, optionally a day, always a real calendar day.
///
/// `Debug` shows only the precision, so a birth date cannot reach a log through `{:?}`;
/// `Display` writes the value in FHIR form.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FhirDate {
    year: u16,
    month: Option<u8>,
    day: Option<u8>,
}

impl FhirDate {
    /// Parses a FHIR date: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, year 0001–9999, nothing else
    /// (no time, no time zone, no surrounding spaces).
    pub fn parse(text: &str) -> Result<Self, FhirError> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u16> {
            let part = b.get(range)?;
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| part.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
        };
        let year = digits(0..4).ok_or(FhirError::InvalidDate)?;
        let (month, day) = match b.len() {
            4 => (None, None),
            7 if b[4] == b'-' => (Some(digits(5..7).ok_or(FhirError::InvalidDate)?), None),
            10 if b[4] == b'-' && b[7] == b'-' => (
                Some(digits(5..7).ok_or(FhirError::InvalidDate)?),
                Some(digits(8..10).ok_or(FhirError::InvalidDate)?),
            ),
            _ => return Err(FhirError::InvalidDate),
        };
        if year == 0 {
            return Err(FhirError::InvalidDate);
        }
        let month = month.map(|m| u8::try_from(m).map_err(|_| FhirError::InvalidDate));
        let month = month.transpose()?;
        if let Some(m) = month {
            if !(1..=12).contains(&m) {
                return Err(FhirError::InvalidDate);
            }
        }
        let day = day.map(|d| u8::try_from(d).map_err(|_| FhirError::InvalidDate));
        let day = day.transpose()?;
        if let (Some(m), Some(d)) = (month, day) {
            if d == 0 || d > days_in_month(year, m) {
                return Err(FhirError::InvalidDate);
            }
        }
        Ok(Self { year, month, day })
    }

    /// The year.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month (1–12), if known.
    pub fn month(&self) -> Option<u8> {
        self.month
    }

    /// The day of the month, if known.
    pub fn day(&self) -> Option<u8> {
        self.day
    }

    /// How much of the date is known.
    pub fn precision(&self) -> DatePrecision {
        match (self.month, self.day) {
            (None, _) => DatePrecision::Year,
            (Some(_), None) => DatePrecision::Month,
            (Some(_), Some(_)) => DatePrecision::Day,
        }
    }

    /// The earliest calendar day this value allows (`2008` → 2008-01-01).
    pub fn earliest_day(&self) -> Date {
        let (y, m, d) = (self.year, self.month.unwrap_or(1), self.day.unwrap_or(1));
        calendar_day(y, m, d)
    }

    /// The latest calendar day this value allows (`2008` → 2008-12-31, `2008-02` →
    /// 2008-02-29).
    pub fn latest_day(&self) -> Date {
        let m = self.month.unwrap_or(12);
        let d = self.day.unwrap_or_else(|| days_in_month(self.year, m));
        calendar_day(self.year, m, d)
    }

    /// Whether a patient with this birth date may be younger than `age_of_majority` years
    /// on `today`.
    ///
    /// Conservative: judged by [`FhirDate::latest_day`], so `2008` on 2026-06-01 with a
    /// threshold of 18 is a minor (someone born 2008-12-31 is 17 that day). A birth date
    /// after `today` also counts as a minor.
    pub fn is_minor_on(&self, today: Date, age_of_majority: u8) -> bool {
        let born = self.latest_day();
        let (by, bm, bd) = (born.year(), u8::from(born.month()), born.day());
        let majority_year = by + i32::from(age_of_majority);
        let (ty, tm, td) = (today.year(), u8::from(today.month()), today.day());
        // The day the threshold is reached in `majority_year`; a 29 February birthday
        // falls on 1 March in common years.
        let (mm, md) = if bm == 2 && bd == 29 && !is_leap(majority_year) {
            (3, 1)
        } else {
            (bm, bd)
        };
        (ty, tm, td) < (majority_year, mm, md)
    }
}

impl FromStr for FhirDate {
    type Err = FhirError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FhirDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for FhirDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FhirDate")
            .field("precision", &self.precision())
            .finish_non_exhaustive()
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(i32::from(year)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A day already checked by [`FhirDate::parse`]; years 1–9999 are inside `time`'s range.
fn calendar_day(year: u16, month: u8, day: u8) -> Date {
    let month = Month::try_from(month).unwrap_or(Month::January);
    Date::from_calendar_date(i32::from(year), month, day).unwrap_or(Date::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn d(s: &str) -> FhirDate {
        FhirDate::parse(s).unwrap()
    }

    #[test]
    fn parses_the_three_precisions() {
        assert_eq!(d("1985").precision(), DatePrecision::Year);
        assert_eq!(d("1985-04").precision(), DatePrecision::Month);
        let full = d("1985-04-25");
        assert_eq!(full.precision(), DatePrecision::Day);
        assert_eq!(
            (full.year(), full.month(), full.day()),
            (1985, Some(4), Some(25))
        );
        assert_eq!(full.to_string(), "1985-04-25");
        assert_eq!(d("0001").to_string(), "0001");
    }

    #[test]
    fn refuses_what_is_not_a_fhir_date() {
        for bad in [
            "",
            "85",
            "19850",
            "1985-4",
            "1985-04-5",
            "1985/04/25",
            "1985-13",
            "1985-00",
            "1985-02-29",
            "1985-04-31",
            "1985-04-00",
            "0000",
            " 1985",
            "1985-04-25T10:00:00Z",
            "198a",
            "1985-0a",
            "+1985",
            "1985-04-25 ",
            "１９８５",
        ] {
            assert_eq!(FhirDate::parse(bad), Err(FhirError::InvalidDate), "{bad:?}");
        }
        assert!(FhirDate::parse("2000-02-29").is_ok());
        assert!(FhirDate::parse("1900-02-29").is_err());
    }

    #[test]
    fn debug_does_not_show_the_date() {
        assert!(!format!("{:?}", d("1985-04-25")).contains("1985"));
    }

    #[test]
    fn latest_and_earliest_days() {
        assert_eq!(d("2008").latest_day(), date!(2008 - 12 - 31));
        assert_eq!(d("2008-02").latest_day(), date!(2008 - 02 - 29));
        assert_eq!(d("2009-02").latest_day(), date!(2009 - 02 - 28));
        assert_eq!(d("2008").earliest_day(), date!(2008 - 01 - 01));
    }

    #[test]
    fn full_dates_turn_adult_on_the_birthday() {
        let born = d("2008-06-01");
        assert!(born.is_minor_on(date!(2026 - 05 - 31), 18));
        assert!(!born.is_minor_on(date!(2026 - 06 - 01), 18));
        assert!(!born.is_minor_on(date!(2030 - 01 - 01), 18));
        assert!(born.is_minor_on(date!(2026 - 06 - 01), 19));
        assert!(!born.is_minor_on(date!(2008 - 06 - 01), 0));
    }

    #[test]
    fn partial_dates_are_judged_by_their_latest_day() {
        // Someone born 2008-12-31 is still 17 on 2026-06-01.
        assert!(d("2008").is_minor_on(date!(2026 - 06 - 01), 18));
        assert!(d("2008").is_minor_on(date!(2026 - 12 - 30), 18));
        assert!(!d("2008").is_minor_on(date!(2026 - 12 - 31), 18));
        assert!(d("2008-06").is_minor_on(date!(2026 - 06 - 29), 18));
        assert!(!d("2008-06").is_minor_on(date!(2026 - 06 - 30), 18));
        assert!(!d("2007").is_minor_on(date!(2026 - 06 - 01), 18));
    }

    #[test]
    fn leap_day_births_come_of_age_on_the_first_of_march_in_common_years() {
        let born = d("2008-02-29");
        assert!(born.is_minor_on(date!(2026 - 02 - 28), 18));
        assert!(!born.is_minor_on(date!(2026 - 03 - 01), 18));
        // In a leap year the birthday exists.
        assert!(born.is_minor_on(date!(2024 - 02 - 28), 16));
        assert!(!born.is_minor_on(date!(2024 - 02 - 29), 16));
        // A month-precision February in a leap year allows the 29th.
        assert!(d("2008-02").is_minor_on(date!(2026 - 02 - 28), 18));
        assert!(!d("2008-02").is_minor_on(date!(2026 - 03 - 01), 18));
    }

    #[test]
    fn births_in_the_future_are_minors() {
        assert!(d("2030-01-01").is_minor_on(date!(2026 - 06 - 01), 0));
        assert!(d("2030").is_minor_on(date!(2026 - 06 - 01), 18));
    }

    #[test]
    fn from_str_matches_parse() {
        assert_eq!(
            "1972-05-01".parse::<FhirDate>(),
            FhirDate::parse("1972-05-01")
        );
    }
}
