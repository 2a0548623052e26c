//! The rehearsal tenant: a loopback stand-in for Entra ID and its alert
//! pipeline, so a whole drill can run with no account, no key and no
//! network.
//!
//! One HTTP server on `127.0.0.1` serves several `*.localhost` hosts
//! (Chromium resolves them to loopback by itself and treats them as secure
//! contexts and valid WebAuthn RP ids; a public name is never used):
//!
//! | host | stands in for |
//! | --- | --- |
//! | `login.rehearsal.localhost` | `login.microsoftonline.com`: sign-in pages, token endpoint, sign-out |
//! | `ceremony.rehearsal.localhost` | `login.microsoft.com`: the WebAuthn ceremony origin and RP id |
//! | `graph.rehearsal.localhost` | Graph `/v1.0/auditLogs/signIns` |
//! | `myaccount.rehearsal.localhost` | the landing page after sign-in |
//!
//! Assertions are verified for real ([`crate::webauthn`]). Every sign-in attempt
//! is logged in Graph's shape and, after a configurable delay, an alert rule
//! posts an Azure Monitor common-alert-schema webhook. [`Fault`]s switch on
//! the failures a drill must catch.

pub mod console;
pub mod pages;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::alerts::same_upn;
use crate::secret::{constant_time_eq, random_bytes, random_token};
use crate::webauthn::{self, Assertion, Expected, StoredCredential};

/// The domain under which every rehearsal host lives.
pub const DOMAIN: &str = "rehearsal.localhost";
/// The rehearsal tenant's directory id.
pub const TENANT_ID: &str = "7e5e0a1d-91c2-4d4b-9c5e-0000000000d1";

/// A failure the tenant can be told to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The account's credential was revoked: the assertion is refused.
    CredentialRevoked,
    /// The account is disabled: refused at the username.
    AccountDisabled,
    /// Conditional Access blocks the sign-in after the key.
    CaBlock,
    /// The alert rule never fires.
    AlertNever,
    /// The alert fires after `alert_late_delay`.
    AlertLate,
    /// The alert names another account.
    AlertOtherAccount,
    /// The alert's `firedDateTime` is before the sign-in (a stale alert).
    AlertBeforeSignin,
    /// The sign-in options page changed: the security-key link's id is new.
    UiDrift,
    /// The first Graph request gets 429 with `Retry-After: 1`.
    ApiThrottle,
    /// Sign-in records show up in Graph only after `log_delay`.
    LogDelay,
}

