//! `tenant`: the rehearsal tenant on its own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::*;
use crate::tenant::TENANT_ID;
use crate::tenant::console::{self, REHEARSAL_UPN};

pub(crate) async fn tenant(host: &HostConfig, a: TenantArgs, cancel: CancellationToken) -> u8 {
    if let Some(u) = &a.webhook_url {
        let loopback = url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| crate::support::http::is_loopback_host(&h));
        if !loopback {
            errln!("error: --webhook-url must point at loopback (127.0.0.1 or *.localhost)");
            return EXIT_USAGE;
        }
    }
    let c = match console::start(
        host,
        a.listen,
        a.tenant.faults,
        a.tenant.alert_delay,
        a.webhook_url,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let u = c.tenant.urls();
    out!("rehearsal tenant listening on {}", c.tenant.addr());
    out!(
        "  sign-in:   {}/{TENANT_ID}/oauth2/v2.0/authorize?client_id=glassdrill",
        u.authority
    );
    out!("  FIDO host: {} (RP id {})", u.fido, u.rp_id);
    out!(
        "  token:     {}/{TENANT_ID}/oauth2/v2.0/token (client_id glassdrill-rehearsal, secret in {})",
        u.authority,
        c.secret_path.display()
    );
    out!("  graph:     {}/v1.0/auditLogs/signIns", u.graph);
    out!("  landing:   {}/", u.myaccount);
    out!("  account:   {REHEARSAL_UPN}");
    out!(
        "  credential: id {} (base64url), user handle {}, PKCS#8 key in {} (for a virtual authenticator)",
        B64.encode(&c.credential.id),
        B64.encode(&c.credential.user_handle),
        c.key_path.display()
    );
    out!("press Ctrl-C to stop");
    cancel.cancelled().await;
    for a in c.tenant.fired() {
        out!("alert {} → {}", a.alert_id, a.delivery);
    }
    c.tenant.shutdown().await;
    0
}
