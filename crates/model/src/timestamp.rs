//! Timestamps as the contract's two documented forms accept them, normalised to one.
//!
//! Pipedrive's spec shows RFC 3339 (`2022-03-01T07:58:35.449Z`) while its prose and playground
//! use `YYYY-MM-DD HH:MM` in UTC (contract §1.3). We accept both, store milliseconds since the
//! epoch, and always write RFC 3339 in UTC with milliseconds.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Pipedrive's space-separated form, read as UTC: `YYYY-MM-DD HH:MM[:SS[.fff]]`.
const SPACE_FORM: &[BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day] [hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
);

/// The one form we write: RFC 3339, UTC, milliseconds.
const CANONICAL: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The first and last instants a [`Timestamp`] holds, as error messages name them.
const EARLIEST: &str = "0001-01-01T00:00:00Z";
const LATEST: &str = "9999-12-31T23:59:59.999Z";

/// An instant in UTC with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_millis: i64,
}

impl Timestamp {
    /// Accepts RFC 3339 with any offset (converted to UTC) or `YYYY-MM-DD HH:MM[:SS[.fff]]`
    /// (taken as UTC). Precision below a millisecond is dropped.
    pub fn parse(value: &str) -> Result<Self, String> {
        let parsed = OffsetDateTime::parse(value, &Rfc3339).or_else(|_| {
            PrimitiveDateTime::parse(value, SPACE_FORM).map(PrimitiveDateTime::assume_utc)
        });
        match parsed {
            Ok(t) => Self::from_offset_date_time(t).ok_or_else(|| {
                format!(
                    "must be from {EARLIEST} to {LATEST} once converted to UTC (years 0001 to \
                     9999); got {value:?}"
                )
            }),
            Err(_) => Err(format!(
                "must be a date-time: RFC 3339 such as `2022-03-01T07:58:35.449Z` (any offset), \
                 or `YYYY-MM-DD HH:MM[:SS]` in UTC; got {value:?}{}",
                hint(value)
            )),
        }
    }

    /// Milliseconds since 1970-01-01T00:00:00Z, for storage and ordering.
    pub fn unix_millis(self) -> i64 {
        self.unix_millis
    }

    /// The instant `unix_millis` milliseconds after the epoch, if it is within years 1 to 9999.
    pub fn from_unix_millis(unix_millis: i64) -> Option<Self> {
        let t =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_millis) * 1_000_000).ok()?;
        Self::from_offset_date_time(t)
    }

    /// The current time, truncated to milliseconds.
    pub fn now() -> Self {
        Self::from_offset_date_time(OffsetDateTime::now_utc())
            .expect("the current time is within years 1 to 9999")
    }

    /// `None` when the instant is outside years 1 to 9999 in UTC.
    fn from_offset_date_time(t: OffsetDateTime) -> Option<Self> {
        // Checked: a local time late on 9999-12-31 with a negative offset is in year 10000 in
        // UTC, which `time` cannot represent (`to_offset` would panic).
        let t = t.checked_to_offset(UtcOffset::UTC)?;
        if !(1..=9999).contains(&t.year()) {
            return None;
        }
        let unix_millis = i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
        Some(Self { unix_millis })
    }

    fn to_offset_date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.unix_millis) * 1_000_000)
            .expect("a Timestamp is always within range")
    }
}

