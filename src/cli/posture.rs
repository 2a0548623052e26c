//! `glassdrill posture`: the break-glass set-up checked now, read-only.

use crate::config::HostConfig;
use crate::posture::Status;

use super::EXIT_USAGE;

/// `posture` options.
#[derive(Debug, clap::Args)]
pub struct PostureArgs {
    /// Print JSON (one object per check) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the posture checks of the host's [posture] accounts in its
/// [entra] tenant. Exit 0: no FAIL (UNKNOWN never fails); 1: a FAIL; 64:
/// not configured.
pub(crate) async fn posture(host: &HostConfig, a: PostureArgs) -> u8 {
    let (Some(entra), Some(cfg)) = (&host.entra, &host.posture) else {
        errln!(
            "error: posture needs [entra] (the tenant and a read-only app registration) and [posture] (the break-glass accounts by object id) in glassdrill.toml"
        );
        return EXIT_USAGE;
    };
    let creds = match crate::runner::entra_credentials(entra) {
        Ok(c) => c,
        Err((field, why)) => {
            errln!("error: {field}: {why}");
            return EXIT_USAGE;
        }
    };
    let tokens = match crate::cloud::TokenCache::new(creds) {
        Ok(t) => std::sync::Arc::new(t),
        Err(e) => {
            errln!("error: {e}");
            return 2;
        }
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let checks = crate::posture::fetch::posture(
        crate::posture::fetch::Endpoints {
            graph: entra.graph.clone(),
            management: entra.management.clone(),
        },
        tokens,
        cfg,
        &cancel,
    )
    .await;
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Unknown => "UNKNOWN",
            };
            out!(
                "{status:<8} {:<40} {:<44} {}",
                c.account.as_deref().unwrap_or("(tenant)"),
                c.name,
                c.detail
            );
        }
    }
    u8::from(crate::posture::failed(&checks))
}
