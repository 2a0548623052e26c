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

/// An alert as correlation sees it, whatever its source (a webhook's
/// common-alert-schema payload, an Alerts Management alert, a Defender
/// alert, a mail, a PagerDuty incident): every connector reads its source
/// into this shape and [`judge`] decides.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommonAlert {
    /// The alert's id (`essentials.alertId`, the message or incident id).
    pub alert_id: String,
    /// Where it comes from: the alert rule (name or resource id), the
    /// mail's sender, the PagerDuty service.
    pub rule: String,
    /// `essentials.severity` (or the source's equivalent).
    pub severity: String,
    /// `Fired` / `Resolved` (`essentials.monitorCondition`).
    pub monitor_condition: String,
    /// When it fired (`essentials.firedDateTime`, the mail's
    /// `receivedDateTime`, the incident's `created_at`).
    pub fired: DateTime<Utc>,
    /// Accounts it names: UPNs or object ids, as the source writes them.
    pub accounts: Vec<String>,
    /// A log search alert's evaluation window
    /// (`alertContext.condition.windowStartTime` … `windowEndTime`).
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Its `linkToSearchResultsAPI`, to confirm a match by the rows.
    pub search_link: Option<String>,
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

/// Dimension and property names that carry an account: a UPN or an
/// object id, as alert rules name them (`SigninLogs`' `UserPrincipalName`
/// and `UserId`, Defender's `AccountObjectId`, `aadUserId`…). Compared
/// case-insensitively.
const ACCOUNT_NAMES: [&str; 12] = [
    "userprincipalname",
    "upn",
    "account",
    "accountupn",
    "userid",
    "user_id",
    "aaduserid",
    "azureaduserid",
    "accountobjectid",
    "objectid",
    "initiatedby",
    "targetuserid",
];

/// Whether a column or dimension name carries an account.
pub(crate) fn names_an_account(name: &str) -> bool {
    ACCOUNT_NAMES.contains(&name.to_ascii_lowercase().as_str())
}

/// A timestamp as Azure writes them (RFC 3339, up to 7 fractional digits).
pub(crate) fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reads a common-alert-schema payload. Accounts are taken from Log
/// Alerts V2 dimensions that name one ([`ACCOUNT_NAMES`]) and from
/// `customProperties`; the evaluation window and the search link from the
/// condition.
pub fn parse_common_alert(v: &Value) -> Result<CommonAlert, ShapeError> {
    if v["schemaId"].as_str() != Some("azureMonitorCommonAlertSchema") {
        return Err(ShapeError::NotCommonSchema);
    }
    let e = &v["data"]["essentials"];
    let s = |k: &str| e[k].as_str().map(str::to_owned);
    let fired = timestamp(&e["firedDateTime"]).ok_or(ShapeError::Field(
        "data.essentials.firedDateTime is missing or not RFC 3339",
    ))?;
    let (mut accounts, window, search_link) =
        read_condition(&v["data"]["alertContext"]["condition"]);
    if let Some(props) = v["data"]["customProperties"].as_object() {
        for (k, val) in props {
            if names_an_account(k)
                && let Some(val) = val.as_str()
            {
                accounts.push(val.to_owned());
            }
        }
    }
    Ok(CommonAlert {
        alert_id: s("alertId").ok_or(ShapeError::Field("data.essentials.alertId is missing"))?,
        rule: s("alertRule").unwrap_or_default(),
        severity: s("severity").unwrap_or_default(),
        monitor_condition: s("monitorCondition").unwrap_or_default(),
        fired,
        accounts,
        window,
        search_link,
    })
}

/// An evaluation window: start and end.
pub(crate) type Window = (DateTime<Utc>, DateTime<Utc>);

/// What a common-schema `alertContext.condition` says: the accounts its
/// dimensions name, its evaluation window, its `linkToSearchResultsAPI`.
pub(crate) fn read_condition(condition: &Value) -> (Vec<String>, Option<Window>, Option<String>) {
    let mut accounts = Vec::new();
    let mut search_link = None;
    for c in condition["allOf"].as_array().into_iter().flatten() {
        for d in c["dimensions"].as_array().into_iter().flatten() {
            if names_an_account(d["name"].as_str().unwrap_or_default())
                && let Some(val) = d["value"].as_str()
            {
                accounts.push(val.to_owned());
            }
        }
        if search_link.is_none() {
            search_link = c["linkToSearchResultsAPI"].as_str().map(str::to_owned);
        }
    }
    let window =
        timestamp(&condition["windowStartTime"]).zip(timestamp(&condition["windowEndTime"]));
    (accounts, window, search_link)
}

