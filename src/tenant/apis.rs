//! The alert pipeline's APIs, as the alert checks read them: Azure
//! Resource Manager's Alerts Management, the Log Analytics query API,
//! Graph's `security/alerts_v2` and a mailbox's inbox, PagerDuty's
//! incidents. All fed by the alerts the rules raised ([`Raised`]), each
//! shaped as the documented sample it stands for (the fixtures in
//! `src/alerts/fixtures/`, sources in their `SOURCES-*.md`), each behind
//! the tenant's bearer tokens (PagerDuty: its `Token token=` key), each
//! throttled once with a fractional `Retry-After` under
//! [`Fault::ApiThrottle`].

use super::alerting::{Raised, WORKSPACE, WORKSPACE_ID, alert_rule_id};
use super::*;

/// The account's rehearsal mailbox the action group mails.
pub const MAILBOX: &str = "soc@rehearsal.onmicrosoft.com";
/// Azure Monitor's alert mail sender (Microsoft's action groups page).
pub const MAIL_SENDER: &str = "azure-noreply@microsoft.com";
/// The rehearsal's PagerDuty service.
pub const PD_SERVICE: &str = "PBGLASS";

/// `Ok` when the request carries a valid token (PagerDuty: the tenant's
/// key), and it is not this API's first request under
/// [`Fault::ApiThrottle`].
pub(super) fn gate(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    api: &'static str,
) -> Result<(), Box<Response>> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let mut inner = s.lock();
    let ok = match auth.strip_prefix("Bearer ") {
        Some(b) => inner
            .tokens
            .get(b)
            .is_some_and(|exp| *exp > tokio::time::Instant::now()),
        None => auth.strip_prefix("Token token=").is_some_and(|k| {
            constant_time_eq(
                k.as_bytes(),
                s.opts.client_secret.expose_secret().as_bytes(),
            )
        }),
    };
    if !ok {
        return Err(Box::new(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty or invalid.",
        )));
    }
    if s.has(Fault::ApiThrottle) && inner.throttled_apis.insert(api) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("0.5"));
        return Err(Box::new(r));
    }
    Ok(())
}

fn raised(s: &Shared) -> Vec<Raised> {
    s.lock().raised.clone()
}

/// Alerts Management "Get All": the rule's alerts, shaped as the
/// documented example response of
/// <https://learn.microsoft.com/en-us/rest/api/monitor/alertsmanagement/alerts/get-all>;
/// `properties.context` (with `includeContext=true`) carries the common
/// schema's `alertContext` (the documented sample's context is empty: how
/// Azure fills it is not documented, see `SOURCES-azure.md`).
pub(super) async fn azure_alerts(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&s, &headers, "alerts-management") {
        return *r;
    }
    let rule = q.get("alertRule").cloned().unwrap_or_default();
    let value: Vec<Value> = raised(&s)
        .iter()
        .filter(|a| rule.is_empty() || crate::alerts::same_rule(&rule, &alert_rule_id(&a.rule)))
        .filter(|a| q.get("monitorCondition").is_none_or(|c| c.eq_ignore_ascii_case(&a.condition)))
        .map(|a| {
            json!({
                "properties": {
                    "essentials": {
                        "severity": "Sev0",
                        "signalType": "Log",
                        "alertState": "New",
                        "monitorCondition": a.condition,
                        "monitorService": "Log Alerts V2",
                        "targetResource": WORKSPACE,
                        "targetResourceName": "law-rehearsal",
                        "targetResourceGroup": "rg-breakglass",
                        "targetResourceType": "workspaces",
                        "sourceCreatedId": a.alert_id,
                        "alertRule": alert_rule_id(&a.rule),
                        "startDateTime": ts(a.fired),
                        "lastModifiedDateTime": ts(a.fired),
                        "lastModifiedUserName": "System",
                        "actionStatus": { "isSuppressed": false },
                        "description": "Any sign-in of a break-glass account"
                    },
                    "egressConfig": {},
                    "context": a.context(&s.urls.log_analytics)
                },
                "id": format!("/subscriptions/00000000-0000-0000-0000-0000000000aa/providers/Microsoft.AlertsManagement/alerts/{}", a.alert_id),
                "type": "Microsoft.AlertsManagement/alerts",
                "name": a.rule
            })
        })
        .collect();
    Json(json!({ "value": value })).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct LaQuery {
    #[serde(default)]
    timespan: String,
}

