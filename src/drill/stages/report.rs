//! `report`: the verdict to the notification channel.

use crate::evidence::SealedBundle;

use super::Ended;
use crate::drill::plan::Sinks;
use crate::record::{DrillRecord, StageStatus};

/// The report text (pure): verdict and reasons, each stage's time, the
/// alerts' latencies, and where the signed evidence is.
pub fn text(
    r: &DrillRecord,
    sealed: &SealedBundle,
    findings: &[String],
    controls: &[String],
) -> String {
    let bundle = sealed.dir.as_path();
    let mut t = format!(
        "glassdrill: {} drill {} ({}) run {}",
        r.verdict, r.drill.id, r.drill.account, r.run_id
    );
    for reason in &r.reasons {
        t.push_str(&format!("\n  reason: {reason}"));
    }
    t.push_str("\n\nstages:");
    for s in &r.stages {
        t.push_str(&format!(
            "\n  {:<9} {:<11} {:>8.2}s",
            s.stage.name(),
            s.status.name(),
            s.duration_ms as f64 / 1000.0
        ));
    }
    for a in &r.alerts {
        match (&a.latency, &a.late) {
            (Some(l), _) => t.push_str(&format!(
                "\nalert {}: fired {} ms and delivered {} ms after the sign-in",
                a.name, l.signin_to_fired_ms, l.signin_to_received_ms
            )),
            (None, Some(late)) => t.push_str(&format!(
                "\nalert {}: LATE, received {} (deadline {} ms after the sign-in)",
                a.name,
                crate::support::time::rfc3339_ms(late.received),
                a.deadline_ms
            )),
            (None, None) => t.push_str(&format!("\nalert {}: NOT RECEIVED", a.name)),
        }
    }
    if let Some(k) = &r.key {
        t.push_str(&format!(
            "\nkey: {} {} ({}), PIN retries {} before and {} after, signature counter {} before and {} after",
            k.kind,
            k.name.as_deref().unwrap_or("(unnamed)"),
            k.model.as_deref().or(k.aaguid.as_deref()).unwrap_or("not found"),
            opt(k.pin_retries_before),
            opt(k.pin_retries_after),
            opt(k.sign_count_before),
            opt(k.sign_count_after)
        ));
    }
    for f in findings
        .iter()
        .chain(r.key.iter().flat_map(|k| k.findings.iter()))
    {
        t.push_str(&format!("\nfinding: {f}"));
    }
    if let Some(o) = &r.operator {
        t.push_str(&format!("\noperator: {o}"));
    }
    if let Some(w) = &r.witness {
        t.push_str(&format!("\nwitness: {w}"));
    }
    if !controls.is_empty() {
        t.push_str(&format!("\ncontrols evidenced: {}", controls.join("; ")));
    }
    t.push_str(&format!(
        "\n\nevidence: {}\nverify it with `glassdrill evidence verify {}`",
        bundle.display(),
        bundle.display()
    ));
    match &sealed.log {
        // Everyone who receives a report keeps a witness copy of the log.
        Some(Ok(a)) => t.push_str(&format!(
            "\nevidence log: entry {}; checkpoint (keep it: `glassdrill evidence verify --since-checkpoint FILE` proves the log only grew since):\n{}",
            a.index,
            a.checkpoint.trim_end()
        )),
        Some(Err(e)) => t.push_str(&format!(
            "\nevidence log: not yet appended ({e}); appended at glassdrill's next start"
        )),
        None => {}
    }
    t
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |n| n.to_string())
}

/// Delivers the report.
pub async fn run(
    sinks: &Sinks<'_>,
    record: &DrillRecord,
    bundle: &SealedBundle,
    findings: &[String],
) -> Ended<()> {
    match sinks
        .notifier
        .report(
            &record.drill.id,
            &record.run_id,
            &text(record, bundle, findings, sinks.controls),
        )
        .await
    {
        Ok(detail) => Ended::new(StageStatus::Passed, detail, ()),
        Err(e) => Ended::new(StageStatus::Warning, e.to_string(), ()),
    }
}
