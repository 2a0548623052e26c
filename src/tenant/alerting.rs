//! The alert rules: an Azure Monitor common-alert-schema webhook posted
//! per rule after each sign-in, with the fault switches' variations.

use super::*;

/// The alert rules: each posts one Azure Monitor log alert per sign-in to
/// the action group's webhook after the configured delay.
pub(super) fn schedule_alert(s: &Arc<Shared>, signin: DateTime<Utc>) {
    if s.has(Fault::AlertNever) {
        return;
    }
    let mut rules = s.opts.alert_rules.clone();
    if rules.is_empty() {
        rules.push(DEFAULT_ALERT_RULE.to_owned());
    }
    if s.has(Fault::AlertRuleMissing) {
        rules.pop();
    }
    for rule in rules {
        fire(s.clone(), rule, signin);
    }
}

/// One rule's alert for the sign-in at `signin`: posted to the action
/// group's webhook (twice under [`Fault::AlertDuplicate`]; only its
/// `Resolved` notification under [`Fault::AlertResolvedOnly`]) and kept
/// for the Alerts Management, Defender, mailbox and PagerDuty stand-ins.
fn fire(s: Arc<Shared>, rule: String, signin: DateTime<Utc>) {
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
        let condition = if s.has(Fault::AlertResolvedOnly) {
            "Resolved"
        } else {
            "Fired"
        };
        let raised = Raised {
            alert_id: alert_id.clone(),
            rule: rule.clone(),
            upn,
            signin,
            fired,
            condition: condition.to_owned(),
            dimensions: !s.has(Fault::AlertNoDimensions),
        };
        let payload = raised.payload(&s.urls.log_analytics);
        let mut delivery = match &s.opts.webhook_url {
            None => "no webhook configured".to_owned(),
            Some(_) => String::new(),
        };
        let target = match (&s.opts.secure_webhook, &s.signer) {
            (Some((url, aud)), Some((key, _))) => match secure_token(&s, key, aud) {
                Ok(t) => Some((url.clone(), Some(t))),
                Err(e) => {
                    delivery = format!("the secure webhook token could not be signed: {e}");
                    None
                }
            },
            _ => s.opts.webhook_url.clone().map(|u| (u, None)),
        };
        if let Some((url, bearer)) = target {
            let times = if s.has(Fault::AlertDuplicate) { 2 } else { 1 };
            for _ in 0..times {
                let mut req = s.http.post(&url).json(&payload);
                if let Some(t) = &bearer {
                    req = req.bearer_auth(t);
                }
                delivery = match req.send().await {
                    Ok(r) => format!("HTTP {}", r.status().as_u16()),
                    // Never the URL: it carries the webhook's token.
                    Err(e) => format!("delivery failed: {}", e.without_url()),
                };
            }
        }
        let mut inner = s.lock();
        inner.raised.push(raised);
        inner.fired.push(FiredAlert { alert_id, delivery });
    });
}

/// Azure Monitor's service principal (the action group's identity),
/// as Microsoft's secure webhook documentation names it.
const AZURE_MONITOR_APP_ID: &str = "461e8683-5575-4561-ac7f-899cc907d62a";
/// The signing key's id in the tenant's JWKS.
const KID: &str = "rehearsal-1";

/// A fresh RSA key for the secure webhook's tokens, and its JWKS.
pub(super) fn signing_key() -> Result<(jsonwebtoken::EncodingKey, Value), String> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| format!("cannot make the secure webhook's signing key: {e}"))?;
    let der = key
        .to_pkcs1_der()
        .map_err(|e| format!("cannot encode the secure webhook's signing key: {e}"))?;
    let jwks = json!({ "keys": [{
        "kty": "RSA",
        "use": "sig",
        "kid": KID,
        "n": B64.encode(key.n().to_bytes_be()),
        "e": B64.encode(key.e().to_bytes_be()),
    }]});
    Ok((
        jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
        jwks,
    ))
}

/// The token Azure Monitor's action group presents to a secure webhook:
/// an Entra app-only access token for the webhook's app (`aud`), with the
/// `ActionGroupsSecureWebhook` role, issued to Azure Monitor's service
/// principal (claims as Entra's access token reference lists them).
fn secure_token(s: &Shared, key: &jsonwebtoken::EncodingKey, aud: &str) -> Result<String, String> {
    let now = Utc::now().timestamp();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(KID.into());
    let claims = json!({
        "aud": aud,
        "iss": format!("{}/{TENANT_ID}/v2.0", s.urls.authority),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "appid": AZURE_MONITOR_APP_ID,
        "azp": AZURE_MONITOR_APP_ID,
        "tid": TENANT_ID,
        "roles": [crate::alerts::webhook::SECURE_WEBHOOK_ROLE],
        "ver": "2.0",
    });
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
}

