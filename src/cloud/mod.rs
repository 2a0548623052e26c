//! Microsoft cloud APIs: OAuth2 client-credential tokens cached per
//! resource ([`token`]) and the Graph sign-in log ([`graph`]). Every
//! request goes through [`crate::support::retry`]; a secret or a token
//! never reaches an error message.

pub(crate) mod api;
pub mod graph;
pub mod token;

pub use graph::GraphClient;
pub use token::{AppCredentials, Resource, TokenCache};

/// Token and API failures. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// Transport failure (connection refused, timeout, TLS).
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
    /// The API answered an error.
    #[error("{api} answered HTTP {status} ({code}){hint}")]
    Api {
        /// Which API.
        api: &'static str,
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// Still throttled or unavailable after retries.
    #[error("{api} kept throttling or failing after {attempts} attempts (last: {last})")]
    Throttled {
        /// Which API.
        api: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// The client certificate could not sign the client assertion.
    #[error("the client assertion could not be made ({0}); check [entra] client_certificate")]
    Assertion(String),
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl CloudError {
    /// A transport error, without the URL (which may carry a query).
    pub(crate) fn http(e: reqwest::Error) -> Self {
        Self::Http(e.without_url().to_string())
    }
}

/// Reads a response's `Retry-After`, if any.
pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<std::time::Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::support::retry::parse_retry_after(v, std::time::SystemTime::now()))
}
