//! Runs put together by hand. Do no harm: when the tenant cannot be read
//! back (wrong app secret), the drill stops in preflight with ERROR and the
//! account is never touched. And a bug that panics mid-drill, after a real
//! sign-in, still leaves a signed ERROR bundle.

use crate::util::{MANUAL_SECRET, Manual, World, stage};
use glassdrill::alerts::{AlertCheck, AlertObservation, AlertTarget};
use glassdrill::drill::{Quiet, Stage, StageStatus, Verdict};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn unreadable_tenant_stops_in_preflight_without_a_sign_in() {
    let w = World::new();
    let m = Manual::start(&w).await;
    let checks = m.checks();
    let o = glassdrill::drill::run(
        m.plan("a-wrong-secret", checks),
        &m.sinks(),
        &Quiet,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(o.verdict, Verdict::Error, "{:#?}", o.stages);
    let pre = stage(&o, Stage::Preflight);
    assert_eq!(pre.status, StageStatus::Errored);
    assert!(
        pre.detail.contains("tenant not ready") && pre.detail.contains("invalid_client"),
        "{}",
        pre.detail
    );
    assert!(!pre.detail.contains("a-wrong-secret"));
    assert_eq!(stage(&o, Stage::SignIn).status, StageStatus::Skipped);
    assert!(m.tenant.signins().is_empty(), "the account was not touched");
    assert!(o.bundle.is_ok(), "the ERROR is recorded too");
    m.shutdown().await;
    w.assert_clean();
}

/// An alert check with a bug: it panics.
struct Panics;

#[async_trait::async_trait]
impl AlertCheck for Panics {
    async fn observe(&self, _: &AlertTarget, _: &CancellationToken) -> AlertObservation {
        panic!("a bug in an alert check")
    }
}

/// Hardening defect 3: a panic after a real sign-in wrote no evidence at
/// all. Now the stage that panicked is an ERROR, and the browser is torn
/// down and the bundle written as for any other ERROR.
#[tokio::test]
async fn a_panic_after_the_sign_in_still_records_a_signed_error_bundle() {
    let w = World::new();
    let m = Manual::start(&w).await;
    let o = glassdrill::drill::run(
        m.plan(MANUAL_SECRET, vec![Box::new(Panics)]),
        &m.sinks(),
        &Quiet,
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(m.tenant.signins().len(), 1, "the sign-in happened");
    assert_eq!(o.verdict, Verdict::Error, "{:#?}", o.stages);
    let alerts = stage(&o, Stage::Alerts);
    assert_eq!(alerts.status, StageStatus::Errored);
    assert!(
        alerts.detail.contains("a bug in an alert check"),
        "{}",
        alerts.detail
    );
    assert_eq!(stage(&o, Stage::Teardown).status, StageStatus::Passed);
    let bundle = o.bundle.as_ref().expect("a bundle");
    let v = w.verify(&bundle.dir);
    v.expect_exit(0);
    assert!(v.stdout.contains(": ERROR"), "{}", v.stdout);
    m.shutdown().await;
    w.assert_clean();
}
