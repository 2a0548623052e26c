//! `alerts`: every expected alert observed within its deadline, measured
//! from the sign-in log's own `createdDateTime`.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Ended;
use crate::alerts::{AlertObservation, AlertTarget, ReceivedAlert, late_grace};
use crate::config::ExpectedAlert;
use crate::drill::plan::RunPlan;
use crate::record::{AlertLatency, StageStatus};

/// One expected alert and what its check saw.
pub struct Observed {
    /// The expectation.
    pub expected: ExpectedAlert,
    /// What the check saw.
    pub obs: AlertObservation,
    /// Latencies of the counted alert.
    pub latency: Option<AlertLatency>,
    /// Latencies of the alert that arrived after the deadline.
    pub late_latency: Option<AlertLatency>,
}

/// Latencies of a counted alert (pure).
pub fn latency(name: &str, signin_at: DateTime<Utc>, a: &ReceivedAlert) -> AlertLatency {
    AlertLatency {
        name: name.to_owned(),
        signin_to_ingested_ms: a.ingested.map(|t| (t - signin_at).num_milliseconds()),
        signin_to_fired_ms: (a.alert.fired - signin_at).num_milliseconds(),
        fired_to_received_ms: (a.received_at - a.alert.fired).num_milliseconds(),
        signin_to_received_ms: (a.received_at - signin_at).num_milliseconds(),
    }
}

/// The stage's status and sentence from every check's result (pure).
/// A stop wins (the checks did not finish); then a missing alert (a
/// finding); then a check that could not run (an error).
pub(crate) fn classify(observed: &[Observed], account: &str) -> (StageStatus, String) {
    if observed.iter().any(|o| o.obs.cancelled) {
        return (
            StageStatus::Interrupted,
            "cancelled while waiting for alerts".into(),
        );
    }
    let missing: Vec<String> = observed
        .iter()
        .filter(|o| o.obs.error.is_none() && o.obs.matched.is_none())
        .map(|o| {
            let ignored: Vec<String> = o
                .obs
                .ignored
                .iter()
                .map(|(a, r)| format!("{} {r}", a.alert.alert_id.rsplit('/').next().unwrap_or("?")))
                .collect();
            let mut extra = String::new();
            if !ignored.is_empty() {
                extra = format!(" (ignored {}: {})", ignored.len(), ignored.join("; "));
            }
            if let Some(l) = &o.late_latency {
                extra.push_str(&format!(
                    "; it arrived late: fired {} ms and delivered {} ms after the sign-in",
                    l.signin_to_fired_ms, l.signin_to_received_ms
                ));
            }
            format!(
                "no `{}` alert for {account} within {}{extra}",
                o.expected.name,
                humantime::format_duration(o.expected.deadline)
            )
        })
        .collect();
    if !missing.is_empty() {
        return (StageStatus::Failed, missing.join("; "));
    }
    let errored: Vec<String> = observed
        .iter()
        .filter_map(|o| {
            o.obs
                .error
                .as_ref()
                .map(|e| format!("{}: {e}", o.expected.name))
        })
        .collect();
    if !errored.is_empty() {
        return (StageStatus::Errored, errored.join("; "));
    }
    let lat: Vec<String> = observed
        .iter()
        .filter_map(|o| {
            o.latency.as_ref().map(|l| {
                let ingested = l
                    .signin_to_ingested_ms
                    .map(|i| format!("in the log {i} ms, "))
                    .unwrap_or_default();
                format!(
                    "{}: {ingested}fired {} ms, delivered {} ms after the sign-in{}",
                    l.name,
                    l.signin_to_fired_ms,
                    l.signin_to_received_ms,
                    weak_match(o.obs.matched_by)
                )
            })
        })
        .collect();
    (StageStatus::Passed, lat.join("; "))
}

/// What the verdict says of a match weaker than by account.
pub(crate) fn weak_match(kind: Option<crate::alerts::MatchKind>) -> String {
    kind.and_then(crate::alerts::MatchKind::advice)
        .map(|a| format!(" ({a})"))
        .unwrap_or_default()
}

