//! Alert checks: did the alert pipeline fire for *this* sign-in in time?
//!
//! [`AlertCheck`] is the seam every kind plugs into (webhook today; Graph,
//! Alerts Management, Log Analytics, Defender, mailbox and PagerDuty come
//! later). The correlation rules are pure ([`judge`]): an alert counts only
//! if it is for this drill's account and fired at or after this drill's
//! sign-in; anything else is kept as "ignored" with the reason, because an
//! auditor wants to see it. The built-in [`WebhookReceiver`] takes Azure
//! Monitor common-alert-schema posts behind a secret path token and a body
//! limit, stores the exact bytes, and answers at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// UPNs compare case-insensitively and ignoring surrounding space, as Entra
/// compares sign-in names.
pub fn same_upn(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The fields of a common-alert-schema payload that correlation needs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommonAlert {
    /// `essentials.alertId`.
    pub alert_id: String,
    /// `essentials.alertRule`.
    pub rule: String,
    /// `essentials.severity`.
    pub severity: String,
    /// `essentials.monitorCondition` (`Fired` / `Resolved`).
    pub monitor_condition: String,
    /// `essentials.firedDateTime`.
    pub fired: DateTime<Utc>,
    /// Accounts named by the alert (dimensions / custom properties).
    pub accounts: Vec<String>,
}

/// Reads a common-alert-schema payload. Account names are taken from Log
/// Alerts V2 dimensions named like a UPN column and from
/// `customProperties.UserPrincipalName`.
pub fn parse_common_alert(v: &Value) -> Result<CommonAlert, String> {
    if v["schemaId"].as_str() != Some("azureMonitorCommonAlertSchema") {
        return Err("schemaId is not azureMonitorCommonAlertSchema (enable the common alert schema on the action group)".into());
    }
    let e = &v["data"]["essentials"];
    let s = |k: &str| e[k].as_str().map(str::to_owned);
    let fired = s("firedDateTime")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or("data.essentials.firedDateTime is missing or not RFC 3339")?;
    let mut accounts = Vec::new();
    if let Some(all) = v["data"]["alertContext"]["condition"]["allOf"].as_array() {
        for c in all {
            for d in c["dimensions"].as_array().into_iter().flatten() {
                let name = d["name"].as_str().unwrap_or_default().to_ascii_lowercase();
                if ["userprincipalname", "upn", "account", "accountupn"].contains(&name.as_str())
                    && let Some(val) = d["value"].as_str()
                {
                    accounts.push(val.to_owned());
                }
            }
        }
    }
    if let Some(u) = v["data"]["customProperties"]["UserPrincipalName"].as_str() {
        accounts.push(u.to_owned());
    }
    Ok(CommonAlert {
        alert_id: s("alertId").ok_or("data.essentials.alertId is missing")?,
        rule: s("alertRule").unwrap_or_default(),
        severity: s("severity").unwrap_or_default(),
        monitor_condition: s("monitorCondition").unwrap_or_default(),
        fired,
        accounts,
    })
}

/// Why an alert did not count for this drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum IgnoreReason {
    /// It names other accounts only.
    OtherAccount {
        /// The accounts it names.
        accounts: Vec<String>,
    },
    /// It names no account at all.
    NoAccount,
    /// It fired before this drill's sign-in (a stale or unrelated alert).
    FiredBeforeSignIn {
        /// When it fired.
        fired: DateTime<Utc>,
        /// When the sign-in happened.
        signin: DateTime<Utc>,
    },
    /// A `Resolved` notification, not a firing.
    NotFired {
        /// Its monitor condition.
        condition: String,
    },
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherAccount { accounts } => {
                write!(f, "for another account ({})", accounts.join(", "))
            }
            Self::NoAccount => write!(f, "names no account"),
            Self::FiredBeforeSignIn { fired, signin } => {
                write!(
                    f,
                    "fired before the sign-in ({} < {})",
                    fired.to_rfc3339(),
                    signin.to_rfc3339()
                )
            }
            Self::NotFired { condition } => {
                write!(f, "monitor condition is {condition}, not Fired")
            }
        }
    }
}

