//! Every rehearsal-tenant fault gives the right verdict, at the right
//! stage, with the right reason; real Chromium each time, and nothing left
//! running afterwards.

use std::time::Duration;

use crate::util::{MANUAL_SECRET, Manual, World, files, rehearse, stage};
use glassdrill::drill::{Quiet, Stage, StageStatus, Verdict};
use glassdrill::tenant::Fault;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(3);

async fn check(
    fault: Fault,
    verdict: Verdict,
    at: Stage,
    reason: &str,
) -> (World, glassdrill::drill::DrillOutcome) {
    let w = World::new();
    // A drift is found when a step's wait runs out: 15 s is plenty for a
    // page on a loaded machine. Every other fault never waits that long,
    // so it gets the slowest CI machine's margin.
    let step = if fault == Fault::UiDrift { 15 } else { 60 };
    let o = rehearse(&w, &[fault], DEADLINE, Duration::from_secs(step)).await;
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
        "sign-in refused at step security key: AADSTS135011",
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

/// A late alert is not a missing one: it is kept as evidence, marked
/// late, and its arrival after the deadline is on record.
#[tokio::test]
async fn late_alert_fails_at_alerts_and_is_kept_marked_late() {
    let (_w, o) = check(
        Fault::AlertLate,
        Verdict::Fail,
        Stage::Alerts,
        "it arrived late",
    )
    .await;
    let record = o.record.as_ref().expect("a record");
    let alert = &record.alerts[0];
    assert!(alert.matched.is_none(), "{alert:#?}");
    let late = alert.late.as_ref().expect("the late alert is kept");
    let dir = &o.bundle.as_ref().unwrap().dir;
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("signin.json")).unwrap()).unwrap();
    let signin = chrono::DateTime::parse_from_rfc3339(log["createdDateTime"].as_str().unwrap())
        .expect("createdDateTime")
        .with_timezone(&chrono::Utc);
    assert!(
        late.received > signin + chrono::Duration::from_std(DEADLINE).unwrap(),
        "received {} is after the sign-in at {} plus the deadline",
        late.received,
        signin
    );
    assert!(late.file.ends_with("-late.json"), "{}", late.file);
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&late.file)).unwrap()).unwrap();
    assert_eq!(kept["schemaId"], "azureMonitorCommonAlertSchema");
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
        "flow drift at step security key",
    )
    .await;
    let listed = files(&o.bundle.as_ref().unwrap().dir);
    assert!(
        listed.contains(&"screenshots/02-security-key-drift.jpg".to_owned()),
        "{listed:?}"
    );
    assert!(
        listed.contains(&"pages/02-security-key.html".to_owned()),
        "{listed:?}"
    );
    let html = std::fs::read_to_string(
        o.bundle
            .as_ref()
            .unwrap()
            .dir
            .join("pages/02-security-key.html"),
    )
    .unwrap();
    assert!(
        html.contains("idA_PWD_SwitchToPasskey"),
        "the drifted page is captured"
    );
    assert!(
        html.contains("uiflavor=[redacted]") && html.contains("value=\"[redacted]\""),
        "the form's query string and the hidden inputs are redacted (every kind is checked in redaction.rs)"
    );
}

