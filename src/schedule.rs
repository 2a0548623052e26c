//! Schedule arithmetic, pure: when a drill is next due (DESIGN D9).
//!
//! A drill has a cadence (`min_days`..`max_days` after its last PASS),
//! allowed windows (weekdays and a time of day in an IANA time zone) and a
//! group (the break-glass accounts of one tenant, never drilled close
//! together). The next due time is drawn **once**, uniformly over the
//! allowed time inside the cadence range (so a narrow window does not bunch
//! drills at its edges), and the caller persists it: a restart never draws
//! again. Nothing here reads a clock or a random source: `now` and the
//! random number are passed in, so a year of schedule is computed in
//! milliseconds in tests.
//!
//! Windows are local wall-clock times: a window of 09:00–15:00 in
//! `Europe/Oslo` is 08:00–14:00 UTC in winter and 07:00–13:00 UTC in
//! summer. On a spring-forward night the skipped hour is in no window; on
//! a fall-back night the repeated hour is in the window in both of its
//! passes where the window covers it, and nothing outside it is.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Days between PASSes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Earliest next drill after a PASS.
    pub min: Duration,
    /// Latest: past it, the drill is overdue.
    pub max: Duration,
}

impl Default for Cadence {
    /// Microsoft's guidance: test break-glass accounts every 30 to 60 days.
    fn default() -> Self {
        Self {
            min: Duration::days(30),
            max: Duration::days(60),
        }
    }
}

/// One allowed window: some weekdays, a time of day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Allowed weekdays, Monday first.
    pub days: [bool; 7],
    /// Local start time.
    pub from: NaiveTime,
    /// Local end time (after `from`, same day).
    pub to: NaiveTime,
}

/// When a drill may run: windows in a time zone. No windows: any time.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    /// The windows' time zone.
    pub tz: Tz,
    /// The windows; empty means any time.
    pub list: Vec<Window>,
}

impl Windows {
    /// Any time of any day.
    pub fn any() -> Self {
        Self {
            tz: chrono_tz::UTC,
            list: Vec::new(),
        }
    }

    /// Whether `t` lies inside a window.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        if self.list.is_empty() {
            return true;
        }
        allowed(self, t - Duration::days(2), t + Duration::days(2))
            .iter()
            .any(|i| i.start <= t && t < i.end)
    }
}

/// A half-open stretch of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// First instant inside.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
}

impl Interval {
    fn len_ms(&self) -> u64 {
        u64::try_from((self.end - self.start).num_milliseconds()).unwrap_or(0)
    }
}

/// Sorts and merges touching or overlapping intervals, dropping empty ones.
fn merge(mut v: Vec<Interval>) -> Vec<Interval> {
    v.retain(|i| i.start < i.end);
    v.sort_by_key(|i| i.start);
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for i in v {
        match out.last_mut() {
            Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
            _ => out.push(i),
        }
    }
    out
}

/// The allowed time of `windows` inside `[lo, hi)`, sorted and merged:
/// every instant whose local wall time, on an allowed weekday, lies in a
/// window. The time zone's offset is constant between its transitions, so
/// the span is cut into pieces of one offset each (transitions fall on
/// quarter hours in every zone), and in each piece a window is one UTC
/// interval. A repeated hour is thus allowed in both of its passes where
/// the window covers it, a skipped one in neither.
pub fn allowed(windows: &Windows, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Vec<Interval> {
    use chrono::Offset as _;
    if lo >= hi {
        return Vec::new();
    }
    if windows.list.is_empty() {
        return vec![Interval { start: lo, end: hi }];
    }
    let tz = windows.tz;
    let offset = |t: DateTime<Utc>| {
        Duration::seconds(i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ))
    };
    // Pieces of constant offset, found on a quarter-hour grid.
    let step = Duration::minutes(15);
    let mut pieces: Vec<(DateTime<Utc>, DateTime<Utc>, Duration)> = Vec::new();
    let mut t = lo;
    while t < hi {
        let next = (t + step).min(hi);
        let off = offset(t);
        match pieces.last_mut() {
            Some((_, end, o)) if *o == off => *end = next,
            _ => pieces.push((t, next, off)),
        }
        t = next;
    }
    let mut found = Vec::new();
    for (a, b, off) in pieces {
        let first: NaiveDate = (a + off).date_naive() - Duration::days(1);
        let last: NaiveDate = (b + off).date_naive() + Duration::days(1);
        for date in first.iter_days().take_while(|d| *d <= last) {
            let weekday = date.weekday().num_days_from_monday() as usize;
            for w in windows.list.iter().filter(|w| w.days[weekday]) {
                // In this piece, local = UTC + off exactly.
                let start = (date.and_time(w.from) - off).and_utc().max(a);
                let end = (date.and_time(w.to) - off).and_utc().min(b);
                found.push(Interval { start, end });
            }
        }
    }
    merge(found)
}

/// `intervals` minus `(t - gap, t + gap)` around each busy instant (the
/// other drills of the group): a drill due in what is left is at least
/// `gap` away from each of them.
pub fn keep_apart(intervals: &[Interval], busy: &[DateTime<Utc>], gap: Duration) -> Vec<Interval> {
    let mut out = intervals.to_vec();
    for b in busy {
        let (cut_start, cut_end) = (*b - gap, *b + gap);
        out = out
            .into_iter()
            .flat_map(|i| {
                if i.end <= cut_start || i.start >= cut_end {
                    vec![i]
                } else {
                    vec![
                        Interval {
                            start: i.start,
                            end: cut_start.max(i.start),
                        },
                        Interval {
                            start: cut_end.min(i.end),
                            end: i.end,
                        },
                    ]
                }
            })
            .collect();
        out = merge(out);
    }
    out
}

