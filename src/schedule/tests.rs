use super::*;
use chrono::Timelike;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

const WEEKDAYS: [bool; 7] = [true, true, true, true, true, false, false];
const EVERY_DAY: [bool; 7] = [true; 7];

fn office(tz: Tz) -> Windows {
    Windows {
        tz,
        list: vec![Window {
            days: WEEKDAYS,
            from: hm(9, 0),
            to: hm(15, 0),
        }],
    }
}

/// A small deterministic random source for the tests (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Checks a due time against the window directly in local time (not
/// through `allowed`, the code under test).
fn in_office_hours(tz: Tz, due: DateTime<Utc>) -> bool {
    let local = due.with_timezone(&tz);
    let wd = local.weekday().num_days_from_monday();
    let mins = local.hour() * 60 + local.minute();
    wd < 5 && (9 * 60..15 * 60).contains(&mins)
}

#[test]
fn years_of_schedule_keep_every_gap_in_the_cadence_and_every_drill_in_its_window() {
    for tz in [chrono_tz::Europe::Oslo, chrono_tz::America::New_York] {
        let windows = office(tz);
        let mut rng = SplitMix(7);
        let mut pass = t("2026-01-05T10:00:00Z");
        let mut gaps = Vec::new();
        // Five years of drills, each passing when due.
        while pass < t("2031-01-01T00:00:00Z") {
            let d = draw(
                &DrawInput {
                    last_pass: Some(pass),
                    now: pass,
                    cadence: Cadence::default(),
                    windows: &windows,
                    group: &[],
                    gap: Duration::hours(24),
                },
                rng.next(),
            )
            .unwrap();
            let gap = d.due - pass;
            assert!(
                gap >= Duration::days(30) && gap <= Duration::days(60),
                "{tz}: {gap} after {pass}"
            );
            assert!(in_office_hours(tz, d.due), "{tz}: {} is outside", d.due);
            assert!(windows.contains(d.due));
            gaps.push(gap.num_days());
            pass = d.due;
        }
        // Uniform over the range: both halves of it are used.
        assert!(
            gaps.iter().any(|g| *g < 45) && gaps.iter().any(|g| *g >= 45),
            "{gaps:?}"
        );
    }
}