/// How far in the future (by glassdrill's clock when it saw the alert) an
/// alert may be dated and still count: clocks differ a little.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(2);

/// What an alert must be about to count.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The expected alert's source (rule name or resource id, sender,
    /// service).
    pub rule: &'a str,
    /// The account's UPN.
    pub upn: &'a str,
    /// The account's object id, when known.
    pub object_id: Option<&'a str>,
    /// The sign-in's `createdDateTime`.
    pub signin: DateTime<Utc>,
}

/// Whether `value` names the account: its UPN (any letter case) or its
/// object id (a GUID in any letter case; passwordless sign-ins may carry
/// the object id in the UPN field, so every value is tried both ways).
pub fn names_account(value: &str, upn: &str, object_id: Option<&str>) -> bool {
    same_upn(value, upn)
        || object_id.is_some_and(|oid| {
            matches!(
                (uuid::Uuid::parse_str(value.trim()), uuid::Uuid::parse_str(oid.trim())),
                (Ok(a), Ok(b)) if a == b
            )
        })
}

pub use crate::record::MatchKind;

/// Whether `alert`, seen at `seen`, counts for the sign-in `wanted`
/// describes, and how it was matched. Pure: every rule in one place.
pub fn judge(
    alert: &CommonAlert,
    wanted: &Wanted,
    seen: DateTime<Utc>,
) -> Result<MatchKind, IgnoreReason> {
    if !alert.monitor_condition.eq_ignore_ascii_case("fired") {
        return Err(IgnoreReason::NotFired {
            condition: alert.monitor_condition.clone(),
        });
    }
    if !same_rule(wanted.rule, &alert.rule) {
        return Err(IgnoreReason::OtherRule {
            rule: alert.rule.clone(),
        });
    }
    if alert.fired < wanted.signin {
        return Err(IgnoreReason::FiredBeforeSignIn {
            fired: alert.fired,
            signin: wanted.signin,
        });
    }
    if alert.fired > seen + CLOCK_SKEW {
        return Err(IgnoreReason::FiredInFuture {
            fired: alert.fired,
            seen,
        });
    }
    if let Some((_, end)) = alert.window
        && end < wanted.signin
    {
        return Err(IgnoreReason::WindowEndedBeforeSignIn {
            window_end: end,
            signin: wanted.signin,
        });
    }
    if !alert.accounts.is_empty() {
        return if alert
            .accounts
            .iter()
            .any(|a| names_account(a, wanted.upn, wanted.object_id))
        {
            Ok(MatchKind::ByAccount)
        } else {
            Err(IgnoreReason::OtherAccount {
                accounts: alert.accounts.clone(),
            })
        };
    }
    match alert.window {
        Some((start, end)) if start <= wanted.signin && wanted.signin <= end => {
            Ok(MatchKind::ByRuleAndWindow)
        }
        Some((start, end)) => Err(IgnoreReason::WindowMissesSignIn {
            window_start: start,
            window_end: end,
            signin: wanted.signin,
        }),
        None => Err(IgnoreReason::NoAccount),
    }
}

