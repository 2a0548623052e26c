//! The polling alert checks: each reads one API into [`CommonAlert`]s and
//! one loop ([`PollingCheck`]) polls it until the expected alert is seen,
//! its deadline (and late grace) passes, or the run stops. Correlation is
//! [`super::correlate`]'s; requests go through [`crate::cloud::api`]
//! (token, rate limit, `Retry-After`, 5xx backoff, pages).
//!
//! | kind | API | reads |
//! | --- | --- | --- |
//! | `graph-signin` | Graph `/v1.0/auditLogs/signIns` | the sign-in's own log row |
//! | `azure-alerts` | Azure Resource Manager Alerts Management | the rule's fired alerts in a custom time range |
//! | `log-analytics` | Log Analytics query API | the sign-in's row in the workspace, with `ingestion_time()` |
//! | `graph-security` | Graph `/v1.0/security/alerts_v2` | Defender / Sentinel alerts whose evidence names the account |
//! | `mailbox` | Graph `/v1.0/users/{id}/mailFolders/inbox/messages` | the action group's mail |
//! | `pagerduty` | PagerDuty REST API v2 `/incidents` | the service's incidents and their alerts' bodies |

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::correlate::{
    names_an_account, parse_common_alert, read_condition, rows_hold_signin, timestamp,
};
use super::{
    AlertCheck, AlertObservation, AlertTarget, CommonAlert, Correlator, ReceivedAlert,
    SearchConfirm,
};
use crate::cloud::api::{Api, Auth};
use crate::cloud::{CloudError, Resource, TokenCache};

/// One alert a source read, with the raw record kept as evidence.
pub struct Fetched {
    /// The record exactly as the API returned it.
    pub raw: Value,
    /// What correlation reads from it.
    pub alert: CommonAlert,
    /// When the sign-in's row was ingested, where the source says.
    pub ingested: Option<DateTime<Utc>>,
}

/// An API that lists alerts.
#[async_trait::async_trait]
pub trait Source: Send + Sync {
    /// Its kind, as in drill files.
    fn kind(&self) -> &'static str;
    /// The alerts visible now for `target` (since shortly before its
    /// sign-in).
    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError>;
}

