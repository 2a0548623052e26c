//! OAuth2 client-credentials tokens, one cache per resource: Graph, Azure
//! Resource Manager and Log Analytics each need their own scope, and a
//! token is reused until shortly before it expires. The app proves itself
//! with a client secret or a certificate (a signed JWT client assertion,
//! RS256 or PS256, carrying the certificate's `x5t#S256` thumbprint:
//! <https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials>).

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CloudError, retry_after};
use crate::support::retry::{Attempt, Backoff, RetryError, retry};

/// An app registration's client credentials against an authority.
#[derive(Clone)]
pub struct AppCredentials {
    /// Sign-in authority (`https://login.microsoftonline.com`).
    pub authority: String,
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Its client secret (unused when `certificate` is given).
    pub client_secret: SecretString,
    /// Its certificate and private key: a JWT client assertion instead of
    /// the secret.
    pub certificate: Option<ClientCertificate>,
}

/// The JWT client assertion's signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 (what Microsoft's page recommends).
    Ps256,
}

/// An app certificate: its RSA private key and its DER certificate.
#[derive(Clone)]
pub struct ClientCertificate {
    key: std::sync::Arc<jsonwebtoken::EncodingKey>,
    cert_der: Vec<u8>,
    alg: AssertionAlg,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.thumbprint())
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl ClientCertificate {
    /// From PEM text holding the certificate and its RSA private key
    /// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), as
    /// `openssl req -x509 -newkey rsa:2048` writes them. Errors never quote
    /// the key.
    pub fn from_pem(pem_text: &SecretString, alg: AssertionAlg) -> Result<Self, String> {
        let blocks = pem::parse_many(pem_text.expose_secret().as_bytes())
            .map_err(|e| format!("not PEM ({e})"))?;
        let cert_der = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.contents().to_vec())
            .ok_or(
                "no CERTIFICATE block: the file must hold the certificate and its private key",
            )?;
        let key_block = blocks
            .iter()
            .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
            .ok_or(
                "no PRIVATE KEY block: the file must hold the certificate and its RSA private key",
            )?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem::encode(key_block).as_bytes())
            .map_err(|_| "the private key is not an RSA key".to_owned())?;
        Ok(Self {
            key: std::sync::Arc::new(key),
            cert_der,
            alg,
        })
    }

    /// The certificate's SHA-256 thumbprint, base64url (`x5t#S256`).
    pub fn thumbprint(&self) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(&self.cert_der))
    }

    /// A client assertion for `client_id` at the token endpoint `aud`,
    /// valid for ten minutes.
    pub fn assertion(&self, client_id: &str, aud: &str) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(match self.alg {
            AssertionAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
            AssertionAlg::Ps256 => jsonwebtoken::Algorithm::PS256,
        });
        header.x5t_s256 = Some(self.thumbprint());
        let claims = serde_json::json!({
            "aud": aud,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + 600,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("the client assertion could not be signed ({e})"))
    }
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("authority", &self.authority)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("certificate", &self.certificate)
            .finish()
    }
}

/// An API a token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Microsoft Graph at this base URL (the rehearsal tenant's, or
    /// `https://graph.microsoft.com`).
    Graph(String),
    /// Azure Resource Manager (Alerts Management).
    ResourceManager,
    /// Log Analytics query API.
    LogAnalytics,
}

impl Resource {
    /// The client-credentials scope: `<resource>/.default`.
    pub fn scope(&self) -> String {
        match self {
            Self::Graph(base) => format!("{}/.default", base.trim_end_matches('/')),
            Self::ResourceManager => "https://management.azure.com/.default".into(),
            Self::LogAnalytics => "https://api.loganalytics.io/.default".into(),
        }
    }
}

/// Tokens of one app registration, cached per resource until expiry.
pub struct TokenCache {
    http: reqwest::Client,
    creds: AppCredentials,
    tokens: tokio::sync::Mutex<HashMap<Resource, (SecretString, Instant)>>,
}

