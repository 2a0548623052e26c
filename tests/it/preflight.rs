//! Do no harm: when the tenant cannot be read back (wrong app secret), the
//! drill stops in preflight with ERROR and the account is never touched.

use std::sync::Arc;
use std::time::Duration;

use crate::util::{World, stage};
use glassdrill::alerts::{AlertCheck, WebhookReceiver};
use glassdrill::authenticator::{Credential, VirtualAuthenticator};
use glassdrill::browser::BrowserOptions;
use glassdrill::cloud::{AppCredentials, GraphClient, TokenCache};
use glassdrill::drill::{Quiet, RunPlan, Sinks, Stage, StageStatus, TenantEndpoints, Verdict};
use glassdrill::evidence::SigningKey;
use glassdrill::notify::Console;
use glassdrill::tenant::{DOMAIN, RehearsalTenant, TENANT_ID, TenantOptions, rehearsal_account};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn unreadable_tenant_stops_in_preflight_without_a_sign_in() {
    let w = World::new();
    let drill = glassdrill::config::DrillConfig::rehearsal().unwrap();
    let cred = Credential::generate(&format!("ceremony.{DOMAIN}")).unwrap();
    let account = rehearsal_account(&drill.account, &cred).unwrap();
    let receiver = WebhookReceiver::start(
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from("tok"),
        65536,
    )
    .await
    .unwrap();
    let tenant = RehearsalTenant::start(TenantOptions {
        account,
        client_id: "glassdrill-rehearsal".into(),
        client_secret: SecretString::from("the-right-secret"),
        faults: vec![],
        alert_delay: Duration::ZERO,
        alert_late_delay: Duration::ZERO,
        log_delay: Duration::ZERO,
        webhook_url: Some(receiver.url_with_token().expose_secret().to_owned()),
        listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let auth = VirtualAuthenticator::new(
        cred.id.clone(),
        cred.pkcs8.clone(),
        tenant.urls().rp_id.clone(),
        cred.user_handle.clone(),
    )
    .unwrap();
    let key = SigningKey::generate(&w.path().join("key"), "test@glassdrill").unwrap();
    let host = w.host();
    let tokens = TokenCache::new(AppCredentials {
        authority: tenant.urls().authority.clone(),
        tenant_id: TENANT_ID.into(),
        client_id: "glassdrill-rehearsal".into(),
        client_secret: SecretString::from("a-wrong-secret"),
    })
    .unwrap();
    let plan = RunPlan {
        drill: &drill,
        host_digest: "0".into(),
        tenant: TenantEndpoints {
            authority: tenant.urls().authority.clone(),
            tenant_id: TENANT_ID.into(),
            graph: tenant.urls().graph.clone(),
        },
        graph: GraphClient::new(&tenant.urls().graph, Arc::new(tokens)).unwrap(),
        authenticator: &auth,
        alert_checks: vec![Box::new(receiver.attach(&drill.account)) as Box<dyn AlertCheck>],
        browser: BrowserOptions {
            chromium: host.browser.chromium.clone(),
            chromedriver: host.browser.chromedriver.clone(),
            temp_dir: host.browser.temp_dir.clone(),
        },
        step_timeout: Duration::from_secs(5),
        operator: None,
        witness: None,
    };
    let sinks = Sinks {
        evidence_dir: w.path().join("evidence"),
        signing_key: &key,
        signer: "test@glassdrill",
        notifier: &Console,
    };
    let o = glassdrill::drill::run(plan, &sinks, &Quiet, &CancellationToken::new()).await;
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
    assert!(tenant.signins().is_empty(), "the account was not touched");
    assert!(o.bundle.is_ok(), "the ERROR is recorded too");
    tenant.shutdown().await;
    receiver.shutdown().await;
    w.assert_clean();
}