/// Throttling and a slow sign-in log are waited out, not failed: the
/// tenant served a 429, the next request came only after its
/// `Retry-After`, and the log was polled through its ingestion delay.
#[tokio::test]
async fn throttled_graph_and_slow_log_ingestion_still_pass() {
    let w = World::new();
    // The sign-in log is read at most every 2 s (its documented limit):
    // a 5 s ingestion delay leaves room for reads that find nothing.
    let m = Manual::start_tuned(&w, &[Fault::ApiThrottle, Fault::LogDelay], |o| {
        o.log_delay = Duration::from_secs(5);
    })
    .await;
    let o = glassdrill::drill::run(
        m.plan(MANUAL_SECRET, m.checks()),
        &m.sinks(),
        &Quiet,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    let stats = m.tenant.stats();
    let reqs = &stats.graph_requests;
    assert_eq!(
        reqs[0].1, 429,
        "the first Graph request is throttled: {reqs:?}"
    );
    assert!(
        reqs[1].0 >= reqs[0].0 + 1000,
        "the next one waits its Retry-After of 1 s: {reqs:?}"
    );
    let signin = stats.first_attempt_ms.expect("a sign-in");
    let after: Vec<_> = reqs.iter().filter(|r| r.0 > signin && r.1 == 200).collect();
    assert!(
        after.iter().any(|r| r.2 == 0),
        "a read during the 5 s ingestion delay found nothing: {reqs:?}"
    );
    assert!(
        after.last().is_some_and(|r| r.2 >= 1),
        "a later read found the sign-in: {reqs:?}"
    );
    m.shutdown().await;
    w.assert_clean();
}

/// Entra mode: the challenge expired before the assertion arrived. Entra
/// turned the attempt away for a reason that says nothing about the
/// account: an ERROR (run it again), and the failure it logged is not a
/// finding either.
#[tokio::test]
async fn an_expired_challenge_is_an_error_to_run_again() {
    let (_w, o) = check(
        Fault::ChallengeExpired,
        Verdict::Error,
        Stage::SignIn,
        "AADSTS50089",
    )
    .await;
    assert!(
        stage(&o, Stage::SignIn)
            .detail
            .contains("run the drill again"),
        "{:#?}",
        o.stages
    );
    assert_eq!(stage(&o, Stage::Confirm).status, StageStatus::Warning);
}

#[tokio::test]
async fn an_unknown_credential_fails_with_entras_key_not_found() {
    check(
        Fault::UnknownCredential,
        Verdict::Fail,
        Stage::SignIn,
        "sign-in refused at step security key: AADSTS135010: Key not found. The security key is not registered to this account",
    )
    .await;
}

#[tokio::test]
async fn a_user_handle_in_the_wrong_byte_order_fails() {
    check(
        Fault::WrongUserHandle,
        Verdict::Fail,
        Stage::SignIn,
        "AADSTS135010: Key not found. The security key's user handle is not this account's",
    )
    .await;
}

/// `HasFido=false`: read from Entra's `$Config.oGetCredTypeResult` by the
/// flow file's failure rule, a finding named as such (not a drift).
#[tokio::test]
async fn an_account_without_a_security_key_fails_naming_it() {
    let (_w, o) = check(
        Fault::NoFido,
        Verdict::Fail,
        Stage::SignIn,
        "sign-in refused at step username: the account has no security key registered (Entra: oGetCredTypeResult.Credentials.HasFido = false)",
    )
    .await;
    assert!(!o.sign_in_attempted, "no ceremony was started");
}

#[tokio::test]
async fn more_information_required_fails_with_the_pages_message() {
    check(
        Fault::ProofUp,
        Verdict::Fail,
        Stage::SignIn,
        "sign-in refused at step security key: error page (ConvergedProofUpRedirect): More information required",
    )
    .await;
}

/// Consent (`CmsiInterrupt`) and "Stay signed in?" (`KmsiInterrupt`) are
/// interrupts the flow gets through; without them, their optional steps
/// are skipped. Either way Entra's session cookie proves the sign-in.
#[tokio::test]
async fn consent_and_stay_signed_in_interrupts_are_got_through() {
    for (faults, steps) in [
        (vec![], vec!["username", "security key", "landing"]),
        (
            vec![Fault::Cmsi, Fault::Kmsi],
            vec![
                "username",
                "security key",
                "consent",
                "stay signed in",
                "landing",
            ],
        ),
        (
            vec![Fault::Kmsi],
            vec!["username", "security key", "stay signed in", "landing"],
        ),
    ] {
        let w = World::new();
        let o = rehearse(&w, &faults, DEADLINE, Duration::from_secs(60)).await;
        assert_eq!(o.verdict, Verdict::Pass, "{faults:?}: {:#?}", o.stages);
        let rec = o.record.as_ref().expect("record");
        let names: Vec<&str> = rec.sign_in.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, steps, "{faults:?}");
        w.assert_clean();
    }
}