impl Fault {
    /// Every fault with its command-line name.
    pub const ALL: [Fault; 10] = [
        Fault::CredentialRevoked,
        Fault::AccountDisabled,
        Fault::CaBlock,
        Fault::AlertNever,
        Fault::AlertLate,
        Fault::AlertOtherAccount,
        Fault::AlertBeforeSignin,
        Fault::UiDrift,
        Fault::ApiThrottle,
        Fault::LogDelay,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Fault::CredentialRevoked => "credential-revoked",
            Fault::AccountDisabled => "account-disabled",
            Fault::CaBlock => "ca-block",
            Fault::AlertNever => "alert-never",
            Fault::AlertLate => "alert-late",
            Fault::AlertOtherAccount => "alert-other-account",
            Fault::AlertBeforeSignin => "alert-before-signin",
            Fault::UiDrift => "ui-drift",
            Fault::ApiThrottle => "api-throttle",
            Fault::LogDelay => "log-delay",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// The account the tenant knows.
#[derive(Debug, Clone)]
pub struct Account {
    /// UPN.
    pub upn: String,
    /// Display name.
    pub display_name: String,
    /// Object id.
    pub id: String,
    /// Its registered security key.
    pub credential: StoredCredential,
}

/// How to run the tenant.
#[derive(Debug, Clone)]
pub struct TenantOptions {
    /// The break-glass account.
    pub account: Account,
    /// App registration allowed to read sign-in logs.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// Faults switched on.
    pub faults: Vec<Fault>,
    /// Delay between a sign-in and its alert.
    pub alert_delay: Duration,
    /// Delay for [`Fault::AlertLate`].
    pub alert_late_delay: Duration,
    /// Delay for [`Fault::LogDelay`].
    pub log_delay: Duration,
    /// Where the alert rule posts (the action group's webhook).
    pub webhook_url: Option<String>,
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
}

/// The tenant's public URLs.
#[derive(Debug, Clone)]
pub struct TenantUrls {
    /// Sign-in authority, like `http://login.rehearsal.localhost:PORT`.
    pub authority: String,
    /// Ceremony origin.
    pub ceremony: String,
    /// Graph base URL.
    pub graph: String,
    /// Landing page.
    pub myaccount: String,
    /// RP id of the ceremony.
    pub rp_id: String,
}

impl TenantUrls {
    fn new(port: u16) -> Self {
        let h = |label: &str| format!("http://{label}.{DOMAIN}:{port}");
        Self {
            authority: h("login"),
            ceremony: h("ceremony"),
            graph: h("graph"),
            myaccount: h("myaccount"),
            rp_id: format!("ceremony.{DOMAIN}"),
        }
    }
}

/// A sign-in flow in progress (keyed by its flow token).
#[derive(Debug, Clone)]
struct FlowState {
    correlation_id: String,
    upn: Option<String>,
    challenge: Option<Vec<u8>>,
    signed_in: bool,
}

/// A logged sign-in and when it becomes visible in Graph.
#[derive(Debug, Clone)]
struct LoggedSignIn {
    record: Value,
    created: DateTime<Utc>,
    visible_at: tokio::time::Instant,
}

/// An alert the rule fired, kept for the `tenant` console.
#[derive(Debug, Clone)]
pub struct FiredAlert {
    /// Alert id.
    pub alert_id: String,
    /// The delivery result (HTTP status or error).
    pub delivery: String,
}

#[derive(Default)]
struct Inner {
    flows: HashMap<String, FlowState>,
    sessions: HashMap<String, String>,
    signins: Vec<LoggedSignIn>,
    tokens: HashMap<String, tokio::time::Instant>,
    sign_count: u32,
    throttled: bool,
    fired: Vec<FiredAlert>,
}

struct Shared {
    opts: TenantOptions,
    urls: TenantUrls,
    inner: Mutex<Inner>,
    http: reqwest::Client,
    cancel: CancellationToken,
}

impl Shared {
    fn has(&self, f: Fault) -> bool {
        self.opts.faults.contains(&f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running rehearsal tenant. Dropping it (or [`RehearsalTenant::shutdown`])
/// stops the server and pending alerts.
pub struct RehearsalTenant {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Why the tenant could not start.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// Binding failed.
    #[error("rehearsal tenant cannot listen on {addr}: {reason}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl RehearsalTenant {
    /// Binds the listener first, then spawns the server.
    pub async fn start(opts: TenantOptions) -> Result<Self, TenantError> {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| TenantError::Bind {
                addr: opts.listen,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| TenantError::Bind {
            addr: opts.listen,
            reason: e.to_string(),
        })?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TenantError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            urls: TenantUrls::new(addr.port()),
            opts,
            inner: Mutex::new(Inner::default()),
            http,
            cancel: cancel.clone(),
        });
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        });
        Ok(Self {
            shared,
            addr,
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tenant's URLs.
    pub fn urls(&self) -> &TenantUrls {
        &self.shared.urls
    }

    /// Alerts the rule has fired so far.
    pub fn fired(&self) -> Vec<FiredAlert> {
        self.shared.lock().fired.clone()
    }

    /// The sign-in log, newest last.
    pub fn signins(&self) -> Vec<Value> {
        self.shared
            .lock()
            .signins
            .iter()
            .map(|s| s.record.clone())
            .collect()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RehearsalTenant {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// Routes by `Host`: the path is prefixed with the host's first label
/// (`login`, `ceremony`, ...) before routing, so each host has its own
/// routes on one listener. Unknown hosts get 421.
async fn host_dispatch(mut req: Request, next: axum::middleware::Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(n, _)| n)
                .to_ascii_lowercase()
        });
    let label = host
        .as_deref()
        .and_then(|h| h.strip_suffix(&format!(".{DOMAIN}")))
        .map(str::to_owned);
    let Some(label) =
        label.filter(|l| ["login", "ceremony", "graph", "myaccount"].contains(&l.as_str()))
    else {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "unknown host: use the *.rehearsal.localhost URLs the tenant printed",
        )
            .into_response();
    };
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = format!("/{label}{pq}").parse::<Uri>() {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

fn router(shared: Arc<Shared>) -> Router {
    let inner = Router::new()
        .route("/login/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/login/{tenant}/login", post(login))
        .route("/login/{tenant}/fido/start", get(fido_start))
        .route("/login/{tenant}/passkey/start", get(fido_start))
        .route("/login/{tenant}/fido/verify", post(fido_verify))
        .route("/login/{tenant}/kmsi", post(kmsi))
        .route("/login/{tenant}/oauth2/v2.0/logout", get(logout))
        .route("/login/{tenant}/oauth2/v2.0/token", post(token))
        .route("/ceremony/{tenant}/fido/get", get(ceremony))
        .route("/graph/v1.0/auditLogs/signIns", get(graph_signins))
        .route("/myaccount/", get(landing))
        .with_state(shared);
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(host_dispatch))
}

#[derive(Deserialize)]
struct FlowQuery {
    #[serde(rename = "flowToken")]
    flow_token: Option<String>,
}

/// The page for a flow token that is unknown or used up.
fn expired() -> Response {
    error_page("", "AADSTS90100: The sign-in session expired. Start again.")
}

/// Refuses a sign-in attempt: logs it (every attempt reaches the sign-in
/// log and so the alert rule, as in Entra) and shows the error page.
fn refuse(s: &Arc<Shared>, corr: &str, code: i64, reason: &str, page: &str) -> Response {
    record_signin(s, corr, code, reason);
    error_page(corr, page)
}

fn error_page(corr: &str, msg: &str) -> Response {
    (StatusCode::OK, Html(pages::error(corr, msg))).into_response()
}

async fn authorize(State(s): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    if tenant != TENANT_ID {
        return error_page(
            "",
            "AADSTS90002: Tenant not found. Check the tenant id in the sign-in URL.",
        );
    }
    let token = random_token(24);
    let corr = uuid();
    s.lock().flows.insert(
        token.clone(),
        FlowState {
            correlation_id: corr.clone(),
            upn: None,
            challenge: None,
            signed_in: false,
        },
    );
    Html(pages::username(&tenant, &token, &corr, None)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(rename = "flowToken")]
    flow_token: String,
    loginfmt: String,
}

async fn login(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(flow) = s.lock().flows.get(&f.flow_token).cloned() else {
        return expired();
    };
    let corr = flow.correlation_id.clone();
    if !same_upn(&f.loginfmt, &s.opts.account.upn) {
        return Html(pages::username(
            &tenant,
            &f.flow_token,
            &corr,
            Some("This username may be incorrect. Make sure you typed it correctly."),
        ))
        .into_response();
    }
    if s.has(Fault::AccountDisabled) {
        record_signin(&s, &corr, 50057, "The user account is disabled.");
        return Html(pages::username(
            &tenant,
            &f.flow_token,
            &corr,
            Some("AADSTS50057: Your account has been disabled. Contact your administrator."),
        ))
        .into_response();
    }
    if let Some(fl) = s.lock().flows.get_mut(&f.flow_token) {
        fl.upn = Some(s.opts.account.upn.clone());
    }
    Html(pages::options(
        &tenant,
        &f.flow_token,
        &corr,
        &s.opts.account.upn,
        s.has(Fault::UiDrift),
    ))
    .into_response()
}

async fn fido_start(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(q): Query<FlowQuery>,
) -> Response {
    let token = q.flow_token.unwrap_or_default();
    let Some(flow) = s
        .lock()
        .flows
        .get(&token)
        .cloned()
        .filter(|f| f.upn.is_some())
    else {
        return expired();
    };
    let action = format!("{}/{tenant}/fido/get", s.urls.ceremony);
    Html(pages::fido(
        &action,
        &token,
        &flow.correlation_id,
        &s.opts.account.upn,
    ))
    .into_response()
}

async fn ceremony(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(q): Query<FlowQuery>,
) -> Response {
    let token = q.flow_token.unwrap_or_default();
    let challenge = random_bytes(32);
    let corr = {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.get_mut(&token).filter(|f| f.upn.is_some()) else {
            return expired();
        };
        flow.challenge = Some(challenge.clone());
        flow.correlation_id.clone()
    };
    let options =
        json!({ "challenge": B64.encode(&challenge), "rpId": s.urls.rp_id, "timeout": 60000 });
    let action = format!("{}/{tenant}/fido/verify", s.urls.authority);
    Html(pages::ceremony(&options, &action, &token, &corr)).into_response()
}

#[derive(Deserialize)]
struct VerifyForm {
    #[serde(rename = "flowToken")]
    flow_token: String,
    #[serde(rename = "credentialId", default)]
    credential_id: String,
    #[serde(rename = "authenticatorData", default)]
    authenticator_data: String,
    #[serde(rename = "clientDataJSON", default)]
    client_data_json: String,
    #[serde(default)]
    signature: String,
    #[serde(rename = "userHandle", default)]
    user_handle: String,
    #[serde(default)]
    error: String,
}

async fn fido_verify(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(f): Form<VerifyForm>,
) -> Response {
    // The challenge is single-use: taken out of the flow whatever happens.
    let (flow, challenge) = {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.get_mut(&f.flow_token) else {
            return expired();
        };
        let c = flow.challenge.take();
        (flow.clone(), c)
    };
    let corr = flow.correlation_id.clone();
    let Some(challenge) = challenge else {
        return error_page(
            &corr,
            "AADSTS135004: The security key request is no longer valid. Start again.",
        );
    };
    if !f.error.is_empty() {
        return refuse(
            &s,
            &corr,
            135011,
            "The security key ceremony did not complete.",
            &format!(
                "AADSTS135011: Your security key could not be used ({}).",
                f.error
            ),
        );
    }
    let decode = |v: &str| B64.decode(v.trim_end_matches('='));
    let (Ok(cid), Ok(ad), Ok(cd), Ok(sig)) = (
        decode(&f.credential_id),
        decode(&f.authenticator_data),
        decode(&f.client_data_json),
        decode(&f.signature),
    ) else {
        return refuse(
            &s,
            &corr,
            135011,
            "Malformed security key response.",
            "AADSTS135011: The security key response was malformed.",
        );
    };
    let uh = if f.user_handle.is_empty() {
        None
    } else {
        decode(&f.user_handle).ok()
    };
    if s.has(Fault::CredentialRevoked) {
        return refuse(
            &s,
            &corr,
            135010,
            "The security key has been revoked.",
            "AADSTS135010: The security key used to sign in has been revoked for this account.",
        );
    }
    let mut stored = s.opts.account.credential.clone();
    stored.sign_count = s.lock().sign_count;
    let origins = vec![s.urls.ceremony.clone()];
    let expected = Expected {
        rp_id: &s.urls.rp_id,
        origins: &origins,
        challenge: &challenge,
        require_user_verification: true,
    };
    let assertion = Assertion {
        credential_id: &cid,
        authenticator_data: &ad,
        client_data_json: &cd,
        signature: &sig,
        user_handle: uh.as_deref(),
    };
    match webauthn::verify_assertion(&expected, &stored, &assertion) {
        Ok(v) => {
            s.lock().sign_count = v.sign_count;
        }
        Err(e) => {
            return refuse(
                &s,
                &corr,
                135011,
                &format!("Security key verification failed: {e}"),
                &format!("AADSTS135011: The security key could not be verified ({e})."),
            );
        }
    }
    if s.has(Fault::CaBlock) {
        return refuse(
            &s,
            &corr,
            53003,
            "Access has been blocked by Conditional Access policies.",
            "AADSTS53003: Access has been blocked by Conditional Access policies.",
        );
    }
    record_signin(&s, &corr, 0, "");
    if let Some(fl) = s.lock().flows.get_mut(&f.flow_token) {
        fl.signed_in = true;
    }
    Html(pages::kmsi(&tenant, &f.flow_token, &corr)).into_response()
}

async fn kmsi(State(s): State<Arc<Shared>>, Form(f): Form<FlowQuery>) -> Response {
    let token = f.flow_token.unwrap_or_default();
    let session = random_token(24);
    {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.remove(&token).filter(|f| f.signed_in) else {
            return expired();
        };
        inner
            .sessions
            .insert(session.clone(), flow.upn.unwrap_or_default());
    }
    Redirect::to(&format!("{}/?session={session}", s.urls.myaccount)).into_response()
}

#[derive(Deserialize)]
struct LandingQuery {
    session: Option<String>,
}

async fn landing(State(s): State<Arc<Shared>>, Query(q): Query<LandingQuery>) -> Response {
    let upn = q.session.and_then(|t| s.lock().sessions.get(&t).cloned());
    Html(pages::landing(upn.as_deref())).into_response()
}

async fn logout(State(s): State<Arc<Shared>>) -> Response {
    // The drill's browser profile is thrown away; ending every session of
    // the rehearsal account is the tenant-side half of signing out.
    s.lock().sessions.clear();
    Html(pages::signed_out()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

async fn token(State(s): State<Arc<Shared>>, Form(f): Form<TokenForm>) -> Response {
    if f.grant_type != "client_credentials" {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003: only client_credentials is supported here."}))).into_response();
    }
    let ok_id = f.client_id == s.opts.client_id;
    let ok_secret = constant_time_eq(
        f.client_secret.as_bytes(),
        s.opts.client_secret.expose_secret().as_bytes(),
    );
    if !(ok_id && ok_secret) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))).into_response();
    }
    let tok = random_token(32);
    s.lock().tokens.insert(
        tok.clone(),
        tokio::time::Instant::now() + Duration::from_secs(3600),
    );
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})).into_response()
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The subset of OData `$filter` the sign-in log needs: clauses joined by
/// `and`, each `userPrincipalName eq '...'`, `correlationId eq '...'` or
/// `createdDateTime ge <ISO 8601>`.
fn parse_filter(f: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for clause in f.split(" and ") {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("Invalid filter clause: {clause}"));
        };
        let value = value.trim().trim_matches('\'').replace("''", "'");
        match (field, op) {
            ("userPrincipalName" | "correlationId", "eq") | ("createdDateTime", "ge") => {
                out.push((field.to_owned(), op.to_owned(), value));
            }
            _ => return Err(format!("Unsupported filter: {field} {op}")),
        }
    }
    Ok(out)
}

