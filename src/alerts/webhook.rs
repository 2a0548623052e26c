//! The built-in webhook receiver: Azure Monitor common-alert-schema posts
//! behind a secret path token (`POST /webhook/{token}`) or, for Azure
//! Monitor's **secure webhook**, an Entra bearer token (`POST /webhook`):
//! its RS256 signature checked against the authority's JWKS, its issuer,
//! audience, expiry and `ActionGroupsSecureWebhook` role validated
//! (<https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/action-groups#secure-webhook>).
//! Bodies are limited and answered at once.
//!
//! One receiver serves a whole process (the daemon, or one `run`): runs
//! [`attach`](WebhookReceiver::attach) to it for as long as they wait for
//! alerts. Each delivery is routed to the runs whose account it names; one
//! that names no waiting run's account goes to every waiting run (each keeps
//! it as "ignored" evidence with the reason) and to the receiver's own
//! unrouted list, and is logged: a delivery is never silently dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::correlate::{names_account, parse_common_alert};
use super::{AlertCheck, AlertObservation, AlertTarget, Correlator, ReceivedAlert, SearchConfirm};

/// Most alerts held at once in the inboxes of waiting runs; past it, posts
/// get 429, so a flood cannot exhaust the drill host's memory.
const MAX_HELD: usize = 1000;
/// Most unrouted deliveries kept (the oldest go first, each one logged
/// when it arrived): a long-lived receiver never fills up with them.
const MAX_UNROUTED: usize = 1000;

/// What one attached run has received.
#[derive(Default)]
struct Inbox {
    alerts: Mutex<Vec<ReceivedAlert>>,
    notify: Notify,
}

impl Inbox {
    fn from(&self, cursor: usize) -> Vec<ReceivedAlert> {
        lock(&self.alerts)
            .get(cursor..)
            .map(<[ReceivedAlert]>::to_vec)
            .unwrap_or_default()
    }
}

struct Attached {
    id: u64,
    upn: String,
    object_id: Option<String>,
    inbox: Arc<Inbox>,
}

#[derive(Default)]
struct Routes {
    next_seq: u64,
    next_run: u64,
    runs: Vec<Attached>,
    unrouted: std::collections::VecDeque<ReceivedAlert>,
}

