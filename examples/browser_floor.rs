//! The benchmark floor for `glassdrill rehearse`: start chromedriver and
//! headless Chromium exactly as a drill does, load one page of the
//! rehearsal tenant, close. Run by `bench/rehearse.sh`.

use std::time::Duration;

use glassdrill::authenticator::Credential;
use glassdrill::browser::{Browser, BrowserOptions};
use glassdrill::tenant::{
    RP_ID, RehearsalTenant, TENANT_ID, TenantOptions, rehearsal_account, rehearsal_user_handle,
};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cred = Credential::generate(RP_ID, rehearsal_user_handle())?;
    let account = rehearsal_account("breakglass1@rehearsal.onmicrosoft.com", &cred)?;
    let tenant = RehearsalTenant::start(TenantOptions {
        account,
        client_id: "floor".into(),
        client_secret: SecretString::from("floor-secret"),
        faults: vec![],
        alert_delay: Duration::ZERO,
        alert_late_delay: Duration::ZERO,
        log_delay: Duration::ZERO,
        webhook_url: None,
        alert_rules: Vec::new(),
        listen: "127.0.0.1:0".parse()?,
        allow_list: false,
        lax_session_cookie: false,
        secure_webhook: None,
    })
    .await?;
    let browser = Browser::launch(&BrowserOptions {
        chromium: "/usr/bin/chromium".into(),
        chromedriver: "/usr/bin/chromedriver".into(),
        temp_dir: None,
        public_address_space: Vec::new(),
    })
    .await?;
    let url = format!(
        "{}/{TENANT_ID}/oauth2/v2.0/authorize?client_id=glassdrill",
        tenant.urls().authority
    );
    browser.client()?.goto(&url).await?;
    browser
        .client()?
        .wait()
        .for_element(fantoccini::Locator::Id("i0116"))
        .await?;
    browser.close().await?;
    tenant.shutdown().await;
    Ok(())
}
