//! `glassdrill rehearse --alerts all`: every alert check kind through a
//! real sign-in against the rehearsal tenant's stand-in APIs (Alerts
//! Management, Log Analytics, `alerts_v2`, a mailbox, PagerDuty, the
//! sign-in log) and its webhook, and each alert-pipeline fault with the
//! verdict an operator would expect.

use std::time::Duration;

use crate::util::World;
use glassdrill::alerts::MatchKind;
use glassdrill::drill::{DrillOutcome, Quiet, Verdict};
use glassdrill::record::AlertRecord;
use glassdrill::runner::{RunOptions, run_configured};
use glassdrill::tenant::Fault;
use tokio_util::sync::CancellationToken;

/// Every alert check kind; the webhook arrives as Azure Monitor's secure
/// webhook (a bearer token the tenant signs, checked against its JWKS).
async fn rehearse_all(w: &World, faults: &[Fault], deadline: Duration) -> DrillOutcome {
    let mut drill = glassdrill::config::DrillConfig::rehearsal().expect("rehearsal drill");
    for a in &mut drill.alerts {
        a.deadline = deadline;
    }
    drill
        .alerts
        .extend(glassdrill::tenant::apis::every_alert_kind(deadline));
    let opts = RunOptions {
        faults: faults.to_vec(),
        alert_delay: Duration::from_millis(300),
        step_timeout: Some(Duration::from_secs(60)),
        secure_webhook: true,
        ..RunOptions::default()
    };
    run_configured(&w.host(), &drill, &opts, &Quiet, &CancellationToken::new())
        .await
        .expect("drill starts")
}

fn alert<'a>(o: &'a DrillOutcome, kind: &str) -> &'a AlertRecord {
    o.record
        .as_ref()
        .expect("record")
        .alerts
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} alert"))
}

#[tokio::test]
async fn every_connector_passes_end_to_end() {
    let w = World::new();
    let o = rehearse_all(&w, &[], Duration::from_secs(30)).await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    for kind in [
        "webhook",
        "graph-signin",
        "azure-alerts",
        "log-analytics",
        "graph-security",
        "mailbox",
        "pagerduty",
    ] {
        let a = alert(&o, kind);
        let m = a
            .matched
            .as_ref()
            .unwrap_or_else(|| panic!("{kind}: {a:?}"));
        assert_eq!(m.matched_by, Some(MatchKind::ByAccount), "{kind}");
        assert!(a.latency.is_some(), "{kind}: latency recorded");
    }
    let la = alert(&o, "log-analytics");
    assert!(
        la.latency.as_ref().unwrap().signin_to_ingested_ms.is_some(),
        "the ingestion lag is recorded"
    );
    assert!(
        alert(&o, "webhook")
            .latency
            .as_ref()
            .unwrap()
            .signin_to_ingested_ms
            .is_some(),
        "and is a stage of every alert's latency"
    );
    // The sign-in row keeps its authentication details from /beta.
    let dir = &o.bundle.as_ref().expect("bundle").dir;
    let row: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(&alert(&o, "graph-signin").matched.as_ref().unwrap().file))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        row["authenticationDetails"][0]["authenticationMethod"],
        "FIDO2 security key"
    );
    w.assert_clean();
}

/// Microsoft's sample rule names no account: each alert is matched by
/// rule and window, confirmed by the rule's own rows where Log Analytics
/// is read; the mail, which carries no window, cannot be tied to the
/// sign-in and fails; the verdict says the match is weaker.
#[tokio::test]
async fn an_alert_without_dimensions_matches_by_rule_window_and_search() {
    let w = World::new();
    let o = rehearse_all(&w, &[Fault::AlertNoDimensions], Duration::from_secs(5)).await;
    assert_eq!(o.verdict, Verdict::Fail, "{:#?}", o.stages);
    for kind in ["webhook", "azure-alerts"] {
        assert_eq!(
            alert(&o, kind).matched.as_ref().and_then(|m| m.matched_by),
            Some(MatchKind::ByRuleWindowAndSearch),
            "{kind}"
        );
    }
    assert_eq!(
        alert(&o, "pagerduty")
            .matched
            .as_ref()
            .and_then(|m| m.matched_by),
        Some(MatchKind::ByRuleAndWindow)
    );
    let mail = alert(&o, "mailbox");
    assert!(mail.matched.is_none());
    assert!(
        mail.ignored.iter().any(|i| i.why == "names no account"),
        "{mail:?}"
    );
    assert!(
        o.reasons
            .iter()
            .any(|r| r.contains("alert mail to the SOC")),
        "{:?}",
        o.reasons
    );
    let report =
        std::fs::read_to_string(o.bundle.as_ref().unwrap().dir.join("report.html")).unwrap();
    assert!(
        report.contains("Split the rule by"),
        "the report recommends splitting the rule"
    );
    w.assert_clean();
}

#[tokio::test]
async fn resolved_notifications_alone_are_no_detection() {
    let w = World::new();
    let o = rehearse_all(&w, &[Fault::AlertResolvedOnly], Duration::from_secs(5)).await;
    assert_eq!(o.verdict, Verdict::Fail, "{:#?}", o.stages);
    let hook = alert(&o, "webhook");
    assert!(hook.matched.is_none());
    assert!(
        hook.ignored
            .iter()
            .any(|i| i.why.contains("Resolved, not Fired")),
        "kept as evidence, not counted: {hook:?}"
    );
    w.assert_clean();
}

#[tokio::test]
async fn duplicates_count_once_throttling_is_waited_out_and_a_partial_error_is_an_error() {
    let w = World::new();
    let o = rehearse_all(
        &w,
        &[Fault::AlertDuplicate, Fault::ApiThrottle],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    let w2 = World::new();
    let o = rehearse_all(&w2, &[Fault::ApiPartialError], Duration::from_secs(5)).await;
    assert_eq!(o.verdict, Verdict::Error, "{:#?}", o.stages);
    let la = alert(&o, "log-analytics");
    assert!(
        la.error
            .as_deref()
            .is_some_and(|e| e.contains("PartialError")),
        "{la:?}"
    );
    w.assert_clean();
    w2.assert_clean();
}
