//! `confirm`: the sign-in's own record in the sign-in log (id,
//! correlationId, createdDateTime), polled until it appears or the drill's
//! `confirm_deadline` passes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Ended;
use crate::cloud::CloudError;
use crate::drill::plan::RunPlan;
use crate::record::StageStatus;
use crate::support::retry::{Attempt, Backoff, RetryError, retry};

/// Whether a sign-in log record is a success (`status.errorCode` 0).
pub(crate) fn succeeded(rec: &Value) -> bool {
    rec["status"]["errorCode"].as_i64() == Some(0)
}

/// The record of this sign-in among `rows` (newest first): a success if
/// there is one, else the newest (a failure record for this correlation
/// id is a finding too). Pure.
pub(crate) fn select(rows: &[Value]) -> Option<&Value> {
    rows.iter().find(|r| succeeded(r)).or(rows.first())
}

/// The stage's status and sentence for a found record (pure).
pub(crate) fn judge(rec: &Value) -> (StageStatus, String) {
    let code = rec["status"]["errorCode"].as_i64().unwrap_or(-1);
    let detail = format!(
        "sign-in log record {} (correlationId {}, created {})",
        rec["id"].as_str().unwrap_or("?"),
        rec["correlationId"].as_str().unwrap_or("?"),
        rec["createdDateTime"].as_str().unwrap_or("?")
    );
    if code == 0 {
        (StageStatus::Passed, detail)
    } else {
        (StageStatus::Failed, format!("{detail} shows error {code}"))
    }
}

/// Polls the sign-in log: 250 ms doubling to 15 s, until `deadline`.
fn polling(deadline: Duration) -> Backoff {
    Backoff {
        initial: Duration::from_millis(250),
        max_delay: Duration::from_secs(15),
        max_elapsed: deadline,
        max_attempts: u32::MAX,
        jitter: false,
    }
}

/// Not yet in the log, or the log could not be read.
enum Miss {
    NotYet,
    Unreadable(CloudError),
}

/// Finds the record; hands it on when found.
pub async fn run(
    plan: &RunPlan<'_>,
    ceremony_at: DateTime<Utc>,
    correlation_id: Option<&str>,
    strict: bool,
    turned_away: bool,
    cancel: &CancellationToken,
) -> Ended<Option<Value>> {
    let drill = plan.drill;
    // Allow for clock skew between this host and the cloud.
    let since = ceremony_at - chrono::Duration::minutes(5);
    let found = retry(&polling(drill.confirm_deadline), cancel, |_| async {
        match plan
            .graph
            .sign_ins(
                &drill.account,
                drill.object_id.as_deref(),
                since,
                correlation_id,
                cancel,
            )
            .await
        {
            Ok(rows) => match select(&rows) {
                Some(r) => Attempt::Done(r.clone()),
                None => Attempt::Retry {
                    error: Miss::NotYet,
                    after: None,
                },
            },
            Err(CloudError::Cancelled) => Attempt::Fail(Miss::Unreadable(CloudError::Cancelled)),
            Err(e) => Attempt::Fail(Miss::Unreadable(e)),
        }
    })
    .await;
    match found {
        Ok(rec) => {
            let (mut status, mut detail) = judge(&rec);
            if let Some(oid) = &drill.object_id
                && !rec["userId"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(oid))
            {
                // The record is another account's: whatever it says, it is
                // not this account's sign-in.
                status = StageStatus::Failed;
                detail.push_str(&format!(
                    "; its userId is {}, not the drill's account.object_id {oid}",
                    rec["userId"].as_str().unwrap_or("missing")
                ));
            }
            if status == StageStatus::Failed && plan.authenticator.ceremony_failure().is_some() {
                // The ceremony failed on glassdrill's side (the sign-in
                // stage says why): the tenant logging the broken attempt is
                // what it should do, not a finding about the account.
                status = StageStatus::Warning;
                detail.push_str(
                    "; the tenant logged the attempt glassdrill's side could not complete (the sign-in stage says why)",
                );
            } else if status == StageStatus::Failed && turned_away {
                // The tenant turned the attempt away for a reason that says
                // nothing about the account (it expired): its failure
                // record is that, not a finding.
                status = StageStatus::Warning;
                detail.push_str(
                    "; the tenant logged the attempt it turned away (the sign-in stage says why)",
                );
            }
            Ended::new(status, detail, Some(rec))
        }
        Err(RetryError::Exhausted { .. } | RetryError::Failed(Miss::NotYet)) if strict => {
            Ended::new(
                StageStatus::Failed,
                format!(
                    "the sign-in did not appear in the sign-in log within {}",
                    humantime::format_duration(drill.confirm_deadline)
                ),
                None,
            )
        }
        Err(RetryError::Exhausted { .. } | RetryError::Failed(Miss::NotYet)) => Ended::new(
            StageStatus::Warning,
            format!(
                "the ceremony was started but the flow did not complete, and no sign-in log record appeared within {}",
                humantime::format_duration(drill.confirm_deadline)
            ),
            None,
        ),
        Err(
            RetryError::Cancelled | RetryError::Failed(Miss::Unreadable(CloudError::Cancelled)),
        ) => Ended::new(
            StageStatus::Interrupted,
            "cancelled while reading the sign-in log",
            None,
        ),
        Err(RetryError::Failed(Miss::Unreadable(e))) => Ended::new(
            StageStatus::Errored,
            format!("could not read the sign-in log: {e}"),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefers_a_success_else_the_newest() {
        let fail = json!({"id": "f", "status": {"errorCode": 50126}});
        let ok = json!({"id": "s", "status": {"errorCode": 0}});
        assert_eq!(select(&[fail.clone(), ok.clone()]), Some(&ok));
        assert_eq!(select(std::slice::from_ref(&fail)), Some(&fail));
        assert_eq!(select(&[]), None);
    }

    #[test]
    fn an_error_code_is_a_finding() {
        let rec = json!({"id": "r1", "correlationId": "c1", "createdDateTime": "2026-11-24T21:16:53Z", "status": {"errorCode": 53003}});
        let (s, d) = judge(&rec);
        assert_eq!(s, StageStatus::Failed);
        assert!(
            d.contains("r1") && d.contains("c1") && d.ends_with("shows error 53003"),
            "{d}"
        );
        assert_eq!(
            judge(&json!({"status": {"errorCode": 0}})).0,
            StageStatus::Passed
        );
        assert_eq!(judge(&json!({})).0, StageStatus::Failed);
    }

    #[test]
    fn polling_backs_off_to_15_seconds() {
        let b = polling(Duration::from_secs(600));
        assert_eq!(b.delay(1), Duration::from_millis(250));
        assert_eq!(b.delay(4), Duration::from_secs(2));
        assert_eq!(b.delay(10), Duration::from_secs(15));
    }
}
