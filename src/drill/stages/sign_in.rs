//! `sign-in`: the flow, once. Never retried (D3: a failed sign-in
//! retried is a lockout risk and a second use of a break-glass account).

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Ended, Journal};
use crate::browser::Browser;
use crate::config::flow::Flow;
use crate::drill::plan::RunPlan;
use crate::flow::{Capture, FlowOutcome, FlowRunner, FlowVars};
use crate::record::{JournalLine, SignInStep, StageStatus};

/// What the sign-in hands on.
pub struct SignedIn {
    /// Step records.
    pub steps: Vec<SignInStep>,
    /// Screenshots and page HTML.
    pub captures: Vec<Capture>,
    /// The IdP's correlation id.
    pub correlation_id: Option<String>,
    /// When the ceremony was made (wall clock, and monotonic for
    /// deadlines), whatever the outcome; `None`: no sign-in attempt.
    pub ceremony: Option<(DateTime<Utc>, tokio::time::Instant)>,
    /// Whether the flow went all the way to the landing page.
    pub completed: bool,
    /// Whether the identity provider turned the attempt away for a reason
    /// that says nothing about the account (the flow's `transient`).
    pub turned_away: bool,
}

impl SignedIn {
    /// Nothing known about the sign-in (its stage failed unexpectedly):
    /// assume the worst, a ceremony made at `since` (the run's start), so
    /// the sign-in is looked for in the log and signed out of.
    pub fn unknown(since: DateTime<Utc>) -> Self {
        Self {
            steps: Vec::new(),
            captures: Vec::new(),
            correlation_id: None,
            ceremony: Some((since, tokio::time::Instant::now())),
            completed: false,
            turned_away: false,
        }
    }
}

/// The stage's status and sentence for a flow outcome (pure).
pub(crate) fn judge(outcome: &FlowOutcome, account: &str) -> (StageStatus, String) {
    match outcome {
        FlowOutcome::SignedIn => (
            StageStatus::Passed,
            format!("signed in as {account} with the security key"),
        ),
        FlowOutcome::Refused { step, message } => (
            StageStatus::Failed,
            format!("sign-in refused at step {step}: {message}"),
        ),
        FlowOutcome::RefusedTransient { step, message } => (
            StageStatus::Errored,
            format!(
                "sign-in attempt at step {step} turned away for a reason that says nothing about the account: {message}; run the drill again"
            ),
        ),
        FlowOutcome::Drift { step, detail } => (
            StageStatus::Errored,
            format!(
                "flow drift at step {step}: {detail}; see the screenshot and page HTML in the bundle and update the flow file"
            ),
        ),
        FlowOutcome::BrowserFailed(e) => (StageStatus::Errored, format!("browser failed: {e}")),
        FlowOutcome::Aborted(e) => (
            StageStatus::Errored,
            format!("{e}; no sign-in attempt was made"),
        ),
        FlowOutcome::Cancelled { attempted: false } => (
            StageStatus::Interrupted,
            "stopped before the sign-in: no sign-in attempt was made".into(),
        ),
        FlowOutcome::Cancelled { attempted: true } => (
            StageStatus::Interrupted,
            "stopped after the security-key ceremony had started: the sign-in may have happened; torn down and recorded".into(),
        ),
    }
}

/// Runs the flow in `browser`.
pub(crate) async fn run(
    browser: &Browser,
    flow: &Flow,
    plan: &RunPlan<'_>,
    vars: &FlowVars,
    journal: Option<&Journal>,
    cancel: &CancellationToken,
) -> Ended<SignedIn> {
    // No journal line, no ceremony: a run that dies after the click must
    // be known to have (maybe) signed in.
    let mark = || -> Result<(), String> {
        journal
            .ok_or("the run has no journal")?
            .append(&JournalLine::Ceremony)
    };
    let runner = FlowRunner::new(browser, flow, vars, plan.step_timeout)
        .with_authenticator(plan.authenticator)
        .before_ceremony(&mark);
    let run = runner.run(&plan.drill.start_url, cancel).await;
    let key_findings = plan
        .authenticator
        .key_evidence()
        .map(|e| e.findings)
        .unwrap_or_default();
    let (status, detail) = match plan.authenticator.ceremony_failure() {
        // glassdrill's own failure decides, whatever page followed it (the
        // key's, or the bridge refusing the page's request): a finding
        // about the key (a wrong PIN) is a FAIL, anything else (no touch in
        // time, unplugged, a refused request) an ERROR.
        Some(f) if !matches!(run.outcome, FlowOutcome::Cancelled { .. }) => (
            if key_findings.is_empty() {
                StageStatus::Errored
            } else {
                StageStatus::Failed
            },
            format!(
                "the ceremony failed on glassdrill's side: {f}; this was the run's one sign-in attempt (never retried automatically)"
            ),
        ),
        _ => judge(&run.outcome, &plan.drill.account),
    };
    // A finding about the key (its counter did not increase: a cloned
    // credential) fails the drill even where the tenant let it sign in.
    let (status, mut detail) = if status == StageStatus::Passed && !key_findings.is_empty() {
        (
            StageStatus::Failed,
            format!("{detail}, but: {}", key_findings.join("; ")),
        )
    } else {
        (status, detail)
    };
    if let Some(Err(e)) = &run.credential_removed {
        detail.push_str(&format!(
            "; the credential could not be removed from the browser: {e}"
        ));
    }
    let completed = run.outcome == FlowOutcome::SignedIn;
    let turned_away = matches!(run.outcome, FlowOutcome::RefusedTransient { .. });
    let ceremony = run.ceremony_at.or_else(|| {
        // A flow with no ceremony step that signed in: the end is the time.
        completed.then(|| (crate::support::time::now(), tokio::time::Instant::now()))
    });
    Ended::new(
        status,
        detail,
        SignedIn {
            steps: run.steps,
            captures: run.captures,
            correlation_id: run.correlation_id,
            completed,
            turned_away,
            ceremony,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_finding_and_drift_an_error() {
        let refused = FlowOutcome::Refused {
            step: "security key".into(),
            message: "AADSTS50126".into(),
        };
        assert_eq!(judge(&refused, "a@b").0, StageStatus::Failed);
        let drift = FlowOutcome::Drift {
            step: "x".into(),
            detail: "y".into(),
        };
        let (s, d) = judge(&drift, "a@b");
        assert_eq!(s, StageStatus::Errored);
        assert!(d.starts_with("flow drift at step x"));
        let (s, d) = judge(&FlowOutcome::Cancelled { attempted: false }, "a@b");
        assert_eq!(s, StageStatus::Interrupted);
        assert!(d.starts_with("stopped before the sign-in"), "{d}");
        let (s, d) = judge(&FlowOutcome::Cancelled { attempted: true }, "a@b");
        assert_eq!(s, StageStatus::Interrupted);
        assert!(d.contains("may have happened"), "{d}");
        assert_eq!(
            judge(&FlowOutcome::BrowserFailed("x".into()), "a@b").0,
            StageStatus::Errored
        );
        assert_eq!(judge(&FlowOutcome::SignedIn, "a@b").0, StageStatus::Passed);
    }
}
