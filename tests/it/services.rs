//! Services vs runs: one set of services (receiver, token caches, signing
//! key, notifier) serves two drills running at once in one process, and
//! each run gets its own correlation: the other run's alert never counts
//! for it, and nothing is left unrouted.

use std::time::Duration;

use crate::util::World;
use glassdrill::drill::{Quiet, Verdict};
use glassdrill::runner::{RunOptions, run_with};
use glassdrill::services::{Services, WebhookSettings};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn two_runs_share_one_receiver_and_keep_their_own_alerts() {
    let w = World::new();
    let host = w.host();
    let services = Services::start(
        &host,
        WebhookSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: SecretString::from("shared-receiver-token"),
        },
        &Quiet,
    )
    .await
    .unwrap();
    let bg1 = glassdrill::config::DrillConfig::rehearsal().unwrap();
    let mut bg2 = bg1.clone();
    bg2.id = "rehearsal-bg2".into();
    bg2.account = "breakglass2@rehearsal.onmicrosoft.com".into();
    let opts = RunOptions {
        alert_delay: Duration::from_millis(300),
        alert_deadline: Some(Duration::from_secs(15)),
        step_timeout: Some(Duration::from_secs(10)),
        ..RunOptions::default()
    };
    let cancel = CancellationToken::new();
    let (a, b) = tokio::join!(
        run_with(&services, &host, &bg1, &opts, &Quiet, &cancel),
        run_with(&services, &host, &bg2, &opts, &Quiet, &cancel),
    );
    for (o, upn) in [
        (a.unwrap(), "breakglass1@rehearsal.onmicrosoft.com"),
        (b.unwrap(), "breakglass2@rehearsal.onmicrosoft.com"),
    ] {
        assert_eq!(o.verdict, Verdict::Pass, "{upn}: {:#?}", o.stages);
        let alert = &o.record.as_ref().unwrap().alerts[0];
        assert!(
            alert.ignored.is_empty(),
            "{upn} saw the other run's alert: {alert:#?}"
        );
        let dir = &o.bundle.as_ref().unwrap().dir;
        let payload =
            std::fs::read_to_string(dir.join(&alert.matched.as_ref().unwrap().file)).unwrap();
        assert!(payload.contains(upn), "{upn}'s own alert counted");
    }
    assert!(services.receiver().unrouted().is_empty());
    services.shutdown().await;
    w.assert_clean();
}
