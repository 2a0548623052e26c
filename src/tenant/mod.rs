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
//! | `login.microsoftonline.localhost` | `login.microsoftonline.com` (ESTS): authorize, `/common/login`, `/appverify`, `/kmsi`, token endpoint, sign-out |
//! | `login.microsoft.localhost` | `login.microsoft.com`: `/common/fido/get`, the WebAuthn ceremony's origin and RP ID |
//! | `graph.rehearsal.localhost` | Graph `/v1.0/auditLogs/signIns` |
//! | `myaccount.rehearsal.localhost` | the landing page after sign-in |
//!
//! The two login hosts are two different *sites* (`microsoftonline.localhost`
//! and `microsoft.localhost`), as Entra's are, so cookies (SameSite),
//! storage and the RP ID behave cross-site exactly where they do on Entra;
//! the protocol between them is Entra's ([`signin`], [`pages`]).
//!
//! Assertions are verified for real ([`crate::webauthn`]). Every sign-in attempt
//! is logged in Graph's shape and, after a configurable delay, an alert rule
//! posts an Azure Monitor common-alert-schema webhook. [`Fault`]s switch on
//! the failures a drill must catch.

pub mod alerting;
pub mod apis;
pub mod console;
mod graph;
pub mod pages;
pub mod posture;
mod signin;

use alerting::*;
use apis::*;
use graph::*;
use signin::*;

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
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::alerts::correlate::same_upn;
use crate::secret::{constant_time_eq, random_token};
use crate::support::time::rfc3339_ms as ts;
use crate::webauthn::{self, Assertion, Expected, StoredCredential};

/// The domain of the rehearsal's own hosts (Graph, the landing page).
pub const DOMAIN: &str = "rehearsal.localhost";
/// The ESTS host, standing for `login.microsoftonline.com`.
pub const ESTS_HOST: &str = "login.microsoftonline.localhost";
/// The FIDO host, standing for `login.microsoft.com`: the WebAuthn RP ID.
pub const FIDO_HOST: &str = "login.microsoft.localhost";
/// The WebAuthn RP ID of the rehearsal tenant (its FIDO host, as Entra's
/// is `login.microsoft.com`).
pub const RP_ID: &str = FIDO_HOST;
/// The rehearsal account's object id.
pub const REHEARSAL_OBJECT_ID: &str = "00000000-0000-0000-0000-0000000b6e01";

/// The user handle a security key registered to the rehearsal account
/// holds: Entra's format ([`webauthn::entra_user_handle`]) for
/// [`TENANT_ID`] and [`REHEARSAL_OBJECT_ID`].
pub fn rehearsal_user_handle() -> Vec<u8> {
    webauthn::entra_user_handle(TENANT_ID, REHEARSAL_OBJECT_ID).unwrap_or_default()
}

/// Entra's user handle with both GUIDs in RFC 4122 (big-endian) byte
/// order: the mistake [`Fault::WrongUserHandle`] rehearses.
fn big_endian_user_handle(tenant_id: &str, object_id: &str) -> Vec<u8> {
    use sha2::Digest as _;
    let (Ok(t), Ok(o)) = (
        uuid::Uuid::parse_str(tenant_id),
        uuid::Uuid::parse_str(object_id),
    ) else {
        return Vec::new();
    };
    let mut out = b"ON:".to_vec();
    out.extend_from_slice(t.as_bytes());
    out.extend_from_slice(&sha2::Sha256::digest(o.as_bytes()));
    out
}
/// The alert rule of the rehearsal tenant when none is named.
pub const DEFAULT_ALERT_RULE: &str = "Break-glass account sign-in";

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
    /// Of the alert rules, the last one never fires (the others do).
    AlertRuleMissing,
    /// A successful sign-in never reaches the sign-in log (nor, so, the
    /// alert rules reading it).
    SigninNotLogged,
    /// The browser is signed in, but the sign-in log records the sign-in
    /// as failed (error 500121).
    SigninLoggedFailed,
    /// Graph answers 503 to every request once the sign-in has happened.
    GraphOutage,
    /// The FIDO challenge has expired by the time the assertion arrives
    /// (AADSTS50089).
    ChallengeExpired,
    /// The directory does not know the key's credential (AADSTS135010).
    UnknownCredential,
    /// The tenant expects the user handle with its GUIDs in the wrong
    /// (big-endian) byte order, so the key's handle does not match.
    WrongUserHandle,
    /// The account has no security key (`HasFido=false`).
    NoFido,
    /// A consent prompt (`CmsiInterrupt`) after the sign-in.
    Cmsi,
    /// "Stay signed in?" (`KmsiInterrupt`) after the sign-in.
    Kmsi,
    /// "More information required" (`ConvergedProofUpRedirect`).
    ProofUp,
    /// The alert rule does not split by account (Microsoft's sample
    /// break-glass rule): its alert names no account.
    AlertNoDimensions,
    /// Only the alert's `Resolved` notification is sent.
    AlertResolvedOnly,
    /// Every alert is delivered twice.
    AlertDuplicate,
    /// Log Analytics answers with a `PartialError` inside a 200.
    ApiPartialError,
    /// The account has a licence.
    PostureLicensed,
    /// Global Administrator only eligible through PIM.
    PostureEligibleGa,
    /// Only one FIDO2 key registered (no spare).
    PostureOneKey,
    /// A phone (SMS) method registered.
    PosturePhoneMethod,
    /// A Temporary Access Pass present.
    PostureTap,
    /// A Conditional Access policy that does not exclude the group.
    PostureCaNotExcluded,
    /// The alert rule's actions muted.
    PostureRuleMuted,
    /// The alert rule disabled.
    PostureRuleDisabled,
    /// The action group has no receiver.
    PostureEmptyActionGroup,
    /// A sign-in of the account since the last drill that no drill made.
    UnexpectedSignin,
}