async fn graph_signins(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let now = tokio::time::Instant::now();
    {
        let mut inner = s.lock();
        let valid = bearer
            .as_ref()
            .and_then(|b| inner.tokens.get(b))
            .is_some_and(|exp| *exp > now);
        if !valid {
            return graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token is empty or invalid.",
            );
        }
        if s.has(Fault::ApiThrottle) && !inner.throttled {
            inner.throttled = true;
            let mut r = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
    }
    let filters = match q.get("$filter").map(|f| parse_filter(f)).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let top = q
        .get("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(50)
        .min(1000);
    let inner = s.lock();
    let mut rows: Vec<&LoggedSignIn> = inner
        .signins
        .iter()
        .filter(|l| l.visible_at <= now)
        .filter(|l| {
            filters
                .iter()
                .all(|(field, _, value)| match field.as_str() {
                    "userPrincipalName" => l.record["userPrincipalName"]
                        .as_str()
                        .is_some_and(|u| same_upn(u, value)),
                    "correlationId" => l.record["correlationId"].as_str() == Some(value.as_str()),
                    _ => DateTime::parse_from_rfc3339(value).is_ok_and(|t| l.created >= t),
                })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.created));
    let value: Vec<Value> = rows
        .into_iter()
        .take(top)
        .map(|l| l.record.clone())
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#auditLogs/signIns", s.urls.graph),
        "value": value
    }))
    .into_response()
}

