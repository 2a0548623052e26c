//! The drill pipeline and its one verdict model.
//!
//! `preflight → announce → sign-in → confirm → alerts → teardown → record →
//! report`, each timed and recorded as a [`StageRecord`]. The verdict is a
//! pure function of the stage records ([`verdict`]): any finding makes it
//! FAIL (the control failed), otherwise any stage that could not be carried
//! out makes it ERROR (retry later), otherwise PASS; a cancelled drill is
//! INTERRUPTED. Do-no-harm (D3): the sign-in is attempted exactly once per
//! run and never retried here, whatever happens.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertCheck, AlertObservation, AlertTarget};
use crate::authenticator::{Authenticator, AuthenticatorIdentity};
use crate::browser::{Browser, BrowserOptions};
use crate::config::{DrillConfig, ExpectedAlert};
use crate::evidence::{BundleWriter, SealedBundle, SigningKey};
use crate::flow::{Capture, FlowOutcome, FlowRunner, FlowVars, StepRecord};
use crate::graph::{GraphClient, GraphError};
use crate::progress::Progress;

/// A pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Config, key, browser and tenant checked.
    Preflight,
    /// The SOC told a drill is starting.
    Announce,
    /// The browser sign-in with the key.
    SignIn,
    /// The sign-in's own log record fetched.
    Confirm,
    /// Every expected alert observed within its deadline.
    Alerts,
    /// Signed out; browser and profile destroyed.
    Teardown,
    /// Signed evidence written.
    Record,
    /// Report delivered.
    Report,
}

impl Stage {
    /// Its name in progress and evidence.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Announce => "announce",
            Self::SignIn => "sign-in",
            Self::Confirm => "confirm",
            Self::Alerts => "alerts",
            Self::Teardown => "teardown",
            Self::Record => "record",
            Self::Report => "report",
        }
    }
}

/// How one stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Done.
    Passed,
    /// Done, with something to look at that does not change the verdict.
    Warning,
    /// A finding: the control failed.
    Failed,
    /// Could not be carried out.
    Errored,
    /// Not run (an earlier stage ended the drill).
    Skipped,
    /// Cancelled while running.
    Interrupted,
}

/// One stage's record.
#[derive(Debug, Clone, Serialize)]
pub struct StageRecord {
    /// Which stage.
    pub stage: Stage,
    /// How it ended.
    pub status: StageStatus,
    /// Start (UTC).
    pub started: DateTime<Utc>,
    /// End (UTC).
    pub finished: DateTime<Utc>,
    /// Wall time in milliseconds (monotonic clock).
    pub duration_ms: u64,
    /// What happened, in a sentence.
    pub detail: String,
}

/// The drill's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The account works and the alert pipeline fired in time.
    Pass,
    /// A control failed: a finding.
    Fail,
    /// The drill could not be carried out: not a finding, retry.
    Error,
    /// The drill was cut short.
    Interrupted,
}

impl Verdict {
    /// Process exit code: 0 PASS, 1 FAIL, 2 ERROR / INTERRUPTED.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Fail => 1,
            Self::Error | Self::Interrupted => 2,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Error => "ERROR",
            Self::Interrupted => "INTERRUPTED",
        })
    }
}

/// The verdict and its reasons from the stage records: findings first,
/// then errors, then interruption.
pub fn verdict(stages: &[StageRecord]) -> (Verdict, Vec<String>) {
    let reasons = |s: StageStatus| -> Vec<String> {
        stages
            .iter()
            .filter(|r| r.status == s)
            .map(|r| format!("{}: {}", r.stage.name(), r.detail))
            .collect()
    };
    let failed = reasons(StageStatus::Failed);
    if !failed.is_empty() {
        return (Verdict::Fail, failed);
    }
    let interrupted = reasons(StageStatus::Interrupted);
    if !interrupted.is_empty() {
        return (Verdict::Interrupted, interrupted);
    }
    let errored = reasons(StageStatus::Errored);
    if !errored.is_empty() {
        return (Verdict::Error, errored);
    }
    (Verdict::Pass, Vec::new())
}

/// Where the drill signs in and reads logs.
pub struct TenantEndpoints {
    /// Sign-in authority.
    pub authority: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Graph base URL.
    pub graph: String,
    /// App registration for the sign-in log.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
}