/// The instant `random` selects, uniformly over the total time of
/// `intervals` (millisecond resolution); `None` when there is none.
pub fn pick(intervals: &[Interval], random: u64) -> Option<DateTime<Utc>> {
    let total: u64 = intervals.iter().map(Interval::len_ms).sum();
    if total == 0 {
        return None;
    }
    let mut offset = random % total;
    for i in intervals {
        let len = i.len_ms();
        if offset < len {
            let ms = i64::try_from(offset).ok()?;
            return Some(i.start + Duration::milliseconds(ms));
        }
        offset -= len;
    }
    None
}

/// Longest look-ahead for a first window (a drill whose windows never
/// come round, say a 29 February only, is reported rather than searched
/// for ever).
const HORIZON: i64 = 400;

/// What a draw needs.
#[derive(Debug, Clone)]
pub struct DrawInput<'a> {
    /// The drill's last PASS, if any.
    pub last_pass: Option<DateTime<Utc>>,
    /// Now.
    pub now: DateTime<Utc>,
    /// Its cadence.
    pub cadence: Cadence,
    /// Its windows.
    pub windows: &'a Windows,
    /// When the other drills of its group run or are due.
    pub group: &'a [DateTime<Utc>],
    /// How far apart drills of one group must be.
    pub gap: Duration,
}

/// A drawn due time and why it is what it is (for `status` and `plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawn {
    /// When the drill is due.
    pub due: DateTime<Utc>,
    /// How it was chosen, in words.
    pub why: String,
}

/// Why no due time could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no allowed time in the next {HORIZON} days (windows and group spacing leave none): widen the drill's [schedule] windows"
)]
pub struct NoWindow;

/// The first allowed instant at or after `from`, kept apart from the group.
fn first_allowed(input: &DrawInput<'_>, from: DateTime<Utc>) -> Result<DateTime<Utc>, NoWindow> {
    let open = allowed(input.windows, from, from + Duration::days(HORIZON));
    keep_apart(&open, input.group, input.gap)
        .first()
        .map(|i| i.start)
        .ok_or(NoWindow)
}

/// Draws the next due time (pure; `random` is a uniform random number).
///
/// - No PASS yet: due at the first allowed time from now.
/// - Otherwise: uniformly over the allowed time in `[last PASS + min,
///   last PASS + max]` (from now at the earliest), kept `gap` away from the
///   group's other drills.
/// - When that range holds no allowed time (already overdue, or windows
///   and the group leave nothing): the first allowed time from the range's
///   start; group spacing is never given up for the cadence (one account
///   of the group must stay untouched), so such a due time can be past
///   `max`, and the drill is then reported overdue.
pub fn draw(input: &DrawInput<'_>, random: u64) -> Result<Drawn, NoWindow> {
    let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let Some(pass) = input.last_pass else {
        let due = first_allowed(input, input.now)?;
        return Ok(Drawn {
            due,
            why: "no PASS yet: the first allowed time".into(),
        });
    };
    let lo = (pass + input.cadence.min).max(input.now);
    let hi = pass + input.cadence.max;
    let open = keep_apart(&allowed(input.windows, lo, hi), input.group, input.gap);
    if let Some(due) = pick(&open, random) {
        return Ok(Drawn {
            due,
            why: format!(
                "drawn uniformly in the allowed time between {} and {} (last PASS {} + {}..{} days)",
                fmt(lo),
                fmt(hi),
                fmt(pass),
                input.cadence.min.num_days(),
                input.cadence.max.num_days()
            ),
        });
    }
    let due = first_allowed(input, lo)?;
    Ok(Drawn {
        due,
        why: format!(
            "no allowed time between {} and {}: the first allowed time after {}",
            fmt(lo),
            fmt(hi),
            fmt(lo)
        ),
    })
}

/// Whether a drill is overdue at `now`: more than `max` since its last
/// PASS (a drill that never passed is overdue once it has been due for
/// `max`).
pub fn overdue(
    last_pass: Option<DateTime<Utc>>,
    first_due: DateTime<Utc>,
    cadence: Cadence,
    now: DateTime<Utc>,
) -> bool {
    let since = last_pass.unwrap_or(first_due);
    now > since + cadence.max
}

/// When each registered key was last proven.
pub type KeyProofs = std::collections::HashMap<String, DateTime<Utc>>;

/// The key a drill's next run uses: the least recently proven of `keys`
/// (one never proven first, in the drill file's order), so the spare is
/// proven too.
pub fn next_key(keys: &[String], proofs: &KeyProofs) -> Option<String> {
    keys.iter().min_by_key(|k| proofs.get(*k).copied()).cloned()
}

/// The keys not proven within `cadence.max` at `now` (a finding of their
/// own).
pub fn stale_keys(
    keys: &[String],
    proofs: &KeyProofs,
    cadence: Cadence,
    now: DateTime<Utc>,
) -> Vec<String> {
    keys.iter()
        .filter(|k| proofs.get(*k).is_none_or(|t| now - *t > cadence.max))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
