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
    /// The evidence directory: its bundles name every drill's sign-in.
    pub evidence_dir: std::path::PathBuf,
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
                    // This drill's own sign-in is expected.
                    .filter(|r| {
                        let corr = r["correlationId"].as_str().unwrap_or_default();
                        !this_run.is_some_and(|c| corr.eq_ignore_ascii_case(c))
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
    // So are earlier drills' (their bundles name them): read only when a
    // sign-in is left to explain.
    if !unexpected.is_empty() {
        let drills = crate::evidence::log::drill_sign_ins(&plan.evidence_dir);
        unexpected.retain(|(_, r)| {
            let corr = r["correlationId"].as_str().unwrap_or_default();
            !drills.contains_key(&corr.to_ascii_lowercase())
        });
    }
    let found = PostureFound { checks, unexpected };
    let (status, detail) = judge(&found);
    Ended::new(status, detail, found)
}