/// The tenant's signing keys (`/discovery/v2.0/keys`).
pub(super) async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    match &s.signer {
        Some((_, keys)) => Json(keys.clone()).into_response(),
        None => Json(json!({ "keys": [] })).into_response(),
    }
}

/// The rehearsal workspace's resource id and id.
pub(crate) const WORKSPACE: &str = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourcegroups/rg-breakglass/providers/microsoft.operationalinsights/workspaces/law-rehearsal";
/// The rehearsal workspace's id (the query API's `{workspaceId}`).
pub const WORKSPACE_ID: &str = "00000000-0000-0000-0000-0000000000ab";

/// The resource id of the rehearsal tenant's alert rule `rule`.
pub fn alert_rule_id(rule: &str) -> String {
    format!(
        "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-breakglass/providers/Microsoft.Insights/scheduledQueryRules/{rule}"
    )
}

/// An alert the rules raised, as the stand-in APIs list it.
#[derive(Debug, Clone)]
pub(super) struct Raised {
    pub(super) alert_id: String,
    pub(super) rule: String,
    pub(super) upn: String,
    pub(super) signin: DateTime<Utc>,
    pub(super) fired: DateTime<Utc>,
    pub(super) condition: String,
    /// Whether the rule splits by account (a `UserPrincipalName`
    /// dimension); Microsoft's sample break-glass rule does not.
    pub(super) dimensions: bool,
}

impl Raised {
    /// Its evaluation window: five minutes up to just after the sign-in.
    pub(super) fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            self.signin - chrono::Duration::minutes(5),
            self.signin + chrono::Duration::seconds(1),
        )
    }

    /// The common-schema `alertContext`, with the search link on the
    /// Log Analytics stand-in at `la`.
    pub(super) fn context(&self, la: &str) -> Value {
        let (start, end) = self.window();
        let query = if self.dimensions {
            "SigninLogs | where UserPrincipalName in~ (\"breakglass1@rehearsal.onmicrosoft.com\", \"breakglass2@rehearsal.onmicrosoft.com\")".to_owned()
        } else {
            format!("SigninLogs | project UserId | where UserId == \"{REHEARSAL_OBJECT_ID}\"")
        };
        let dims = if self.dimensions {
            json!([{ "name": "UserPrincipalName", "value": self.upn }])
        } else {
            json!([])
        };
        let timespan = format!("{}/{}", ts(start), ts(end));
        let link = reqwest::Url::parse_with_params(
            &format!("{la}/v1/workspaces/{WORKSPACE_ID}/query"),
            &[("query", query.as_str()), ("timespan", timespan.as_str())],
        )
        .map(|u| u.to_string())
        .unwrap_or_default();
        json!({
            "properties": null,
            "conditionType": "LogQueryCriteria",
            "condition": {
                "windowSize": "PT5M",
                "allOf": [{
                    "searchQuery": query,
                    "metricMeasureColumn": null,
                    "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                    "operator": "GreaterThan",
                    "threshold": "0",
                    "timeAggregation": "Count",
                    "dimensions": dims,
                    "metricValue": 1.0,
                    "failingPeriods": { "numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1 },
                    "linkToSearchResultsAPI": link
                }],
                "windowStartTime": ts(start),
                "windowEndTime": ts(end)
            }
        })
    }

    /// The webhook payload.
    pub(super) fn payload(&self, la: &str) -> Value {
        let mut v = common_alert(
            &self.alert_id,
            &self.rule,
            &self.upn,
            self.signin,
            self.fired,
        );
        v["data"]["essentials"]["monitorCondition"] = self.condition.clone().into();
        if self.condition == "Resolved" {
            v["data"]["essentials"]["resolvedDateTime"] = ts(self.fired).into();
        }
        v["data"]["alertContext"] = self.context(la);
        v
    }
}

/// An Azure Monitor common-alert-schema payload of a Log Alerts V2 rule on
/// `SigninLogs`, with the account as a dimension.
///
/// Shaped as Microsoft's documented "Log search alert ... (from API
/// version 2021-08-01)" sample and the "Log alert V2" test action sample:
/// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-log-webhook>
/// and
/// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-payload-samples>.
/// The samples' `linkTo*SearchResults*` fields are left out here (they
/// point at public Azure hosts); [`Raised::payload`] adds the API link on
/// the rehearsal's Log Analytics stand-in.
pub fn common_alert(
    alert_id: &str,
    rule: &str,
    upn: &str,
    signin: DateTime<Utc>,
    fired: DateTime<Utc>,
) -> Value {
    let sub = "00000000-0000-0000-0000-0000000000aa";
    json!({
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": format!("/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts/{alert_id}"),
                "alertRule": rule,
                "severity": "Sev0",
                "signalType": "Log",
                "monitorCondition": "Fired",
                "monitoringService": "Log Alerts V2",
                "alertTargetIDs": [WORKSPACE],
                "configurationItems": [WORKSPACE],
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
