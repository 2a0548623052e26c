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
    fn millisecond_precision_in_utc() {
        let t = parse_rfc3339("2026-11-24T22:16:53.869123+01:00").unwrap();
        assert_eq!(rfc3339_ms(t), "2026-11-24T21:16:53.869Z");
    }
}
