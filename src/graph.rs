//! OAuth2 client credentials and the Graph sign-in log, for the `confirm`
//! stage (the sign-in's own log record: id, correlationId,
//! createdDateTime).
//!
//! Works the same against Entra and the rehearsal tenant: only the
//! authority and Graph base URLs differ. Honours `Retry-After` on 429/503
//! with a bounded number of attempts. The client secret and the access
//! token live in `SecretString`s and never reach an error message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Resolves `localhost` and `*.localhost` to loopback itself (RFC 6761),
/// as Chromium does, instead of trusting the system resolver to; every
/// other name goes to the system resolver.
#[derive(Debug, Clone, Copy)]
struct LoopbackAware;

impl Resolve for LoopbackAware {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                let addrs: Addrs =
                    Box::new(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter());
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client for cloud APIs: `*.localhost` resolves to loopback, no
/// proxy, bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, GraphError> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(LoopbackAware))
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("glassdrill/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| GraphError::Http(e.to_string()))
}

/// Graph and token failures. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Transport failure.
    #[error("HTTP: {0}")]
    Http(String),
    /// The token endpoint refused the app.
    #[error(
        "token endpoint refused the app registration (HTTP {status}: {code}); check client_id and client_secret in glassdrill.toml"
    )]
    TokenRefused {
        /// HTTP status.
        status: u16,
        /// OAuth error code.
        code: String,
    },
    /// Graph answered an error.
    #[error("Graph answered HTTP {status} ({code}){hint}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Graph error code.
        code: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// Still throttled after retries.
    #[error("Graph kept throttling after {0} attempts")]
    Throttled(u32),
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A Graph client authenticated with client credentials.
pub struct GraphClient {
    http: reqwest::Client,
    authority: String,
    graph: String,
    tenant_id: String,
    client_id: String,
    secret: SecretString,
    token: tokio::sync::Mutex<Option<(SecretString, tokio::time::Instant)>>,
}

/// Attempts per request when throttled.
const MAX_ATTEMPTS: u32 = 5;
/// Longest `Retry-After` honoured; longer waits are capped.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl GraphClient {
    /// A client for `graph` with tokens from `authority`/`tenant_id`.
    pub fn new(
        authority: &str,
        graph: &str,
        tenant_id: &str,
        client_id: &str,
        secret: SecretString,
    ) -> Result<Self, GraphError> {
        Ok(Self {
            http: http_client()?,
            authority: authority.trim_end_matches('/').to_owned(),
            graph: graph.trim_end_matches('/').to_owned(),
            tenant_id: tenant_id.to_owned(),
            client_id: client_id.to_owned(),
            secret,
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn access_token(&self) -> Result<SecretString, GraphError> {
        let mut cached = self.token.lock().await;
        if let Some((t, exp)) = cached.as_ref()
            && *exp > tokio::time::Instant::now()
        {
            return Ok(t.clone());
        }
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant_id);
        let scope = format!("{}/.default", self.graph);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| GraphError::Http(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(GraphError::TokenRefused {
                status,
                code: body["error"].as_str().unwrap_or("unknown").to_owned(),
            });
        }
        let Some(tok) = body["access_token"].as_str() else {
            return Err(GraphError::TokenRefused {
                status,
                code: "no access_token in the answer".into(),
            });
        };
        let ttl = body["expires_in"]
            .as_u64()
            .unwrap_or(300)
            .saturating_sub(60)
            .max(30);
        let t = SecretString::from(tok.to_owned());
        *cached = Some((
            t.clone(),
            tokio::time::Instant::now() + Duration::from_secs(ttl),
        ));
        Ok(t)
    }

    /// Fetches a token now: proves the tenant is reachable and the app
    /// credentials work before the account is touched (a sign-in that
    /// cannot be confirmed afterwards is a wasted use of a break-glass
    /// account).
    pub async fn check(&self) -> Result<(), GraphError> {
        self.access_token().await.map(|_| ())
    }

    /// GET a Graph path with retries on 429/503 honouring `Retry-After`.
    async fn get(
        &self,
        path_and_query: &[(&str, String)],
        path: &str,
        cancel: &CancellationToken,
    ) -> Result<Value, GraphError> {
        let url = format!("{}{}", self.graph, path);
        for attempt in 1..=MAX_ATTEMPTS {
            let token = self.access_token().await?;
            let resp = self
                .http
                .get(&url)
                .query(path_and_query)
                .bearer_auth(token.expose_secret())
                .send()
                .await
                .map_err(|e| GraphError::Http(e.without_url().to_string()))?;
            let status = resp.status().as_u16();
            if status == 429 || status == 503 {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(2u64.pow(attempt)), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                tracing::info!(
                    status,
                    ?wait,
                    attempt,
                    "Graph throttled; waiting as Retry-After asks"
                );
                if attempt == MAX_ATTEMPTS {
                    return Err(GraphError::Throttled(attempt));
                }
                tokio::select! {
                    () = cancel.cancelled() => return Err(GraphError::Cancelled),
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status == 401 {
                // The token may have been revoked early; fetch a new one once.
                *self.token.lock().await = None;
            }
            if !(200..300).contains(&status) {
                let hint = match status {
                    401 | 403 => {
                        "; grant the app AuditLog.Read.All (application) with admin consent"
                    }
                    _ => "",
                };
                return Err(GraphError::Api {
                    status,
                    code: body["error"]["code"]
                        .as_str()
                        .unwrap_or("unknown")
                        .to_owned(),
                    hint,
                });
            }
            return Ok(body);
        }
        Err(GraphError::Throttled(MAX_ATTEMPTS))
    }

    /// Sign-ins of `upn` since `since`, newest first; narrowed to one
    /// correlation id when given.
    pub async fn sign_ins(
        &self,
        upn: &str,
        since: DateTime<Utc>,
        correlation_id: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Value>, GraphError> {
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
        let body = self.get(&q, "/v1.0/auditLogs/signIns", cancel).await?;
        Ok(body["value"].as_array().cloned().unwrap_or_default())
    }
}
