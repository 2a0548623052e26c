//! The verdict rules, pure.
//!
//! Precedence: any finding (a stage `failed`) makes the drill FAIL — the
//! control failed, and that must never be hidden behind an error. Then a
//! stop (a stage `interrupted`, or the drill told to stop) makes it
//! INTERRUPTED: never PASS after a stop. Then any stage that could not be
//! carried out (`errored`) makes it ERROR (retry later). Otherwise PASS;
//! `warning` and `skipped` stages do not change the verdict.

pub use crate::record::verdict;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Stage, StageRecord, StageStatus, Verdict};

    const ALL: [StageStatus; 6] = [
        StageStatus::Passed,
        StageStatus::Warning,
        StageStatus::Failed,
        StageStatus::Errored,
        StageStatus::Skipped,
        StageStatus::Interrupted,
    ];

    fn rec(stage: Stage, status: StageStatus) -> StageRecord {
        StageRecord::instant(stage, status, status.name())
    }

    /// Every set of stage statuses (2^6) with and without a stop.
    #[test]
    fn every_combination_follows_the_precedence() {
        for mask in 0u32..(1 << ALL.len()) {
            let present: Vec<StageStatus> = ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect();
            let stages: Vec<StageRecord> = present.iter().map(|s| rec(Stage::Alerts, *s)).collect();
            let has = |s: StageStatus| present.contains(&s);
            for stopped in [false, true] {
                let want = if has(StageStatus::Failed) {
                    Verdict::Fail
                } else if has(StageStatus::Interrupted) || stopped {
                    Verdict::Interrupted
                } else if has(StageStatus::Errored) {
                    Verdict::Error
                } else {
                    Verdict::Pass
                };
                let (got, reasons) = verdict(&stages, stopped);
                assert_eq!(got, want, "{present:?} stopped={stopped}");
                assert_eq!(reasons.is_empty(), got == Verdict::Pass, "{present:?}");
            }
        }
    }

    /// The cases that matter, written out: when FAIL, ERROR and
    /// INTERRUPTED coincide, which wins.
    #[test]
    fn precedence_table() {
        use StageStatus::{Errored as E, Failed as F, Interrupted as I, Passed as P, Warning as W};
        use Verdict::{Error, Fail, Interrupted, Pass};
        let table: [(&[StageStatus], bool, Verdict); 12] = [
            (&[P, P, P], false, Pass),
            (&[P, W], false, Pass),
            (&[P, P], true, Interrupted),
            (&[E], false, Error),
            (&[E], true, Interrupted),
            (&[I], false, Interrupted),
            (&[E, I], false, Interrupted),
            (&[F], false, Fail),
            (&[F], true, Fail),
            (&[F, E], false, Fail),
            (&[F, I], false, Fail),
            (&[E, F, I], true, Fail),
        ];
        for (statuses, stopped, want) in table {
            let stages: Vec<StageRecord> = statuses
                .iter()
                .zip([Stage::SignIn, Stage::Confirm, Stage::Alerts])
                .map(|(s, st)| rec(st, *s))
                .collect();
            assert_eq!(
                verdict(&stages, stopped).0,
                want,
                "{statuses:?} stopped={stopped}"
            );
        }
    }

    #[test]
    fn reasons_name_the_deciding_stages_only() {
        let stages = [
            rec(Stage::Confirm, StageStatus::Errored),
            rec(Stage::Alerts, StageStatus::Failed),
            rec(Stage::Teardown, StageStatus::Warning),
        ];
        assert_eq!(
            verdict(&stages, false),
            (Verdict::Fail, vec!["alerts: failed".to_owned()])
        );
        let (v, r) = verdict(&[rec(Stage::SignIn, StageStatus::Passed)], true);
        assert_eq!(v, Verdict::Interrupted);
        assert_eq!(r, ["the drill was told to stop"]);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Verdict::Pass.exit_code(), 0);
        assert_eq!(Verdict::Fail.exit_code(), 1);
        assert_eq!(Verdict::Error.exit_code(), 2);
        assert_eq!(Verdict::Interrupted.exit_code(), 2);
    }
}