#[test]
fn windows_follow_daylight_saving_time() {
    let oslo = office(chrono_tz::Europe::Oslo);
    // Winter: 09:00-15:00 CET is 08:00-14:00 UTC.
    let winter = allowed(&oslo, t("2026-01-07T00:00:00Z"), t("2026-01-08T00:00:00Z"));
    assert_eq!(
        winter,
        vec![Interval {
            start: t("2026-01-07T08:00:00Z"),
            end: t("2026-01-07T14:00:00Z")
        }]
    );
    // Summer: CEST, 07:00-13:00 UTC.
    let summer = allowed(&oslo, t("2026-07-08T00:00:00Z"), t("2026-07-09T00:00:00Z"));
    assert_eq!(summer[0].start, t("2026-07-08T07:00:00Z"));
    assert_eq!(summer[0].end, t("2026-07-08T13:00:00Z"));

    // New York springs forward on 2026-03-08 at 02:00 (to 03:00): a window
    // of 01:30-02:30 ends at 03:00 EDT, the first time that exists.
    let ny = Windows {
        tz: chrono_tz::America::New_York,
        list: vec![Window {
            days: EVERY_DAY,
            from: hm(1, 30),
            to: hm(2, 30),
        }],
    };
    let spring = allowed(&ny, t("2026-03-08T00:00:00Z"), t("2026-03-09T00:00:00Z"));
    assert_eq!(
        spring,
        vec![Interval {
            start: t("2026-03-08T06:30:00Z"),
            end: t("2026-03-08T07:00:00Z")
        }],
        "30 minutes of window on the short night"
    );
    // It falls back on 2026-11-01 at 02:00 (to 01:00): the wall clock
    // shows 01:30-02:00 twice (EDT, then EST) and 02:00-02:30 once; the
    // 01:00-01:30 of the second pass is outside the window.
    let fall = allowed(&ny, t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z"));
    assert_eq!(
        fall,
        vec![
            Interval {
                start: t("2026-11-01T05:30:00Z"),
                end: t("2026-11-01T06:00:00Z")
            },
            Interval {
                start: t("2026-11-01T06:30:00Z"),
                end: t("2026-11-01T07:30:00Z")
            }
        ],
        "both passes of the repeated half hour, and nothing outside the window"
    );
    // A window wholly inside Oslo's spring-forward gap (02:00-03:00 on
    // 2026-03-29) is empty that day, never a panic.
    let gap_only = Windows {
        tz: chrono_tz::Europe::Oslo,
        list: vec![Window {
            days: EVERY_DAY,
            from: hm(2, 15),
            to: hm(2, 45),
        }],
    };
    assert!(
        allowed(
            &gap_only,
            t("2026-03-29T00:00:00Z"),
            t("2026-03-29T12:00:00Z")
        )
        .is_empty()
    );
}

#[test]
fn a_drill_with_no_pass_is_due_at_its_first_window() {
    let w = office(chrono_tz::Europe::Oslo);
    // Saturday noon: the first window is Monday 09:00 CET.
    let d = draw(
        &DrawInput {
            last_pass: None,
            now: t("2026-01-10T11:00:00Z"),
            cadence: Cadence::default(),
            windows: &w,
            group: &[],
            gap: Duration::hours(24),
        },
        12345,
    )
    .unwrap();
    assert_eq!(d.due, t("2026-01-12T08:00:00Z"));
    // Inside a window: now.
    let now = t("2026-01-12T09:30:00Z");
    let d = draw(
        &DrawInput {
            last_pass: None,
            now,
            cadence: Cadence::default(),
            windows: &w,
            group: &[],
            gap: Duration::hours(24),
        },
        1,
    )
    .unwrap();
    assert_eq!(d.due, now);
}

#[test]
fn an_overdue_drill_is_due_at_the_next_window() {
    let w = office(chrono_tz::Europe::Oslo);
    let now = t("2026-06-06T10:00:00Z"); // a Saturday
    let d = draw(
        &DrawInput {
            last_pass: Some(t("2026-01-05T10:00:00Z")),
            now,
            cadence: Cadence::default(),
            windows: &w,
            group: &[],
            gap: Duration::hours(24),
        },
        99,
    )
    .unwrap();
    assert_eq!(d.due, t("2026-06-08T07:00:00Z"), "Monday 09:00 CEST");
    assert!(d.why.contains("no allowed time"), "{}", d.why);
    assert!(overdue(
        Some(t("2026-01-05T10:00:00Z")),
        now,
        Cadence::default(),
        now
    ));
    assert!(!overdue(
        Some(t("2026-05-05T10:00:00Z")),
        now,
        Cadence::default(),
        now
    ));
}

#[test]
fn drills_of_one_group_stay_a_gap_apart() {
    let w = office(chrono_tz::Europe::Oslo);
    let mut rng = SplitMix(42);
    let pass = t("2026-01-05T10:00:00Z");
    for _ in 0..500 {
        let first = draw(
            &DrawInput {
                last_pass: Some(pass),
                now: pass,
                cadence: Cadence::default(),
                windows: &w,
                group: &[],
                gap: Duration::hours(24),
            },
            rng.next(),
        )
        .unwrap()
        .due;
        let others = [first];
        let second = draw(
            &DrawInput {
                last_pass: Some(pass),
                now: pass,
                cadence: Cadence::default(),
                windows: &w,
                group: &others,
                gap: Duration::hours(24),
            },
            rng.next(),
        )
        .unwrap()
        .due;
        assert!(
            (second - first).abs() >= Duration::hours(24),
            "{first} and {second}"
        );
        assert!(in_office_hours(chrono_tz::Europe::Oslo, second));
    }
}

#[test]
fn windows_that_never_come_are_an_error_not_a_hang() {
    let never = Windows {
        tz: chrono_tz::UTC,
        list: vec![Window {
            days: [false; 7],
            from: hm(9, 0),
            to: hm(10, 0),
        }],
    };
    let r = draw(
        &DrawInput {
            last_pass: None,
            now: t("2026-01-01T00:00:00Z"),
            cadence: Cadence::default(),
            windows: &never,
            group: &[],
            gap: Duration::hours(24),
        },
        0,
    );
    assert_eq!(r, Err(NoWindow));
    assert!(NoWindow.to_string().contains("widen"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the windows, group and random number, a drawn time is
        /// inside a window and a gap away from the group.
        #[test]
        fn a_drawn_time_respects_windows_and_group(
            days in prop::array::uniform7(any::<bool>()),
            from in 0u32..23,
            len in 1u32..10,
            pass_offset in 0i64..(365 * 86_400),
            others in prop::collection::vec(0i64..(120 * 86_400), 0..3),
            random in any::<u64>(),
        ) {
            let to = (from + len).min(23);
            prop_assume!(to > from && days.iter().any(|d| *d));
            let w = Windows {
                tz: chrono_tz::Europe::Oslo,
                list: vec![Window { days, from: hm(from, 0), to: hm(to, 0) }],
            };
            let pass = t("2026-01-01T00:00:00Z") + Duration::seconds(pass_offset);
            let group: Vec<DateTime<Utc>> = others.iter().map(|o| pass + Duration::seconds(*o)).collect();
            let input = DrawInput {
                last_pass: Some(pass),
                now: pass,
                cadence: Cadence::default(),
                windows: &w,
                group: &group,
                gap: Duration::hours(24),
            };
            if let Ok(d) = draw(&input, random) {
                prop_assert!(w.contains(d.due), "{} not in a window", d.due);
                for g in &group {
                    prop_assert!((d.due - *g).abs() >= Duration::hours(24));
                }
                prop_assert!(d.due >= pass + Duration::days(30));
            }
        }
    }
}