/// Whether `alert` counts for the sign-in of `upn` at `signin`.
pub fn judge(alert: &CommonAlert, upn: &str, signin: DateTime<Utc>) -> Result<(), IgnoreReason> {
    if !alert.monitor_condition.eq_ignore_ascii_case("fired") {
        return Err(IgnoreReason::NotFired {
            condition: alert.monitor_condition.clone(),
        });
    }
    if alert.accounts.is_empty() {
        return Err(IgnoreReason::NoAccount);
    }
    if !alert.accounts.iter().any(|a| same_upn(a, upn)) {
        return Err(IgnoreReason::OtherAccount {
            accounts: alert.accounts.clone(),
        });
    }
    if alert.fired < signin {
        return Err(IgnoreReason::FiredBeforeSignIn {
            fired: alert.fired,
            signin,
        });
    }
    Ok(())
}

/// An alert as it reached a receiver.
#[derive(Debug, Clone)]
pub struct ReceivedAlert {
    /// Arrival order, from 1.
    pub seq: u64,
    /// When it arrived (glassdrill's clock).
    pub received_at: DateTime<Utc>,
    /// The exact bytes received (what evidence stores).
    pub raw: Bytes,
    /// What correlation read from it.
    pub alert: CommonAlert,
}

/// What one check saw.
#[derive(Debug, Clone, Default)]
pub struct AlertObservation {
    /// The alert that counts, if any.
    pub matched: Option<ReceivedAlert>,
    /// Alerts seen and not counted, with reasons.
    pub ignored: Vec<(ReceivedAlert, IgnoreReason)>,
    /// The check itself failed (API down...): an ERROR, not a finding.
    pub error: Option<String>,
    /// The check was cancelled.
    pub cancelled: bool,
}

/// What an alert check looks for.
#[derive(Debug, Clone)]
pub struct AlertTarget {
    /// The account.
    pub upn: String,
    /// The sign-in time (the log's `createdDateTime` when known).
    pub signin_at: DateTime<Utc>,
    /// Give up at this instant.
    pub deadline: tokio::time::Instant,
}

/// An alert check of one kind.
#[async_trait::async_trait]
pub trait AlertCheck: Send + Sync {
    /// Waits until an alert for `target` arrives, the deadline passes, or
    /// `cancel` fires.
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation;
}

/// Most alerts a receiver keeps; past it, posts get 429 (a flood must not
/// exhaust the drill host's memory).
const MAX_STORED: usize = 1000;

#[derive(Default)]
struct Store {
    alerts: Mutex<Vec<ReceivedAlert>>,
    notify: Notify,
}

impl Store {
    fn snapshot_from(&self, from: usize) -> Vec<ReceivedAlert> {
        let g = self
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.get(from..)
            .map(<[ReceivedAlert]>::to_vec)
            .unwrap_or_default()
    }
}

struct ReceiverState {
    token: SecretString,
    store: Arc<Store>,
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
    token: SecretString,
    store: Arc<Store>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn receive(
    State(st): State<Arc<ReceiverState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> (StatusCode, &'static str) {
    if !crate::secret::constant_time_eq(st.token.expose_secret().as_bytes(), token.as_bytes()) {
        return (StatusCode::FORBIDDEN, "wrong token\n");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON\n");
    };
    let Ok(alert) = parse_common_alert(&v) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "not an Azure Monitor common alert schema payload\n",
        );
    };
    {
        let mut g = st
            .store
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.len() >= MAX_STORED {
            return (StatusCode::TOO_MANY_REQUESTS, "receiver is full\n");
        }
        let seq = g.len() as u64 + 1;
        g.push(ReceivedAlert {
            seq,
            received_at: Utc::now(),
            raw: body,
            alert,
        });
    }
    st.store.notify.notify_waiters();
    (StatusCode::ACCEPTED, "accepted\n")
}

