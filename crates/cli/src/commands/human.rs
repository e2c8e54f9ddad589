//! How values read to people on a terminal: counts with thousands separators, times in UTC to
//! the second, durations rounded to their two largest units. Scripts get exact values from
//! `--json` instead; nothing here is meant to be parsed.

use std::time::Duration;

use pdchannels_model::Timestamp;

/// `1 line`, `1,234 lines`: a count with its noun agreeing.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A rate per second, rounded to a whole number: `1,234` (a fraction of a line a second would
/// only be noise at the speeds an import runs).
pub fn rate(per_second: f64) -> String {
    if per_second.is_finite() && per_second >= 0.0 {
        // Rounded and non-negative: the cast only drops the (empty) fraction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        count(per_second.round() as u64)
    } else {
        "0".to_owned()
    }
}

/// A time (ms since the epoch) in UTC to the second: `2026-11-28 21:00:03`. Tables say "(UTC)"
/// in their header rather than on every row.
pub fn date(ms: i64) -> String {
    match Timestamp::from_unix_millis(ms) {
        // The canonical form is `YYYY-MM-DDTHH:MM:SS.fffZ`: drop the milliseconds and the `Z`.
        Some(at) => at.to_string()[..19].replacen('T', " ", 1),
        None => format!("{ms} ms after 1970"),
    }
}

/// How far `at` is from `now` (both ms since the epoch): `in 4m 12s`, `3h 5m ago`, `now`.
pub fn relative(at: i64, now: i64) -> String {
    let apart = Duration::from_millis(at.abs_diff(now));
    if apart < Duration::from_secs(1) {
        "now".to_owned()
    } else if at > now {
        format!("in {}", span(apart))
    } else {
        format!("{} ago", span(apart))
    }
}

/// A duration in its two largest units, rounded down: `4m 12s`, `2d 3h`, `45s`.
pub fn span(duration: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut left = duration.as_secs();
    let mut parts = Vec::new();
    for (unit, seconds) in UNITS {
        if left >= seconds || (parts.is_empty() && seconds == 1) {
            parts.push(format!("{}{unit}", left / seconds));
            left %= seconds;
        } else if !parts.is_empty() {
            // A zero unit after the first: the second unit is this one, and it is empty.
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        for (n, text) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(count(n), text);
        }
    }

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(rate(1234.5678), "1,235");
        assert_eq!(rate(0.2), "0");
        assert_eq!(rate(f64::NAN), "0");
    }

    #[test]
    fn dates_are_utc_to_the_second() {
        assert_eq!(date(1_795_381_203_456), "2026-11-22 21:00:03");
    }

    #[test]
    fn spans_keep_their_two_largest_units() {
        let s = Duration::from_secs;
        assert_eq!(span(s(0)), "0s");
        assert_eq!(span(s(45)), "45s");
        assert_eq!(span(s(252)), "4m 12s");
        assert_eq!(span(s(3_600)), "1h");
        assert_eq!(span(s(3_601)), "1h");
        assert_eq!(span(s(11_100)), "3h 5m");
        assert_eq!(span(s(2 * 86_400 + 3 * 3_600 + 7)), "2d 3h");
        assert_eq!(relative(10_000, 262_000), "4m 12s ago");
        assert_eq!(relative(262_000, 10_000), "in 4m 12s");
        assert_eq!(relative(5, 10), "now");
    }
}