/// The landing page alone is not a sign-in: without Entra's session
/// cookie on the sign-in host the flow is not complete (ERROR), and only
/// the cookie's name is ever read.
#[tokio::test]
async fn a_landing_without_entras_session_cookie_is_not_a_sign_in() {
    let w = World::new();
    let mut m = Manual::start(&w).await;
    let mut flow = (*m.drill.flow).clone();
    flow.success.cookies = vec!["ESTSAUTHNEVERSET".into()];
    m.drill.flow = std::sync::Arc::new(flow);
    let checks = m.checks();
    let o = glassdrill::drill::run(
        m.plan(MANUAL_SECRET, checks),
        &m.sinks(),
        &Quiet,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Error, "{:#?}", o.stages);
    let d = &stage(&o, Stage::SignIn).detail;
    assert!(
        d.contains("flow drift at step landing")
            && d.contains("holds none of the session cookies [\"ESTSAUTHNEVERSET\"]"),
        "{d}"
    );
    m.shutdown().await;
    w.assert_clean();
}

/// The two login hosts are two sites to Chromium, as Entra's are: a
/// session cookie that is `SameSite=Lax` (what a stand-in on one site
/// would get away with) is dropped from the FIDO host's cross-site post
/// back, and the sign-in host refuses the assertion.
#[tokio::test]
async fn a_lax_session_cookie_is_lost_on_the_cross_site_post_back() {
    let w = World::new();
    let m = Manual::start_tuned(&w, &[], |o| o.lax_session_cookie = true).await;
    let checks = m.checks();
    let o = glassdrill::drill::run(
        m.plan(MANUAL_SECRET, checks),
        &m.sinks(),
        &Quiet,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Fail, "{:#?}", o.stages);
    let d = &stage(&o, Stage::SignIn).detail;
    assert!(
        d.contains("session cookie (esctx) did not come back"),
        "{d}"
    );
    assert!(m.tenant.signins().is_empty(), "no assertion was accepted");
    m.shutdown().await;
    w.assert_clean();
}

/// Posture through a real sign-in: each broken part of the set-up is a
/// FAIL at the posture stage naming it, while the sign-in and the alert
/// still pass and are recorded in full; a sign-in no drill made is a
/// finding until classified.
#[tokio::test]
async fn posture_faults_and_unexpected_use_fail_the_drill_at_posture() {
    for (fault, words) in [
        (Fault::PostureLicensed, "no licences: 1 licence(s) assigned"),
        (Fault::PostureEligibleGa, "eligible through PIM"),
        (Fault::PostureOneKey, "1 FIDO2 key(s) registered"),
        (Fault::PosturePhoneMethod, "phoneAuthenticationMethod"),
        (Fault::PostureTap, "a Temporary Access Pass is present"),
        (Fault::PostureCaNotExcluded, "Require MFA for all users"),
        (Fault::PostureRuleMuted, "muted for PT1D"),
        (Fault::PostureRuleDisabled, "the rule is disabled"),
        (Fault::PostureEmptyActionGroup, "no receiver"),
        (
            Fault::UnexpectedSignin,
            "1 sign-in(s) since the previous drill that no drill made",
        ),
    ] {
        let (_w, o) = check(fault, Verdict::Fail, Stage::Posture, words).await;
        assert_eq!(
            stage(&o, Stage::SignIn).status,
            StageStatus::Passed,
            "{fault:?}"
        );
        assert_eq!(
            stage(&o, Stage::Alerts).status,
            StageStatus::Passed,
            "{fault:?}"
        );
        let rec = o.record.as_ref().unwrap();
        assert!(!rec.posture.is_empty(), "{fault:?}: posture recorded");
        if fault == Fault::UnexpectedSignin {
            assert_eq!(rec.unexpected_uses.len(), 1);
            assert_eq!(rec.unexpected_uses[0].error_code, 50126);
            let dir = &o.bundle.as_ref().unwrap().dir;
            assert!(
                dir.join(&rec.unexpected_uses[0].file).is_file(),
                "the raw record is kept"
            );
        }
    }
    // A correct set-up: the posture stage passes.
    let w = World::new();
    let o = rehearse(&w, &[], DEADLINE, Duration::from_secs(60)).await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    assert_eq!(stage(&o, Stage::Posture).status, StageStatus::Passed);
}