impl Routes {
    /// Alerts held for waiting runs (the unrouted list is bounded apart).
    fn held(&self) -> usize {
        self.runs
            .iter()
            .map(|r| lock(&r.inbox.alerts).len())
            .sum::<usize>()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Shared {
    token: SecretString,
    routes: Mutex<Routes>,
    /// The secure webhook's trusted token issuers (the host's Entra
    /// tenant; a rehearsal's tenant while its run lasts).
    secure: Mutex<Vec<(u64, Arc<Secure>)>>,
    next_trust: std::sync::atomic::AtomicU64,
    http: reqwest::Client,
}

/// How a secure webhook's bearer token is checked.
#[derive(Debug, Clone)]
pub struct SecureWebhook {
    /// The authority's signing keys (`{authority}/{tenant}/discovery/v2.0/keys`).
    pub jwks_url: String,
    /// Accepted issuers (`{authority}/{tenant}/v2.0`, and the v1
    /// `https://sts.windows.net/{tenant}/`).
    pub issuers: Vec<String>,
    /// Accepted audiences: the app's Application ID URI and/or its app id.
    pub audiences: Vec<String>,
    /// The app role Azure Monitor's service principal holds.
    pub role: String,
}

/// The role an action group's secure webhook token carries.
pub const SECURE_WEBHOOK_ROLE: &str = "ActionGroupsSecureWebhook";

struct Secure {
    cfg: SecureWebhook,
    http: reqwest::Client,
    /// The signing keys and when they were fetched.
    keys: tokio::sync::Mutex<(jsonwebtoken::jwk::JwkSet, Option<tokio::time::Instant>)>,
}

/// Keys are refetched for an unknown key id at most this often (a token
/// with a made-up `kid` cannot make the receiver hammer the authority).
const JWKS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

impl Secure {
    /// The key `kid`, fetching the key set when it is unknown.
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::DecodingKey, String> {
        let mut keys = self.keys.lock().await;
        let stale = keys.1.is_none_or(|at| at.elapsed() >= JWKS_REFRESH);
        if keys.0.find(kid).is_none() && stale {
            // The attempt counts, failed or not: a flood of made-up key
            // ids never turns into a flood of fetches.
            keys.1 = Some(tokio::time::Instant::now());
            let set = self
                .http
                .get(&self.cfg.jwks_url)
                .send()
                .await
                .map_err(|e| format!("the signing keys could not be fetched: {}", e.without_url()))?
                .json::<jsonwebtoken::jwk::JwkSet>()
                .await
                .map_err(|e| format!("the signing keys are not a JWK set: {}", e.without_url()))?;
            keys.0 = set;
        }
        let jwk = keys
            .0
            .find(kid)
            .ok_or("the token's signing key is not the authority's")?;
        jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable signing key: {e}"))
    }

    /// Checks a bearer token: signature, issuer, audience, times, role.
    async fn check(&self, token: &str) -> Result<(), (StatusCode, String)> {
        let unauthorized = |m: String| (StatusCode::UNAUTHORIZED, m);
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("not a JWT".into()))?;
        if header.alg != jsonwebtoken::Algorithm::RS256 {
            return Err(unauthorized(format!(
                "algorithm {:?} is not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await.map_err(unauthorized)?;
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&self.cfg.audiences);
        v.set_issuer(&self.cfg.issuers);
        v.set_required_spec_claims(&["exp", "aud", "iss"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|e| unauthorized(format!("token refused: {e}")))?;
        let has_role = data.claims["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(self.cfg.role.as_str())));
        if !has_role {
            return Err((
                StatusCode::FORBIDDEN,
                format!("the token lacks the {} role", self.cfg.role),
            ));
        }
        Ok(())
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "webhook receiver cannot listen on {addr}: {reason}; change [webhook] listen in glassdrill.toml"
)]
pub struct ReceiverError {
    addr: SocketAddr,
    reason: String,
}

/// The built-in webhook receiver.
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn receive(
    State(st): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !crate::secret::constant_time_eq(st.token.expose_secret().as_bytes(), token.as_bytes()) {
        return (StatusCode::FORBIDDEN, "wrong token\n");
    }
    accept(&st, body)
}

/// `POST /webhook` with an Entra bearer token (secure webhook).
async fn receive_secure(
    State(st): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let trusted: Vec<Arc<Secure>> = lock(&st.secure).iter().map(|(_, s)| s.clone()).collect();
    if trusted.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            "secure webhook not configured\n".into(),
        );
    }
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return (StatusCode::UNAUTHORIZED, "no bearer token\n".into());
    };
    // The trusted issuer the token names (its claims read unverified, only
    // to pick the keys that verify it).
    let token = token.trim();
    let iss = unverified_issuer(token).unwrap_or_default();
    let Some(secure) = trusted.iter().find(|s| s.cfg.issuers.contains(&iss)) else {
        return (
            StatusCode::UNAUTHORIZED,
            "token refused: untrusted issuer\n".into(),
        );
    };
    if let Err((status, why)) = secure.check(token).await {
        tracing::warn!(%status, reason = %why, "secure webhook post refused");
        return (status, format!("{why}\n"));
    }
    let (status, text) = accept(&st, body);
    (status, text.to_owned())
}

/// The `iss` claim of a JWT, read without verifying it.
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["iss"]
        .as_str()
        .map(str::to_owned)
}

/// Trust in a secure webhook issuer, withdrawn when dropped.
pub struct TrustGuard {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for TrustGuard {
    fn drop(&mut self) {
        lock(&self.shared.secure).retain(|(id, _)| *id != self.id);
    }
}

/// A delivery that passed authentication: parsed and routed.
fn accept(st: &Shared, body: Bytes) -> (StatusCode, &'static str) {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON\n");
    };
    let Ok(alert) = parse_common_alert(&v) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "not an Azure Monitor common alert schema payload\n",
        );
    };
    let mut routes = lock(&st.routes);
    if routes.held() >= MAX_HELD {
        return (StatusCode::TOO_MANY_REQUESTS, "receiver is full\n");
    }
    routes.next_seq += 1;
    let received = ReceivedAlert {
        seq: routes.next_seq,
        received_at: crate::support::time::now(),
        arrived: tokio::time::Instant::now(),
        raw: body,
        alert,
        ingested: None,
    };
    let names = |r: &Attached| {
        received
            .alert
            .accounts
            .iter()
            .any(|a| names_account(a, &r.upn, r.object_id.as_deref()))
    };
    let named = routes.runs.iter().any(names);
    if !named {
        tracing::warn!(
            alert_id = %received.alert.alert_id,
            rule = %received.alert.rule,
            accounts = ?received.alert.accounts,
            waiting_runs = routes.runs.len(),
            "alert delivery names no account a run is waiting for; kept as unrouted"
        );
    }
    for r in routes.runs.iter().filter(|r| !named || names(r)) {
        lock(&r.inbox.alerts).push(received.clone());
        r.inbox.notify.notify_waiters();
    }
    if !named {
        if routes.unrouted.len() >= MAX_UNROUTED {
            routes.unrouted.pop_front();
        }
        routes.unrouted.push_back(received);
    }
    (StatusCode::ACCEPTED, "accepted\n")
}