impl Fault {
    /// Every fault with its command-line name.
    pub(crate) const ALL: [Fault; 35] = [
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
        Fault::AlertRuleMissing,
        Fault::SigninNotLogged,
        Fault::SigninLoggedFailed,
        Fault::GraphOutage,
        Fault::ChallengeExpired,
        Fault::UnknownCredential,
        Fault::WrongUserHandle,
        Fault::NoFido,
        Fault::Cmsi,
        Fault::Kmsi,
        Fault::ProofUp,
        Fault::AlertNoDimensions,
        Fault::AlertResolvedOnly,
        Fault::AlertDuplicate,
        Fault::ApiPartialError,
        Fault::PostureLicensed,
        Fault::PostureEligibleGa,
        Fault::PostureOneKey,
        Fault::PosturePhoneMethod,
        Fault::PostureTap,
        Fault::PostureCaNotExcluded,
        Fault::PostureRuleMuted,
        Fault::PostureRuleDisabled,
        Fault::PostureEmptyActionGroup,
        Fault::UnexpectedSignin,
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
            Fault::AlertRuleMissing => "alert-rule-missing",
            Fault::SigninNotLogged => "signin-not-logged",
            Fault::SigninLoggedFailed => "signin-logged-failed",
            Fault::GraphOutage => "graph-outage",
            Fault::ChallengeExpired => "challenge-expired",
            Fault::UnknownCredential => "unknown-credential",
            Fault::WrongUserHandle => "wrong-user-handle",
            Fault::NoFido => "no-fido",
            Fault::Cmsi => "cmsi",
            Fault::Kmsi => "kmsi",
            Fault::ProofUp => "proof-up",
            Fault::AlertNoDimensions => "alert-no-dimensions",
            Fault::AlertResolvedOnly => "alert-resolved-only",
            Fault::AlertDuplicate => "alert-duplicate",
            Fault::ApiPartialError => "api-partial-error",
            Fault::PostureLicensed => "posture-licensed",
            Fault::PostureEligibleGa => "posture-eligible-ga",
            Fault::PostureOneKey => "posture-one-key",
            Fault::PosturePhoneMethod => "posture-phone-method",
            Fault::PostureTap => "posture-tap",
            Fault::PostureCaNotExcluded => "posture-ca-not-excluded",
            Fault::PostureRuleMuted => "posture-rule-muted",
            Fault::PostureRuleDisabled => "posture-rule-disabled",
            Fault::PostureEmptyActionGroup => "posture-empty-action-group",
            Fault::UnexpectedSignin => "unexpected-signin",
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
    /// Where the alert rules post (the action group's webhook).
    pub webhook_url: Option<String>,
    /// The alert rules on the sign-in log: each fires one alert per
    /// sign-in (none: the one rule [`DEFAULT_ALERT_RULE`]).
    pub alert_rules: Vec<String>,
    /// Listen address (port 0 picks one).
    pub listen: SocketAddr,
    /// Whether the sign-in page names the account's credential in
    /// `FidoParams.AllowList` (Entra may; empty means a discoverable
    /// credential is asked for).
    pub allow_list: bool,
    /// Post alerts to Azure Monitor's secure webhook at this URL, with a
    /// bearer token the tenant signs (its keys at
    /// `{authority}/{tenant}/discovery/v2.0/keys`) for this audience,
    /// instead of the token-in-URL webhook.
    pub secure_webhook: Option<(String, String)>,
    /// Test knob: the flow's session cookie is `SameSite=Lax`, as a
    /// stand-in whose two hosts were one site could get away with; on
    /// Entra's two sites the browser drops it from the cross-site post.
    pub lax_session_cookie: bool,
}

/// The rehearsal tenant's account for a credential.
pub fn rehearsal_account(
    upn: &str,
    credential: &crate::authenticator::Credential,
) -> Result<Account, webauthn::KeyError> {
    Ok(account_with(
        upn,
        StoredCredential {
            id: credential.id.clone(),
            public_key: webauthn::public_key_from_pkcs8(credential.pkcs8.expose_secret())?,
            sign_count: 0,
            user_handle: credential.user_handle.clone(),
        },
    ))
}

/// The rehearsal tenant's account with a registered credential (a soft
/// key's, whose private key the tenant never sees).
pub fn account_with(upn: &str, credential: StoredCredential) -> Account {
    Account {
        upn: upn.to_owned(),
        display_name: "Break Glass 1 (rehearsal)".to_owned(),
        id: REHEARSAL_OBJECT_ID.to_owned(),
        credential,
    }
}

/// The tenant's public URLs.
#[derive(Debug, Clone)]
pub struct TenantUrls {
    /// Sign-in authority (the ESTS host), like
    /// `http://login.microsoftonline.localhost:PORT`.
    pub authority: String,
    /// The FIDO host's origin, where the ceremony runs.
    pub fido: String,
    /// Graph base URL.
    pub graph: String,
    /// Azure Resource Manager stand-in (Alerts Management).
    pub management: String,
    /// Log Analytics query API stand-in.
    pub log_analytics: String,
    /// PagerDuty REST API stand-in.
    pub pagerduty: String,
    /// Landing page.
    pub myaccount: String,
    /// RP id of the ceremony.
    pub rp_id: String,
}

impl TenantUrls {
    fn new(port: u16) -> Self {
        let h = |host: &str| format!("http://{host}:{port}");
        Self {
            authority: h(ESTS_HOST),
            fido: h(FIDO_HOST),
            graph: h(&format!("graph.{DOMAIN}")),
            management: h(&format!("management.{DOMAIN}")),
            log_analytics: h(&format!("loganalytics.{DOMAIN}")),
            pagerduty: h(&format!("pagerduty.{DOMAIN}")),
            myaccount: h(&format!("myaccount.{DOMAIN}")),
            rp_id: RP_ID.to_owned(),
        }
    }
}

/// A sign-in flow in progress (keyed by its flow token).
#[derive(Debug, Clone)]
struct FlowState {
    correlation_id: String,
    /// `sessionId`, posted back as `hpgrequestid`.
    session_id: String,
    tokens: pages::FlowTokens,
    /// The flow's session cookie (`esctx`).
    esctx: String,
    upn: Option<String>,
    /// `sFidoChallenge` and when it was issued.
    challenge: Option<(String, tokio::time::Instant)>,
    /// The cross-domain canary the FIDO host issued.
    lmc_canary: Option<String>,
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

/// What the tenant saw, for tests and the rehearsal's summary.
#[derive(Debug, Clone, Default)]
pub struct TenantStats {
    /// Security-key assertions posted to the tenant (each one a sign-in
    /// attempt with the credential).
    pub assertions: u32,
    /// Sign-in attempts recorded (logged or, with
    /// [`Fault::SigninNotLogged`], not).
    pub signin_attempts: u32,
    /// When the first sign-in attempt was recorded, in milliseconds since
    /// the tenant started.
    pub first_attempt_ms: Option<u64>,
    /// Graph sign-in log requests: milliseconds since the tenant started,
    /// HTTP status, and rows returned.
    pub graph_requests: Vec<(u64, u16, usize)>,
}

#[derive(Default)]
struct Inner {
    stats: TenantStats,
    flows: HashMap<String, FlowState>,
    sessions: HashMap<String, String>,
    signins: Vec<LoggedSignIn>,
    tokens: HashMap<String, tokio::time::Instant>,
    sign_count: u32,
    throttled: bool,
    /// The stand-in APIs already throttled once (under `api-throttle`).
    throttled_apis: std::collections::HashSet<&'static str>,
    fired: Vec<FiredAlert>,
    /// The alerts the rules raised, for the stand-in APIs.
    raised: Vec<Raised>,
    /// Every token and cookie value handed out, newest last.
    issued: Vec<String>,
}

struct Shared {
    opts: TenantOptions,
    /// The secure webhook's signing key and its JWKS (when used).
    signer: Option<(jsonwebtoken::EncodingKey, Value)>,
    started: tokio::time::Instant,
    urls: TenantUrls,
    inner: Mutex<Inner>,
    http: reqwest::Client,
    cancel: CancellationToken,
}

impl Shared {
    fn has(&self, f: Fault) -> bool {
        self.opts.faults.contains(&f)
    }

