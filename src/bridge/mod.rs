//! The WebAuthn bridge: how a page's `navigator.credentials.get` reaches a
//! security key glassdrill holds (D4).
//!
//! [`install`] adds `shim.js` to every new document through chromedriver's
//! CDP passthrough (`Page.addScriptToEvaluateOnNewDocument`), before page
//! scripts run. While armed, the key authenticator (`authenticator::key`)
//! polls the top document (`Bridge::take`) over
//! WebDriver (execute-script: never a fetch from the page to loopback,
//! which Chromium's Local Network Access blocks on a public page), checks
//! each request ([`check`]: the drill's RP id, the calling origin under the
//! browser's rules, with the top document's origin taken from WebDriver,
//! not from the page), builds `clientDataJSON`, asks the key for one
//! assertion and settles the page's promise. A run signs at most once: any
//! later request is refused with `NotAllowedError`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::browser::{Browser, BrowserError};

/// The shim, with `__GLASSDRILL_BRIDGE__` standing for the per-run hook name.
const SHIM: &str = include_str!("shim.js");
const HOOK_PLACEHOLDER: &str = "__GLASSDRILL_BRIDGE__";

/// A fresh hook name per run (not a secret: see `shim.js`).
pub fn hook_name() -> String {
    format!("__glassdrill_{}", crate::secret::random_token(12))
}

/// The shim's source for `hook`.
pub fn shim(hook: &str) -> String {
    SHIM.replace(HOOK_PLACEHOLDER, hook)
}

/// Installs the shim in every document the session opens from now on.
pub async fn install(browser: &Browser, hook: &str) -> Result<(), BrowserError> {
    browser
        .cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": shim(hook) }),
        )
        .await?;
    Ok(())
}

/// A request as the shim queued it (a JSON string the shim made).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PageRequest {
    /// The shim's id for settling it.
    pub id: String,
    /// base64url challenge.
    pub challenge: String,
    /// `publicKey.rpId`, if given.
    pub rp_id: Option<String>,
    /// base64url credential ids.
    #[serde(default)]
    pub allow_credentials: Vec<String>,
    /// `required`, `preferred`, `discouraged`.
    pub user_verification: String,
    /// Milliseconds (clamped by the shim).
    pub timeout: u64,
    /// The top document's origin as the shim saw it at install (checked
    /// against WebDriver's).
    pub origin: String,
}

/// A request that passed [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The RP id to sign for (the drill's).
    pub rp_id: String,
    /// The exact clientDataJSON bytes.
    pub client_data_json: Vec<u8>,
    /// Credential ids the page allows (empty: discoverable).
    pub allow: Vec<Vec<u8>>,
    /// Whether the page wants user verification (the PIN).
    pub user_verification: bool,
    /// The calling origin.
    pub origin: String,
}

/// Why a request is refused, with the `DOMException` name the page gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// `SecurityError`, `NotAllowedError`, …
    pub name: &'static str,
    /// For the log and evidence.
    pub message: String,
}

fn security(message: String) -> Refusal {
    Refusal {
        name: "SecurityError",
        message,
    }
}

/// Whether `host` is a potentially trustworthy loopback name, where a
/// browser allows WebAuthn over plain HTTP.
fn loopback_host(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1" || host == "[::1]"
}

