//! Posture against the rehearsal tenant over real HTTP: a correct set-up
//! passes every check; each posture fault gives its finding, named.

use std::time::Duration;

use glassdrill::authenticator::Credential;
use glassdrill::cloud::{AppCredentials, TokenCache};
use glassdrill::posture::Status;
use glassdrill::tenant::{
    Fault, RP_ID, RehearsalTenant, TENANT_ID, TenantOptions, rehearsal_account,
    rehearsal_user_handle,
};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

async fn posture(faults: &[Fault]) -> Vec<glassdrill::posture::Check> {
    let cred = Credential::generate(RP_ID, rehearsal_user_handle()).expect("credential");
    let tenant = RehearsalTenant::start(TenantOptions {
        account: rehearsal_account("breakglass1@rehearsal.onmicrosoft.com", &cred).unwrap(),
        client_id: "glassdrill-rehearsal".into(),
        client_secret: SecretString::from("s3cret"),
        faults: faults.to_vec(),
        alert_delay: Duration::ZERO,
        alert_late_delay: Duration::ZERO,
        log_delay: Duration::ZERO,
        webhook_url: None,
        alert_rules: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_list: false,
        lax_session_cookie: false,
        secure_webhook: None,
    })
    .await
    .expect("tenant");
    let urls = tenant.urls().clone();
    let tokens = std::sync::Arc::new(
        TokenCache::new(AppCredentials {
            authority: urls.authority.clone(),
            tenant_id: TENANT_ID.into(),
            client_id: "glassdrill-rehearsal".into(),
            client_secret: SecretString::from("s3cret"),
            certificate: None,
        })
        .unwrap(),
    );
    let checks = glassdrill::posture::fetch::posture(
        glassdrill::posture::fetch::Endpoints {
            graph: urls.graph.clone(),
            management: urls.management.clone(),
        },
        tokens,
        &glassdrill::tenant::posture::posture_config(),
        &CancellationToken::new(),
    )
    .await;
    tenant.shutdown().await;
    checks
}

#[tokio::test]
async fn a_correct_set_up_passes_and_each_fault_fails_its_check() {
    let all = posture(&[]).await;
    assert!(all.len() >= 12, "{all:#?}");
    assert!(all.iter().all(|c| c.status == Status::Pass), "{all:#?}");
    for (fault, check, words) in [
        (Fault::PostureLicensed, "no licences", "1 licence(s)"),
        (
            Fault::PostureEligibleGa,
            "Global Administrator, active and permanent",
            "eligible through PIM",
        ),
        (
            Fault::PostureOneKey,
            "two or more FIDO2 security keys",
            "1 FIDO2 key(s)",
        ),
        (
            Fault::PosturePhoneMethod,
            "no phone, SMS or Authenticator app method",
            "phoneAuthenticationMethod",
        ),
        (
            Fault::PostureTap,
            "no Temporary Access Pass",
            "Temporary Access Pass is present",
        ),
        (
            Fault::PostureCaNotExcluded,
            "Conditional Access",
            "Require MFA for all users",
        ),
        (
            Fault::PostureRuleMuted,
            "alert rule enabled, not muted",
            "muted for PT1D",
        ),
        (
            Fault::PostureRuleDisabled,
            "alert rule enabled, not muted",
            "disabled",
        ),
        (
            Fault::PostureEmptyActionGroup,
            "action group routes to someone",
            "no receiver",
        ),
    ] {
        let got = posture(&[fault]).await;
        let failed: Vec<_> = got.iter().filter(|c| c.status == Status::Fail).collect();
        assert_eq!(failed.len(), 1, "{fault:?}: {failed:#?}");
        assert_eq!(failed[0].name, check, "{fault:?}");
        assert!(
            failed[0].detail.contains(words),
            "{fault:?}: {}",
            failed[0].detail
        );
    }
}