    /// The user handle the account's key must return: Entra's, or (under
    /// [`Fault::WrongUserHandle`]) the same GUIDs in the wrong byte order.
    fn expected_user_handle(&self) -> Vec<u8> {
        let id = &self.opts.account.id;
        if self.has(Fault::WrongUserHandle) {
            big_endian_user_handle(TENANT_ID, id)
        } else {
            webauthn::entra_user_handle(TENANT_ID, id).unwrap_or_default()
        }
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
        // The counter the directory already holds for the credential.
        let inner = Inner {
            sign_count: opts.account.credential.sign_count,
            ..Inner::default()
        };
        let signer = match &opts.secure_webhook {
            Some(_) => {
                Some(alerting::signing_key().map_err(|reason| TenantError::Bind { addr, reason })?)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            signer,
            started: tokio::time::Instant::now(),
            urls: TenantUrls::new(addr.port()),
            opts,
            inner: Mutex::new(inner),
            http,
            cancel: cancel.clone(),
        });
        if shared.has(Fault::UnexpectedSignin) {
            graph::plant_unexpected(&shared);
        }
        let app = router(shared.clone());
        let task = crate::support::http::serve(listener, app, cancel);
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

    /// What the tenant has seen so far.
    pub fn stats(&self) -> TenantStats {
        self.shared.lock().stats.clone()
    }

    /// Every token and cookie value the tenant has handed to a browser or
    /// client (flow tokens, contexts, canaries, challenges, cookies,
    /// sessions, access tokens), so a test can check none reached the
    /// evidence.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.lock().issued.clone()
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

/// Routes by `Host`: the path is prefixed with the host's label (`ests`,
/// `fido`, `graph`, `myaccount`) before routing, so each host has its own
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
    let label = match host.as_deref() {
        Some(ESTS_HOST) => "ests",
        Some(FIDO_HOST) => "fido",
        Some(h) => match h.strip_suffix(&format!(".{DOMAIN}")) {
            Some("graph") => "graph",
            Some("myaccount") => "myaccount",
            Some("management") => "management",
            Some("loganalytics") => "loganalytics",
            Some("pagerduty") => "pagerduty",
            _ => "",
        },
        None => "",
    };
    if label.is_empty() {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "unknown host: use the *.localhost URLs the tenant printed",
        )
            .into_response();
    }
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
        .route("/ests/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/ests/common/login", post(login))
        .route("/ests/appverify", post(appverify))
        .route("/ests/kmsi", post(kmsi))
        .route("/ests/{tenant}/oauth2/v2.0/logout", get(logout))
        .route("/ests/{tenant}/oauth2/v2.0/token", post(token))
        .route("/ests/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/fido/common/fido/get", post(fido_get))
        .route("/graph/v1.0/auditLogs/signIns", get(graph_signins))
        .route("/graph/beta/auditLogs/signIns/{id}", get(graph_signin_beta))
        .route("/graph/v1.0/security/alerts_v2", get(security_alerts))
        .route("/graph/v1.0/users/{id}", get(posture::user))
        .route(
            "/graph/v1.0/users/{id}/authentication/methods",
            get(posture::methods),
        )
        .route(
            "/graph/v1.0/users/{id}/transitiveMemberOf",
            get(posture::member_of),
        )
        .route(
            "/graph/v1.0/roleManagement/directory/roleAssignmentSchedules",
            get(posture::assignment_schedules),
        )
        .route(
            "/graph/v1.0/roleManagement/directory/roleEligibilitySchedules",
            get(posture::eligibility_schedules),
        )
        .route(
            "/graph/v1.0/identity/conditionalAccess/policies",
            get(posture::ca_policies),
        )
        .route("/management/{*rest}", get(posture::arm))
        .route(
            "/graph/v1.0/users/{user}/mailFolders/inbox/messages",
            get(messages),
        )
        .route(
            "/management/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts",
            get(azure_alerts),
        )
        .route(
            "/loganalytics/v1/workspaces/{ws}/query",
            get(log_analytics).post(log_analytics),
        )
        .route("/pagerduty/incidents", get(pd_incidents))
        .route("/pagerduty/incidents/{id}/alerts", get(pd_alerts))
        .route("/myaccount/", get(landing))
        .route("/ests/beacon", get(beacon))
        .route("/fido/beacon", get(beacon))
        .with_state(shared);
    Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn(host_dispatch))
}

#[cfg(test)]
mod tests {
    use super::*;

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
