//! Reads what the posture rules judge, read-only: Graph (users, methods,
//! role schedules, group membership, Conditional Access) and Azure
//! Resource Manager (the alert rule and its action groups). A 404 is
//! "missing", a 401/403 "denied" with the permission named; any other
//! failure is UNKNOWN with the reason, never a finding.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Check, Fetched};
use crate::cloud::api::{Api, Auth};
use crate::cloud::{CloudError, Resource, TokenCache};

/// Where the APIs are.
pub struct Endpoints {
    /// Graph.
    pub graph: String,
    /// Azure Resource Manager.
    pub management: String,
}

/// The scheduled query rules API version read.
const RULES_API: &str = "2023-12-01";
/// The action groups API version read.
const ACTION_GROUPS_API: &str = "2023-01-01";

struct Reader {
    graph: Api,
    arm: Api,
    ep: Endpoints,
    tokens: Arc<TokenCache>,
}

impl Reader {
    async fn get(
        &self,
        arm: bool,
        url: &str,
        list: bool,
        permission: &'static str,
        cancel: &CancellationToken,
    ) -> Fetched {
        let (api, resource) = if arm {
            (&self.arm, Resource::ResourceManager)
        } else {
            (&self.graph, Resource::Graph(self.ep.graph.clone()))
        };
        let auth = Auth::Token(&self.tokens, &resource);
        let got = if list {
            api.list(url, &[], auth, &[], cancel)
                .await
                .map(|v| json!({ "value": v }))
        } else {
            api.call(url, &[], None, auth, &[], cancel).await
        };
        match got {
            Ok(v) => Fetched::Got(v),
            Err(CloudError::Api { status: 404, .. }) => Fetched::Missing,
            Err(CloudError::Api {
                status: 401 | 403, ..
            }) => Fetched::Denied(permission),
            Err(e) => {
                tracing::warn!(error = %e, "posture read failed");
                Fetched::Failed(e.to_string())
            }
        }
    }
}

/// Every check for `accounts`.
pub async fn posture(
    ep: Endpoints,
    tokens: Arc<TokenCache>,
    cfg: &crate::config::host::PostureConfig,
    cancel: &CancellationToken,
) -> Vec<Check> {
    let http = tokens.http().clone();
    let r = Reader {
        graph: Api::new(
            http.clone(),
            "Graph",
            &ep.graph,
            "",
            Duration::from_millis(100),
        ),
        arm: Api::new(
            http,
            "Azure Resource Manager",
            &ep.management,
            "",
            Duration::from_millis(300),
        ),
        ep,
        tokens,
    };
    let g = r.ep.graph.trim_end_matches('/').to_owned();
    let mut out = Vec::new();
    for a in &cfg.accounts {
        let id = &a.object_id;
        let user = r
            .get(false, &format!("{g}/v1.0/users/{id}?$select=id,displayName,userPrincipalName,accountEnabled,onPremisesSyncEnabled,assignedLicenses"), false, "User.Read.All (application)", cancel)
            .await;
        let gone = matches!(user, Fetched::Missing);
        out.extend(super::user_checks(a, &user));
        if gone {
            continue;
        }
        let filter = format!("principalId eq '{id}'");
        let assigned = r
            .get(
                false,
                &format!(
                    "{g}/v1.0/roleManagement/directory/roleAssignmentSchedules?$filter={filter}"
                ),
                true,
                "RoleManagement.Read.All (application)",
                cancel,
            )
            .await;
        let eligible = r
            .get(
                false,
                &format!(
                    "{g}/v1.0/roleManagement/directory/roleEligibilitySchedules?$filter={filter}"
                ),
                true,
                "RoleEligibilitySchedule.Read.Directory (application)",
                cancel,
            )
            .await;
        out.push(super::ga_check(a, &assigned, &eligible));
        if let Some(group) = &cfg.group_id {
            let member_of = r
                .get(
                    false,
                    &format!("{g}/v1.0/users/{id}/transitiveMemberOf"),
                    true,
                    "User.Read.All (application)",
                    cancel,
                )
                .await;
            out.push(super::group_check(a, &member_of, group));
        }
        let methods = r
            .get(
                false,
                &format!("{g}/v1.0/users/{id}/authentication/methods"),
                true,
                "UserAuthenticationMethod.Read.All (application)",
                cancel,
            )
            .await;
        out.extend(super::method_checks(a, &methods, &cfg.allowed_aaguids));
    }
    if let Some(group) = &cfg.group_id {
        let ca = r
            .get(
                false,
                &format!("{g}/v1.0/identity/conditionalAccess/policies"),
                true,
                "Policy.Read.All (application)",
                cancel,
            )
            .await;
        out.push(super::ca_check(&ca, group, &cfg.accounts));
    }
    if let Some(rule_id) = &cfg.alert_rule {
        let m = r.ep.management.trim_end_matches('/').to_owned();
        let rule = r
            .get(
                true,
                &format!("{m}{rule_id}?api-version={RULES_API}"),
                false,
                "the Monitoring Reader role",
                cancel,
            )
            .await;
        let groups: Vec<String> = match &rule {
            Fetched::Got(v) => v["properties"]["actions"]["actionGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        out.extend(super::rule_checks(&rule, &cfg.accounts));
        for ag in groups {
            let got = r
                .get(
                    true,
                    &format!("{m}{ag}?api-version={ACTION_GROUPS_API}"),
                    false,
                    "the Monitoring Reader role",
                    cancel,
                )
                .await;
            out.push(super::action_group_check(&got));
        }
    }
    out
}