/// From when a source lists: the sign-in, less the clock-skew allowance.
fn since(target: &AlertTarget) -> DateTime<Utc> {
    target.signin_at - super::correlate::CLOCK_SKEW
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A check that polls a [`Source`] every `every`.
pub struct PollingCheck {
    source: Box<dyn Source>,
    rule: String,
    every: Duration,
    confirm: Option<Box<dyn SearchConfirm>>,
}

impl PollingCheck {
    /// Polls `source` every `every` for the alert of `rule`.
    pub fn new(source: Box<dyn Source>, rule: &str, every: Duration) -> Self {
        Self {
            source,
            rule: rule.to_owned(),
            every,
            confirm: None,
        }
    }

    /// Confirms alerts that name no account from the rule's rows.
    pub fn with_confirm(mut self, confirm: Box<dyn SearchConfirm>) -> Self {
        self.confirm = Some(confirm);
        self
    }
}

#[async_trait::async_trait]
impl AlertCheck for PollingCheck {
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation {
        let mut obs = AlertObservation::default();
        let mut correlator = Correlator::new(&self.rule, target, self.confirm.as_deref());
        let end = target.late_until.max(target.deadline);
        let mut seq = 0;
        let mut deadline_polled = false;
        let mut answered = false;
        loop {
            // An alert in the answer was visible when the poll was made:
            // it is on time by the poll's start, not by how long the
            // answer (pages, retries) took.
            let (polled_at, polled) = (crate::support::time::now(), tokio::time::Instant::now());
            deadline_polled |= polled >= target.deadline;
            // A poll never outlives the check (the one at its end gets a
            // short grace to answer).
            let limit = end.max(polled + Duration::from_secs(30));
            let fetched = tokio::select! {
                r = self.source.fetch(target, cancel) => r,
                () = tokio::time::sleep_until(limit) => {
                    if !answered {
                        obs.error = Some(format!("{}: no answer before the check's end", self.source.kind()));
                    }
                    return obs;
                }
            };
            match fetched {
                Ok(found) => {
                    answered = true;
                    obs.error = None;
                    for f in found {
                        seq += 1;
                        let a = ReceivedAlert {
                            seq,
                            received_at: polled_at,
                            arrived: polled,
                            raw: axum::body::Bytes::from(f.raw.to_string()),
                            alert: f.alert,
                            ingested: f.ingested,
                        };
                        if correlator.consider(&mut obs, a, false, cancel).await {
                            return obs;
                        }
                    }
                }
                Err(CloudError::Cancelled) => {
                    obs.cancelled = tokio::time::Instant::now() <= target.deadline;
                    return obs;
                }
                Err(e) => {
                    // Kept polling: the API may come back before the
                    // deadline. If it never answers, the check is an
                    // ERROR (nothing is known), not a missing alert.
                    tracing::warn!(kind = self.source.kind(), error = %e, "alert source failed; polling on");
                    obs.error = Some(format!("{}: {e}", self.source.kind()));
                }
            }
            // One poll always lands on the deadline itself.
            let mut next = tokio::time::Instant::now() + self.every;
            if !deadline_polled && next > target.deadline {
                next = target.deadline;
            }
            if next > end {
                return obs;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = cancel.cancelled() => {
                    obs.cancelled = tokio::time::Instant::now() <= target.deadline;
                    return obs;
                }
            }
        }
    }
}

/// The sign-in log as an alert source (`graph-signin`): the sign-in's own
/// row, by `userId` (or UPN) since the sign-in; proves "sign-in logged"
/// within its deadline. Graph allows 5 requests per 10 s per app and
/// tenant on this API: the client never sends more.
pub struct GraphSignIns {
    /// The Graph client.
    pub graph: Arc<crate::cloud::GraphClient>,
    /// `authenticationDetails` already read from `/beta`, by row id.
    pub details: tokio::sync::Mutex<std::collections::HashMap<String, Value>>,
}

/// The label of the sign-in log as an alert source.
pub const SIGNIN_LOG: &str = "sign-in log";

#[async_trait::async_trait]
impl Source for GraphSignIns {
    fn kind(&self) -> &'static str {
        "graph-signin"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let rows = self
            .graph
            .sign_ins(
                &target.upn,
                target.object_id.as_deref(),
                since(target),
                target.correlation_id.as_deref(),
                cancel,
            )
            .await?;
        // The drill's own rows get their authentication details from
        // /beta (once each): the method that signed in, for the evidence.
        let mut rows = rows;
        for r in rows.iter_mut().take(3) {
            let Some(id) = r["id"].as_str().map(str::to_owned) else {
                continue;
            };
            let mut cache = self.details.lock().await;
            if !cache.contains_key(&id)
                && let Some(d) = self.graph.authentication_details(&id, cancel).await
            {
                cache.insert(id.clone(), d);
            }
            if let (Some(d), Some(o)) = (cache.get(&id), r.as_object_mut()) {
                o.insert("authenticationDetails".into(), d.clone());
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let fired = timestamp(&r["createdDateTime"])?;
                let accounts = ["userId", "userPrincipalName"]
                    .iter()
                    .filter_map(|k| r[*k].as_str().map(str::to_owned))
                    .collect();
                Some(Fetched {
                    alert: CommonAlert {
                        alert_id: r["id"].as_str().unwrap_or_default().to_owned(),
                        rule: SIGNIN_LOG.into(),
                        severity: String::new(),
                        monitor_condition: "Fired".into(),
                        fired,
                        accounts,
                        window: None,
                        search_link: None,
                    },
                    raw: r,
                    ingested: None,
                })
            })
            .collect())
    }
}

/// Azure Resource Manager's Alerts Management API (`azure-alerts`): the
/// named rule's alerts in a custom time range, `monitorCondition=Fired`
/// (<https://learn.microsoft.com/en-us/rest/api/monitor/alertsmanagement/alerts/get-all>).
/// Needs the Azure role Monitoring Reader on the subscription.
pub struct AzureAlerts {
    /// The API client.
    pub(crate) api: Api,
    /// `https://management.azure.com` (or a stand-in).
    pub base: String,
    /// The token cache.
    pub tokens: Arc<TokenCache>,
    /// The alert rule's resource id.
    pub rule_id: String,
}

/// The Alerts Management API version read.
pub const ALERTS_API_VERSION: &str = "2019-05-05-preview";

impl AzureAlerts {
    /// The subscription scope of the rule's resource id.
    fn scope(&self) -> Option<&str> {
        let rest = self.rule_id.strip_prefix("/subscriptions/")?;
        let sub = rest.split('/').next()?;
        Some(&self.rule_id[..("/subscriptions/".len() + sub.len())])
    }
}

