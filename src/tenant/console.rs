//! `glassdrill tenant`: the rehearsal tenant on its own, for trying the
//! flow by hand (e.g. with Chromium's DevTools WebAuthn panel) or pointing
//! other tools at its Graph and token endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::{Fault, RehearsalTenant, TENANT_ID, TenantOptions};
use crate::authenticator::Credential;
use crate::config::HostConfig;
use crate::support::fs::{Existing, PRIVATE_FILE, write_atomic};

/// The rehearsal account's UPN.
pub(crate) const REHEARSAL_UPN: &str = "breakglass1@rehearsal.onmicrosoft.com";

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes, PRIVATE_FILE, Existing::Replace)
}

/// Serves until `cancel`; writes the session's credential and client
/// secret under `<data>/rehearsal/` (mode 0600) instead of printing them.
pub(crate) async fn serve(
    host: &HostConfig,
    listen: SocketAddr,
    faults: Vec<Fault>,
    alert_delay: Duration,
    webhook_url: Option<String>,
    cancel: CancellationToken,
) -> Result<(), String> {
    let dir = host.data_dir.join("rehearsal");
    crate::support::fs::create_private_dirs(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cred =
        Credential::generate(&format!("ceremony.{}", super::DOMAIN)).map_err(|e| e.to_string())?;
    let account = super::rehearsal_account(REHEARSAL_UPN, &cred).map_err(|e| e.to_string())?;
    let client_secret = SecretString::from(crate::secret::random_token(24));
    let key_path = dir.join("credential.pk8");
    let secret_path = dir.join("client-secret");
    write_private(&key_path, cred.pkcs8.expose_secret())
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    write_private(&secret_path, client_secret.expose_secret().as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", secret_path.display()))?;

    let tenant = RehearsalTenant::start(TenantOptions {
        account,
        client_id: "glassdrill-rehearsal".into(),
        client_secret,
        faults,
        alert_delay,
        alert_late_delay: alert_delay + Duration::from_secs(60),
        log_delay: Duration::from_secs(5),
        webhook_url,
        listen,
    })
    .await
    .map_err(|e| e.to_string())?;
    let u = tenant.urls();
    out!("rehearsal tenant listening on {}", tenant.addr());
    out!(
        "  sign-in:   {}/{TENANT_ID}/oauth2/v2.0/authorize?client_id=glassdrill",
        u.authority
    );
    out!("  ceremony:  {} (RP id {})", u.ceremony, u.rp_id);
    out!(
        "  token:     {}/{TENANT_ID}/oauth2/v2.0/token (client_id glassdrill-rehearsal, secret in {})",
        u.authority,
        secret_path.display()
    );
    out!("  graph:     {}/v1.0/auditLogs/signIns", u.graph);
    out!("  landing:   {}/", u.myaccount);
    out!("  account:   {REHEARSAL_UPN}");
    out!(
        "  credential: id {} (base64url), user handle {}, PKCS#8 key in {} (for a virtual authenticator)",
        B64.encode(&cred.id),
        B64.encode(&cred.user_handle),
        key_path.display()
    );
    out!("press Ctrl-C to stop");
    cancel.cancelled().await;
    for a in tenant.fired() {
        out!("alert {} → {}", a.alert_id, a.delivery);
    }
    tenant.shutdown().await;
    Ok(())
}
