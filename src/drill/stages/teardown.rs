//! `teardown`: sign out (best effort), close the browser, check the
//! profile is gone. Runs whatever happened before, with its own
//! cancellation: a stop must still clean up.

use tokio_util::sync::CancellationToken;

use super::Ended;
use crate::browser::Browser;
use crate::config::flow::Flow;
use crate::drill::plan::RunPlan;
use crate::flow::{Capture, FlowRunner, FlowVars};
use crate::record::StageStatus;

/// Tears down; hands on the signed-out screenshot, if any.
pub async fn run(
    browser: Option<Browser>,
    flow: &Flow,
    vars: &FlowVars,
    plan: &RunPlan<'_>,
    signed_in: bool,
) -> Ended<Option<Capture>> {
    let mut warnings = Vec::new();
    let mut shot = None;
    if let Some(b) = browser {
        if signed_in {
            let runner = FlowRunner::new(&b, flow, vars, plan.step_timeout);
            match runner.sign_out(&CancellationToken::new()).await {
                Ok(Some(s)) => shot = Some(s),
                Ok(None) => warnings.push("the flow has no sign-out".to_owned()),
                Err(e) => warnings.push(format!("sign-out: {e}")),
            }
        }
        let profile = b.profile_dir().to_path_buf();
        if let Err(e) = b.close().await {
            warnings.push(format!("browser close: {e}"));
        }
        if profile.exists() {
            warnings.push(format!("profile {} still exists", profile.display()));
        }
    }
    if warnings.is_empty() {
        let done = if signed_in {
            "signed out; browser closed; profile destroyed"
        } else {
            "browser closed; profile destroyed (no sign-in to sign out of)"
        };
        Ended::new(StageStatus::Passed, done, shot)
    } else {
        Ended::new(StageStatus::Warning, warnings.join("; "), shot)
    }
}