/// Logs a sign-in attempt in Graph's `signIn` shape and schedules its alert.
fn record_signin(s: &Arc<Shared>, corr: &str, error_code: i64, reason: &str) {
    let created = Utc::now();
    let acct = &s.opts.account;
    let record = json!({
        "id": uuid(),
        "createdDateTime": ts(created),
        "userDisplayName": acct.display_name,
        "userPrincipalName": acct.upn,
        "userId": acct.id,
        "appId": "00000000-0000-0000-0000-00000000a11d",
        "appDisplayName": "glassdrill rehearsal",
        "ipAddress": "127.0.0.1",
        "clientAppUsed": "Browser",
        "correlationId": corr,
        "conditionalAccessStatus": if error_code == 53003 { "failure" } else if error_code == 0 { "success" } else { "notApplied" },
        "isInteractive": true,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "resourceDisplayName": "My Account",
        "status": {
            "errorCode": error_code,
            "failureReason": if error_code == 0 { Value::Null } else { json!(reason) },
            "additionalDetails": if error_code == 0 { json!("MFA requirement satisfied by claim in the token") } else { Value::Null },
        },
        "deviceDetail": { "browser": "Chrome", "operatingSystem": "Linux" },
        "location": { "city": "Loopback", "countryOrRegion": "ZZ" },
    });
    let delay = if s.has(Fault::LogDelay) {
        s.opts.log_delay
    } else {
        Duration::ZERO
    };
    s.lock().signins.push(LoggedSignIn {
        record,
        created,
        visible_at: tokio::time::Instant::now() + delay,
    });
    schedule_alert(s.clone(), created);
}