/// The Log Analytics query API (POST with a JSON body, or GET as the
/// alert's `linkToSearchResultsAPI`): the account's sign-in rows with
/// their ingestion time, in the documented response format
/// (<https://learn.microsoft.com/en-us/azure/azure-monitor/logs/api/response-format>);
/// under [`Fault::ApiPartialError`], a 200 carrying a `PartialError`.
pub(super) async fn log_analytics(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(ws): Path<String>,
    Query(get): Query<LaQuery>,
    body: Option<Json<LaQuery>>,
) -> Response {
    if let Err(r) = gate(&s, &headers, "log-analytics") {
        return *r;
    }
    if ws != WORKSPACE_ID {
        return graph_error(
            StatusCode::NOT_FOUND,
            "WorkspaceNotFoundError",
            "The workspace could not be found.",
        );
    }
    let timespan = body.map(|Json(b)| b.timespan).unwrap_or(get.timespan);
    let (from, to) = timespan
        .split_once('/')
        .and_then(|(a, b)| {
            Some((
                DateTime::parse_from_rfc3339(a).ok()?.with_timezone(&Utc),
                DateTime::parse_from_rfc3339(b).ok()?.with_timezone(&Utc),
            ))
        })
        .unwrap_or((DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC));
    let now = tokio::time::Instant::now();
    let rows: Vec<Value> = s
        .lock()
        .signins
        .iter()
        .filter(|l| l.visible_at <= now && l.created >= from && l.created <= to)
        .map(|l| {
            let r = &l.record;
            json!([
                r["createdDateTime"],
                r["id"],
                r["correlationId"],
                r["userId"],
                r["userPrincipalName"],
                r["status"]["errorCode"]
                    .as_i64()
                    .unwrap_or_default()
                    .to_string(),
                // Ingested when it became visible in the log.
                ts(l.created
                    + chrono::Duration::from_std(if s.has(Fault::LogDelay) {
                        s.opts.log_delay
                    } else {
                        Duration::ZERO
                    })
                    .unwrap_or_default()),
            ])
        })
        .collect();
    let columns = [
        ("TimeGenerated", "datetime"),
        ("Id", "string"),
        ("CorrelationId", "string"),
        ("UserId", "string"),
        ("UserPrincipalName", "string"),
        ("ResultType", "string"),
        ("_IngestionTime", "datetime"),
    ]
    .map(|(n, t)| json!({ "name": n, "type": t }));
    let mut v =
        json!({ "tables": [{ "name": "PrimaryResult", "columns": columns, "rows": rows }] });
    if s.has(Fault::ApiPartialError) {
        v["error"] = json!({
            "code": "PartialError",
            "message": "There were some errors when processing your query.",
            "details": [{ "code": "EngineError", "message": "Something went wrong processing your query on the server." }]
        });
    }
    Json(v).into_response()
}