/// A token is renewed this long before the authority says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

impl TokenCache {
    /// A cache for `creds`.
    pub fn new(creds: AppCredentials) -> Result<Self, CloudError> {
        Ok(Self {
            http: crate::support::http::client().map_err(CloudError::http)?,
            creds,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The credentials' authority base, without a trailing `/`.
    fn authority(&self) -> &str {
        self.creds.authority.trim_end_matches('/')
    }

    /// The HTTP client, for the API clients that use these tokens (one
    /// client, one connection pool, per app registration).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A token for `resource`: cached, or fetched now (retrying throttling
    /// and outages, never a refusal).
    pub async fn token(
        &self,
        resource: &Resource,
        cancel: &CancellationToken,
    ) -> Result<SecretString, CloudError> {
        let mut cached = self.tokens.lock().await;
        if let Some((t, exp)) = cached.get(resource)
            && *exp > Instant::now()
        {
            return Ok(t.clone());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority(),
            self.creds.tenant_id
        );
        let scope = resource.scope();
        let got = retry(&Backoff::API, cancel, |_| async {
            // A fresh assertion per attempt (each has its own jti).
            let assertion = match &self.creds.certificate {
                Some(c) => match c.assertion(&self.creds.client_id, &url) {
                    Ok(a) => Some(SecretString::from(a)),
                    Err(why) => return Attempt::Fail(CloudError::Assertion(why)),
                },
                None => None,
            };
            let mut form = vec![
                ("grant_type", "client_credentials"),
                ("client_id", self.creds.client_id.as_str()),
                ("scope", scope.as_str()),
            ];
            match &assertion {
                Some(a) => form.extend([
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", a.expose_secret()),
                ]),
                None => form.push(("client_secret", self.creds.client_secret.expose_secret())),
            }
            let resp = match self.http.post(&url).form(&form).send().await {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Retry {
                        error: CloudError::http(e),
                        after: None,
                    };
                }
            };
            let status = resp.status().as_u16();
            let after = retry_after(&resp);
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let refused = CloudError::TokenRefused {
                status,
                code: body["error"].as_str().unwrap_or("unknown").to_owned(),
            };
            match (status, body["access_token"].as_str()) {
                (200, Some(tok)) => {
                    let ttl = body["expires_in"].as_u64().unwrap_or(300);
                    Attempt::Done((SecretString::from(tok.to_owned()), ttl))
                }
                (200, None) => Attempt::Fail(CloudError::TokenRefused {
                    status,
                    code: "no access_token in the answer".into(),
                }),
                (429 | 500..=599, _) => Attempt::Retry {
                    error: refused,
                    after,
                },
                _ => Attempt::Fail(refused),
            }
        })
        .await;
        let (token, ttl) = match got {
            Ok(v) => v,
            Err(RetryError::Cancelled) => return Err(CloudError::Cancelled),
            Err(RetryError::Exhausted { last, .. } | RetryError::Failed(last)) => return Err(last),
        };
        // The server's `expires_in` is bounded before any arithmetic: a
        // token is never kept for more than a day.
        let life = Duration::from_secs(ttl.min(86_400))
            .saturating_sub(EXPIRY_MARGIN)
            .max(Duration::from_secs(30));
        cached.insert(resource.clone(), (token.clone(), Instant::now() + life));
        Ok(token)
    }

    /// Forgets the token of `resource` (after a 401: it may have been
    /// revoked early).
    pub(crate) async fn invalidate(&self, resource: &Resource) {
        self.tokens.lock().await.remove(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_per_resource() {
        assert_eq!(
            Resource::Graph("https://graph.microsoft.com/".into()).scope(),
            "https://graph.microsoft.com/.default"
        );
        assert_eq!(
            Resource::ResourceManager.scope(),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            Resource::LogAnalytics.scope(),
            "https://api.loganalytics.io/.default"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = AppCredentials {
            authority: "https://login.rehearsal.localhost".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: SecretString::from("s3cr3t-value"),
            certificate: None,
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
