//! The driver: runs the stages in order, times each one and reports
//! progress once per stage; the stages themselves only say how they ended.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::plan::{RunPlan, Sinks};
use super::stages::{self, Ended};
use super::verdict::verdict;
use crate::config::flow::Flow;
use crate::evidence::{EvidenceError, SealedBundle};
use crate::flow::FlowVars;
use crate::record::{DrillRecord, Stage, StageRecord, StageStatus, Verdict};

/// Receives drill progress (a live display, plain lines, or nothing).
pub trait Progress: Send + Sync {
    /// A stage begins.
    fn stage_started(&self, stage: Stage);
    /// A stage ended.
    fn stage_finished(&self, record: &StageRecord);
    /// Something worth telling the operator now.
    fn note(&self, message: &str);
}

/// Prints nothing (tests, JSON logging).
pub struct Quiet;

impl Progress for Quiet {
    fn stage_started(&self, _: Stage) {}
    fn stage_finished(&self, _: &StageRecord) {}
    fn note(&self, _: &str) {}
}

/// What a drill produced.
#[derive(Debug)]
pub struct DrillOutcome {
    /// Run id.
    pub run_id: String,
    /// Verdict over every stage, evidence included.
    pub verdict: Verdict,
    /// Why, when not PASS.
    pub reasons: Vec<String>,
    /// Every stage record, `record` and `report` included.
    pub stages: Vec<StageRecord>,
    /// The record as written to `drill.json`.
    pub record: DrillRecord,
    /// The sealed bundle, or why none could be written.
    pub bundle: Result<SealedBundle, EvidenceError>,
}

/// Times stages and reports them.
pub(crate) struct Driver<'p> {
    progress: &'p dyn Progress,
    pub(crate) stages: Vec<StageRecord>,
}

impl<'p> Driver<'p> {
    fn new(progress: &'p dyn Progress) -> Self {
        Self {
            progress,
            stages: Vec::new(),
        }
    }

    /// Runs one stage: reports its start, times it, records and reports
    /// how it ended, and hands back its value.
    async fn stage<T>(&mut self, stage: Stage, body: impl Future<Output = Ended<T>>) -> T {
        self.progress.stage_started(stage);
        let started = crate::support::time::now();
        let t0 = std::time::Instant::now();
        let ended = body.await;
        self.push(StageRecord {
            stage,
            status: ended.status,
            started,
            finished: crate::support::time::now(),
            duration_ms: crate::support::time::millis(t0.elapsed()),
            detail: ended.detail,
        });
        ended.value
    }

    /// Records `stage` as not run (no "started" event: it never began).
    fn skip(&mut self, stage: Stage, why: &str) {
        let now = crate::support::time::now();
        self.push(StageRecord {
            stage,
            status: StageStatus::Skipped,
            started: now,
            finished: now,
            duration_ms: 0,
            detail: why.to_owned(),
        });
    }

    fn push(&mut self, r: StageRecord) {
        self.progress.stage_finished(&r);
        self.stages.push(r);
    }
}

/// Runs one drill. Never retries the sign-in; always tears the browser
/// down; always tries to record evidence, whatever the verdict.
pub async fn run(
    plan: RunPlan<'_>,
    sinks: &Sinks<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> DrillOutcome {
    let started = crate::support::time::now();
    let run_id = super::new_run_id(started);
    let mut d = Driver::new(progress);
    let flow: &Flow = &plan.drill.flow;
    let vars = FlowVars {
        authority: plan.tenant.authority.clone(),
        tenant_id: plan.tenant.tenant_id.clone(),
        upn: plan.drill.account.clone(),
    };
    let mut gathered = stages::Gathered::new(&plan, &run_id, started);

    let browser = d
        .stage(Stage::Preflight, stages::preflight::run(&plan, cancel))
        .await;
    let mut ceremony = None;
    match &browser {
        Some(b) => {
            gathered.announcement = d
                .stage(
                    Stage::Announce,
                    stages::announce::run(&plan, sinks, &run_id, progress),
                )
                .await;
            let signin = d
                .stage(
                    Stage::SignIn,
                    stages::sign_in::run(b, flow, &plan, &vars, cancel),
                )
                .await;
            ceremony = signin.ceremony;
            gathered.sign_in(signin);
        }
        None => {
            d.skip(Stage::Announce, "preflight did not pass");
            d.skip(Stage::SignIn, "preflight did not pass");
        }
    }
    match ceremony {
        Some((at, instant)) => {
            let correlation = gathered.correlation_id.clone();
            gathered.signin_record = d
                .stage(
                    Stage::Confirm,
                    stages::confirm::run(&plan, at, correlation.as_deref(), cancel),
                )
                .await;
            let signin_at = gathered.signin_time().unwrap_or(at);
            gathered.observations = d
                .stage(
                    Stage::Alerts,
                    stages::alerts::run(&plan, signin_at, instant, cancel),
                )
                .await;
            gathered.signin_at = Some(signin_at);
        }
        None => {
            d.skip(Stage::Confirm, "the sign-in did not complete");
            d.skip(Stage::Alerts, "the sign-in did not complete");
        }
    }
    let signout = d
        .stage(
            Stage::Teardown,
            stages::teardown::run(browser, flow, &vars, &plan, ceremony.is_some()),
        )
        .await;
    gathered.captures.extend(signout);

    let (v, reasons) = verdict(&d.stages, cancel.is_cancelled());
    let so_far = d.stages.clone();
    let (record, bundle) = d
        .stage(
            Stage::Record,
            stages::record::run(&plan, sinks, gathered, &so_far, v, reasons),
        )
        .await;
    if sinks.notifier.delivers_reports() {
        d.stage(Stage::Report, stages::report::run(sinks, &record))
            .await;
    } else {
        d.skip(Stage::Report, "no notification channel configured");
    }
    // A drill whose evidence could not be written is not proven: the
    // record stage's own result counts.
    let (verdict, reasons) = verdict(&d.stages, cancel.is_cancelled());
    DrillOutcome {
        run_id,
        verdict,
        reasons,
        stages: d.stages,
        record,
        bundle,
    }
}