/// Graph `security/alerts_v2`: a Defender custom detection per raised
/// alert whose user evidence names the account, shaped as
/// <https://learn.microsoft.com/en-us/graph/api/security-list-alerts_v2>.
pub(super) async fn security_alerts(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &headers, "graph-security") {
        return *r;
    }
    let acct = &s.opts.account;
    let value: Vec<Value> = raised(&s)
        .iter()
        .map(|a| {
            json!({
                "@odata.type": "#microsoft.graph.security.alert",
                "id": format!("da{}", a.alert_id.replace('-', "")),
                "providerAlertId": a.alert_id,
                "incidentId": "1",
                "status": if a.condition == "Resolved" { "resolved" } else { "new" },
                "severity": "high",
                "classification": "unknown",
                "determination": "unknown",
                "serviceSource": "microsoft365Defender",
                "detectionSource": "customDetection",
                "detectorId": a.rule,
                "tenantId": TENANT_ID,
                "title": a.rule,
                "description": "A break-glass (emergency access) account signed in.",
                "category": "InitialAccess",
                "createdDateTime": ts(a.fired),
                "lastUpdateDateTime": ts(a.fired),
                "firstActivityDateTime": ts(a.signin),
                "lastActivityDateTime": ts(a.signin),
                "evidence": [{
                    "@odata.type": "#microsoft.graph.security.userEvidence",
                    "createdDateTime": ts(a.fired),
                    "verdict": "unknown",
                    "remediationStatus": "none",
                    "roles": [],
                    "tags": [],
                    "userAccount": {
                        "accountName": a.upn.split('@').next().unwrap_or_default(),
                        "domainName": a.upn.split('@').nth(1).unwrap_or_default(),
                        "azureAdUserId": acct.id,
                        "userPrincipalName": a.upn,
                        "displayName": acct.display_name
                    }
                }]
            })
        })
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#security/alerts_v2", s.urls.graph),
        "value": value
    }))
    .into_response()
}

/// The inbox the action group mails: one alert mail per raised alert from
/// Azure Monitor's sender, shaped as
/// <https://learn.microsoft.com/en-us/graph/api/user-list-messages>; it
/// names the account only when the rule splits by it.
pub(super) async fn messages(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Response {
    if let Err(r) = gate(&s, &headers, "mailbox") {
        return *r;
    }
    if !same_upn(&user, MAILBOX) {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ErrorInvalidUser",
            "The requested user is invalid.",
        );
    }
    let value: Vec<Value> = raised(&s)
        .iter()
        .map(|a| {
            let dimension = if a.dimensions {
                format!("\r\nDimension: UserPrincipalName = {}", a.upn)
            } else {
                String::new()
            };
            let text = format!(
                "Your Azure Monitor alert was triggered\r\n\r\nAlert rule: {}\r\nSeverity: Sev0\r\nDescription: Any sign-in of a break-glass account{dimension}\r\nFired at: {}",
                a.rule,
                ts(a.fired)
            );
            let from = json!({ "emailAddress": { "name": "Microsoft Azure", "address": MAIL_SENDER } });
            json!({
                "id": format!("AAMk{}", a.alert_id.replace('-', "")),
                "createdDateTime": ts(a.fired),
                "receivedDateTime": ts(a.fired),
                "sentDateTime": ts(a.fired),
                "hasAttachments": false,
                "internetMessageId": format!("<{}@mail.rehearsal.localhost>", a.alert_id),
                "subject": format!("{}:Sev0 Azure Monitor Alert {} on law-rehearsal ( microsoft.operationalinsights/workspaces ) at {}", a.condition, a.rule, ts(a.fired)),
                "bodyPreview": text,
                "importance": "normal",
                "isRead": false,
                "isDraft": false,
                "body": { "contentType": "text", "content": text },
                "sender": from,
                "from": from,
                "toRecipients": [{ "emailAddress": { "name": "SOC", "address": MAILBOX } }]
            })
        })
        .collect();
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#users('{MAILBOX}')/mailFolders('inbox')/messages", s.urls.graph),
        "value": value
    }))
    .into_response()
}

fn incident(s: &Shared, a: &Raised) -> Value {
    let short: String = a.alert_id.replace('-', "").chars().take(6).collect();
    let id = format!("P{}", short.to_uppercase());
    json!({
        "id": id,
        "type": "incident",
        "summary": format!("{}:Sev0 Azure Monitor Alert {}", a.condition, a.rule),
        "self": format!("{}/incidents/{id}", s.urls.pagerduty),
        "html_url": format!("{}/incidents/{id}", s.urls.pagerduty),
        "incident_number": 1,
        "title": format!("{}:Sev0 Azure Monitor Alert {}", a.condition, a.rule),
        "created_at": ts(a.fired),
        "updated_at": ts(a.fired),
        "status": if a.condition == "Resolved" { "resolved" } else { "triggered" },
        "incident_key": a.alert_id,
        "service": { "id": PD_SERVICE, "type": "service_reference", "summary": "Break-glass alerts", "self": format!("{}/services/{PD_SERVICE}", s.urls.pagerduty), "html_url": format!("{}/services/{PD_SERVICE}", s.urls.pagerduty) },
        "assignments": [],
        "urgency": "high"
    })
}

