//! The Graph sign-in log, for the `confirm` stage (the sign-in's own log
//! record: id, correlationId, createdDateTime). Works the same against
//! Entra and the rehearsal tenant: only the base URLs differ.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api::{Api, Auth};
use super::{CloudError, Resource, TokenCache};

/// A Graph client sharing a process's token cache.
pub struct GraphClient {
    api: Api,
    base: String,
    resource: Resource,
    tokens: Arc<TokenCache>,
}

/// Graph's sign-in log allows 5 requests per 10 s per app and tenant
/// (<https://learn.microsoft.com/en-us/graph/throttling-limits>, "Identity
/// and access reports service limits"): 2 s on average, at most 5 in any
/// 10 s (see [`super::api::RateLimit`]).
pub(crate) const SIGNIN_LOG_GAP: Duration = Duration::from_secs(2);

impl GraphClient {
    /// A client for Graph at `base`, with tokens (and the HTTP client) of
    /// `tokens`.
    pub fn new(base: &str, tokens: Arc<TokenCache>) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        Self {
            api: Api::new(
                tokens.http().clone(),
                "Graph sign-in log",
                &base,
                "; grant the app AuditLog.Read.All (application) with admin consent",
                SIGNIN_LOG_GAP,
            ),
            resource: Resource::Graph(base.clone()),
            base,
            tokens,
        }
    }

    /// Fetches a token now: proves the tenant is reachable and the app
    /// credentials work before the account is touched (a sign-in that
    /// cannot be confirmed afterwards is a wasted use of a break-glass
    /// account).
    pub async fn check(&self, cancel: &CancellationToken) -> Result<(), CloudError> {
        self.tokens.token(&self.resource, cancel).await.map(|_| ())
    }

    /// The `authenticationDetails` of sign-in `id` from Graph's `/beta`
    /// sign-in log (the method, e.g. "FIDO2 security key", and each
    /// step's result), when the tenant serves it; `None` otherwise (beta
    /// is best effort, never a failure).
    pub async fn authentication_details(
        &self,
        id: &str,
        cancel: &CancellationToken,
    ) -> Option<Value> {
        let v = self
            .api
            .call(
                &format!("{}/beta/auditLogs/signIns/{id}", self.base),
                &[("$select", "id,authenticationDetails".to_owned())],
                None,
                Auth::Token(&self.tokens, &self.resource),
                &[],
                cancel,
            )
            .await
            .ok()?;
        v.get("authenticationDetails").cloned()
    }

    /// Sign-ins of the account since `since` (by `userId` when its object
    /// id is known, else by UPN), newest first; narrowed to one
    /// correlation id when given. Every page is read; a row listed twice
    /// is kept once.
    pub async fn sign_ins(
        &self,
        upn: &str,
        object_id: Option<&str>,
        since: DateTime<Utc>,
        correlation_id: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Value>, CloudError> {
        let who = match object_id {
            Some(oid) => format!("userId eq '{}'", oid.replace('\'', "''")),
            None => format!("userPrincipalName eq '{}'", upn.replace('\'', "''")),
        };
        let mut filter = format!(
            "{who} and createdDateTime ge {}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        if let Some(c) = correlation_id {
            filter.push_str(&format!(
                " and correlationId eq '{}'",
                c.replace('\'', "''")
            ));
        }
        let q = [("$filter", filter), ("$top", "50".to_owned())];
        let rows = self
            .api
            .list(
                &format!("{}/v1.0/auditLogs/signIns", self.base),
                &q,
                Auth::Token(&self.tokens, &self.resource),
                &[],
                cancel,
            )
            .await?;
        Ok(dedupe_sign_ins(rows))
    }
}

/// The same sign-in can be listed twice (pages shifting as rows arrive):
/// rows are kept once per (`userId`, `correlationId`, `createdDateTime`),
/// in their order.
pub(crate) fn dedupe_sign_ins(rows: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    rows.into_iter()
        .filter(|r| {
            seen.insert((
                r["userId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                r["correlationId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                r["createdDateTime"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}
