//! A drill run on request (`glassdrill run`), in this process or inside
//! the daemon (through its control socket): the key chosen, the state
//! store's locks taken (no two drills on one group, account or key at
//! once, across processes), the run recorded so the schedule counts it.
//! One function for both, so they cannot drift apart.

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{After, record_outcome};
use crate::config::{DrillConfig, HostConfig};
use crate::drill::{DrillOutcome, Progress};
use crate::record::{StageRecord, Verdict};
use crate::runner::{RunError, RunOptions};
use crate::services::Services;
use crate::state::StateStore;

pub use crate::record::EXIT_USAGE;

/// Why a run on request did not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The message, for the person who asked.
    pub message: String,
    /// The exit code `glassdrill run` ends with.
    pub code: u8,
}

/// What a finished run on request reports (printed by `glassdrill run`,
/// sent over the control socket as it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The verdict.
    pub verdict: Verdict,
    /// Run id.
    pub run_id: String,
    /// Why, when not PASS.
    pub reasons: Vec<String>,
    /// Every stage.
    pub stages: Vec<StageRecord>,
    /// Per counted alert: name, sign-in to fired, sign-in to delivered (ms).
    pub latencies: Vec<(String, i64, i64)>,
    /// Counted alerts matched more weakly than by account, in words.
    #[serde(default)]
    pub weak_matches: Vec<String>,
    /// The sealed bundle's directory, or why none was written.
    pub bundle: Result<String, String>,
    /// Set when the daemon now holds the drill, and why.
    pub held: Option<String>,
    /// Set when the result is not in the state store.
    pub unrecorded: Option<String>,
    /// The bundle's evidence log entry and the checkpoint signed after it.
    #[serde(default)]
    pub log: Option<Result<(u64, String), String>>,
}

impl Summary {
    /// The summary of an outcome.
    pub fn of(o: &DrillOutcome) -> Self {
        Self {
            verdict: o.verdict,
            run_id: o.run_id.clone(),
            reasons: o.reasons.clone(),
            stages: o.stages.clone(),
            latencies: o
                .record
                .iter()
                .flat_map(|r| &r.alerts)
                .filter_map(|a| a.latency.as_ref())
                .map(|l| {
                    (
                        l.name.clone(),
                        l.signin_to_fired_ms,
                        l.signin_to_received_ms,
                    )
                })
                .collect(),
            weak_matches: o
                .record
                .iter()
                .flat_map(|r| &r.alerts)
                .filter_map(|a| {
                    let advice = a.matched.as_ref()?.matched_by?.advice()?;
                    Some(format!("alert {}: {advice}", a.name))
                })
                .collect(),
            bundle: o
                .bundle
                .as_ref()
                .map(|b| b.dir.display().to_string())
                .map_err(ToString::to_string),
            held: None,
            unrecorded: None,
            log: o
                .bundle
                .as_ref()
                .ok()
                .and_then(|b| b.log.clone().map(|r| r.map(|a| (a.index, a.checkpoint)))),
        }
    }
}

/// Where the run happens.
pub enum Host<'a> {
    /// In this process, with services of its own.
    Own(&'a HostConfig),
    /// In the daemon, on its services (its webhook receiver, its secrets).
    Daemon(&'a HostConfig, &'a Services),
}

impl Host<'_> {
    fn config(&self) -> &HostConfig {
        match self {
            Host::Own(h) | Host::Daemon(h, _) => h,
        }
    }
}

/// What the caller asks for.
pub struct Request {
    /// The options of the run.
    pub opts: RunOptions,
    /// `--key`.
    pub key: Option<String>,
    /// `--wait`: wait for the locks instead of refusing.
    pub wait: bool,
    /// Who holds the locks, for others to read (`glassdrill run, pid N`).
    pub holder: String,
}

