//! The drill: a plan ([`plan`]) executed as one function per stage
//! ([`stages`]) by a small driver ([`driver`]) that times each stage and
//! reports progress in one place; the verdict rules are a pure function
//! ([`verdict`]).
//!
//! `preflight → announce → sign-in → confirm → alerts → teardown → record →
//! report`. Do-no-harm (D3): the sign-in is attempted exactly once per run
//! and never retried here, whatever happens.

pub mod driver;
pub mod plan;
pub mod stages;
pub mod verdict;

use chrono::{DateTime, Utc};

pub use crate::record::{Stage, StageRecord, StageStatus, Verdict};
pub use driver::{DrillOutcome, Progress, Quiet, run};
pub use plan::{Custody, RunPlan, Sinks, TenantEndpoints};

/// A time-sortable run id: `20261124T203015Z-1a2b3c`.
pub(crate) fn new_run_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(crate::secret::random_bytes(3))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_follow_the_id_rule() {
        let at = |s: &str| crate::support::time::parse_rfc3339(s).unwrap();
        let a = new_run_id(at("2026-01-01T00:00:00Z"));
        let b = new_run_id(at("2026-01-02T00:00:00Z"));
        assert!(a < b);
        assert!(a.starts_with("20260101T000000Z-"));
        assert_eq!(crate::support::ids::check(&a), Ok(()));
    }
}
