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
    /// A named tenant's set-up (`[tenants.NAME]` and its posture) instead
    /// of [entra] and [posture].
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
}

/// The [entra] tenant, the [posture] accounts and the app's tokens, or
/// the exit code after saying what is missing.
fn setup<'h>(
    host: &'h HostConfig,
    command: &str,
    tenant: Option<&str>,
) -> Result<
    (
        &'h crate::config::EntraConfig,
        &'h crate::config::host::PostureConfig,
        std::sync::Arc<crate::cloud::TokenCache>,
    ),
    u8,
> {
    let entra = match tenant {
        Some(n) => host.tenants.get(n).map(|t| &t.entra),
        None => host.entra.as_ref(),
    };
    let (Some(entra), Some(cfg)) = (entra, host.posture_for(tenant)) else {
        match tenant {
            Some(n) => errln!(
                "error: {command} --tenant {n} needs [tenants.{n}] (the tenant and a read-only app registration) and [tenants.{n}.posture] (its break-glass accounts by object id) in glassdrill.toml"
            ),
            None => errln!(
                "error: {command} needs [entra] (the tenant and a read-only app registration) and [posture] (the break-glass accounts by object id) in glassdrill.toml"
            ),
        }
        return Err(EXIT_USAGE);
    };
    let creds = crate::runner::entra_credentials(entra).map_err(|(field, why)| {
        errln!("error: {field}: {why}");
        EXIT_USAGE
    })?;
    let tokens = crate::cloud::TokenCache::new(creds).map_err(|e| {
        errln!("error: {e}");
        2
    })?;
    Ok((entra, cfg, std::sync::Arc::new(tokens)))
}

/// Runs the posture checks of the host's [posture] accounts in its
/// [entra] tenant. Exit 0: no FAIL (UNKNOWN never fails); 1: a FAIL; 64:
/// not configured.
pub(crate) async fn posture(host: &HostConfig, a: PostureArgs) -> u8 {
    let (entra, cfg, tokens) = match setup(host, "posture", a.tenant.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
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

/// `uses` options.
#[derive(Debug, clap::Args)]
pub struct UsesArgs {
    /// From this day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub since: chrono::NaiveDate,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// A named tenant's accounts (`[tenants.NAME]`).
    #[arg(long, value_name = "NAME")]
    pub tenant: Option<String>,
}

/// Every sign-in of the [posture] accounts since a day: each a drill's
/// (its run's correlation id is in a bundle), classified (the evidence
/// log says what it was), or UNREVIEWED. Exit 1 when one is unreviewed.
pub(crate) async fn uses(host: &HostConfig, a: UsesArgs) -> u8 {
    let (entra, cfg, tokens) = match setup(host, "uses", a.tenant.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let since = a.since.and_time(chrono::NaiveTime::MIN).and_utc();
    // The drills' own sign-ins, by correlation id, from the bundles: in a
    // fleet, every host's (written out of the fleet's database).
    let fleet_copy = if super::fleet::fleet_mode(Some(host)) {
        match super::fleet::materialized(host).await {
            Ok((dir, _)) => Some(dir),
            Err(code) => return code,
        }
    } else {
        None
    };
    let root = fleet_copy
        .as_ref()
        .map_or_else(|| host.evidence_dir(), |d| d.path().join("evidence"));
    let drills = crate::evidence::log::drill_sign_ins(&root);
    let classes: std::collections::HashMap<String, String> =
        crate::evidence::log::EvidenceLog::at(&root)
            .read()
            .map(|c| c.entries.into_iter().flatten().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == "classification")
            .filter_map(|e| Some((e.signin?.to_ascii_lowercase(), e.class?)))
            .collect();
    let graph = crate::cloud::GraphClient::new(&entra.graph, tokens);
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut rows = Vec::new();
    for acct in &cfg.accounts {
        match graph
            .sign_ins(&acct.upn, Some(&acct.object_id), since, None, &cancel)
            .await
        {
            Ok(list) => {
                for r in list {
                    let id = r["id"].as_str().unwrap_or_default().to_owned();
                    let corr = r["correlationId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    let what = if let Some(run) = drills.get(&corr) {
                        format!("drill {run}")
                    } else if let Some(c) = classes.get(&id.to_ascii_lowercase()) {
                        format!("classified: {c}")
                    } else {
                        "UNREVIEWED".to_owned()
                    };
                    rows.push(serde_json::json!({
                        "account": acct.upn,
                        "signin": id,
                        "created": r["createdDateTime"],
                        "error_code": r["status"]["errorCode"],
                        "interactive": r["isInteractive"],
                        "is": what,
                    }));
                }
            }
            Err(e) => {
                errln!(
                    "error: the sign-in log of {} could not be read: {e}",
                    acct.upn
                );
                return 2;
            }
        }
    }
    let unreviewed = rows.iter().any(|r| r["is"] == "UNREVIEWED");
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        for r in &rows {
            out!(
                "{:<26} {:<40} {:<38} error {:<7} {}",
                r["created"].as_str().unwrap_or("?"),
                r["account"].as_str().unwrap_or("?"),
                r["signin"].as_str().unwrap_or("?"),
                r["error_code"],
                r["is"].as_str().unwrap_or("?")
            );
        }
        if unreviewed {
            out!(
                "classify each UNREVIEWED sign-in: glassdrill evidence classify --signin ID --account UPN --as drill|emergency|misuse --by NAME --note TEXT"
            );
        }
    }
    u8::from(unreviewed)
}
