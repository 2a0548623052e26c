//! The Graph sign-in log, for the `confirm` stage (the sign-in's own log
//! record: id, correlationId, createdDateTime). Works the same against
//! Entra and the rehearsal tenant: only the base URLs differ.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{CloudError, Resource, TokenCache, retry_after};
use crate::support::retry::{Attempt, Backoff, RetryError, retry};

/// A Graph client sharing a process's token cache.
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    resource: Resource,
    tokens: Arc<TokenCache>,
}

/// Retries of a Graph request (throttling, 503).
const BACKOFF: Backoff = Backoff {
    max_attempts: 5,
    ..Backoff::API
};

impl GraphClient {
    /// A client for Graph at `base`, with tokens (and the HTTP client) of
    /// `tokens`.
    pub fn new(base: &str, tokens: Arc<TokenCache>) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        Self {
            http: tokens.http().clone(),
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

    /// GET a Graph path; retries 429/503 as `Retry-After` asks.
    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        cancel: &CancellationToken,
    ) -> Result<Value, CloudError> {
        let url = format!("{}{path}", self.base);
        let got = retry(&BACKOFF, cancel, |_| async {
            let token = match self.tokens.token(&self.resource, cancel).await {
                Ok(t) => t,
                Err(e) => return Attempt::Fail(e),
            };
            let resp = match self
                .http
                .get(&url)
                .query(query)
                .bearer_auth(token.expose_secret())
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Attempt::Fail(CloudError::http(e)),
            };
            let status = resp.status().as_u16();
            if status == 429 || status == 503 {
                let after = retry_after(&resp);
                tracing::info!(
                    status,
                    ?after,
                    "Graph throttled; waiting as Retry-After asks"
                );
                let error = CloudError::Api {
                    status,
                    code: "throttled".into(),
                    hint: "",
                };
                return Attempt::Retry { error, after };
            }
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status == 401 {
                // The token may have been revoked early; the next call
                // fetches a new one.
                self.tokens.invalidate(&self.resource).await;
            }
            if !(200..300).contains(&status) {
                let hint = match status {
                    401 | 403 => {
                        "; grant the app AuditLog.Read.All (application) with admin consent"
                    }
                    _ => "",
                };
                return Attempt::Fail(CloudError::Api {
                    status,
                    code: body["error"]["code"]
                        .as_str()
                        .unwrap_or("unknown")
                        .to_owned(),
                    hint,
                });
            }
            Attempt::Done(body)
        })
        .await;
        match got {
            Ok(v) => Ok(v),
            Err(RetryError::Cancelled) => Err(CloudError::Cancelled),
            Err(RetryError::Exhausted { attempts, .. }) => Err(CloudError::Throttled(attempts)),
            Err(RetryError::Failed(e)) => Err(e),
        }
    }

    /// Sign-ins of `upn` since `since`, newest first; narrowed to one
    /// correlation id when given.
    pub async fn sign_ins(
        &self,
        upn: &str,
        since: DateTime<Utc>,
        correlation_id: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Value>, CloudError> {
        let mut filter = format!(
            "userPrincipalName eq '{}' and createdDateTime ge {}",
            upn.replace('\'', "''"),
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        if let Some(c) = correlation_id {
            filter.push_str(&format!(
                " and correlationId eq '{}'",
                c.replace('\'', "''")
            ));
        }
        let q = [("$filter", filter), ("$top", "20".to_owned())];
        let body = self.get("/v1.0/auditLogs/signIns", &q, cancel).await?;
        Ok(body["value"].as_array().cloned().unwrap_or_default())
    }
}
