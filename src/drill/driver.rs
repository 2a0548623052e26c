//! The driver: runs the stages in order, times each one and reports
//! progress once per stage; the stages themselves only say how they ended.

use std::future::Future;

use futures_util::FutureExt as _;

use tokio_util::sync::CancellationToken;

use super::plan::{RunPlan, Sinks};
use super::stages::{self, Ended, Journal};
use super::verdict::verdict;
use crate::config::flow::Flow;
use crate::evidence::{BundleWriter, EvidenceError, SealedBundle};
use crate::flow::FlowVars;
use crate::record::{DrillRecord, JournalLine, Stage, StageRecord, StageStatus, Verdict};

/// Receives drill progress (a live display, plain lines, or nothing).
pub trait Progress: Send + Sync {
    /// The run has its id (before its first stage).
    fn run_started(&self, _run_id: &str) {}
    /// A stage begins.
    fn stage_started(&self, stage: Stage);
    /// A stage ended.
    fn stage_finished(&self, record: &StageRecord);
    /// Something worth telling the operator now.
    fn note(&self, message: &str);
    /// What must hold before the sign-in begins (the daemon: the state
    /// store has recorded that this run reaches it, so a host that dies in
    /// the sign-in is never taken for one that died before it). `Err`: no
    /// sign-in is made, with why.
    fn before_sign_in(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
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
    /// The record as written to `drill.json` (`None` only if recording
    /// itself failed).
    pub record: Option<DrillRecord>,
    /// The sealed bundle, or why none could be written.
    pub bundle: Result<SealedBundle, EvidenceError>,
    /// Whether the WebAuthn ceremony was started (a sign-in may have
    /// happened): never retried automatically.
    pub sign_in_attempted: bool,
}

/// Times stages, reports them, and journals them into the run's staging
/// bundle as they happen.
pub(crate) struct Driver<'p> {
    progress: &'p dyn Progress,
    pub(crate) stages: Vec<StageRecord>,
    /// The run's bundle, staged from the start so the journal survives a
    /// run that dies; `None` if it could not be created.
    pub(crate) writer: Option<BundleWriter>,
    /// Its journal, appended to until the record stage seals the bundle.
    journal: Option<Journal>,
}

/// Said of a stage that a stop kept from starting before the sign-in.
const STOPPED_BEFORE: &str = "stopped before the sign-in: no sign-in attempt was made";

impl<'p> Driver<'p> {
    fn new(progress: &'p dyn Progress, writer: Option<BundleWriter>) -> Self {
        Self {
            progress,
            stages: Vec::new(),
            journal: writer.as_ref().map(|w| Journal(w.journal_path())),
            writer,
        }
    }

    /// Appends to the journal, if there is one still open; a failure is
    /// logged (the sign-in stage journals the ceremony itself and refuses
    /// to start it without).
    fn journal(&self, line: &JournalLine) {
        if let Some(Err(e)) = self.journal.as_ref().map(|j| j.append(line)) {
            tracing::warn!(error = %e, "could not append to the run's journal");
        }
    }

    /// Runs one stage: reports its start, times it, records and reports
    /// how it ended, and hands back its value. A panic inside the stage (a
    /// bug) ends the stage as an error instead of the drill, so teardown
    /// and the record still happen.
    async fn stage<T: Default>(&mut self, stage: Stage, body: impl Future<Output = Ended<T>>) -> T {
        self.stage_or(stage, body, T::default).await
    }

    /// [`stage`](Self::stage) with the value to hand on after a panic.
    async fn stage_or<T>(
        &mut self,
        stage: Stage,
        body: impl Future<Output = Ended<T>>,
        on_panic: impl FnOnce() -> T,
    ) -> T {
        self.progress.stage_started(stage);
        self.journal(&JournalLine::Started { stage });
        let started = crate::support::time::now();
        let t0 = std::time::Instant::now();
        let ended = match std::panic::AssertUnwindSafe(body).catch_unwind().await {
            Ok(e) => e,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Ended::new(
                    StageStatus::Errored,
                    format!(
                        "glassdrill failed inside this stage (a bug; please report it): {what}"
                    ),
                    on_panic(),
                )
            }
        };
        if stage == Stage::Record {
            // The record stage seals the bundle, journal included: the
            // record holds the rest.
            self.journal = None;
        }
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
        self.not_run(stage, StageStatus::Skipped, why);
    }

    /// Records `stage` as kept from starting by a stop.
    fn stopped(&mut self, stage: Stage) {
        self.not_run(stage, StageStatus::Interrupted, STOPPED_BEFORE);
    }

    fn not_run(&mut self, stage: Stage, status: StageStatus, why: &str) {
        self.push(StageRecord::instant(stage, status, why));
    }

    /// Writes `captures` into the staged bundle at once, leaving in the
    /// list only those that could not be written (kept for `record`).
    fn persist(&mut self, captures: &mut Vec<crate::flow::Capture>) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        captures.retain(|c| match w.add(&c.name, &c.bytes) {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(file = %c.name, error = %e, "could not stage a capture; kept for the record stage");
                true
            }
        });
    }

    fn push(&mut self, r: StageRecord) {
        self.journal(&JournalLine::Ended { record: r.clone() });
        self.progress.stage_finished(&r);
        self.stages.push(r);
    }
}

