//! `posture`: after the alerts, every listed break-glass account's set-up
//! checked read-only ([`crate::posture`]), and every sign-in of the
//! accounts since the previous drill that this drill did not make kept as
//! an unexpected use. A posture FAIL or an unexpected use is a finding;
//! UNKNOWN (a permission missing) only a warning. The sign-in and alert
//! results stand as they are: the record keeps both apart.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Ended;
use crate::cloud::{GraphClient, TokenCache};
use crate::posture::{Check, Status};
use crate::record::StageStatus;

/// What a run's posture stage reads.
pub struct PosturePlan {
    /// The accounts and their set-up.
    pub cfg: crate::config::host::PostureConfig,
    /// Graph and Azure Resource Manager.
    pub graph: String,
    /// Azure Resource Manager.
    pub management: String,
    /// The app's tokens.
    pub tokens: Arc<TokenCache>,
    /// Sign-ins since then are looked at for unexpected use (the previous
    /// drill's end).
    pub since: DateTime<Utc>,
    /// The correlation ids of every drill's sign-in on record (from the
    /// bundles): those sign-ins are drills, not unexpected use.
    pub drill_sign_ins: std::collections::HashSet<String>,
}

/// The correlation ids of the sign-ins the bundles under `root` record.
pub fn drill_sign_ins(root: &std::path::Path) -> std::collections::HashSet<String> {
    crate::evidence::log::bundles_on_disk(root)
        .into_iter()
        .filter_map(|b| {
            let text = std::fs::read(root.join(&b.drill).join(&b.run).join("drill.json")).ok()?;
            crate::record::DrillRecord::from_json(&text)
                .ok()?
                .sign_in
                .correlation_id
                .map(|c| c.to_ascii_lowercase())
        })
        .collect()
}

/// What the stage found.
#[derive(Default)]
pub struct PostureFound {
    /// The checks.
    pub checks: Vec<Check>,
    /// Sign-ins no drill made: (account UPN, raw record).
    pub unexpected: Vec<(String, Value)>,
}

/// The stage's status and sentence (pure).
pub(crate) fn judge(found: &PostureFound) -> (StageStatus, String) {
    let failed: Vec<String> = found
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| match &c.account {
            Some(a) => format!("{a}: {}: {}", c.name, c.detail),
            None => format!("{}: {}", c.name, c.detail),
        })
        .collect();
    let unknown = found
        .checks
        .iter()
        .filter(|c| c.status == Status::Unknown)
        .count();
    let mut parts = failed;
    if !found.unexpected.is_empty() {
        let ids: Vec<String> = found
            .unexpected
            .iter()
            .map(|(a, r)| {
                format!(
                    "{a} at {} (id {}, error {})",
                    r["createdDateTime"].as_str().unwrap_or("?"),
                    r["id"].as_str().unwrap_or("?"),
                    r["status"]["errorCode"].as_i64().unwrap_or(-1)
                )
            })
            .collect();
        parts.push(format!(
            "{} sign-in(s) since the previous drill that no drill made: {}; classify each with `glassdrill evidence classify --signin ID --account UPN --as drill|emergency|misuse`",
            ids.len(),
            ids.join(", ")
        ));
    }
    if !parts.is_empty() {
        return (StageStatus::Failed, parts.join("; "));
    }
    let passed = found.checks.len() - unknown;
    if unknown > 0 {
        (
            StageStatus::Warning,
            format!(
                "{passed} check(s) passed, {unknown} UNKNOWN (a permission is missing: see the record)"
            ),
        )
    } else {
        (
            StageStatus::Passed,
            format!("{passed} check(s) passed; no unexpected use"),
        )
    }
}

/// Runs the checks and looks for unexpected use.
pub async fn run(
    plan: &PosturePlan,
    this_run: Option<&str>,
    cancel: &CancellationToken,
) -> Ended<PostureFound> {
    let checks = crate::posture::fetch::posture(
        crate::posture::fetch::Endpoints {
            graph: plan.graph.clone(),
            management: plan.management.clone(),
        },
        plan.tokens.clone(),
        &plan.cfg,
        cancel,
    )
    .await;
    let graph = GraphClient::new(&plan.graph, plan.tokens.clone());
    let mut unexpected = Vec::new();
    let mut checks = checks;
    for a in &plan.cfg.accounts {
        match graph
            .sign_ins(&a.upn, Some(&a.object_id), plan.since, None, cancel)
            .await
        {
            Ok(rows) => unexpected.extend(
                rows.into_iter()
                    .filter(|r| {
                        // This drill's own sign-in and earlier drills' are
                        // expected.
                        let corr = r["correlationId"].as_str().unwrap_or_default();
                        !this_run.is_some_and(|c| corr.eq_ignore_ascii_case(c))
                            && !plan.drill_sign_ins.contains(&corr.to_ascii_lowercase())
                    })
                    .map(|r| (a.upn.clone(), r)),
            ),
            Err(e) => checks.push(Check {
                account: Some(a.upn.clone()),
                name: "no unexpected use",
                status: Status::Unknown,
                detail: format!("the sign-in log could not be read: {e}"),
            }),
        }
    }
    let found = PostureFound { checks, unexpected };
    let (status, detail) = judge(&found);
    Ended::new(status, detail, found)
}