/// Everything one drill run needs.
pub struct DrillPlan<'a> {
    /// The drill.
    pub drill: &'a DrillConfig,
    /// Host config digest, recorded in evidence.
    pub host_digest: &'a str,
    /// Where and how.
    pub tenant: TenantEndpoints,
    /// The authenticator.
    pub authenticator: &'a dyn Authenticator,
    /// One check per expected alert, same order as `drill.alerts`.
    pub alert_checks: Vec<Box<dyn AlertCheck>>,
    /// Browser binaries.
    pub browser: BrowserOptions,
    /// Per-step timeout of the flow.
    pub step_timeout: Duration,
    /// Evidence root (`<data>/evidence`).
    pub evidence_dir: std::path::PathBuf,
    /// Signing key.
    pub signing_key: &'a SigningKey,
    /// Signer principal.
    pub signer: &'a str,
    /// Who ran it.
    pub operator: Option<String>,
    /// Who watched.
    pub witness: Option<String>,
}

/// What a drill produced.
#[derive(Debug)]
pub struct DrillOutcome {
    /// Run id.
    pub run_id: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Why, when not PASS.
    pub reasons: Vec<String>,
    /// Stage records.
    pub stages: Vec<StageRecord>,
    /// The sealed bundle, or why none could be written.
    pub bundle: Result<SealedBundle, String>,
    /// Per-alert latencies, for the summary.
    pub alert_summaries: Vec<Value>,
}

/// A time-sortable run id: `20261124T203015Z-1a2b3c`.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(crate::secret::random_bytes(3))
    )
}

struct Timer {
    stage: Stage,
    started: DateTime<Utc>,
    t0: std::time::Instant,
}

impl Timer {
    fn start(stage: Stage, progress: &dyn Progress) -> Self {
        progress.stage_started(stage);
        Self {
            stage,
            started: Utc::now(),
            t0: std::time::Instant::now(),
        }
    }

    fn end(
        self,
        status: StageStatus,
        detail: impl Into<String>,
        progress: &dyn Progress,
        stages: &mut Vec<StageRecord>,
    ) {
        let r = StageRecord {
            stage: self.stage,
            status,
            started: self.started,
            finished: Utc::now(),
            duration_ms: u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: detail.into(),
        };
        progress.stage_finished(&r);
        stages.push(r);
    }
}

/// Records `stage` as not run (no "started" event: it never began).
fn skip(stage: Stage, why: &str, progress: &dyn Progress, stages: &mut Vec<StageRecord>) {
    let t = Timer {
        stage,
        started: Utc::now(),
        t0: std::time::Instant::now(),
    };
    t.end(StageStatus::Skipped, why, progress, stages);
}