/// PagerDuty `GET /incidents` (one incident per raised alert on the
/// service), shaped as the documented "List incidents" response.
pub(super) async fn pd_incidents(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = gate(&s, &headers, "pagerduty") {
        return *r;
    }
    let services: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "service_ids[]")
        .map(|(_, v)| v.as_str())
        .collect();
    let incidents: Vec<Value> = raised(&s)
        .iter()
        .filter(|_| services.is_empty() || services.contains(&PD_SERVICE))
        .map(|a| incident(&s, a))
        .collect();
    Json(json!({ "incidents": incidents, "limit": 100, "offset": 0, "more": false, "total": null }))
        .into_response()
}

/// PagerDuty `GET /incidents/{id}/alerts`: the alert whose body's
/// `details` is the Azure Monitor payload the integration received.
pub(super) async fn pd_alerts(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&s, &headers, "pagerduty") {
        return *r;
    }
    let alerts: Vec<Value> = raised(&s)
        .iter()
        .filter(|a| incident(&s, a)["id"] == id.as_str())
        .map(|a| {
            json!({
                "id": format!("{id}A"),
                "type": "alert",
                "summary": format!("{}:Sev0 Azure Monitor Alert {}", a.condition, a.rule),
                "created_at": ts(a.fired),
                "status": if a.condition == "Resolved" { "resolved" } else { "triggered" },
                "alert_key": a.alert_id,
                "service": { "id": PD_SERVICE, "type": "service_reference" },
                "body": { "type": "alert_body", "contexts": [], "details": a.payload(&s.urls.log_analytics) },
                "suppressed": false,
                "severity": "critical"
            })
        })
        .collect();
    Json(json!({ "alerts": alerts, "limit": 25, "offset": 0, "more": false, "total": null }))
        .into_response()
}

/// An expected alert of every polling kind, against the rehearsal
/// tenant's stand-ins (`glassdrill rehearse --alerts all`), each with
/// `deadline` and polled every second (no faster than its API allows).
pub fn every_alert_kind(deadline: Duration) -> Vec<crate::config::ExpectedAlert> {
    use crate::config::{AlertKind, ExpectedAlert};
    let every = |kind, name: &str, rule: &str| {
        let mut a = ExpectedAlert::new(kind, name, rule, deadline);
        a.every = Duration::from_secs(1);
        a
    };
    let mut la = every(
        AlertKind::LogAnalytics,
        "sign-in row in the workspace",
        "Log Analytics sign-in row",
    );
    la.workspace = Some(WORKSPACE_ID.to_owned());
    let mut mail = every(AlertKind::Mailbox, "alert mail to the SOC", MAIL_SENDER);
    mail.mailbox = Some(MAILBOX.to_owned());
    mail.subject = Some(format!("Azure Monitor Alert {DEFAULT_ALERT_RULE}"));
    vec![
        every(
            AlertKind::GraphSignIn,
            "sign-in logged",
            crate::alerts::sources::SIGNIN_LOG,
        ),
        every(
            AlertKind::AzureAlerts,
            "alert raised (Alerts Management)",
            &alert_rule_id(DEFAULT_ALERT_RULE),
        ),
        la,
        every(
            AlertKind::GraphSecurity,
            "Defender alert",
            DEFAULT_ALERT_RULE,
        ),
        mail,
        every(AlertKind::PagerDuty, "PagerDuty incident", PD_SERVICE),
    ]
}