impl WebhookReceiver {
    /// Binds `listen` first, then serves `POST /webhook/{token}`.
    pub async fn start(
        listen: SocketAddr,
        token: SecretString,
        max_body: usize,
    ) -> Result<Self, ReceiverError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ReceiverError {
                addr: listen,
                reason: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| ReceiverError {
            addr: listen,
            reason: e.to_string(),
        })?;
        let store = Arc::new(Store::default());
        let state = Arc::new(ReceiverState {
            token: token.clone(),
            store: store.clone(),
        });
        let app = Router::new()
            .route("/webhook/{token}", post(receive))
            .layer(DefaultBodyLimit::max(max_body))
            .with_state(state);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            token,
            store,
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
            self.token.expose_secret()
        ))
    }

    /// The URL with the token redacted, for display.
    pub fn url_redacted(&self) -> String {
        format!("http://{}/webhook/[redacted]", self.addr)
    }

    /// Every alert received so far.
    pub fn received(&self) -> Vec<ReceivedAlert> {
        self.store.snapshot_from(0)
    }

    /// A check that waits for alerts on this receiver.
    pub fn check(&self) -> WebhookCheck {
        WebhookCheck {
            store: self.store.clone(),
        }
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

/// The `webhook` alert check.
pub struct WebhookCheck {
    store: Arc<Store>,
}

#[async_trait::async_trait]
impl AlertCheck for WebhookCheck {
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation {
        let mut obs = AlertObservation::default();
        let mut cursor = 0;
        loop {
            // Register for wake-ups before looking, so no post is missed.
            let notified = self.store.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let fresh = self.store.snapshot_from(cursor);
            cursor += fresh.len();
            for a in fresh {
                match judge(&a.alert, &target.upn, target.signin_at) {
                    Ok(()) => {
                        obs.matched = Some(a);
                        return obs;
                    }
                    Err(reason) => obs.ignored.push((a, reason)),
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(target.deadline) => return obs,
                () = cancel.cancelled() => {
                    obs.cancelled = true;
                    return obs;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(upn: &str, fired: DateTime<Utc>) -> CommonAlert {
        let v = crate::tenant::common_alert("a1", upn, fired, fired);
        parse_common_alert(&v).unwrap()
    }

    #[test]
    fn correlation_rules() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let me = "BG1@contoso.onmicrosoft.com";
        assert_eq!(
            judge(&alert("bg1@contoso.onmicrosoft.com", t), me, t),
            Ok(())
        );
        assert!(matches!(
            judge(&alert("bg2@contoso.onmicrosoft.com", t), me, t),
            Err(IgnoreReason::OtherAccount { .. })
        ));
        let early = t - chrono::Duration::seconds(1);
        assert!(matches!(
            judge(&alert(me, early), me, t),
            Err(IgnoreReason::FiredBeforeSignIn { .. })
        ));
        let mut resolved = alert(me, t);
        resolved.monitor_condition = "Resolved".into();
        assert!(matches!(
            judge(&resolved, me, t),
            Err(IgnoreReason::NotFired { .. })
        ));
        let mut anon = alert(me, t);
        anon.accounts.clear();
        assert_eq!(judge(&anon, me, t), Err(IgnoreReason::NoAccount));
    }

    #[test]
    fn parse_rejects_other_schemas() {
        assert!(
            parse_common_alert(&serde_json::json!({"schemaId": "Microsoft.Insights/activityLogs"}))
                .is_err()
        );
        let mut v = crate::tenant::common_alert("a1", "x@y", Utc::now(), Utc::now());
        v["data"]["essentials"]["firedDateTime"] = "yesterday".into();
        assert!(
            parse_common_alert(&v)
                .unwrap_err()
                .contains("firedDateTime")
        );
    }
}
