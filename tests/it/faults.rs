//! Every rehearsal-tenant fault gives the right verdict, at the right
//! stage, with the right reason; real Chromium each time, and nothing left
//! running afterwards.

use std::time::Duration;

use crate::util::{World, files, rehearse, stage};
use glassdrill::drill::{Stage, StageStatus, Verdict};
use glassdrill::tenant::Fault;

const DEADLINE: Duration = Duration::from_secs(3);

async fn check(
    fault: Fault,
    verdict: Verdict,
    at: Stage,
    reason: &str,
) -> (World, glassdrill::drill::DrillOutcome) {
    let w = World::new();
    let o = rehearse(&w, &[fault], DEADLINE).await;
    assert_eq!(o.verdict, verdict, "{fault:?}: {:#?}", o.stages);
    let st = stage(&o, at);
    assert!(
        st.detail.contains(reason),
        "{fault:?}: `{}` lacks `{reason}`",
        st.detail
    );
    assert!(
        o.reasons.iter().any(|r| r.contains(reason)),
        "{:?}",
        o.reasons
    );
    assert!(
        o.bundle.is_ok(),
        "evidence is recorded whatever the verdict: {:?}",
        o.bundle
    );
    w.assert_clean();
    (w, o)
}

#[tokio::test]
async fn credential_revoked_fails_at_sign_in() {
    let (_w, o) = check(
        Fault::CredentialRevoked,
        Verdict::Fail,
        Stage::SignIn,
        "sign-in refused at step security key: AADSTS135010",
    )
    .await;
    assert_eq!(stage(&o, Stage::Alerts).status, StageStatus::Skipped);
}

#[tokio::test]
async fn account_disabled_fails_at_sign_in() {
    check(
        Fault::AccountDisabled,
        Verdict::Fail,
        Stage::SignIn,
        "sign-in refused at step username: AADSTS50057",
    )
    .await;
}

#[tokio::test]
async fn conditional_access_block_fails_at_sign_in() {
    check(Fault::CaBlock, Verdict::Fail, Stage::SignIn, "AADSTS53003").await;
}

#[tokio::test]
async fn alert_never_fires_fails_at_alerts() {
    let (_w, o) = check(Fault::AlertNever, Verdict::Fail, Stage::Alerts, "within 3s").await;
    assert_eq!(stage(&o, Stage::SignIn).status, StageStatus::Passed);
    assert_eq!(stage(&o, Stage::Confirm).status, StageStatus::Passed);
}

#[tokio::test]
async fn late_alert_fails_at_alerts() {
    check(Fault::AlertLate, Verdict::Fail, Stage::Alerts, "within 3s").await;
}

#[tokio::test]
async fn alert_for_another_account_is_not_counted() {
    let (_w, o) = check(
        Fault::AlertOtherAccount,
        Verdict::Fail,
        Stage::Alerts,
        "for another account (breakglass2@rehearsal.onmicrosoft.com)",
    )
    .await;
    let dir = o.bundle.as_ref().unwrap().dir.clone();
    assert!(
        files(&dir).iter().any(|f| f.ends_with("-ignored.json")),
        "the ignored alert is kept as evidence"
    );
}

#[tokio::test]
async fn alert_fired_before_the_sign_in_is_not_counted() {
    check(
        Fault::AlertBeforeSignin,
        Verdict::Fail,
        Stage::Alerts,
        "fired before the sign-in",
    )
    .await;
}

#[tokio::test]
async fn ui_drift_is_an_error_with_screenshot_and_html() {
    let (_w, o) = check(
        Fault::UiDrift,
        Verdict::Error,
        Stage::SignIn,
        "flow drift at step sign-in options",
    )
    .await;
    let listed = files(&o.bundle.as_ref().unwrap().dir);
    assert!(
        listed.contains(&"screenshots/02-sign-in-options-drift.jpg".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.contains(&"pages/02-sign-in-options.html".to_owned()),
        "{listed:?}"
    );
    let html = std::fs::read_to_string(
        o.bundle
            .as_ref()
            .unwrap()
            .dir
            .join("pages/02-sign-in-options.html"),
    )
    .unwrap();
    assert!(
        html.contains("idA_PWD_SwitchToPasskey"),
        "the drifted page is captured"
    );
    assert!(
        !html.contains("flowToken\" value=\"") || html.contains("[redacted]"),
        "hidden values are redacted"
    );
}

#[tokio::test]
async fn throttled_graph_and_slow_log_ingestion_still_pass() {
    let w = World::new();
    let o = rehearse(
        &w,
        &[Fault::ApiThrottle, Fault::LogDelay],
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    w.assert_clean();
}