/// Reads an Alerts Management alert into the common shape. Accounts and
/// the window come from its context where the API includes one
/// (`includeContext=true`: the common schema's `alertContext`).
pub fn parse_azure_alert(v: &Value) -> Option<CommonAlert> {
    let e = &v["properties"]["essentials"];
    let fired = timestamp(&e["startDateTime"])?;
    let context = &v["properties"]["context"];
    let ctx = if context["condition"].is_object() {
        context
    } else {
        &context["context"]
    };
    let (accounts, window, search_link) = read_condition(&ctx["condition"]);
    Some(CommonAlert {
        alert_id: v["id"].as_str().unwrap_or_default().to_owned(),
        rule: e["alertRule"].as_str().unwrap_or_default().to_owned(),
        severity: e["severity"].as_str().unwrap_or_default().to_owned(),
        monitor_condition: e["monitorCondition"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        fired,
        accounts,
        window,
        search_link,
    })
}

#[async_trait::async_trait]
impl Source for AzureAlerts {
    fn kind(&self) -> &'static str {
        "azure-alerts"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let Some(scope) = self.scope() else {
            return Err(CloudError::Api {
                api: self.api.name,
                status: 0,
                code: format!("`{}` is not an alert rule resource id", self.rule_id),
                hint: "",
            });
        };
        let until = crate::support::time::now() + chrono::Duration::hours(1);
        let q = [
            ("api-version", ALERTS_API_VERSION.to_owned()),
            ("alertRule", self.rule_id.clone()),
            ("monitorCondition", "Fired".to_owned()),
            ("includeContext", "true".to_owned()),
            (
                "customTimeRange",
                format!("{}/{}", iso(since(target)), iso(until)),
            ),
        ];
        let url = format!(
            "{}{scope}/providers/Microsoft.AlertsManagement/alerts",
            self.base.trim_end_matches('/')
        );
        let items = self
            .api
            .list(
                &url,
                &q,
                Auth::Token(&self.tokens, &Resource::ResourceManager),
                &[],
                cancel,
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|v| {
                parse_azure_alert(&v).map(|alert| Fetched {
                    alert,
                    raw: v,
                    ingested: None,
                })
            })
            .collect())
    }
}

/// The Log Analytics query API (`log-analytics`): the sign-in's row in
/// the workspace the alert rule reads, with its ingestion time
/// (<https://learn.microsoft.com/en-us/azure/azure-monitor/logs/api/response-format>).
/// A `PartialError` inside a 200 is an error, never an empty result.
/// Needs the Azure role Log Analytics Reader on the workspace.
pub struct LogAnalytics {
    /// The API client.
    pub(crate) api: Api,
    /// `https://api.loganalytics.io` (or a stand-in).
    pub base: String,
    /// The token cache.
    pub tokens: Arc<TokenCache>,
    /// The workspace id.
    pub workspace: String,
    /// KQL; `{object_id}` and `{upn}` are filled in. The default reads
    /// `SigninLogs`.
    pub query: String,
    /// The label alerts of this source carry (the expected rule).
    pub label: String,
}

/// The default query: the account's rows with the columns correlation
/// reads and the ingestion time.
pub const DEFAULT_LA_QUERY: &str = "SigninLogs | where UserId =~ \"{object_id}\" or UserPrincipalName =~ \"{upn}\" | project TimeGenerated, Id, CorrelationId, UserId, UserPrincipalName, ResultType, _IngestionTime = ingestion_time()";

/// A Log Analytics table: columns and rows.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    fn cell<'a>(&self, row: &'a [Value], names: &[&str]) -> Option<&'a Value> {
        names.iter().find_map(|n| {
            let i = self
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(n))?;
            row.get(i)
        })
    }
}

/// Reads a query response's first table; a `PartialError` (or any
/// `error` object) is an error.
fn la_table(v: &Value, api: &'static str) -> Result<Table, CloudError> {
    if let Some(code) = v["error"]["code"].as_str() {
        let detail = v["error"]["details"][0]["message"]
            .as_str()
            .or_else(|| v["error"]["message"].as_str())
            .unwrap_or_default();
        return Err(CloudError::Api {
            api,
            status: 200,
            code: format!("{code}: {detail}"),
            hint: "",
        });
    }
    let t = &v["tables"][0];
    let columns = t["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .ok_or(CloudError::Api {
            api,
            status: 200,
            code: "malformed JSON (no tables[0].columns)".into(),
            hint: "",
        })?;
    let rows = serde_json::from_value(t["rows"].clone()).map_err(|e| CloudError::Api {
        api,
        status: 200,
        code: format!("malformed JSON (rows: {e})"),
        hint: "",
    })?;
    Ok(Table { columns, rows })
}

impl LogAnalytics {
    /// The KQL with the account filled in (`{object_id}`, `{upn}`), the
    /// values stripped of quotes and backslashes.
    fn kql(&self, target: &AlertTarget) -> String {
        let clean = |v: &str| v.replace(['"', '\'', '\\'], "");
        self.query
            .replace(
                "{object_id}",
                &clean(target.object_id.as_deref().unwrap_or_default()),
            )
            .replace("{upn}", &clean(&target.upn))
    }

