//! `preflight`: everything that can be checked before the account is
//! touched — the authenticator, the tenant (a Graph token: a sign-in that
//! cannot be confirmed afterwards is a wasted use of a break-glass
//! account), the browser.

use tokio_util::sync::CancellationToken;

use super::Ended;
use crate::authenticator::AuthenticatorError;
use crate::browser::{Browser, BrowserError};
use crate::cloud::CloudError;
use crate::drill::plan::RunPlan;
use crate::record::StageStatus;

/// Why preflight did not pass.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PreflightError {
    /// The authenticator is not ready.
    #[error(transparent)]
    Authenticator(#[from] AuthenticatorError),
    /// The tenant cannot be read.
    #[error("tenant not ready: {0}")]
    Tenant(#[from] CloudError),
    /// The browser did not start.
    #[error(transparent)]
    Browser(#[from] BrowserError),
}

async fn check(
    plan: &RunPlan<'_>,
    cancel: &CancellationToken,
) -> Result<(Browser, String), PreflightError> {
    let notes = plan.authenticator.preflight().await?;
    plan.graph.check(cancel).await?;
    let b = Browser::launch(&plan.browser).await?;
    plan.authenticator.attach(&b).await?;
    Ok((b, notes.join("; ")))
}

/// Runs preflight; the browser, ready for the sign-in, when it passed.
pub async fn run(plan: &RunPlan<'_>, cancel: &CancellationToken) -> Ended<Option<Browser>> {
    let checked = tokio::select! {
        r = check(plan, cancel) => r,
        () = cancel.cancelled() => {
            return Ended::new(StageStatus::Interrupted, "stopped during preflight, before the sign-in", None);
        }
    };
    match checked {
        Ok((b, notes)) => Ended::new(
            StageStatus::Passed,
            format!("tenant reachable; browser ready; {notes}"),
            Some(b),
        ),
        Err(PreflightError::Tenant(CloudError::Cancelled)) => Ended::new(
            StageStatus::Interrupted,
            "stopped during preflight, before the sign-in",
            None,
        ),
        // A finding about the key (a lowered PIN counter, a wrong PIN,
        // another account's key) is a FAIL: a person must look at it.
        Err(e)
            if plan
                .authenticator
                .key_evidence()
                .is_some_and(|k| !k.findings.is_empty()) =>
        {
            Ended::new(StageStatus::Failed, e.to_string(), None)
        }
        Err(e) => Ended::new(StageStatus::Errored, e.to_string(), None),
    }
}