/// Runs `drill` on request. `waiting` hears each "waiting for …" line
/// while `--wait` waits for a lock.
pub async fn run(
    host: Host<'_>,
    store: &StateStore,
    drill: &DrillConfig,
    mut req: Request,
    progress: &dyn Progress,
    waiting: &(dyn Fn(&str) + Sync),
    cancel: &CancellationToken,
) -> Result<Summary, Refusal> {
    let key = match req.key.take() {
        Some(k) if !drill.schedule.keys.contains(&k) => {
            return Err(Refusal {
                message: format!(
                    "--key {k} is not one of drill {}'s schedule.keys ({})",
                    drill.id,
                    drill.schedule.keys.join(", ")
                ),
                code: EXIT_USAGE,
            });
        }
        Some(k) => Some(k),
        None => crate::schedule::next_key(
            &drill.schedule.keys,
            &store.key_proofs(&drill.id).await.unwrap_or_default(),
        ),
    };
    let mut opts = req.opts;
    opts.custody.key_id.clone_from(&key);
    if let Some(k) = &key {
        opts.last_sign_count = store.key_counter(&drill.id, k).await.ok().flatten();
    }
    // Sign-ins since the drill's previous run that no drill made are
    // unexpected use.
    opts.previous_drill_end = store
        .runs(&drill.id, 1)
        .await
        .ok()
        .and_then(|r| r.first().map(|r| r.ended.unwrap_or(r.started)));
    let names = crate::state::lock_names(&drill.group_key(), &drill.account, key.as_deref());
    let error = |message: String| Refusal {
        message,
        code: Verdict::Error.exit_code(),
    };
    let locks = loop {
        match store
            .try_lock(&names, &req.holder, crate::support::time::now())
            .await
        {
            Ok(Ok(l)) => break l,
            Ok(Err(h)) if req.wait => {
                waiting(&format!(
                    "waiting: {} holds {} since {}",
                    h.holder,
                    h.name,
                    crate::support::time::rfc3339_ms(h.since)
                ));
                tokio::select! {
                    () = cancel.cancelled() => return Err(Refusal {
                        message: "stopped while waiting for the locks; nothing was started".into(),
                        code: Verdict::Interrupted.exit_code(),
                    }),
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
            Ok(Err(h)) => {
                return Err(error(format!(
                    "drill {} not started: {} holds {} (since {}); drills of one group, account or key never run at once. Wait for it, or pass --wait",
                    drill.id,
                    h.holder,
                    h.name,
                    crate::support::time::rfc3339_ms(h.since)
                )));
            }
            Err(e) => return Err(error(e.to_string())),
        }
    };
    // Renewed while the run lives; lost (another host took the drill after
    // a lapse), the run stops.
    let run_cancel = cancel.child_token();
    let renewal = store.keep_renewed(&locks, run_cancel.clone());
    let cancel = &run_cancel;
    // The run's start and stages go to the state store as they happen: if
    // this process dies, whoever looks next knows how far it got.
    let (recording, writer) =
        super::RecordingProgress::start(progress, store.clone(), &drill.id, "run", key.clone());
    // A panic in the run (a bug) must not leave the locks held by a live
    // process (the daemon) for ever: caught here, the locks released below,
    // the drill held for a person.
    let run = async {
        match &host {
            Host::Own(h) => {
                crate::runner::run_configured(h, drill, &opts, &recording, cancel).await
            }
            Host::Daemon(h, services) => {
                crate::runner::run_with(services, h, drill, &opts, &recording, cancel).await
            }
        }
    };
    let caught = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
    let result: Result<DrillOutcome, RunError> = match caught {
        Ok(r) => r,
        Err(_) => {
            let why = format!(
                "glassdrill failed during an on-demand run (a bug); check the evidence and run `glassdrill run {}`",
                drill.id
            );
            let _ = store.hold(&drill.id, &why).await;
            drop(recording);
            let _ = writer.await;
            drop(renewal);
            if let Err(e) = store.release(locks).await {
                tracing::warn!(error = %e, "could not release the drill's locks");
            }
            return Err(Refusal {
                message: why,
                code: Verdict::Error.exit_code(),
            });
        }
    };
    drop(recording);
    let _ = writer.await;
    let out = match result {
        Ok(outcome) => {
            let mut summary = Summary::of(&outcome);
            match record_outcome(
                store,
                drill,
                key.as_deref(),
                "run",
                &outcome,
                crate::support::time::now(),
                host.config().daemon.retry_after,
            )
            .await
            {
                Ok(After::Held(why)) => summary.held = Some(why),
                Ok(_) => {}
                Err(e) => summary.unrecorded = Some(e.to_string()),
            }
            publish(store, host.config()).await;
            Ok(summary)
        }
        Err(e) => Err(Refusal {
            message: e.to_string(),
            code: e.exit_code(),
        }),
    };
    drop(renewal);
    if let Err(e) = store.release(locks).await {
        tracing::warn!(error = %e, "could not release the drill's locks; they lapse after the lease");
    }
    out
}

/// In a fleet, the run's bundle goes to the fleet's store and log (a
/// failure is logged: the daemon publishes it later).
async fn publish(store: &StateStore, host: &HostConfig) {
    if store.backend() != crate::state::Backend::Postgres {
        return;
    }
    if let Err(e) =
        crate::state::fleet::join_and_publish_from_file(store, host, crate::support::time::now())
            .await
    {
        tracing::warn!(error = %e, "could not publish to the fleet's evidence; the daemon publishes it later");
    }
}