/// Waits for every expected alert at once.
pub async fn run(
    plan: &RunPlan<'_>,
    signin_at: DateTime<Utc>,
    signin_record: Option<&serde_json::Value>,
    page_correlation_id: Option<&str>,
    ceremony: tokio::time::Instant,
    cancel: &CancellationToken,
) -> Ended<Vec<Observed>> {
    let field = |k: &str| signin_record.and_then(|r| r[k].as_str()).map(str::to_owned);
    let drill = plan.drill;
    let waits = drill
        .alerts
        .iter()
        .zip(&plan.alert_checks)
        .map(|(exp, check)| {
            // Config bounds deadlines; a deadline past tokio's range means
            // "no deadline" rather than a panic.
            let after = |d: std::time::Duration| {
                ceremony
                    .checked_add(d)
                    .unwrap_or_else(|| ceremony + std::time::Duration::from_secs(86_400 * 365))
            };
            let target = AlertTarget {
                upn: drill.account.clone(),
                object_id: drill.object_id.clone(),
                signin_at,
                signin_id: field("id"),
                // The page's correlation id when the log record never came.
                correlation_id: field("correlationId")
                    .or_else(|| page_correlation_id.map(str::to_owned)),
                deadline: after(exp.deadline),
                late_until: after(exp.deadline.saturating_add(late_grace(exp.deadline))),
            };
            async move {
                let obs = check.observe(&target, cancel).await;
                let lat = |m: &Option<ReceivedAlert>| {
                    m.as_ref().map(|m| latency(&exp.name, signin_at, m))
                };
                Observed {
                    expected: exp.clone(),
                    latency: lat(&obs.matched),
                    late_latency: lat(&obs.late),
                    obs,
                }
            }
        });
    let mut observed = futures_util::future::join_all(waits).await;
    // Where one source knows when the sign-in reached the log (Log
    // Analytics' ingestion time), every alert's latency has that stage.
    if let Some(ingested) = observed
        .iter()
        .filter_map(|o| o.obs.matched.as_ref().and_then(|m| m.ingested))
        .min()
    {
        let ms = (ingested - signin_at).num_milliseconds();
        for l in observed
            .iter_mut()
            .flat_map(|o| [o.latency.as_mut(), o.late_latency.as_mut()])
            .flatten()
        {
            l.signin_to_ingested_ms.get_or_insert(ms);
        }
    }
    let (status, detail) = classify(&observed, &drill.account);
    Ended::new(status, detail, observed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{CommonAlert, IgnoreReason};
    use crate::config::AlertKind;
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        crate::support::time::parse_rfc3339(s).unwrap()
    }

    fn received(id: &str, fired: &str, got: &str) -> ReceivedAlert {
        ReceivedAlert {
            seq: 1,
            received_at: at(got),
            arrived: tokio::time::Instant::now(),
            raw: axum::body::Bytes::from_static(b"{}"),
            alert: CommonAlert {
                alert_id: format!(
                    "/subscriptions/s/providers/Microsoft.AlertsManagement/alerts/{id}"
                ),
                rule: "r".into(),
                severity: "Sev0".into(),
                monitor_condition: "Fired".into(),
                fired: at(fired),
                accounts: vec!["bg1@contoso.onmicrosoft.com".into()],
                window: None,
                search_link: None,
            },
            ingested: None,
        }
    }

    fn observed(obs: AlertObservation) -> Observed {
        let signin = at("2026-11-24T12:00:00Z");
        Observed {
            latency: obs.matched.as_ref().map(|m| latency("Sev0", signin, m)),
            late_latency: obs.late.as_ref().map(|m| latency("Sev0", signin, m)),
            expected: ExpectedAlert::new(AlertKind::Webhook, "Sev0", "r", Duration::from_secs(300)),
            obs,
        }
    }

    #[test]
    fn latencies_from_the_sign_in() {
        let l = latency(
            "x",
            at("2026-11-24T12:00:00Z"),
            &received("a", "2026-11-24T12:00:02Z", "2026-11-24T12:00:02.500Z"),
        );
        assert_eq!(
            (
                l.signin_to_fired_ms,
                l.fired_to_received_ms,
                l.signin_to_received_ms
            ),
            (2000, 500, 2500)
        );
    }

    #[test]
    fn classification() {
        let matched = AlertObservation {
            matched: Some(received(
                "a",
                "2026-11-24T12:00:02Z",
                "2026-11-24T12:00:03Z",
            )),
            ..Default::default()
        };
        let (s, d) = classify(&[observed(matched.clone())], "bg1");
        assert_eq!(s, StageStatus::Passed);
        assert_eq!(
            d,
            "Sev0: fired 2000 ms, delivered 3000 ms after the sign-in"
        );

        let ignored = AlertObservation {
            ignored: vec![(
                received("old", "2026-11-24T11:00:00Z", "2026-11-24T12:00:01Z"),
                IgnoreReason::NoAccount,
            )],
            ..Default::default()
        };
        let (s, d) = classify(&[observed(ignored)], "bg1");
        assert_eq!(s, StageStatus::Failed);
        assert_eq!(
            d,
            "no `Sev0` alert for bg1 within 5m (ignored 1: old names no account)"
        );

        let broken = AlertObservation {
            error: Some("API down".into()),
            ..Default::default()
        };
        assert_eq!(
            classify(
                &[observed(broken.clone()), observed(matched.clone())],
                "bg1"
            )
            .0,
            StageStatus::Errored
        );
        // A missing alert is a finding even when another check broke.
        assert_eq!(
            classify(
                &[observed(broken), observed(AlertObservation::default())],
                "bg1"
            )
            .0,
            StageStatus::Failed
        );
        let stopped = AlertObservation {
            cancelled: true,
            ..Default::default()
        };
        assert_eq!(
            classify(&[observed(stopped), observed(matched)], "bg1").0,
            StageStatus::Interrupted
        );
    }
}
