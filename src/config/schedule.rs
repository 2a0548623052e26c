//! A drill file's `[schedule]`: cadence, windows, custody and keys.
//!
//! ```toml
//! [schedule]
//! min_days = 30
//! max_days = 60
//! timezone = "Europe/Oslo"
//! windows = [{ days = "mon-fri", hours = "09:00-15:00" }]
//! custody = "attached"          # or "custodian"
//! keys = ["bg1-key-a", "bg1-key-b"]
//! ```

use chrono::NaiveTime;
use serde::Deserialize;
use toml::Spanned;

use super::{Problem, Source};
use crate::schedule::{Cadence, Window, Windows};

#[derive(Deserialize, Default)]
pub(super) struct RawSchedule {
    min_days: Option<Spanned<i64>>,
    max_days: Option<Spanned<i64>>,
    timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) windows: Vec<RawWindow>,
    custody: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct RawWindow {
    days: Spanned<String>,
    hours: Spanned<String>,
}

/// Who has the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Custody {
    /// The key stays attached to the drill host: the daemon runs the drill
    /// when it is due.
    Attached,
    /// Custodians keep the key: the due drill is announced, and it starts
    /// when a person runs `glassdrill run` with the key.
    Custodian,
}

/// A drill's schedule, validated.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Days between PASSes.
    pub cadence: Cadence,
    /// When it may run.
    pub windows: Windows,
    /// Who has the key.
    pub custody: Custody,
    /// Registered keys, exercised in turn (the spare must be proven too).
    pub keys: Vec<String>,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            cadence: Cadence::default(),
            windows: Windows::any(),
            custody: Custody::Attached,
            keys: Vec::new(),
        }
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `mon-fri`, `mon,wed,fri`, `sat-sun`, `daily`: weekdays, Monday first.
fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let s = s.trim().to_ascii_lowercase();
    if s == "daily" || s == "all" {
        return Ok([true; 7]);
    }
    let day = |d: &str| {
        DAY_NAMES
            .iter()
            .position(|n| *n == d.trim())
            .ok_or_else(|| format!("`{d}` is not a day; use mon, tue, wed, thu, fri, sat, sun"))
    };
    let mut out = [false; 7];
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                if a > b {
                    return Err(format!(
                        "`{part}` runs backwards; write it Monday first, like mon-fri"
                    ));
                }
                out[a..=b].iter_mut().for_each(|d| *d = true);
            }
            None => out[day(part)?] = true,
        }
    }
    Ok(out)
}

/// `09:00-15:00`: a start and a later end on the same day.
fn parse_hours(s: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}` is not a time range; write it like 09:00-15:00"))?;
    let t = |x: &str| {
        let x = x.trim();
        if x == "24:00" {
            return NaiveTime::from_hms_opt(23, 59, 59).ok_or_else(|| "24:00".to_owned());
        }
        NaiveTime::parse_from_str(x, "%H:%M")
            .map_err(|_| format!("`{x}` is not a time of day like 09:00"))
    };
    let (from, to) = (t(a)?, t(b)?);
    if from >= to {
        return Err(format!(
            "`{s}` ends before it starts; a window lies within one day (use two windows to span midnight)"
        ));
    }
    Ok((from, to))
}

/// Validates `[schedule]`, pushing every problem.
pub(super) fn parse(
    src: &Source<'_>,
    raw: RawSchedule,
    problems: &mut Vec<Problem>,
) -> ScheduleConfig {
    let mut out = ScheduleConfig::default();
    let days =
        |v: &Option<Spanned<i64>>, default: i64| v.as_ref().map_or(default, |d| *d.get_ref());
    let (min, max) = (days(&raw.min_days, 30), days(&raw.max_days, 60));
    let at = |v: &Option<Spanned<i64>>| v.as_ref().map_or(0, |d| d.span().start);
    if !(1..=365).contains(&min) {
        problems.push(src.error(
            at(&raw.min_days),
            format!("schedule.min_days = {min}: between 1 and 365"),
        ));
    } else if !(min..=366).contains(&max) {
        problems.push(src.error(
            at(&raw.max_days),
            format!("schedule.max_days = {max}: at least min_days ({min}) and at most 366"),
        ));
    } else {
        out.cadence = Cadence {
            min: chrono::Duration::days(min),
            max: chrono::Duration::days(max),
        };
    }
    if let Some(tz) = &raw.timezone {
        match tz.get_ref().parse::<chrono_tz::Tz>() {
            Ok(t) => out.windows.tz = t,
            Err(_) => problems.push(src.error(
                tz.span().start,
                format!(
                    "schedule.timezone: `{}` is not an IANA time zone; write it like Europe/Oslo or America/New_York",
                    tz.get_ref()
                ),
            )),
        }
    }
    for w in raw.windows {
        let days = parse_days(w.days.get_ref()).map_err(|e| {
            problems.push(src.error(w.days.span().start, format!("schedule.windows.days: {e}")))
        });
        let hours = parse_hours(w.hours.get_ref()).map_err(|e| {
            problems.push(src.error(w.hours.span().start, format!("schedule.windows.hours: {e}")))
        });
        if let (Ok(days), Ok((from, to))) = (days, hours) {
            out.windows.list.push(Window { days, from, to });
        }
    }
    if let Some(c) = &raw.custody {
        match c.get_ref().as_str() {
            "attached" => out.custody = Custody::Attached,
            "custodian" => out.custody = Custody::Custodian,
            other => problems.push(src.error(
                c.span().start,
                format!("schedule.custody: `{other}` is not known; use `attached` (the key stays in the drill host) or `custodian`"),
            )),
        }
    }
    for k in &raw.keys {
        if let Err(why) = crate::support::ids::check(k) {
            problems.push(src.error(0, format!("schedule.keys: `{k}` {why}")));
        }
    }
    out.keys = raw.keys;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_hours() {
        assert_eq!(
            parse_days("mon-fri").unwrap(),
            [true, true, true, true, true, false, false]
        );
        assert_eq!(
            parse_days("Sat, sun").unwrap(),
            [false, false, false, false, false, true, true]
        );
        assert_eq!(parse_days("daily").unwrap(), [true; 7]);
        assert!(parse_days("fri-mon").unwrap_err().contains("backwards"));
        assert!(parse_days("funday").unwrap_err().contains("not a day"));
        let (a, b) = parse_hours("09:00-15:30").unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("09:00:00".into(), "15:30:00".into())
        );
        assert!(
            parse_hours("22:00-02:00")
                .unwrap_err()
                .contains("two windows")
        );
        assert!(parse_hours("9am-5pm").unwrap_err().contains("time of day"));
    }
}