/// The pause point before `stage` (tests), then whether a stop came.
async fn gate(stage: Stage, cancel: &CancellationToken) -> bool {
    crate::support::testpoint::checkpoint(&format!("stage:{}", stage.name()), cancel).await
}

/// Runs one drill. Never retries the sign-in; never starts it after a
/// stop; always tears the browser down; always tries to record evidence,
/// whatever the verdict.
pub async fn run(
    plan: RunPlan<'_>,
    sinks: &Sinks<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> DrillOutcome {
    let started = crate::support::time::now();
    let run_id = super::new_run_id(started);
    progress.run_started(&run_id);
    let flow: &Flow = &plan.drill.flow;
    let vars = FlowVars {
        authority: plan.tenant.authority.clone(),
        tenant_id: plan.tenant.tenant_id.clone(),
        upn: plan.drill.account.clone(),
    };
    let mut gathered = stages::Gathered::new(&run_id, started);
    // Evidence first: a drill that could not record a sign-in must not
    // make one.
    let writer = BundleWriter::create(&sinks.evidence_dir, &plan.drill.id, &run_id);
    let (writer, writer_error) = match writer {
        Ok(w) => (Some(w), None),
        Err(e) => (None, Some(e)),
    };
    let mut d = Driver::new(progress, writer);
    let (skeleton, _) = stages::record::build(
        &plan,
        sinks.signer,
        &gathered,
        &[],
        Verdict::Interrupted,
        Vec::new(),
    );
    // A run whose journal cannot even begin makes no sign-in.
    let begun = d.journal.as_ref().map(|j| {
        j.append(&JournalLine::Begin {
            record: Box::new(skeleton),
        })
    });
    let writer_error = match begun {
        Some(Err(why)) => Some(EvidenceError::Serialize {
            what: "the run's journal",
            why,
        }),
        _ => writer_error,
    };

    let browser = if gate(Stage::Preflight, cancel).await {
        d.stopped(Stage::Preflight);
        None
    } else if let Some(e) = &writer_error {
        let detail = format!("evidence cannot be written, so no sign-in is made: {e}");
        d.stage(Stage::Preflight, async {
            Ended::new(StageStatus::Errored, detail, None)
        })
        .await
    } else {
        d.stage(Stage::Preflight, stages::preflight::run(&plan, cancel))
            .await
    };
    let mut ceremony = None;
    let mut completed = false;
    let mut turned_away = false;
    let stopped_or = |why: &'static str| {
        if cancel.is_cancelled() {
            STOPPED_BEFORE
        } else {
            why
        }
    };
    match &browser {
        Some(b) => {
            if gate(Stage::Announce, cancel).await {
                d.stopped(Stage::Announce);
                d.skip(Stage::SignIn, STOPPED_BEFORE);
            } else {
                gathered.announcement = d
                    .stage(
                        Stage::Announce,
                        stages::announce::run(&plan, sinks, &run_id, progress),
                    )
                    .await;
                let barrier = if gate(Stage::SignIn, cancel).await {
                    None
                } else {
                    Some(progress.before_sign_in().await)
                };
                if let Some(Err(why)) = &barrier {
                    // An ERROR before any sign-in: retried, never a PASS.
                    let detail = format!("no sign-in was made: {why}");
                    d.stage(Stage::SignIn, async {
                        Ended::<Option<()>>::new(StageStatus::Errored, detail, None)
                    })
                    .await;
                } else if barrier.is_none() {
                    d.stopped(Stage::SignIn);
                } else {
                    // After a panic, assume the worst: a sign-in may have
                    // happened since the run began, and it is treated
                    // like one that did.
                    let journal = d.journal.clone();
                    let signin = d
                        .stage_or(
                            Stage::SignIn,
                            stages::sign_in::run(b, flow, &plan, &vars, journal.as_ref(), cancel),
                            || stages::sign_in::SignedIn::unknown(started),
                        )
                        .await;
                    // From the ceremony on a sign-in may have happened,
                    // whatever the flow's outcome.
                    ceremony = signin.ceremony;
                    completed = signin.completed;
                    turned_away = signin.turned_away;
                    gathered.sign_in(signin);
                    // Screenshots go to disk now: if the run dies later,
                    // they are recovered with its journal.
                    d.persist(&mut gathered.captures);
                }
            }
        }
        None => {
            d.skip(Stage::Announce, stopped_or("preflight did not pass"));
            d.skip(Stage::SignIn, stopped_or("preflight did not pass"));
        }
    }
    match ceremony {
        Some((at, instant)) => {
            // After a completed flow the record must be there (strict);
            // after one that broke past the ceremony it is looked for all
            // the same: a sign-in may have happened and its record tells.
            gate(Stage::Confirm, cancel).await;
            let correlation = gathered.correlation_id.clone();
            gathered.signin_record = d
                .stage(
                    Stage::Confirm,
                    stages::confirm::run(
                        &plan,
                        at,
                        correlation.as_deref(),
                        completed,
                        turned_away,
                        cancel,
                    ),
                )
                .await;
            let signed_in = completed || gathered.signin_succeeded();
            let signin_at = gathered.signin_time().unwrap_or(at);
            if signed_in {
                gate(Stage::Alerts, cancel).await;
                gathered.observations = d
                    .stage(
                        Stage::Alerts,
                        stages::alerts::run(
                            &plan,
                            signin_at,
                            gathered.signin_record.as_ref(),
                            gathered.correlation_id.as_deref(),
                            instant,
                            cancel,
                        ),
                    )
                    .await;
            } else {
                d.skip(Stage::Alerts, "the sign-in did not complete");
            }
        }
        None => {
            d.skip(Stage::Confirm, "the sign-in did not complete");
            d.skip(Stage::Alerts, "the sign-in did not complete");
        }
    }
    // Posture after the alerts, so it never delays the sign-in or the
    // alert timing; skipped when nothing was signed in (preflight failed)
    // or nothing is configured.
    match (&plan.posture, &browser) {
        (Some(p), Some(_)) if !cancel.is_cancelled() => {
            if gate(Stage::Posture, cancel).await {
                d.stopped(Stage::Posture);
            } else {
                let this_run = gathered
                    .signin_record
                    .as_ref()
                    .and_then(|r| r["correlationId"].as_str().map(str::to_owned))
                    .or_else(|| gathered.correlation_id.clone());
                gathered.posture = d
                    .stage(
                        Stage::Posture,
                        stages::posture::run(p, this_run.as_deref(), cancel),
                    )
                    .await;
            }
        }
        (None, _) => d.skip(
            Stage::Posture,
            "no [posture] in glassdrill.toml: name the break-glass accounts to check their set-up",
        ),
        _ => d.skip(Stage::Posture, stopped_or("preflight did not pass")),
    }
    // Teardown and record run whatever happened, stop or not.
    gate(Stage::Teardown, cancel).await;
    let signout = d
        .stage(
            Stage::Teardown,
            stages::teardown::run(browser, flow, &vars, &plan, ceremony.is_some()),
        )
        .await;
    gathered.captures.extend(signout);

    gate(Stage::Record, cancel).await;
    // The verdict is decided here, with the record: a stop that comes
    // while the record is being written is too late to change what the
    // drill did, and the exit code must say what the evidence says.
    let stopped = cancel.is_cancelled();
    let decided = verdict(&d.stages, stopped);
    let so_far = d.stages.clone();
    let writer = d.writer.take();
    let record_body = stages::record::run(&plan, sinks, writer, gathered, &so_far, decided, cancel);
    let (record, bundle) = d
        .stage_or(Stage::Record, record_body, || {
            (
                None,
                Err(EvidenceError::Serialize {
                    what: "the drill record",
                    why: "glassdrill failed while recording (a bug); the run's journal is kept and recovered at the next start".into(),
                }),
            )
        })
        .await;
    if sinks.notifier.delivers_reports() {
        // Only a recorded verdict is reported; without a bundle the
        // outcome is ERROR whatever the unsealed record said.
        match (&record, &bundle) {
            (Some(r), Ok(b)) => {
                d.stage(
                    Stage::Report,
                    stages::report::run(sinks, r, b, &plan.findings),
                )
                .await
            }
            _ => d.skip(Stage::Report, "the evidence could not be written"),
        }
    } else {
        d.skip(Stage::Report, "no notification channel configured");
    }
    // A drill whose evidence could not be written is not proven: the
    // record stage's own result counts.
    let (verdict, reasons) = verdict(&d.stages, stopped);
    DrillOutcome {
        run_id,
        verdict,
        reasons,
        stages: d.stages,
        record,
        bundle,
        sign_in_attempted: ceremony.is_some(),
    }
}