    /// Whether `link` is this workspace API's own (same scheme, host and
    /// port, a `/v1/` path): the token is never sent anywhere else.
    fn own_link(&self, link: &str) -> bool {
        match (reqwest::Url::parse(link), reqwest::Url::parse(&self.base)) {
            (Ok(l), Ok(b)) => {
                l.scheme() == b.scheme()
                    && l.host_str() == b.host_str()
                    && l.port_or_known_default() == b.port_or_known_default()
                    && l.path().starts_with("/v1/")
            }
            _ => false,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/v1/workspaces/{}/query",
            self.base.trim_end_matches('/'),
            self.workspace
        )
    }

    async fn query(
        &self,
        query: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Result<Table, CloudError> {
        let body = json!({ "query": query, "timespan": format!("{}/{}", iso(from), iso(to)) });
        let v = self
            .api
            .call(
                &self.url(),
                &[],
                Some(&body),
                Auth::Token(&self.tokens, &Resource::LogAnalytics),
                &[],
                cancel,
            )
            .await?;
        la_table(&v, self.api.name)
    }
}

#[async_trait::async_trait]
impl Source for LogAnalytics {
    fn kind(&self) -> &'static str {
        "log-analytics"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let kql = self.kql(target);
        let now = crate::support::time::now();
        let table = self
            .query(
                &kql,
                since(target),
                now + chrono::Duration::minutes(5),
                cancel,
            )
            .await?;
        Ok(table
            .rows
            .iter()
            .filter_map(|row| {
                let fired = table.cell(row, &["TimeGenerated"]).and_then(timestamp)?;
                let accounts = table
                    .columns
                    .iter()
                    .zip(row)
                    .filter(|(c, _)| names_an_account(c))
                    .filter_map(|(_, v)| v.as_str().map(str::to_owned))
                    .collect();
                let raw: serde_json::Map<String, Value> = table
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                Some(Fetched {
                    alert: CommonAlert {
                        alert_id: table
                            .cell(row, &["Id", "CorrelationId"])
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        rule: self.label.clone(),
                        severity: String::new(),
                        monitor_condition: "Fired".into(),
                        fired,
                        accounts,
                        window: None,
                        search_link: None,
                    },
                    ingested: table
                        .cell(row, &["_IngestionTime", "IngestionTime"])
                        .and_then(timestamp),
                    raw: Value::Object(raw),
                })
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl SearchConfirm for LogAnalytics {
    async fn holds_signin(
        &self,
        alert: &CommonAlert,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<bool, String> {
        if target.signin_id.is_none() && target.correlation_id.is_none() {
            return Err(
                "the sign-in's record is not known, so its rows cannot be looked for".into(),
            );
        }
        // The rule's own search over its window: its
        // `linkToSearchResultsAPI` when the alert carries one on this
        // workspace's API, else the configured query over the window.
        let table = match &alert.search_link {
            Some(link) if self.own_link(link) => {
                let v = self
                    .api
                    .call(
                        link,
                        &[],
                        None,
                        Auth::Token(&self.tokens, &Resource::LogAnalytics),
                        &[],
                        cancel,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                la_table(&v, self.api.name).map_err(|e| e.to_string())?
            }
            _ => {
                let (from, to) = alert
                    .window
                    .ok_or_else(|| "the alert has no evaluation window".to_owned())?;
                let kql = self.kql(target);
                self.query(&kql, from, to, cancel)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(rows_hold_signin(
            &table.rows,
            target.signin_id.as_deref(),
            target.correlation_id.as_deref(),
        ))
    }
}

/// Graph's security alerts (`graph-security`): Defender XDR and Sentinel
/// alerts (`/v1.0/security/alerts_v2`) whose evidence names the account;
/// `Prefer: include-unknown-enum-members` so new enum values arrive as
/// themselves (<https://learn.microsoft.com/en-us/graph/api/security-list-alerts_v2>).
/// Needs `SecurityAlert.Read.All` (application).
pub struct GraphSecurity {
    /// The API client.
    pub(crate) api: Api,
    /// Graph's base URL.
    pub base: String,
    /// The token cache.
    pub tokens: Arc<TokenCache>,
}

/// Reads an `alerts_v2` alert: its title is its rule; accounts from its
/// user evidence (`userAccount.azureAdUserId`, `userPrincipalName`); its
/// activity window from `firstActivityDateTime`…`lastActivityDateTime`.
/// It was raised when created, whatever its status since (a resolved
/// alert still proves the pipeline; its status stays in the evidence).
pub fn parse_security_alert(v: &Value) -> Option<CommonAlert> {
    let fired = timestamp(&v["createdDateTime"])?;
    let mut accounts = Vec::new();
    for e in v["evidence"].as_array().into_iter().flatten() {
        let u = &e["userAccount"];
        for k in ["azureAdUserId", "userPrincipalName"] {
            if let Some(s) = u[k].as_str().filter(|s| !s.is_empty()) {
                accounts.push(s.to_owned());
            }
        }
    }
    Some(CommonAlert {
        alert_id: v["id"].as_str().unwrap_or_default().to_owned(),
        rule: v["title"].as_str().unwrap_or_default().to_owned(),
        severity: v["severity"].as_str().unwrap_or_default().to_owned(),
        monitor_condition: "Fired".into(),
        fired,
        accounts,
        // The activity it is about: one that ended before the sign-in is
        // not this drill's.
        window: timestamp(&v["firstActivityDateTime"]).zip(timestamp(&v["lastActivityDateTime"])),
        search_link: None,
    })
}

#[async_trait::async_trait]
impl Source for GraphSecurity {
    fn kind(&self) -> &'static str {
        "graph-security"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let base = self.base.trim_end_matches('/');
        let q = [(
            "$filter",
            format!("createdDateTime ge {}", iso(since(target))),
        )];
        let items = self
            .api
            .list(
                &format!("{base}/v1.0/security/alerts_v2"),
                &q,
                Auth::Token(&self.tokens, &Resource::Graph(base.to_owned())),
                &[("Prefer", "include-unknown-enum-members")],
                cancel,
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|v| {
                parse_security_alert(&v).map(|alert| Fetched {
                    alert,
                    raw: v,
                    ingested: None,
                })
            })
            .collect())
    }
}

/// The accounts among `upn` and `object_id` that `text` mentions (a
/// mail's or an incident's free text names the account, or does not).
fn mentioned(text: &str, upn: &str, object_id: Option<&str>) -> Vec<String> {
    let lower = text.to_lowercase();
    // Whole words only: `bg1@contoso…` is not in `old-bg1@contoso…`.
    let word = |c: Option<char>| {
        c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+'))
    };
    let found = |needle: &str| {
        let n = needle.to_lowercase();
        let mut from = 0;
        while let Some(i) = lower[from..].find(&n) {
            let at = from + i;
            let before = lower[..at].chars().next_back();
            let mut rest = lower[at + n.len()..].chars();
            let after = rest.next();
            // A full stop ending a sentence is not part of the address.
            let after = if after == Some('.') && !rest.next().is_some_and(char::is_alphanumeric) {
                None
            } else {
                after
            };
            if !word(before) && !word(after) {
                return true;
            }
            from = at + n.len();
        }
        false
    };
    [Some(upn), object_id]
        .into_iter()
        .flatten()
        .filter(|a| !a.is_empty() && found(a))
        .map(str::to_owned)
        .collect()
}

/// The action group's mail (`mailbox`): Graph
/// `/v1.0/users/{mailbox}/mailFolders/inbox/messages` received since the
/// sign-in, from `sender` with `subject` in its subject. A mail counts when
/// it names the account (UPN or object id in its subject or body); its
/// subject's `Fired:` / `Resolved:` prefix is its condition
/// (<https://learn.microsoft.com/en-us/graph/api/user-list-messages>).
/// Needs `Mail.Read` (application), best limited to that mailbox with an
/// Exchange application access policy.
pub struct Mailbox {
    /// The API client.
    pub(crate) api: Api,
    /// Graph's base URL.
    pub base: String,
    /// The token cache.
    pub tokens: Arc<TokenCache>,
    /// The mailbox (user id or UPN).
    pub mailbox: String,
    /// The expected sender.
    pub sender: String,
    /// Text the subject contains (any letter case).
    pub subject: String,
}

impl Mailbox {
    /// Reads a message: its sender is its rule when its subject matches.
    pub fn parse(&self, v: &Value, target: &AlertTarget) -> Option<CommonAlert> {
        let fired = timestamp(&v["receivedDateTime"])?;
        let subject = v["subject"].as_str().unwrap_or_default();
        let from = v["from"]["emailAddress"]["address"]
            .as_str()
            .unwrap_or_default();
        let rule = if subject
            .to_lowercase()
            .contains(&self.subject.to_lowercase())
        {
            from.to_owned()
        } else {
            format!("{from} (subject `{subject}`)")
        };
        let text = format!(
            "{subject}\n{}\n{}",
            v["bodyPreview"].as_str().unwrap_or_default(),
            v["body"]["content"].as_str().unwrap_or_default()
        );
        let resolved = subject.trim_start().to_lowercase().starts_with("resolved");
        Some(CommonAlert {
            alert_id: v["internetMessageId"]
                .as_str()
                .or_else(|| v["id"].as_str())
                .unwrap_or_default()
                .to_owned(),
            rule,
            severity: String::new(),
            monitor_condition: if resolved { "Resolved" } else { "Fired" }.into(),
            fired,
            accounts: mentioned(&text, &target.upn, target.object_id.as_deref()),
            window: None,
            search_link: None,
        })
    }
}

#[async_trait::async_trait]
impl Source for Mailbox {
    fn kind(&self) -> &'static str {
        "mailbox"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let base = self.base.trim_end_matches('/');
        let q = [
            (
                "$filter",
                format!(
                    "receivedDateTime ge {} and from/emailAddress/address eq '{}'",
                    iso(since(target)),
                    self.sender.replace('\'', "''")
                ),
            ),
            ("$top", "100".to_owned()),
            (
                "$select",
                "id,internetMessageId,subject,from,receivedDateTime,bodyPreview,body".to_owned(),
            ),
        ];
        let items = self
            .api
            .list(
                &format!(
                    "{base}/v1.0/users/{}/mailFolders/inbox/messages",
                    urlencoding(&self.mailbox)
                ),
                &q,
                Auth::Token(&self.tokens, &Resource::Graph(base.to_owned())),
                &[],
                cancel,
            )
            .await?;
        Ok(items
            .into_iter()
            .filter_map(|v| {
                self.parse(&v, target).map(|alert| Fetched {
                    alert,
                    raw: v,
                    ingested: None,
                })
            })
            .collect())
    }
}

/// Percent-encodes a path segment.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// PagerDuty (`pagerduty`): the service's incidents since the sign-in
/// (REST API v2 `GET /incidents`, offset pagination), each matched on its
/// alerts' bodies (`GET /incidents/{id}/alerts`, `body.details`): a
/// common-alert-schema payload there is read as such, other text is
/// searched for the account. Needs a read-only REST API key
/// (<https://developer.pagerduty.com/api-reference/9d0b4b12e36f9-list-incidents>).
pub struct PagerDuty {
    /// The API client (960 requests per minute per key).
    pub(crate) api: Api,
    /// `https://api.pagerduty.com` (or a stand-in).
    pub base: String,
    /// `Token token=…`.
    pub auth: SecretString,
    /// The service id.
    pub service: String,
}

const PD_ACCEPT: (&str, &str) = ("Accept", "application/vnd.pagerduty+json;version=2");

impl PagerDuty {
    /// Reads an incident and its alerts. It was raised when created,
    /// whatever its status since (auto-resolved or closed by on-call still
    /// proves the page; its status stays in the evidence).
    pub fn parse(incident: &Value, alerts: &[Value], target: &AlertTarget) -> Option<CommonAlert> {
        let fired = timestamp(&incident["created_at"])?;
        let mut accounts = Vec::new();
        let mut window = None;
        let mut search_link = None;
        for a in alerts {
            let details = &a["body"]["details"];
            let parsed = if details.is_string() {
                details
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
            } else {
                Some(details.clone())
            };
            match parsed.as_ref().map(parse_common_alert) {
                Some(Ok(c)) => {
                    accounts.extend(c.accounts);
                    window = window.or(c.window);
                    search_link = search_link.or(c.search_link);
                }
                _ => accounts.extend(mentioned(
                    &details.to_string(),
                    &target.upn,
                    target.object_id.as_deref(),
                )),
            }
        }
        Some(CommonAlert {
            alert_id: incident["id"].as_str().unwrap_or_default().to_owned(),
            rule: incident["service"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            severity: incident["urgency"].as_str().unwrap_or_default().to_owned(),
            monitor_condition: "Fired".into(),
            fired,
            accounts,
            window,
            search_link,
        })
    }
}

#[async_trait::async_trait]
impl Source for PagerDuty {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn fetch(
        &self,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<Vec<Fetched>, CloudError> {
        let base = self.base.trim_end_matches('/');
        let until = crate::support::time::now() + chrono::Duration::hours(1);
        let mut incidents = Vec::new();
        let mut offset = 0;
        loop {
            let q = [
                ("since", iso(since(target))),
                ("until", iso(until)),
                ("service_ids[]", self.service.clone()),
                ("limit", "100".into()),
                ("offset", offset.to_string()),
            ];
            let page = self
                .api
                .call(
                    &format!("{base}/incidents"),
                    &q,
                    None,
                    Auth::Header(&self.auth),
                    &[PD_ACCEPT],
                    cancel,
                )
                .await?;
            let got = page["incidents"].as_array().cloned().unwrap_or_default();
            offset += got.len();
            incidents.extend(got);
            if page["more"].as_bool() != Some(true) {
                break;
            }
            if offset >= 2000 {
                // A cut listing may lack the incident: an error.
                return Err(CloudError::Api {
                    api: self.api.name,
                    status: 200,
                    code: "more than 2000 incidents since the sign-in: narrow the service".into(),
                    hint: "",
                });
            }
        }
        let mut out = Vec::new();
        for inc in incidents {
            let Some(id) = inc["id"].as_str() else {
                continue;
            };
            let alerts = self
                .api
                .call(
                    &format!("{base}/incidents/{id}/alerts"),
                    &[],
                    None,
                    Auth::Header(&self.auth),
                    &[PD_ACCEPT],
                    cancel,
                )
                .await?;
            let list = alerts["alerts"].as_array().cloned().unwrap_or_default();
            if let Some(alert) = Self::parse(&inc, &list, target) {
                out.push(Fetched {
                    alert,
                    raw: json!({ "incident": inc, "alerts": list }),
                    ingested: None,
                });
            }
        }
        Ok(out)
    }
}

/// Where the polling checks' APIs are (Entra's, or the rehearsal
/// tenant's stand-ins).
#[derive(Clone)]
pub struct CloudEndpoints {
    /// Graph.
    pub graph: String,
    /// Azure Resource Manager.
    pub management: String,
    /// The Log Analytics query API.
    pub log_analytics: String,
    /// PagerDuty's REST API and its `Authorization` value
    /// (`Token token=…`).
    pub pagerduty: Option<(String, SecretString)>,
}

/// Documented request limits, as gaps between requests: Graph security
/// 150 per minute per app and tenant; Outlook mail 10,000 per 10 minutes
/// per app and mailbox; Azure Resource Manager reads 12,000 per hour;
/// Log Analytics 200 per 30 s per user; PagerDuty 960 per minute per key.
const SECURITY_GAP: Duration = Duration::from_millis(400);
const MAIL_GAP: Duration = Duration::from_millis(60);
const ARM_GAP: Duration = Duration::from_millis(300);
const LA_GAP: Duration = Duration::from_millis(150);
const PD_GAP: Duration = Duration::from_millis(63);

/// The polling check of `a` (any kind but `webhook`, which attaches to the
/// receiver), with `tokens` for Microsoft's APIs; polls no faster than
/// `a.every` nor than its API allows.
pub fn polling_check(
    a: &crate::config::ExpectedAlert,
    c: &CloudEndpoints,
    tokens: Arc<TokenCache>,
) -> Result<PollingCheck, String> {
    use crate::config::AlertKind;
    let http = tokens.http().clone();
    let (source, gap): (Box<dyn Source>, Duration) = match a.kind {
        AlertKind::Webhook => {
            return Err("a webhook alert attaches to the receiver, it is not polled".into());
        }
        AlertKind::GraphSignIn => (
            Box::new(GraphSignIns {
                graph: Arc::new(crate::cloud::GraphClient::new(&c.graph, tokens)),
                details: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            }),
            crate::cloud::graph::SIGNIN_LOG_GAP,
        ),
        AlertKind::AzureAlerts => (
            Box::new(AzureAlerts {
                api: Api::new(
                    http,
                    "Azure Resource Manager (Alerts Management)",
                    &c.management,
                    "; give the app the Monitoring Reader role on the subscription",
                    ARM_GAP,
                ),
                base: c.management.clone(),
                tokens,
                rule_id: a.rule.clone(),
            }),
            ARM_GAP,
        ),
        AlertKind::LogAnalytics => (
            Box::new(log_analytics(a, c, tokens).ok_or("log-analytics needs a workspace")?),
            LA_GAP,
        ),
        AlertKind::GraphSecurity => (
            Box::new(GraphSecurity {
                api: Api::new(
                    http,
                    "Graph security",
                    &c.graph,
                    "; grant the app SecurityAlert.Read.All (application) with admin consent",
                    SECURITY_GAP,
                ),
                base: c.graph.clone(),
                tokens,
            }),
            SECURITY_GAP,
        ),
        AlertKind::Mailbox => (
            Box::new(Mailbox {
                api: Api::new(
                    http,
                    "Graph mail",
                    &c.graph,
                    "; grant the app Mail.Read (application) with admin consent, limited to the mailbox by an application access policy",
                    MAIL_GAP,
                ),
                base: c.graph.clone(),
                tokens,
                mailbox: a.mailbox.clone().ok_or("mailbox needs a mailbox")?,
                sender: a.rule.clone(),
                subject: a.subject.clone().unwrap_or_default(),
            }),
            MAIL_GAP,
        ),
        AlertKind::PagerDuty => {
            let (base, auth) = c.pagerduty.clone().ok_or(
                "a pagerduty alert needs [pagerduty] api_key in glassdrill.toml (a read-only REST API key)",
            )?;
            (
                Box::new(PagerDuty {
                    api: Api::new(
                        http,
                        "PagerDuty",
                        &base,
                        "; use a read-only REST API key that can see the service",
                        PD_GAP,
                    ),
                    base,
                    auth,
                    service: a.rule.clone(),
                }),
                PD_GAP,
            )
        }
    };
    Ok(PollingCheck::new(source, &a.rule, a.every.max(gap)))
}

/// The Log Analytics client of `a` (its workspace and query), also the
/// confirmation of alerts that name no account.
pub fn log_analytics(
    a: &crate::config::ExpectedAlert,
    c: &CloudEndpoints,
    tokens: Arc<TokenCache>,
) -> Option<LogAnalytics> {
    Some(LogAnalytics {
        api: Api::new(
            tokens.http().clone(),
            "Log Analytics",
            &c.log_analytics,
            "; give the app the Log Analytics Reader role on the workspace",
            LA_GAP,
        ),
        base: c.log_analytics.clone(),
        tokens,
        workspace: a.workspace.clone()?,
        query: a
            .query
            .clone()
            .unwrap_or_else(|| DEFAULT_LA_QUERY.to_owned()),
        label: a.rule.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la(base: &str) -> LogAnalytics {
        LogAnalytics {
            api: Api::new(
                reqwest::Client::new(),
                "Log Analytics",
                base,
                "",
                Duration::from_millis(1),
            ),
            base: base.into(),
            tokens: Arc::new(
                TokenCache::new(crate::cloud::AppCredentials {
                    authority: "http://127.0.0.1:9".into(),
                    tenant_id: "t".into(),
                    client_id: "c".into(),
                    client_secret: SecretString::from("s"),
                    certificate: None,
                })
                .unwrap(),
            ),
            workspace: "ws".into(),
            query: DEFAULT_LA_QUERY.into(),
            label: "r".into(),
        }
    }

    /// The token goes only to the workspace API itself, never to a host
    /// that merely starts like it (the link comes from the alert body).
    #[test]
    fn search_links_must_be_the_apis_own() {
        let l = la("https://api.loganalytics.io");
        assert!(l.own_link("https://api.loganalytics.io/v1/workspaces/ws/query?query=x"));
        assert!(
            l.own_link("https://api.loganalytics.io/v1/subscriptions/s/resourceGroups/rg/query")
        );
        for bad in [
            "https://api.loganalytics.io.evil.localhost/v1/workspaces/ws/query",
            "http://api.loganalytics.io/v1/workspaces/ws/query",
            "https://api.loganalytics.io:8443/v1/workspaces/ws/query",
            "https://api.loganalytics.io/oauth2/token",
            "not a url",
        ] {
            assert!(!l.own_link(bad), "{bad}");
        }
    }

    #[test]
    fn the_query_gets_the_account_without_quotes_or_backslashes() {
        let l = la("https://api.loganalytics.io");
        let t = AlertTarget {
            upn: "o\"brien\\@contoso.onmicrosoft.com".into(),
            object_id: Some("00000000-0000-0000-0000-0000000b6e01".into()),
            signin_at: chrono::Utc::now(),
            signin_id: None,
            correlation_id: None,
            deadline: tokio::time::Instant::now(),
            late_until: tokio::time::Instant::now(),
        };
        let q = l.kql(&t);
        assert!(q.contains("\"obrien@contoso.onmicrosoft.com\""), "{q}");
        assert!(q.contains("\"00000000-0000-0000-0000-0000000b6e01\""));
    }

    #[test]
    fn free_text_names_the_account_as_a_whole_word_only() {
        let upn = "bg1@contoso.onmicrosoft.com";
        assert_eq!(
            mentioned(
                "Dimension: UserPrincipalName = bg1@contoso.onmicrosoft.com\r\n",
                upn,
                None
            ),
            [upn]
        );
        assert_eq!(
            mentioned("Signed in: BG1@Contoso.onmicrosoft.com.", upn, None),
            [upn]
        );
        assert!(mentioned("old-bg1@contoso.onmicrosoft.com signed in", upn, None).is_empty());
        assert!(mentioned("bg1@contoso.onmicrosoft.community", upn, None).is_empty());
        let oid = "00000000-0000-0000-0000-0000000b6e01";
        assert_eq!(mentioned(&format!("UserId={oid};"), upn, Some(oid)), [oid]);
    }

    #[test]
    fn defender_alerts_carry_their_activity_window_and_count_when_resolved() {
        let mut v: Value =
            serde_json::from_str(include_str!("fixtures/graph-alerts-v2.json")).unwrap();
        v["value"][0]["status"] = "resolved".into();
        let a = parse_security_alert(&v["value"][0]).unwrap();
        assert_eq!(
            a.monitor_condition, "Fired",
            "raised when created, whatever since"
        );
        assert!(a.window.is_some());
    }
}
