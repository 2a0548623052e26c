//! `report`: the verdict to the notification channel.

use super::Ended;
use crate::drill::plan::Sinks;
use crate::record::{DrillRecord, StageStatus};

/// The report text (pure).
pub fn text(r: &DrillRecord) -> String {
    let mut t = format!(
        "glassdrill: drill {} run {}: {}",
        r.drill.id, r.run_id, r.verdict
    );
    for reason in &r.reasons {
        t.push_str(&format!("\n  reason: {reason}"));
    }
    t
}

/// Delivers the report.
pub async fn run(sinks: &Sinks<'_>, record: &DrillRecord) -> Ended<()> {
    match sinks
        .notifier
        .report(&record.drill.id, &record.run_id, &text(record))
        .await
    {
        Ok(detail) => Ended::new(StageStatus::Passed, detail, ()),
        Err(e) => Ended::new(StageStatus::Warning, e.to_string(), ()),
    }
}
