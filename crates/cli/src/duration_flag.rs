//! Duration flags (`--deliver-timeout`, `auth login --wait`): humantime's forms (`10s`,
//! `500ms`, `5m`, `1h 30m`) within a range each flag states, so a huge value is refused at
//! parse time instead of overflowing an `Instant` later.

use std::time::Duration;

/// The values a duration flag accepts.
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
    /// A value to show in the error, e.g. `10s`.
    pub example: &'static str,
}

impl DurationRange {
    /// `text` as a duration within the range; the error says what is accepted, with an
    /// example (clap prefixes it with the flag's name and exits with status 2).
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let accepted = || {
            format!(
                "expected a duration from {} to {}, such as {} (units: ms, s, m, h)",
                humantime::format_duration(self.min),
                humantime::format_duration(self.max),
                self.example,
            )
        };
        let duration = humantime::parse_duration(text.trim())
            .map_err(|e| format!("{} ({e}); got {text:?}", accepted()))?;
        if (self.min..=self.max).contains(&duration) {
            Ok(duration)
        } else {
            Err(format!("{}; got {text:?}", accepted()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: DurationRange = DurationRange {
        min: Duration::ZERO,
        max: Duration::from_secs(600),
        example: "10s",
    };

    #[test]
    fn humantime_forms_within_the_range_are_accepted() {
        for (text, expected) in [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("5m", Duration::from_secs(300)),
            ("1m 30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            (" 0s ", Duration::ZERO),
            ("10m", Duration::from_secs(600)),
        ] {
            assert_eq!(RANGE.parse(text), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn out_of_range_and_malformed_values_are_refused_with_the_range_and_an_example() {
        for text in [
            "10m 1ms",
            "18446744073709551615s",
            "99999999999999999999999s",
            "1000000000000000h",
            "-1s",
            "10",
            "ten seconds",
            "",
        ] {
            let err = RANGE.parse(text).unwrap_err();
            assert!(
                err.starts_with("expected a duration from 0s to 10m, such as 10s"),
                "{text:?}: {err}"
            );
            assert!(err.ends_with(&format!("got {text:?}")), "{text:?}: {err}");
        }
    }
}
