//! Correlation, pure: does an alert count for this drill's account and
//! sign-in? No I/O; unit-tested on payloads shaped like Microsoft's
//! documented common alert schema samples.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

pub use crate::record::IgnoreReason;

/// UPNs compare case-insensitively and ignoring surrounding space, as Entra
/// compares sign-in names.
pub(crate) fn same_upn(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Whether an alert's rule is the configured one: names compare
/// case-insensitively; a configured resource id
/// (`/subscriptions/.../scheduledQueryRules/NAME`) compares by its last
/// segment, the rule name the common schema carries in `alertRule`.
pub fn same_rule(configured: &str, alert_rule: &str) -> bool {
    let name = |r: &str| -> String {
        r.trim()
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_lowercase()
    };
    let (a, b) = (name(configured), name(alert_rule));
    !a.is_empty() && a == b
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

/// Why a payload is not a usable common-alert-schema alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Another schema (the action group does not use the common schema).
    #[error(
        "schemaId is not azureMonitorCommonAlertSchema (enable the common alert schema on the action group)"
    )]
    NotCommonSchema,
    /// A field correlation needs is missing or malformed.
    #[error("{0}")]
    Field(&'static str),
}

/// Reads a common-alert-schema payload. Account names are taken from Log
/// Alerts V2 dimensions named like a UPN column and from
/// `customProperties.UserPrincipalName`.
pub fn parse_common_alert(v: &Value) -> Result<CommonAlert, ShapeError> {
    if v["schemaId"].as_str() != Some("azureMonitorCommonAlertSchema") {
        return Err(ShapeError::NotCommonSchema);
    }
    let e = &v["data"]["essentials"];
    let s = |k: &str| e[k].as_str().map(str::to_owned);
    let fired = s("firedDateTime")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or(ShapeError::Field(
            "data.essentials.firedDateTime is missing or not RFC 3339",
        ))?;
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
        alert_id: s("alertId").ok_or(ShapeError::Field("data.essentials.alertId is missing"))?,
        rule: s("alertRule").unwrap_or_default(),
        severity: s("severity").unwrap_or_default(),
        monitor_condition: s("monitorCondition").unwrap_or_default(),
        fired,
        accounts,
    })
}

