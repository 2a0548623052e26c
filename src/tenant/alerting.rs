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

/// One rule's alert for the sign-in at `signin`.
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
        let payload = common_alert(&alert_id, &rule, &upn, signin, fired);
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
///
/// Shaped as Microsoft's documented "Log search alert ... (from API
/// version 2021-08-01)" sample and the "Log alert V2" test action sample:
/// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-log-webhook>
/// and
/// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-payload-samples>.
/// The samples' `linkTo*SearchResults*` fields are left out: they point
/// at public Azure hosts, and nothing here may name one.
pub fn common_alert(
    alert_id: &str,
    rule: &str,
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
                "alertRule": rule,
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