fn ms(d: chrono::TimeDelta) -> i64 {
    d.num_milliseconds()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs one drill. Never retries the sign-in; always tears the browser
/// down; always tries to record evidence, whatever the verdict.
pub async fn run_drill(
    plan: DrillPlan<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> DrillOutcome {
    let drill = plan.drill;
    let started = Utc::now();
    let mut c = Collected {
        run_id: new_run_id(started),
        started,
        stages: Vec::new(),
        captures: Vec::new(),
        flow_steps: Vec::new(),
        correlation_id: None,
        signin_record: None,
        observations: Vec::new(),
        identity: plan.authenticator.identity(),
        announcement: String::new(),
    };
    let vars = FlowVars {
        authority: plan.tenant.authority.clone(),
        tenant_id: plan.tenant.tenant_id.clone(),
        upn: drill.account.clone(),
    };

    // preflight
    let t = Timer::start(Stage::Preflight, progress);
    let mut browser: Option<Browser> = None;
    let graph = GraphClient::new(
        &plan.tenant.authority,
        &plan.tenant.graph,
        &plan.tenant.tenant_id,
        &plan.tenant.client_id,
        plan.tenant.client_secret.clone(),
    );
    let pre: Result<String, String> = async {
        let notes = plan
            .authenticator
            .preflight()
            .await
            .map_err(|e| e.to_string())?;
        let g = graph.as_ref().map_err(|e| e.to_string())?;
        g.check()
            .await
            .map_err(|e| format!("tenant not ready: {e}"))?;
        let b = Browser::launch(&plan.browser)
            .await
            .map_err(|e| e.to_string())?;
        plan.authenticator
            .attach(&b)
            .await
            .map_err(|e| e.to_string())?;
        browser = Some(b);
        Ok(notes.join("; "))
    }
    .await;
    let pre_ok = match pre {
        Ok(notes) => {
            t.end(
                StageStatus::Passed,
                format!("tenant reachable; browser ready; {notes}"),
                progress,
                &mut c.stages,
            );
            true
        }
        Err(e) => {
            t.end(StageStatus::Errored, e, progress, &mut c.stages);
            false
        }
    };

    // announce
    let mut signin_done: Option<(DateTime<Utc>, tokio::time::Instant)> = None;
    if pre_ok {
        let t = Timer::start(Stage::Announce, progress);
        let expected: Vec<String> = drill
            .alerts
            .iter()
            .map(|a| {
                format!(
                    "{} ({}, within {})",
                    a.name,
                    a.kind.name(),
                    humantime::format_duration(a.deadline)
                )
            })
            .collect();
        c.announcement = format!(
            "glassdrill: break-glass drill {} run {} starts now for {}. Expect a sign-in and these alerts: {}.{}",
            drill.id,
            c.run_id,
            drill.account,
            expected.join("; "),
            plan.operator
                .as_ref()
                .map(|o| format!(" Operator: {o}."))
                .unwrap_or_default()
        );
        tracing::info!(target: "glassdrill::announce", drill = %drill.id, run = %c.run_id, "{}", c.announcement);
        progress.note(&c.announcement);
        t.end(
            StageStatus::Passed,
            "announced on the log and console (no notification channel configured)",
            progress,
            &mut c.stages,
        );

        // sign-in
        let t = Timer::start(Stage::SignIn, progress);
        let Some(b) = browser.as_ref() else {
            t.end(
                StageStatus::Errored,
                "browser missing after preflight",
                progress,
                &mut c.stages,
            );
            return finish(plan, c, progress);
        };
        let runner = FlowRunner::new(b, &drill.flow, &vars, plan.step_timeout);
        let run = runner.run(&drill.start_url, cancel).await;
        c.captures.extend(run.captures);
        c.flow_steps = run.steps;
        c.correlation_id = run.correlation_id;
        match run.outcome {
            FlowOutcome::SignedIn => {
                signin_done = Some(
                    run.ceremony_at
                        .unwrap_or_else(|| (Utc::now(), tokio::time::Instant::now())),
                );
                t.end(
                    StageStatus::Passed,
                    format!("signed in as {} with the security key", drill.account),
                    progress,
                    &mut c.stages,
                );
            }
            FlowOutcome::Refused { step, message } => {
                t.end(
                    StageStatus::Failed,
                    format!("sign-in refused at step {step}: {message}"),
                    progress,
                    &mut c.stages,
                );
            }
            FlowOutcome::Drift { step, detail } => {
                t.end(StageStatus::Errored, format!("flow drift at step {step}: {detail}; see the screenshot and page HTML in the bundle and update the flow file"), progress, &mut c.stages);
            }
            FlowOutcome::BrowserFailed(e) => t.end(
                StageStatus::Errored,
                format!("browser failed: {e}"),
                progress,
                &mut c.stages,
            ),
            FlowOutcome::Cancelled => t.end(
                StageStatus::Interrupted,
                "cancelled during the sign-in",
                progress,
                &mut c.stages,
            ),
        }
    } else {
        skip(
            Stage::Announce,
            "preflight did not pass",
            progress,
            &mut c.stages,
        );
        skip(
            Stage::SignIn,
            "preflight did not pass",
            progress,
            &mut c.stages,
        );
    }

    // confirm + alerts
    if let (Some((ceremony_at, ceremony_instant)), Ok(graph)) = (signin_done, graph.as_ref()) {
        let t = Timer::start(Stage::Confirm, progress);
        // Allow for clock skew between this host and the cloud.
        let since = ceremony_at - chrono::Duration::minutes(5);
        let deadline = tokio::time::Instant::now() + drill.confirm_deadline;
        let mut poll = Duration::from_millis(250);
        let outcome = loop {
            match graph
                .sign_ins(&drill.account, since, c.correlation_id.as_deref(), cancel)
                .await
            {
                Ok(rows) => {
                    // Newest first; prefer a success, but a failure record
                    // for this correlation id is a finding too.
                    if let Some(r) = rows
                        .iter()
                        .find(|r| r["status"]["errorCode"].as_i64() == Some(0))
                        .or(rows.first())
                    {
                        break Confirmed::Found(r.clone());
                    }
                }
                Err(GraphError::Cancelled) => break Confirmed::Cancelled,
                Err(e) => break Confirmed::Unreadable(e),
            }
            if tokio::time::Instant::now() + poll > deadline {
                break Confirmed::NotLogged;
            }
            tokio::select! {
                () = cancel.cancelled() => break Confirmed::Cancelled,
                () = tokio::time::sleep(poll) => {}
            }
            poll = (poll * 2).min(Duration::from_secs(15));
        };
        match outcome {
            Confirmed::Found(rec) => {
                let code = rec["status"]["errorCode"].as_i64().unwrap_or(-1);
                let detail = format!(
                    "sign-in log record {} (correlationId {}, created {})",
                    rec["id"].as_str().unwrap_or("?"),
                    rec["correlationId"].as_str().unwrap_or("?"),
                    rec["createdDateTime"].as_str().unwrap_or("?")
                );
                if code == 0 {
                    t.end(StageStatus::Passed, detail, progress, &mut c.stages);
                } else {
                    t.end(
                        StageStatus::Failed,
                        format!("{detail} shows error {code}"),
                        progress,
                        &mut c.stages,
                    );
                }
                c.signin_record = Some(rec);
            }
            Confirmed::NotLogged => t.end(
                StageStatus::Failed,
                format!(
                    "the sign-in did not appear in the sign-in log within {}",
                    humantime::format_duration(drill.confirm_deadline)
                ),
                progress,
                &mut c.stages,
            ),
            Confirmed::Cancelled => t.end(
                StageStatus::Interrupted,
                "cancelled while reading the sign-in log",
                progress,
                &mut c.stages,
            ),
            Confirmed::Unreadable(e) => t.end(
                StageStatus::Errored,
                format!("could not read the sign-in log: {e}"),
                progress,
                &mut c.stages,
            ),
        }

        // alerts: correlate against the log's own time when we have it.
        let t = Timer::start(Stage::Alerts, progress);
        let signin_at = c
            .signin_record
            .as_ref()
            .and_then(|r| r["createdDateTime"].as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or(ceremony_at, |d| d.with_timezone(&Utc));
        let futures = drill
            .alerts
            .iter()
            .zip(&plan.alert_checks)
            .map(|(exp, check)| {
                let target = AlertTarget {
                    upn: drill.account.clone(),
                    signin_at,
                    deadline: ceremony_instant + exp.deadline,
                };
                async move { (exp.clone(), check.observe(&target, cancel).await) }
            });
        let results = futures_util::future::join_all(futures).await;
        let mut failed = Vec::new();
        let mut interrupted = false;
        let mut errored = Vec::new();
        for (exp, obs) in results {
            let summary = obs.matched.as_ref().map(|m| {
                json!({
                    "name": exp.name,
                    "signin_to_fired_ms": ms(m.alert.fired - signin_at),
                    "fired_to_received_ms": ms(m.received_at - m.alert.fired),
                    "signin_to_received_ms": ms(m.received_at - signin_at),
                })
            });
            if obs.cancelled {
                interrupted = true;
            } else if let Some(e) = &obs.error {
                errored.push(format!("{}: {e}", exp.name));
            } else if obs.matched.is_none() {
                let ignored: Vec<String> = obs
                    .ignored
                    .iter()
                    .map(|(a, r)| {
                        format!("{} {r}", a.alert.alert_id.rsplit('/').next().unwrap_or("?"))
                    })
                    .collect();
                let extra = if ignored.is_empty() {
                    String::new()
                } else {
                    format!(" (ignored {}: {})", ignored.len(), ignored.join("; "))
                };
                failed.push(format!(
                    "no `{}` alert for {} within {}{extra}",
                    exp.name,
                    drill.account,
                    humantime::format_duration(exp.deadline)
                ));
            }
            c.observations.push((exp, obs, summary));
        }
        if interrupted {
            t.end(
                StageStatus::Interrupted,
                "cancelled while waiting for alerts",
                progress,
                &mut c.stages,
            );
        } else if !failed.is_empty() {
            t.end(
                StageStatus::Failed,
                failed.join("; "),
                progress,
                &mut c.stages,
            );
        } else if !errored.is_empty() {
            t.end(
                StageStatus::Errored,
                errored.join("; "),
                progress,
                &mut c.stages,
            );
        } else {
            let lat: Vec<String> = c
                .observations
                .iter()
                .filter_map(|(e, _, s)| {
                    s.as_ref().map(|s| {
                        format!(
                            "{}: fired {} ms, delivered {} ms after the sign-in",
                            e.name, s["signin_to_fired_ms"], s["signin_to_received_ms"]
                        )
                    })
                })
                .collect();
            t.end(StageStatus::Passed, lat.join("; "), progress, &mut c.stages);
        }
    } else if signin_done.is_some() {
        skip(Stage::Confirm, "no Graph client", progress, &mut c.stages);
        skip(Stage::Alerts, "no Graph client", progress, &mut c.stages);
    } else {
        skip(
            Stage::Confirm,
            "the sign-in did not complete",
            progress,
            &mut c.stages,
        );
        skip(
            Stage::Alerts,
            "the sign-in did not complete",
            progress,
            &mut c.stages,
        );
    }

    // teardown: sign out (best effort), close the browser, check the profile is gone.
    let t = Timer::start(Stage::Teardown, progress);
    let mut warnings = Vec::new();
    if let Some(b) = browser.take() {
        if signin_done.is_some() {
            let runner = FlowRunner::new(&b, &drill.flow, &vars, plan.step_timeout);
            match runner.sign_out(&CancellationToken::new()).await {
                Ok(Some(shot)) => c.captures.push(shot),
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
        t.end(
            StageStatus::Passed,
            "signed out; browser closed; profile destroyed",
            progress,
            &mut c.stages,
        );
    } else {
        t.end(
            StageStatus::Warning,
            warnings.join("; "),
            progress,
            &mut c.stages,
        );
    }

    finish(plan, c, progress)
}

/// How the `confirm` stage's search of the sign-in log ended.
enum Confirmed {
    /// The sign-in's own record.
    Found(Value),
    /// Not in the log by the deadline: a finding.
    NotLogged,
    /// The log could not be read: an error, not a finding.
    Unreadable(GraphError),
    /// Ctrl-C / shutdown.
    Cancelled,
}

/// What a run has gathered so far, for the record.
struct Collected {
    run_id: String,
    started: DateTime<Utc>,
    stages: Vec<StageRecord>,
    captures: Vec<Capture>,
    flow_steps: Vec<StepRecord>,
    correlation_id: Option<String>,
    signin_record: Option<Value>,
    observations: Vec<(ExpectedAlert, AlertObservation, Option<Value>)>,
    identity: AuthenticatorIdentity,
    announcement: String,
}

fn finish(plan: DrillPlan<'_>, c: Collected, progress: &dyn Progress) -> DrillOutcome {
    let Collected {
        run_id,
        started,
        mut stages,
        captures,
        flow_steps,
        correlation_id,
        signin_record,
        observations,
        identity,
        announcement,
    } = c;
    let drill = plan.drill;
    let (verdict, reasons) = verdict(&stages);
    let t = Timer::start(Stage::Record, progress);
    let record_started = Utc::now();

    let mut alert_entries = Vec::new();
    let mut alert_files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut summaries = Vec::new();
    for (i, (exp, obs, summary)) in observations.iter().enumerate() {
        let matched = obs.matched.as_ref().map(|m| {
            let file = format!("alerts/{:02}-{:03}-matched.json", i + 1, m.seq);
            alert_files.push((file.clone(), m.raw.to_vec()));
            json!({"file": file, "alert_id": m.alert.alert_id, "rule": m.alert.rule, "severity": m.alert.severity, "fired": ts(m.alert.fired), "received": ts(m.received_at)})
        });
        let ignored: Vec<Value> = obs
            .ignored
            .iter()
            .map(|(a, r)| {
                let file = format!("alerts/{:02}-{:03}-ignored.json", i + 1, a.seq);
                alert_files.push((file.clone(), a.raw.to_vec()));
                json!({"file": file, "alert_id": a.alert.alert_id, "fired": ts(a.alert.fired), "received": ts(a.received_at), "why": r.to_string(), "reason": r})
            })
            .collect();
        if let Some(s) = summary {
            summaries.push(s.clone());
        }
        alert_entries.push(json!({
            "name": exp.name,
            "kind": exp.kind.name(),
            "deadline_ms": u64::try_from(exp.deadline.as_millis()).unwrap_or(u64::MAX),
            "matched": matched,
            "latency": summary,
            "ignored": ignored,
            "error": obs.error,
        }));
    }

    let record = json!({
        "schema": "glassdrill.drill/v1",
        "run_id": run_id,
        "drill": {
            "id": drill.id,
            "account": drill.account,
            "group": drill.group,
            "description": drill.description,
            "tenant": match drill.tenant { crate::config::TenantKind::Rehearsal => "rehearsal", crate::config::TenantKind::Entra => "entra" },
            "tenant_id": plan.tenant.tenant_id,
            "flow": drill.flow.name,
            "source": drill.source.display().to_string(),
        },
        "config_digest": { "drill_and_flow_sha256": drill.digest, "host_sha256": plan.host_digest },
        "runner": { "name": "glassdrill", "version": env!("CARGO_PKG_VERSION"), "signer": plan.signer },
        "operator": plan.operator,
        "witness": plan.witness,
        "started": ts(started),
        "recorded": ts(record_started),
        "verdict": verdict,
        "reasons": reasons,
        "stages": stages,
        "authenticator": identity,
        "announcement": announcement,
        "sign_in": {
            "correlation_id": correlation_id,
            "steps": flow_steps,
            "log_record": signin_record.as_ref().map(|_| "signin.json"),
        },
        "alerts": alert_entries,
    });

    let bundle = write_bundle(
        &plan,
        &run_id,
        &record,
        signin_record.as_ref(),
        &alert_files,
        &captures,
    );
    match &bundle {
        Ok(b) => t.end(
            StageStatus::Passed,
            format!("{} ({} files)", b.dir.display(), b.files.len()),
            progress,
            &mut stages,
        ),
        Err(e) => t.end(StageStatus::Errored, e.clone(), progress, &mut stages),
    }
    skip(
        Stage::Report,
        "no notification channel configured",
        progress,
        &mut stages,
    );
    // A drill whose evidence could not be written is not proven.
    let (verdict, reasons) = if bundle.is_err() && verdict == Verdict::Pass {
        (
            Verdict::Error,
            vec![format!(
                "record: {}",
                bundle.as_ref().err().cloned().unwrap_or_default()
            )],
        )
    } else {
        (verdict, reasons)
    };
    DrillOutcome {
        run_id,
        verdict,
        reasons,
        stages,
        bundle,
        alert_summaries: summaries,
    }
}

fn write_bundle(
    plan: &DrillPlan<'_>,
    run_id: &str,
    record: &Value,
    signin: Option<&Value>,
    alert_files: &[(String, Vec<u8>)],
    captures: &[Capture],
) -> Result<SealedBundle, String> {
    let mut w = BundleWriter::create(&plan.evidence_dir, &plan.drill.id, run_id)
        .map_err(|e| e.to_string())?;
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).map_err(|e| e.to_string());
    w.add("drill.json", &pretty(record)?)
        .map_err(|e| e.to_string())?;
    if let Some(s) = signin {
        w.add("signin.json", &pretty(s)?)
            .map_err(|e| e.to_string())?;
    }
    for (name, bytes) in alert_files {
        w.add(name, bytes).map_err(|e| e.to_string())?;
    }
    for c in captures {
        w.add(&c.name, &c.bytes).map_err(|e| e.to_string())?;
    }
    w.add("report.html", crate::report::html(record).as_bytes())
        .map_err(|e| e.to_string())?;
    w.finish(plan.signing_key, plan.signer)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stage: Stage, status: StageStatus) -> StageRecord {
        let now = Utc::now();
        StageRecord {
            stage,
            status,
            started: now,
            finished: now,
            duration_ms: 0,
            detail: "x".into(),
        }
    }

    #[test]
    fn verdict_rules() {
        use StageStatus::*;
        assert_eq!(
            verdict(&[rec(Stage::SignIn, Passed), rec(Stage::Teardown, Warning)]).0,
            Verdict::Pass
        );
        assert_eq!(
            verdict(&[rec(Stage::Confirm, Errored), rec(Stage::Alerts, Failed)]).0,
            Verdict::Fail
        );
        assert_eq!(
            verdict(&[rec(Stage::SignIn, Errored), rec(Stage::Alerts, Skipped)]).0,
            Verdict::Error
        );
        assert_eq!(
            verdict(&[rec(Stage::SignIn, Interrupted)]).0,
            Verdict::Interrupted
        );
        let (_, reasons) = verdict(&[rec(Stage::Alerts, Failed)]);
        assert_eq!(reasons, vec!["alerts: x".to_owned()]);
        assert_eq!(Verdict::Fail.exit_code(), 1);
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id(
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let b = new_run_id(
            DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        assert!(a < b);
        assert!(a.starts_with("20260101T000000Z-"));
    }
}