/// A pointer at the likely mistake, when one is recognisable.
fn hint(value: &str) -> &'static str {
    let b = value.as_bytes();
    let looks_like_date_time = b.len() >= 16 && b[4] == b'-' && matches!(b[10], b'T' | b't');
    if looks_like_date_time && !value.contains(['Z', 'z', '+']) && value[10..].find('-').is_none() {
        "; it has no UTC offset: add `Z` for UTC"
    } else {
        ""
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .to_offset_date_time()
            .format(CANONICAL)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "UTC date-time: RFC 3339 such as 2022-03-01T07:58:35.449Z (any offset is converted to UTC), or YYYY-MM-DD HH:MM[:SS] taken as UTC. Echoed as RFC 3339 UTC with milliseconds.",
            "examples": ["2022-03-01T07:58:35.449Z"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(s: &str) -> String {
        Timestamp::parse(s).unwrap().to_string()
    }

    #[test]
    fn rfc3339_with_z_and_milliseconds_is_kept() {
        assert_eq!(norm("2022-03-01T07:58:35.449Z"), "2022-03-01T07:58:35.449Z");
    }

    #[test]
    fn rfc3339_offsets_are_converted_to_utc() {
        assert_eq!(
            norm("2024-05-01T10:20:30+02:00"),
            "2024-05-01T08:20:30.000Z"
        );
        assert_eq!(
            norm("2024-05-01T10:20:30.5-04:30"),
            "2024-05-01T14:50:30.500Z"
        );
        assert_eq!(
            norm("2024-01-01T00:30:00+01:00"),
            "2023-12-31T23:30:00.000Z"
        );
    }

    #[test]
    fn sub_millisecond_digits_are_truncated() {
        assert_eq!(
            norm("2024-05-01T10:20:30.123999Z"),
            "2024-05-01T10:20:30.123Z"
        );
    }

    #[test]
    fn space_form_is_utc_with_optional_seconds_and_fraction() {
        assert_eq!(norm("2022-06-30 12:34"), "2022-06-30T12:34:00.000Z");
        assert_eq!(norm("2019-01-22 08:55:59"), "2019-01-22T08:55:59.000Z");
        assert_eq!(norm("2019-01-22 08:55:59.5"), "2019-01-22T08:55:59.500Z");
        assert_eq!(norm("2019-01-22 08:55:59.123"), "2019-01-22T08:55:59.123Z");
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for bad in [
            "",
            "yesterday",
            "2024-02-30T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01",
            "1651400430",
            "2024-05-01 10",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn a_missing_offset_gets_a_hint() {
        let err = Timestamp::parse("2024-05-01T10:20:30").unwrap_err();
        assert!(
            err.ends_with("it has no UTC offset: add `Z` for UTC"),
            "{err}"
        );
    }

    /// Regression (issue 8 item 4): this panicked in `to_offset` (year 10000 in UTC).
    #[test]
    fn a_local_time_past_year_9999_in_utc_is_an_error() {
        for late in [
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:59:59.999-23:59",
            "9999-12-31T23:30:00-00:31",
        ] {
            let err = Timestamp::parse(late).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "must be from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z once \
                     converted to UTC (years 0001 to 9999); got {late:?}"
                )
            );
        }
    }

    #[test]
    fn the_edges_of_the_range_are_accepted_and_beyond_them_rejected() {
        assert_eq!(norm("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00.000Z");
        assert_eq!(
            norm("0001-01-01T01:00:00+01:00"),
            "0001-01-01T00:00:00.000Z"
        );
        assert_eq!(norm("9999-12-31T23:59:59.999Z"), "9999-12-31T23:59:59.999Z");
        assert_eq!(norm("9999-12-31 23:59:59.999"), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            norm("9999-12-31T22:59:59.999-01:00"),
            "9999-12-31T23:59:59.999Z"
        );
        for outside in [
            "0000-12-31T23:59:59Z",
            "0000-12-31 23:59",
            "0001-01-01T00:00:00+01:00",
            "0000-01-01T00:00:00+23:59",
        ] {
            let err = Timestamp::parse(outside).unwrap_err();
            assert!(err.contains("(years 0001 to 9999)"), "{outside:?}: {err}");
        }
    }

    #[test]
    fn a_leap_second_is_the_last_millisecond_of_its_minute_only_where_one_can_be() {
        assert_eq!(norm("2016-12-31T23:59:60Z"), "2016-12-31T23:59:59.999Z");
        assert_eq!(norm("2016-12-31T23:59:60.5Z"), "2016-12-31T23:59:59.999Z");
        assert_eq!(
            norm("2017-01-01T00:59:60+01:00"),
            "2016-12-31T23:59:59.999Z"
        );
        for bad in [
            "2024-05-01T12:00:60Z",
            "9999-12-31T23:59:60-01:00",
            "2016-12-31 23:59:60",
            "2016-12-31T23:59:61Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn many_fractional_digits_are_truncated_not_overflowed() {
        let digits = "9".repeat(10_000);
        assert_eq!(
            norm(&format!("2024-05-01T10:20:30.{digits}Z")),
            "2024-05-01T10:20:30.999Z"
        );
        // The space form takes at most nanoseconds (9 digits), like `time`'s own parser.
        assert_eq!(
            norm("2024-05-01 10:20:30.123456789"),
            "2024-05-01T10:20:30.123Z"
        );
        assert!(Timestamp::parse(&format!("2024-05-01 10:20:30.{digits}")).is_err());
    }

    #[test]
    fn offsets_up_to_the_largest_rfc3339_allows_are_converted() {
        assert_eq!(
            norm("2024-05-01T23:59:00+23:59"),
            "2024-05-01T00:00:00.000Z"
        );
        assert_eq!(
            norm("2024-05-01T00:00:00-23:59"),
            "2024-05-01T23:59:00.000Z"
        );
        for bad in [
            "2024-05-01T00:00:00+24:60",
            "2024-05-01T00:00:00+99:00",
            "2024-05-01T00:00:00+0100",
            "2024-05-01T00:00:00+01",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn from_unix_millis_refuses_what_is_out_of_range() {
        for ms in [i64::MIN, i64::MAX, -62_135_596_800_001, 253_402_300_800_000] {
            assert_eq!(Timestamp::from_unix_millis(ms), None, "{ms}");
        }
        assert!(Timestamp::from_unix_millis(-62_135_596_800_000).is_some());
        assert!(Timestamp::from_unix_millis(253_402_300_799_999).is_some());
    }

    #[test]
    fn round_trips_through_unix_millis() {
        let t = Timestamp::parse("1999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(Timestamp::from_unix_millis(t.unix_millis()), Some(t));
        assert_eq!(t.unix_millis(), 946_684_799_999);
    }

    #[test]
    fn serializes_as_the_canonical_string() {
        let t = Timestamp::parse("2022-03-01 00:00").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2022-03-01T00:00:00.000Z\""
        );
    }

    prop_compose! {
        fn any_instant()(ms in 0i64..253_402_300_799_999i64) -> Timestamp {
            Timestamp::from_unix_millis(ms).unwrap()
        }
    }

    proptest! {
        #[test]
        fn canonical_form_parses_back_to_the_same_instant(t in any_instant()) {
            let text = t.to_string();
            prop_assert_eq!(Timestamp::parse(&text).unwrap(), t);
            prop_assert_eq!(text.len(), 24);
        }

        #[test]
        fn any_offset_denotes_the_same_instant(t in any_instant(), minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32)) {
            let offset = UtcOffset::from_whole_seconds(minutes * 60).unwrap();
            let local = t.to_offset_date_time().to_offset(offset);
            // Instants whose local time falls outside years 1..9999 cannot be written in RFC 3339.
            prop_assume!((1..=9999).contains(&local.year()));
            let text = local.format(&Rfc3339).unwrap();
            prop_assert_eq!(Timestamp::parse(&text).unwrap(), t);
        }

        #[test]
        fn space_form_is_read_as_utc(t in any_instant()) {
            let utc = t.to_offset_date_time();
            let text = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
                utc.year(), u8::from(utc.month()), utc.day(), utc.hour(), utc.minute(), utc.second(), utc.millisecond()
            );
            prop_assert_eq!(Timestamp::parse(&text).unwrap(), t);
        }

        #[test]
        fn normalising_is_idempotent(s in "[0-9]{4}-[01][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?(Z|[+-][01][0-9]:[0-5][0-9])?") {
            if let Ok(t) = Timestamp::parse(&s) {
                let once = t.to_string();
                prop_assert_eq!(Timestamp::parse(&once).unwrap().to_string(), once);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,40}") {
            let _ = Timestamp::parse(&s);
        }

        /// Text shaped like a date-time, with every field free to be out of range (years 0000
        /// and 9999, second 60, offsets up to 29:59, long fractions): never a panic, and what
        /// is accepted is in range and normalises to itself.
        #[test]
        fn date_like_text_is_accepted_in_range_or_rejected(s in "(0000|0001|9999|[0-9]{4})-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9](:[0-6][0-9](\\.[0-9]{1,30})?)?([Zz]|[+-][0-2][0-9]:[0-5][0-9])?") {
            if let Ok(t) = Timestamp::parse(&s) {
                prop_assert!((-62_135_596_800_000..=253_402_300_799_999).contains(&t.unix_millis()));
                prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
            }
        }

        /// At both ends of the range, with any offset: accepted exactly when the instant is
        /// within years 0001 to 9999 in UTC (checked with plain arithmetic, not `time`).
        #[test]
        fn the_range_is_checked_after_the_offset(
            last_day in any::<bool>(),
            second_of_day in 0i64..86_400,
            minutes in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        ) {
            const FIRST_DAY: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
            const LAST_DAY: i64 = 253_402_214_400; // 9999-12-31T00:00:00Z
            let (date, day_start) = if last_day {
                ("9999-12-31", LAST_DAY)
            } else {
                ("0001-01-01", FIRST_DAY)
            };
            let sign = if minutes < 0 { '-' } else { '+' };
            let text = format!(
                "{date}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                second_of_day / 3600,
                second_of_day / 60 % 60,
                second_of_day % 60,
                minutes.abs() / 60,
                minutes.abs() % 60,
            );
            let utc_seconds = day_start + second_of_day - minutes * 60;
            let in_range = (FIRST_DAY..LAST_DAY + 86_400).contains(&utc_seconds);
            match Timestamp::parse(&text) {
                Ok(t) => {
                    prop_assert!(in_range, "{} accepted", text);
                    prop_assert_eq!(t.unix_millis(), utc_seconds * 1000);
                }
                Err(e) => {
                    prop_assert!(!in_range, "{} rejected: {}", text, e);
                    prop_assert!(e.contains("(years 0001 to 9999)"), "{}", e);
                }
            }
        }
    }
}
