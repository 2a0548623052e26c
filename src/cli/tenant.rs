//! `tenant`: the rehearsal tenant on its own.

use super::*;

pub(crate) async fn tenant(host: &HostConfig, a: TenantArgs) -> u8 {
    if let Some(u) = &a.webhook_url {
        let loopback = url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| {
                h == "127.0.0.1" || h == "localhost" || h.ends_with(".localhost") || h == "[::1]"
            });
        if !loopback {
            errln!("error: --webhook-url must point at loopback (127.0.0.1 or *.localhost)");
            return EXIT_USAGE;
        }
    }
    match crate::tenant::console::serve(
        host,
        a.listen,
        a.tenant.faults,
        a.tenant.alert_delay,
        a.webhook_url,
        cancel_on_signals(),
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: {e}");
            2
        }
    }
}
