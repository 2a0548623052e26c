//! `announce`: tell the SOC a drill is starting, what account and which
//! alerts to expect — alerts are never muted for a drill, so the people who
//! receive them must know.

use super::Ended;
use crate::drill::Progress;
use crate::drill::plan::{RunPlan, Sinks};
use crate::record::StageStatus;

/// The announcement text (pure).
pub fn text(plan: &RunPlan<'_>, run_id: &str) -> String {
    let drill = plan.drill;
    let expected: Vec<String> = drill
        .alerts
        .iter()
        .map(|a| {
            format!(
                "{} ({}, within {})",
                a.name,
                a.kind.name(),
                humantime::format_duration(a.deadline)
            )
        })
        .collect();
    format!(
        "glassdrill: break-glass drill {} run {run_id} starts now for {}. Expect a sign-in and these alerts: {}.{}",
        drill.id,
        drill.account,
        expected.join("; "),
        plan.operator
            .as_ref()
            .map(|o| format!(" Operator: {o}."))
            .unwrap_or_default()
    )
}

/// Announces; hands on the text for the record.
pub async fn run(
    plan: &RunPlan<'_>,
    sinks: &Sinks<'_>,
    run_id: &str,
    progress: &dyn Progress,
) -> Ended<String> {
    let text = text(plan, run_id);
    progress.note(&text);
    match sinks.notifier.announce(&plan.drill.id, run_id, &text).await {
        Ok(detail) => Ended::new(StageStatus::Passed, detail, text),
        // The SOC may not know: the sign-in still goes ahead (the alert
        // must fire either way), but the record says so.
        Err(e) => Ended::new(StageStatus::Warning, e.to_string(), text),
    }
}