impl WebhookReceiver {
    /// Binds `listen` first, then serves `POST /webhook/{token}`.
    pub async fn start(
        listen: SocketAddr,
        token: SecretString,
        max_body: usize,
    ) -> Result<Self, ReceiverError> {
        Self::start_with(listen, token, max_body, None).await
    }

    /// The same, also serving `POST /webhook` for Azure Monitor's secure
    /// webhook when `secure` is given.
    pub async fn start_with(
        listen: SocketAddr,
        token: SecretString,
        max_body: usize,
        secure: Option<SecureWebhook>,
    ) -> Result<Self, ReceiverError> {
        let err = |e: std::io::Error| ReceiverError {
            addr: listen,
            reason: e.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(err)?;
        let addr = listener.local_addr().map_err(err)?;
        let http = crate::support::http::client().map_err(|e| ReceiverError {
            addr: listen,
            reason: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            token,
            routes: Mutex::new(Routes::default()),
            secure: Mutex::new(Vec::new()),
            next_trust: std::sync::atomic::AtomicU64::new(1),
            http,
        });
        if let Some(cfg) = secure {
            // The host's own issuer, trusted for the receiver's life.
            Self::add_trust(&shared, cfg);
        }
        let app = Router::new()
            .route("/webhook/{token}", post(receive))
            .route("/webhook", post(receive_secure))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(shared.clone());
        let cancel = CancellationToken::new();
        let task = crate::support::http::serve(listener, app, cancel.clone());
        Ok(Self {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The full URL including the secret token: give it to the alert
    /// pipeline, never to a log.
    pub fn url_with_token(&self) -> SecretString {
        SecretString::from(format!(
            "http://{}/webhook/{}",
            self.addr,
            self.shared.token.expose_secret()
        ))
    }

    fn add_trust(shared: &Shared, cfg: SecureWebhook) -> u64 {
        let id = shared
            .next_trust
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let secure = Arc::new(Secure {
            cfg,
            http: shared.http.clone(),
            keys: tokio::sync::Mutex::new((jsonwebtoken::jwk::JwkSet { keys: Vec::new() }, None)),
        });
        lock(&shared.secure).push((id, secure));
        id
    }

    /// Trusts secure-webhook tokens of another issuer until the guard is
    /// dropped (a rehearsal's tenant, for its run).
    pub fn trust(&self, cfg: SecureWebhook) -> TrustGuard {
        TrustGuard {
            id: Self::add_trust(&self.shared, cfg),
            shared: self.shared.clone(),
        }
    }

    /// The secure webhook's URL (`POST` with a bearer token).
    pub fn secure_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// The URL with the token redacted, for display.
    pub fn url_redacted(&self) -> String {
        format!("http://{}/webhook/[redacted]", self.addr)
    }

    /// Attaches a run waiting for alerts about the account `upn` (object
    /// id `object_id`): deliveries naming that account, and those naming
    /// none, reach the returned check from now on. Detaches when the check
    /// is dropped.
    pub fn attach(&self, upn: &str, object_id: Option<&str>, rule: &str) -> WebhookCheck {
        let inbox = Arc::new(Inbox::default());
        let mut routes = lock(&self.shared.routes);
        routes.next_run += 1;
        let id = routes.next_run;
        routes.runs.push(Attached {
            id,
            upn: upn.to_owned(),
            object_id: object_id.map(str::to_owned),
            inbox: inbox.clone(),
        });
        WebhookCheck {
            id,
            rule: rule.to_owned(),
            inbox,
            shared: self.shared.clone(),
            confirm: None,
        }
    }

    /// Deliveries that reached no waiting run's account (kept and logged).
    pub fn unrouted(&self) -> Vec<ReceivedAlert> {
        lock(&self.shared.routes).unrouted.iter().cloned().collect()
    }

    /// Stops serving.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The `webhook` alert check of one expected alert of one run: every
/// delivery naming the run's account reaches each of the run's checks,
/// and each counts only its own rule's alert.
pub struct WebhookCheck {
    id: u64,
    rule: String,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    confirm: Option<Box<dyn SearchConfirm>>,
}

impl WebhookCheck {
    /// Confirms alerts that name no account from the rule's rows.
    pub fn with_confirm(mut self, confirm: Box<dyn SearchConfirm>) -> Self {
        self.confirm = Some(confirm);
        self
    }
}

impl Drop for WebhookCheck {
    fn drop(&mut self) {
        lock(&self.shared.routes).runs.retain(|r| r.id != self.id);
    }
}

#[async_trait::async_trait]
impl AlertCheck for WebhookCheck {
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation {
        let mut obs = AlertObservation::default();
        let mut correlator = Correlator::new(&self.rule, target, self.confirm.as_deref());
        let mut cursor = 0;
        loop {
            // Register for wake-ups before looking, so no post is missed.
            let notified = self.inbox.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let fresh = self.inbox.from(cursor);
            cursor += fresh.len();
            for a in fresh {
                if correlator.consider(&mut obs, a, true, cancel).await {
                    return obs;
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(target.late_until.max(target.deadline)) => return obs,
                () = cancel.cancelled() => {
                    // Past the deadline the finding is already made (no
                    // alert in time): a stop during the late grace does
                    // not turn it into an interruption.
                    obs.cancelled = tokio::time::Instant::now() <= target.deadline;
                    return obs;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_check_gives_up_at_its_deadline_and_wakes_on_a_stop() {
        let r = WebhookReceiver::start("127.0.0.1:0".parse().unwrap(), "t".into(), 4096)
            .await
            .unwrap();
        let check = r.attach("bg1@contoso.onmicrosoft.com", None, "Break-glass sign-in");
        let t0 = tokio::time::Instant::now();
        let target = AlertTarget {
            upn: "bg1@contoso.onmicrosoft.com".into(),
            object_id: None,
            signin_at: chrono::Utc::now(),
            signin_id: None,
            correlation_id: None,
            deadline: t0 + Duration::from_secs(300),
            late_until: t0 + Duration::from_secs(300),
        };
        let obs = check.observe(&target, &CancellationToken::new()).await;
        assert!(obs.matched.is_none() && !obs.cancelled && obs.error.is_none());
        assert_eq!(t0.elapsed(), Duration::from_secs(300));

        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(7)).await;
            s.cancel();
        });
        let t1 = tokio::time::Instant::now();
        let target = AlertTarget {
            deadline: t1 + Duration::from_secs(300),
            late_until: t1 + Duration::from_secs(300),
            ..target
        };
        let obs = check.observe(&target, &stop).await;
        assert!(obs.cancelled);
        assert_eq!(t1.elapsed(), Duration::from_secs(7));
        drop(check);
        assert!(
            lock(&r.shared.routes).runs.is_empty(),
            "a dropped check detaches"
        );
        r.shutdown().await;
    }
}
