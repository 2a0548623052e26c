//! Timestamps: RFC 3339, UTC, millisecond precision, everywhere glassdrill
//! writes one (records, evidence, the rehearsal tenant's payloads).

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-24T21:16:53.869Z`.
pub fn rfc3339_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, in UTC, to the millisecond: the precision every record keeps, so
/// a record in memory equals the record read back from disk.
pub fn now() -> DateTime<Utc> {
    use chrono::DurationRound as _;
    let t = Utc::now();
    t.duration_trunc(chrono::TimeDelta::milliseconds(1))
        .unwrap_or(t)
}

/// Parses any RFC 3339 time into UTC.
pub(crate) fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Milliseconds of a `std` duration, saturating (for records).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a duration setting is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("`{0}` is not a duration; write it like `90s`, `15m` or `1h 30m`")]
    NotADuration(String),
    /// Zero where a wait is needed.
    #[error("must be longer than zero")]
    Zero,
    /// Past the sane upper bound (every duration has one, so no time
    /// arithmetic can overflow).
    #[error("`{value}` is too large: at most {max}")]
    TooLarge {
        /// What was given.
        value: String,
        /// The bound, as humantime writes it.
        max: String,
    },
}

/// Parses a duration like `90s`, `15m` or `1h 30m`, at most `max`, and
/// non-zero unless `allow_zero`.
pub fn parse_bounded(
    text: &str,
    max: std::time::Duration,
    allow_zero: bool,
) -> Result<std::time::Duration, DurationError> {
    let too_large = || DurationError::TooLarge {
        value: text.to_owned(),
        max: humantime::format_duration(max).to_string(),
    };
    match humantime::parse_duration(text) {
        Ok(d) if d > max => Err(too_large()),
        Ok(d) if d.is_zero() && !allow_zero => Err(DurationError::Zero),
        Ok(d) => Ok(d),
        Err(humantime::DurationError::NumberOverflow) => Err(too_large()),
        Err(_) => Err(DurationError::NotADuration(text.to_owned())),
    }
}

/// serde adapter: a `DateTime<Utc>` field written as [`rfc3339_ms`], read
/// from any RFC 3339 text.
pub mod serde_ms {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as RFC 3339 with milliseconds.
    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_ms(*t))
    }

    /// Reads any RFC 3339 time.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_durations() {
        use std::time::Duration;
        let h = Duration::from_secs(3600);
        assert_eq!(parse_bounded("1h", h, false), Ok(h));
        assert_eq!(parse_bounded("0s", h, true), Ok(Duration::ZERO));
        assert_eq!(parse_bounded("0s", h, false), Err(DurationError::Zero));
        let e = parse_bounded("61m", h, false).unwrap_err().to_string();
        assert_eq!(e, "`61m` is too large: at most 1h");
        for huge in [
            "18446744073709551615s",
            "584542046090y",
            "99999999999999999999999h",
        ] {
            let e = parse_bounded(huge, h, false).unwrap_err();
            assert!(matches!(e, DurationError::TooLarge { .. }), "{huge}: {e}");
        }
        assert!(matches!(
            parse_bounded("soon", h, false),
            Err(DurationError::NotADuration(_))
        ));
    }

    #[test]
    fn millisecond_precision_in_utc() {
        let t = parse_rfc3339("2026-11-24T22:16:53.869123+01:00").unwrap();
        assert_eq!(rfc3339_ms(t), "2026-11-24T21:16:53.869Z");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: a duration within the bound, or an error; never a panic.
        #[test]
        fn the_duration_parser_never_panics_and_respects_its_bound(
            text in "\\PC{0,40}",
            digits in "[0-9]{1,30}",
            unit in prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "M", "y", ""]),
            max_s in 1u64..=86_400 * 365,
        ) {
            let max = std::time::Duration::from_secs(max_s);
            for t in [text.clone(), format!("{digits}{unit}"), format!("{digits}{unit} {text}")] {
                if let Ok(d) = parse_bounded(&t, max, true) {
                    prop_assert!(d <= max);
                }
            }
        }
    }
}