/// Whether `alert` counts for the sign-in of `upn` at `signin`, as the
/// alert of `rule`.
pub(crate) fn judge(
    alert: &CommonAlert,
    rule: &str,
    upn: &str,
    signin: DateTime<Utc>,
) -> Result<(), IgnoreReason> {
    if !alert.monitor_condition.eq_ignore_ascii_case("fired") {
        return Err(IgnoreReason::NotFired {
            condition: alert.monitor_condition.clone(),
        });
    }
    if !same_rule(rule, &alert.rule) {
        return Err(IgnoreReason::OtherRule {
            rule: alert.rule.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Microsoft's documented Log Alerts V2 payload ("Log search alert ...
    /// from API version 2021-08-01",
    /// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-log-webhook>),
    /// its values those of a break-glass sign-in rule on `SigninLogs` with a
    /// `UserPrincipalName` dimension, the `linkTo*` URLs (public Azure
    /// hosts) left out.
    const SIGNIN_ALERT: &str = include_str!("fixtures/log-alerts-v2-signin.json");
    /// Microsoft's "Sample test action `Log alert V2`" payload, as published
    /// but for the `linkTo*` URLs:
    /// <https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-payload-samples>.
    const TEST_ACTION: &str = include_str!("fixtures/log-alerts-v2-test-action.json");

    const RULE: &str = "Break-glass account sign-in";

    /// The documented sign-in alert, for `upn`, fired at `fired`.
    fn alert(upn: &str, fired: DateTime<Utc>) -> CommonAlert {
        let mut v: Value = serde_json::from_str(SIGNIN_ALERT).unwrap();
        v["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"][0]["value"] = upn.into();
        v["data"]["essentials"]["firedDateTime"] = crate::support::time::rfc3339_ms(fired).into();
        parse_common_alert(&v).unwrap()
    }

    #[test]
    fn the_documented_samples_parse() {
        let a = parse_common_alert(&serde_json::from_str(SIGNIN_ALERT).unwrap()).unwrap();
        assert_eq!(a.rule, RULE);
        assert_eq!(a.severity, "Sev0");
        assert_eq!(a.monitor_condition, "Fired");
        assert_eq!(a.accounts, vec!["bg1@contoso.onmicrosoft.com".to_owned()]);
        assert_eq!(
            a.fired,
            crate::support::time::parse_rfc3339("2026-11-24T12:00:02.99645Z").unwrap()
        );
        let t = parse_common_alert(&serde_json::from_str(TEST_ACTION).unwrap()).unwrap();
        assert_eq!(t.rule, "test-logAlertRule-v2");
        assert!(
            t.accounts.is_empty(),
            "a Computer dimension names no account"
        );
        assert_eq!(
            judge(
                &t,
                "test-logAlertRule-v2",
                "bg1@contoso.onmicrosoft.com",
                t.fired
            ),
            Err(IgnoreReason::NoAccount)
        );
    }

    #[test]
    fn correlation_rules() {
        let t = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        let me = "BG1@contoso.onmicrosoft.com";
        assert_eq!(
            judge(&alert("bg1@contoso.onmicrosoft.com", t), RULE, me, t),
            Ok(())
        );
        assert!(matches!(
            judge(&alert("bg2@contoso.onmicrosoft.com", t), RULE, me, t),
            Err(IgnoreReason::OtherAccount { .. })
        ));
        let early = t - chrono::Duration::seconds(1);
        assert!(matches!(
            judge(&alert(me, early), RULE, me, t),
            Err(IgnoreReason::FiredBeforeSignIn { .. })
        ));
        let mut resolved = alert(me, t);
        resolved.monitor_condition = "Resolved".into();
        assert!(matches!(
            judge(&resolved, RULE, me, t),
            Err(IgnoreReason::NotFired { .. })
        ));
        let mut anon = alert(me, t);
        anon.accounts.clear();
        assert_eq!(judge(&anon, RULE, me, t), Err(IgnoreReason::NoAccount));
        // An alert of another rule never counts, even naming the account.
        assert_eq!(
            judge(&alert(me, t), "Break-glass sign-in (SOC)", me, t),
            Err(IgnoreReason::OtherRule { rule: RULE.into() })
        );
        let by_id = "/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/scheduledqueryrules/break-glass ACCOUNT sign-in";
        assert_eq!(judge(&alert(me, t), by_id, me, t), Ok(()));
    }

    #[test]
    fn parse_rejects_other_schemas() {
        assert!(
            parse_common_alert(&serde_json::json!({"schemaId": "Microsoft.Insights/activityLogs"}))
                .is_err()
        );
        let mut v: Value = serde_json::from_str(SIGNIN_ALERT).unwrap();
        v["data"]["essentials"]["firedDateTime"] = "yesterday".into();
        assert!(
            parse_common_alert(&v)
                .unwrap_err()
                .to_string()
                .contains("firedDateTime")
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary JSON, a few levels deep.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            Just(Value::from("azureMonitorCommonAlertSchema")),
            Just(Value::from("2026-11-24T12:00:00Z")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "schemaId",
                        "data",
                        "essentials",
                        "alertId",
                        "firedDateTime",
                        "monitorCondition",
                        "alertContext",
                        "condition",
                        "allOf",
                        "dimensions",
                        "name",
                        "value",
                        "customProperties",
                        "UserPrincipalName",
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// The webhook body parser never panics: arbitrary bytes, arbitrary
        /// JSON, and correlation of whatever it accepts.
        #[test]
        fn the_webhook_body_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), v in json()) {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                let _ = parse_common_alert(&v);
            }
            if let Ok(a) = parse_common_alert(&v) {
                let _ = judge(&a, "Break-glass account sign-in", "bg1@contoso.onmicrosoft.com", Utc::now());
            }
        }
    }
}