/// Whether a log search's result rows hold this sign-in: its log record
/// `id` or its `correlationId` in any column (the rows of the alert rule's
/// own search over its window).
pub fn rows_hold_signin(
    rows: &[Vec<Value>],
    signin_id: Option<&str>,
    correlation_id: Option<&str>,
) -> bool {
    let wanted: Vec<&str> = [signin_id, correlation_id].into_iter().flatten().collect();
    !wanted.is_empty()
        && rows.iter().flatten().any(|cell| {
            cell.as_str()
                .is_some_and(|c| wanted.iter().any(|w| c.eq_ignore_ascii_case(w)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Microsoft's Log Alerts V2 sample (as above) for the rule of
    /// Microsoft's break-glass guidance, `SigninLogs | where UserId ==
    /// "<object id>"`, threshold > 0 and no dimensions: the alert names no
    /// account; its window is 11:56–12:01. Sources in
    /// `fixtures/SOURCES-azure.md`.
    const NO_DIMENSIONS: &str = include_str!("fixtures/log-alerts-v2-no-dimensions.json");
    /// The same rule's `Resolved` notification.
    const RESOLVED: &str = include_str!("fixtures/log-alerts-v2-resolved.json");
    /// Log Analytics query API response
    /// (<https://learn.microsoft.com/en-us/azure/azure-monitor/logs/api/response-format>)
    /// for the rule's search over its window.
    const LA_ROWS: &str = include_str!("fixtures/log-analytics-query.json");

    const RULE: &str = "Break-glass account sign-in";
    const UPN: &str = "bg1@contoso.onmicrosoft.com";
    const OID: &str = "00000000-0000-0000-0000-0000000b6e01";

    fn t(s: &str) -> DateTime<Utc> {
        crate::support::time::parse_rfc3339(s).unwrap()
    }

    /// The documented sign-in alert with its dimension `name` = `value`,
    /// fired at `fired`.
    fn alert_with(name: &str, value: &str, fired: DateTime<Utc>) -> CommonAlert {
        let mut v: Value = serde_json::from_str(SIGNIN_ALERT).unwrap();
        let d = &mut v["data"]["alertContext"]["condition"]["allOf"][0]["dimensions"][0];
        d["name"] = name.into();
        d["value"] = value.into();
        v["data"]["essentials"]["firedDateTime"] = crate::support::time::rfc3339_ms(fired).into();
        parse_common_alert(&v).unwrap()
    }

    fn alert(upn: &str, fired: DateTime<Utc>) -> CommonAlert {
        alert_with("UserPrincipalName", upn, fired)
    }

    fn wanted(signin: DateTime<Utc>) -> Wanted<'static> {
        Wanted {
            rule: RULE,
            upn: "BG1@Contoso.onmicrosoft.com",
            object_id: Some(OID),
            signin,
        }
    }

    #[test]
    fn the_documented_samples_parse() {
        let a = parse_common_alert(&serde_json::from_str(SIGNIN_ALERT).unwrap()).unwrap();
        assert_eq!(a.rule, RULE);
        assert_eq!(a.severity, "Sev0");
        assert_eq!(a.monitor_condition, "Fired");
        assert_eq!(a.accounts, vec![UPN.to_owned()]);
        assert_eq!(a.fired, t("2026-11-24T12:00:02.99645Z"));
        assert_eq!(
            a.window,
            Some((t("2026-11-24T11:55:00Z"), t("2026-11-24T12:00:00Z")))
        );
        let t2 = parse_common_alert(&serde_json::from_str(TEST_ACTION).unwrap()).unwrap();
        assert_eq!(t2.rule, "test-logAlertRule-v2");
        assert!(
            t2.accounts.is_empty(),
            "a Computer dimension names no account"
        );
        // Seven fractional digits, as Azure writes them.
        let n = parse_common_alert(&serde_json::from_str(NO_DIMENSIONS).unwrap()).unwrap();
        assert_eq!(n.fired.timestamp_subsec_nanos(), 123_456_700);
        assert!(n.accounts.is_empty());
        assert!(
            n.search_link
                .as_deref()
                .unwrap()
                .starts_with("http://api.loganalytics.localhost/v1/workspaces/")
        );
    }

    #[test]
    fn matched_by_upn_in_any_case_by_object_id_and_object_id_in_the_upn_field() {
        let signin = t("2026-11-24T11:59:00Z");
        let fired = t("2026-11-24T12:00:02Z");
        let seen = t("2026-11-24T12:00:05Z");
        let w = wanted(signin);
        assert_eq!(
            judge(&alert(UPN, fired), &w, seen),
            Ok(MatchKind::ByAccount)
        );
        assert_eq!(
            judge(&alert_with("UserId", &OID.to_uppercase(), fired), &w, seen),
            Ok(MatchKind::ByAccount)
        );
        assert_eq!(
            judge(&alert_with("AccountObjectId", OID, fired), &w, seen),
            Ok(MatchKind::ByAccount)
        );
        // A passwordless sign-in's log row may carry the object id in
        // UserPrincipalName.
        assert_eq!(
            judge(&alert(OID, fired), &w, seen),
            Ok(MatchKind::ByAccount)
        );
        assert!(matches!(
            judge(&alert("bg2@contoso.onmicrosoft.com", fired), &w, seen),
            Err(IgnoreReason::OtherAccount { .. })
        ));
        assert!(matches!(
            judge(
                &alert_with("UserId", "00000000-0000-0000-0000-0000000b6e02", fired),
                &w,
                seen
            ),
            Err(IgnoreReason::OtherAccount { .. })
        ));
    }

    #[test]
    fn only_the_named_rule_counts_even_naming_the_account() {
        let signin = t("2026-11-24T11:59:00Z");
        let fired = t("2026-11-24T12:00:02Z");
        let mut cpu = alert(UPN, fired);
        cpu.rule = "Sev4 CPU over 90%".into();
        assert_eq!(
            judge(&cpu, &wanted(signin), fired),
            Err(IgnoreReason::OtherRule {
                rule: "Sev4 CPU over 90%".into()
            })
        );
        let by_id = "/subscriptions/s/resourceGroups/rg/providers/microsoft.insights/scheduledqueryrules/break-glass ACCOUNT sign-in";
        let w = Wanted {
            rule: by_id,
            ..wanted(signin)
        };
        assert_eq!(
            judge(&alert(UPN, fired), &w, fired),
            Ok(MatchKind::ByAccount)
        );
    }

    #[test]
    fn time_rules_before_future_and_window() {
        let signin = t("2026-11-24T12:00:00Z");
        let w = wanted(signin);
        // Fired before the sign-in.
        assert!(matches!(
            judge(&alert(UPN, t("2026-11-24T11:59:59Z")), &w, signin),
            Err(IgnoreReason::FiredBeforeSignIn { .. })
        ));
        // Dated a day ahead of when it was seen: not "86400000 ms after".
        let seen = t("2026-11-24T12:00:10Z");
        assert!(matches!(
            judge(&alert(UPN, t("2026-11-25T12:00:00Z")), &w, seen),
            Err(IgnoreReason::FiredInFuture { .. })
        ));
        // A minute ahead is clock skew.
        assert_eq!(
            judge(&alert(UPN, t("2026-11-24T12:01:10Z")), &w, seen),
            Ok(MatchKind::ByAccount)
        );
        // Its window ended before the sign-in (the documented sample's
        // window is 11:55–12:00, the sign-in at 12:00:01).
        let w2 = wanted(t("2026-11-24T12:00:01Z"));
        assert!(matches!(
            judge(&alert(UPN, t("2026-11-24T12:00:02Z")), &w2, seen),
            Err(IgnoreReason::WindowEndedBeforeSignIn { .. })
        ));
    }

    #[test]
    fn an_alert_naming_no_account_matches_by_rule_and_window() {
        let a = parse_common_alert(&serde_json::from_str(NO_DIMENSIONS).unwrap()).unwrap();
        let seen = t("2026-11-24T12:01:31Z");
        // Inside the window 11:56–12:01.
        assert_eq!(
            judge(&a, &wanted(t("2026-11-24T12:00:00.1234567Z")), seen),
            Ok(MatchKind::ByRuleAndWindow)
        );
        // Before the window: the rule's window does not cover the sign-in.
        assert!(matches!(
            judge(&a, &wanted(t("2026-11-24T11:55:00Z")), seen),
            Err(IgnoreReason::WindowMissesSignIn { .. })
        ));
        // After it: the window ended before the sign-in.
        assert!(matches!(
            judge(&a, &wanted(t("2026-11-24T12:01:20Z")), seen),
            Err(IgnoreReason::WindowEndedBeforeSignIn { .. })
        ));
        // Another rule's anonymous alert never counts.
        let w = Wanted {
            rule: "Other rule",
            ..wanted(t("2026-11-24T12:00:00Z"))
        };
        assert!(matches!(
            judge(&a, &w, seen),
            Err(IgnoreReason::OtherRule { .. })
        ));
        // No window and no account: nothing ties it to the sign-in.
        let mut bare = a.clone();
        bare.window = None;
        assert_eq!(
            judge(&bare, &wanted(t("2026-11-24T12:00:00Z")), seen),
            Err(IgnoreReason::NoAccount)
        );
    }

    #[test]
    fn resolved_notifications_are_not_detections() {
        let r = parse_common_alert(&serde_json::from_str(RESOLVED).unwrap()).unwrap();
        assert_eq!(r.monitor_condition, "Resolved");
        assert!(matches!(
            judge(
                &r,
                &wanted(t("2026-11-24T12:00:00Z")),
                t("2026-11-24T12:10:00Z")
            ),
            Err(IgnoreReason::NotFired { .. })
        ));
    }

    #[test]
    fn the_rules_rows_hold_the_sign_in_by_id_or_correlation_id() {
        let v: Value = serde_json::from_str(LA_ROWS).unwrap();
        let rows: Vec<Vec<Value>> = serde_json::from_value(v["tables"][0]["rows"].clone()).unwrap();
        assert!(rows_hold_signin(
            &rows,
            Some("1B0E7A6C-0D3F-4A8E-9F57-6A5B4C3D2E10"),
            None
        ));
        assert!(rows_hold_signin(
            &rows,
            None,
            Some("d5a26b27-4426-4e2a-93f1-9ee6e3672892")
        ));
        assert!(!rows_hold_signin(
            &rows,
            Some("another"),
            Some("another-too")
        ));
        assert!(!rows_hold_signin(&rows, None, None));
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
                let w = Wanted { rule: "Break-glass account sign-in", upn: "bg1@contoso.onmicrosoft.com", object_id: Some("00000000-0000-0000-0000-0000000b6e01"), signin: Utc::now() };
                let _ = judge(&a, &w, Utc::now());
            }
        }
    }
}