/// The browser's rules for a request (WebAuthn §5.1.4.1 steps 7–8 and
/// §13.4.9): the origin is a secure context, the RP id is the drill's,
/// and the RP id is the origin's host or a registrable suffix of it; a
/// top-document request's origin is the one WebDriver reports.
pub fn check(
    req: &PageRequest,
    drill_rp_id: &str,
    webdriver_origin: &str,
) -> Result<Checked, Refusal> {
    let url = url::Url::parse(&req.origin)
        .map_err(|_| security(format!("the calling origin {:?} is not a URL", req.origin)))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let secure = url.scheme() == "https" || (url.scheme() == "http" && loopback_host(&host));
    if !secure {
        return Err(security(format!(
            "{} is not a secure context; WebAuthn needs https",
            req.origin
        )));
    }
    // Only the top document is served, and its origin is the one WebDriver
    // reports: a page cannot claim another (a frame's would be only the
    // page's word).
    if req.origin != webdriver_origin {
        return Err(security(format!(
            "the request says it comes from {} but the browser is at {webdriver_origin}",
            req.origin
        )));
    }
    let rp_id = req.rp_id.clone().unwrap_or_else(|| host.clone());
    if rp_id != drill_rp_id {
        return Err(security(format!(
            "the page asked for RP id {rp_id:?}; this drill signs only for {drill_rp_id:?}"
        )));
    }
    if !(host == rp_id || host.ends_with(&format!(".{rp_id}"))) {
        return Err(security(format!(
            "RP id {rp_id:?} is not a registrable suffix of the calling origin {}",
            req.origin
        )));
    }
    let challenge = B64
        .decode(req.challenge.trim_end_matches('='))
        .map_err(|_| not_allowed("the challenge is not base64url".into()))?;
    if challenge.is_empty() {
        return Err(not_allowed("the challenge is empty".into()));
    }
    let mut allow = Vec::new();
    for c in &req.allow_credentials {
        allow.push(
            B64.decode(c.trim_end_matches('='))
                .map_err(|_| not_allowed("a credential id is not base64url".into()))?,
        );
    }
    // The members, in the order Chromium writes them (WebAuthn §5.8.1.1,
    // the limited verification algorithm's prefix): a JSON map would sort.
    // The origin is WebDriver's; the request is never cross-origin.
    let quote = |s: &str| Value::String(s.to_owned()).to_string();
    let client_data_json = format!(
        "{{\"type\":\"webauthn.get\",\"challenge\":{},\"origin\":{},\"crossOrigin\":false}}",
        quote(&B64.encode(&challenge)),
        quote(webdriver_origin)
    )
    .into_bytes();
    Ok(Checked {
        rp_id,
        client_data_json,
        allow,
        user_verification: req.user_verification != "discouraged",
        origin: webdriver_origin.to_owned(),
    })
}

fn not_allowed(message: String) -> Refusal {
    Refusal {
        name: "NotAllowedError",
        message,
    }
}

/// The page side of a served assertion.
pub struct Signed {
    /// Credential id.
    pub credential_id: Vec<u8>,
    /// clientDataJSON as checked.
    pub client_data_json: Vec<u8>,
    /// Authenticator data.
    pub authenticator_data: Vec<u8>,
    /// Signature.
    pub signature: Vec<u8>,
    /// User handle.
    pub user_handle: Option<Vec<u8>>,
}

/// The bridge's WebDriver side for one browser session.
pub struct Bridge {
    client: fantoccini::Client,
    hook: String,
}

impl Bridge {
    /// For a session whose documents carry the shim named `hook`.
    pub fn new(client: fantoccini::Client, hook: String) -> Self {
        Self { client, hook }
    }

    /// Takes the oldest request the top document holds, with the top
    /// document's origin as WebDriver sees it.
    pub async fn take(&self) -> Result<Option<(PageRequest, String)>, String> {
        let script = format!(
            "const h = window[{}]; return h ? h.take() : null;",
            serde_json::to_string(&self.hook).map_err(|e| e.to_string())?
        );
        let v = self
            .client
            .execute(&script, vec![])
            .await
            .map_err(|e| e.to_string())?;
        let Some(text) = v.as_str() else {
            return Ok(None);
        };
        let url = self.client.current_url().await.map_err(|e| e.to_string())?;
        let origin = url.origin().ascii_serialization();
        match serde_json::from_str::<PageRequest>(text) {
            Ok(r) => Ok(Some((r, origin))),
            Err(e) => Err(format!("the page queued a malformed request ({e})")),
        }
    }

    /// Settles request `id` with an assertion or a refusal.
    pub async fn settle(
        &self,
        id: &str,
        outcome: Result<&Signed, &Refusal>,
    ) -> Result<bool, String> {
        let outcome = match outcome {
            Ok(s) => json!({"ok": {
                "id": B64.encode(&s.credential_id),
                "clientDataJSON": B64.encode(&s.client_data_json),
                "authenticatorData": B64.encode(&s.authenticator_data),
                "signature": B64.encode(&s.signature),
                "userHandle": s.user_handle.as_ref().map(|u| B64.encode(u)),
            }}),
            Err(r) => json!({"err": {"name": r.name, "message": r.message}}),
        };
        let script = format!(
            "const h = window[{}]; return h ? h.settle(arguments[0], arguments[1]) : false;",
            serde_json::to_string(&self.hook).map_err(|e| e.to_string())?
        );
        let v = self
            .client
            .execute(&script, vec![Value::String(id.to_owned()), outcome])
            .await
            .map_err(|e| e.to_string())?;
        Ok(v.as_bool().unwrap_or(false))
    }
}

/// How often the top document is polled for a request while armed.
pub const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests;