/// The alert rule: one Azure Monitor log alert per sign-in, posted to the
/// action group's webhook after the configured delay.
fn schedule_alert(s: Arc<Shared>, signin: DateTime<Utc>) {
    if s.has(Fault::AlertNever) {
        return;
    }
    let delay = if s.has(Fault::AlertLate) {
        s.opts.alert_late_delay
    } else {
        s.opts.alert_delay
    };
    tokio::spawn(async move {
        tokio::select! {
            () = s.cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        let upn = if s.has(Fault::AlertOtherAccount) {
            format!(
                "breakglass2@{}",
                s.opts
                    .account
                    .upn
                    .split('@')
                    .nth(1)
                    .unwrap_or("rehearsal.onmicrosoft.com")
            )
        } else {
            s.opts.account.upn.clone()
        };
        let fired = if s.has(Fault::AlertBeforeSignin) {
            signin - chrono::Duration::minutes(10)
        } else {
            Utc::now()
        };
        let alert_id = uuid();
        let payload = common_alert(&alert_id, &upn, signin, fired);
        let delivery = match &s.opts.webhook_url {
            None => "no webhook configured".to_owned(),
            Some(url) => match s.http.post(url).json(&payload).send().await {
                Ok(r) => format!("HTTP {}", r.status().as_u16()),
                Err(e) => format!("delivery failed: {e}"),
            },
        };
        s.lock().fired.push(FiredAlert { alert_id, delivery });
    });
}

/// An Azure Monitor common-alert-schema payload of a Log Alerts V2 rule on
/// `SigninLogs`, with the account as a dimension.
pub fn common_alert(
    alert_id: &str,
    upn: &str,
    signin: DateTime<Utc>,
    fired: DateTime<Utc>,
) -> Value {
    let sub = "00000000-0000-0000-0000-0000000000aa";
    let ws = format!(
        "/subscriptions/{sub}/resourcegroups/rg-breakglass/providers/microsoft.operationalinsights/workspaces/law-rehearsal"
    );
    json!({
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": format!("/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts/{alert_id}"),
                "alertRule": "Break-glass account sign-in",
                "severity": "Sev0",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [ws],
                "configurationItems": [ws],
                "originAlertId": alert_id,
                "firedDateTime": ts(fired),
                "description": "Any sign-in of a break-glass account",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0"
            },
            "alertContext": {
                "properties": null,
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT5M",
                    "allOf": [{
                        "searchQuery": "SigninLogs | where UserPrincipalName in~ (\"breakglass1@rehearsal.onmicrosoft.com\", \"breakglass2@rehearsal.onmicrosoft.com\")",
                        "metricMeasureColumn": null,
                        "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                        "operator": "GreaterThan",
                        "threshold": "0",
                        "timeAggregation": "Count",
                        "dimensions": [{ "name": "UserPrincipalName", "value": upn }],
                        "metricValue": 1.0,
                        "failingPeriods": { "numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1 }
                    }],
                    "windowStartTime": ts(signin - chrono::Duration::minutes(5)),
                    "windowEndTime": ts(signin + chrono::Duration::seconds(1))
                }
            },
            "customProperties": null
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parsing() {
        let f = parse_filter(
            "userPrincipalName eq 'a@b.c' and createdDateTime ge 2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].2, "a@b.c");
        assert!(parse_filter("status eq 0").is_err());
    }

    #[test]
    fn fault_names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
        }
        assert!(
            "nope"
                .parse::<Fault>()
                .unwrap_err()
                .contains("credential-revoked")
        );
    }
}
