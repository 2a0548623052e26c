//! `glassdrill daemon`: drills every 30–60 days on an unattended host
//! (DESIGN D3, D9, D10, D11).
//!
//! One process keeps its services (webhook receiver, token caches, signing
//! key, the notification outbox, the state store) for its whole life and
//! attaches a run to them whenever a drill is due. Each tick
//! (`tokio-cron-scheduler`, every minute by default) re-reads the drill
//! files (a broken one disables that drill, never the daemon), draws a due
//! time once for a drill that has none, and starts the drills that are due
//! inside their windows — never two of one group at once, never closer
//! than the group gap, never a drill that is on hold.
//!
//! The verdict policy (do no harm): a FAIL is escalated and the drill is
//! held (no automatic second sign-in: lockout); an ERROR before any
//! sign-in attempt is retried with backoff; an ERROR or a stop after the
//! sign-in was attempted is held and escalated like a FAIL. A PASS — the
//! daemon's or an on-demand `glassdrill run`'s — draws the next due time.
//!
//! Time comes from a [`Clock`], so tests run months of schedule at once.

pub mod control;
pub mod metrics;
pub mod ondemand;
pub mod outbox;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Custody, DrillConfig, HostConfig};
use crate::drill::{DrillOutcome, Progress, StageRecord};
use crate::notify::{Channels, Kind};
use crate::record::{DrillRecord, Stage, Verdict};
use crate::runner::{RunError, RunOptions};
use crate::schedule::{DrawInput, draw, next_key, overdue, stale_keys};
use crate::services::{ServiceError, Services, WebhookSettings};
use crate::state::{RunRow, StateError, StateStore, lock_names};

pub use outbox::Outbox;

/// This glassdrill's version (hosts register it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where time comes from.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        crate::support::time::now()
    }
}

/// A clock a test sets.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }

    /// Moves it to `t` (backwards too: a clock that jumps back).
    pub fn set(&self, t: DateTime<Utc>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state store.
    #[error(transparent)]
    State(#[from] StateError),
    /// A service.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A notification channel.
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
    /// The webhook receiver settings.
    #[error("{0}")]
    Config(String),
    /// The scheduler.
    #[error("scheduler: {0}; check daemon.tick in glassdrill.toml")]
    Scheduler(String),
}

/// Progress of daemon runs: the log.
struct LogProgress {
    drill: String,
}

impl LogProgress {
    fn log(drill: &str) -> Self {
        Self {
            drill: drill.to_owned(),
        }
    }
}

impl Progress for LogProgress {
    fn stage_started(&self, stage: Stage) {
        tracing::info!(drill = %self.drill, stage = stage.name(), "stage started");
    }
    fn stage_finished(&self, r: &StageRecord) {
        tracing::info!(drill = %self.drill, stage = r.stage.name(), status = r.status.name(), duration_ms = r.duration_ms, detail = %r.detail, "stage finished");
    }
    fn note(&self, m: &str) {
        tracing::info!(drill = %self.drill, "{m}");
    }
}

/// What a run in progress tells the state store.
enum StateEvent {
    Started(String),
    Stage(String, &'static str),
    /// The sign-in begins: written in order, then answered.
    SigningIn(String, tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// Wraps a run's progress so its start and every stage it reaches are in
/// the state store as they happen (a task writes them, so the drill never
/// waits on the database). A run whose process dies is then known, with
/// how far it got, to whoever looks next.
pub struct RecordingProgress<'a> {
    inner: &'a dyn Progress,
    tx: tokio::sync::mpsc::UnboundedSender<StateEvent>,
    run_id: Mutex<Option<String>>,
}

impl<'a> RecordingProgress<'a> {
    /// Starts the writer; `finish` the returned handle after the run.
    pub fn start(
        inner: &'a dyn Progress,
        store: StateStore,
        drill: &str,
        origin: &'static str,
        key: Option<String>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let drill = drill.to_owned();
        let writer = tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let r = match ev {
                    StateEvent::Started(run_id) => {
                        store
                            .run_started(
                                &run_id,
                                &drill,
                                origin,
                                crate::support::time::now(),
                                key.as_deref(),
                            )
                            .await
                    }
                    StateEvent::Stage(run_id, stage) => store.run_stage(&run_id, stage).await,
                    StateEvent::SigningIn(run_id, answer) => {
                        let r = store.run_signing_in(&run_id).await;
                        let _ = answer.send(r.as_ref().map(|_| ()).map_err(ToString::to_string));
                        r
                    }
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "could not record a run's progress");
                }
            }
        });
        (
            Self {
                inner,
                tx,
                run_id: Mutex::new(None),
            },
            writer,
        )
    }
}

impl Progress for RecordingProgress<'_> {
    fn run_started(&self, run_id: &str) {
        *self
            .run_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run_id.to_owned());
        let _ = self.tx.send(StateEvent::Started(run_id.to_owned()));
        self.inner.run_started(run_id);
    }
    fn stage_started(&self, stage: Stage) {
        let run_id = self
            .run_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(run_id) = run_id {
            let _ = self.tx.send(StateEvent::Stage(run_id, stage.name()));
        }
        self.inner.stage_started(stage);
    }
    fn stage_finished(&self, r: &StageRecord) {
        self.inner.stage_finished(r);
    }
    fn note(&self, m: &str) {
        self.inner.note(m);
    }
    fn before_sign_in(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let run_id = self
                .run_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .ok_or("the run has no id yet")?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.tx
                .send(StateEvent::SigningIn(run_id, tx))
                .map_err(|_| "the state store's writer has stopped".to_owned())?;
            match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!(
                    "the state store could not record that the sign-in begins ({e})"
                )),
                _ => Err("the state store did not record in 30 s that the sign-in begins".into()),
            }
        })
    }
}

/// What one tick did, for tests and the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Drills started.
    pub started: Vec<String>,
    /// Drills due but held back, with why.
    pub waiting: Vec<(String, String)>,
    /// Drills disabled by a broken file.
    pub disabled: Vec<String>,
}

/// Options a test sets (the rehearsal tenant's behaviour in daemon runs).
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Passed to every run.
    pub run: RunOptions,
}

/// The running daemon.
pub struct Daemon {
    host: HostConfig,
    store: StateStore,
    services: Arc<Services>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    opts: DaemonOptions,
    cancel: CancellationToken,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    random: Mutex<Box<dyn FnMut() -> u64 + Send>>,
    /// Why each drill waited at the last tick (logged when it changes).
    waiting: Mutex<HashMap<String, String>>,
    /// Holds the state store could not record: no run until restart.
    held: Mutex<HashMap<String, String>>,
    /// When each custodian drill's key was first seen plugged in.
    key_seen: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When each drill no host can serve was last told.
    unservable_told: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The keys last registered for this host.
    registered_keys: Mutex<Option<Vec<KeyRow>>>,
    /// When drills no host can serve were last looked for.
    unservable_checked: Mutex<Option<DateTime<Utc>>>,
    /// Each drill's keys as last found attached, and when.
    probed: Mutex<HashMap<String, ProbedAt>>,
}

/// A key found attached: its name, AAGUID, SHA-256 of its credential id.
type Probed = (String, Option<String>, Option<String>);

/// When a drill's keys were looked for, and those found.
type ProbedAt = (DateTime<Utc>, Vec<Probed>);

/// How often an attached USB key is asked again when its drill is not due.
const PROBE_EVERY: chrono::Duration = chrono::Duration::minutes(10);

/// A registered key: drill, key, AAGUID, SHA-256 of the credential id.
type KeyRow = (String, String, Option<String>, Option<String>);

fn os_random() -> u64 {
    use rand_core::RngCore as _;
    rand_core::OsRng.next_u64()
}

/// What the verdict policy did with a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// PASS: the next due time is drawn afresh.
    Passed,
    /// ERROR before any sign-in attempt: retried at this time.
    Retry(DateTime<Utc>),
    /// FAIL, or a sign-in that may have happened in a run that did not
    /// pass: no automatic run until a person runs the drill.
    Held(String),
    /// A stop before the sign-in: the drill stays due.
    Unchanged,
}

/// The verdict policy (pure): never a second automatic sign-in after one
/// that may have happened and did not pass.
pub fn decide(
    verdict: Verdict,
    sign_in_attempted: bool,
    retries: u32,
    retry_after: std::time::Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (verdict, sign_in_attempted) {
        (Verdict::Error, false) => Some(now + retry_delay(retry_after, retries)),
        _ => None,
    }
}

/// Records a finished run in the state store and applies the verdict
/// policy; shared by the daemon and `glassdrill run` (whose PASS counts for
/// the schedule too).
pub async fn record_outcome(
    store: &StateStore,
    d: &DrillConfig,
    key: Option<&str>,
    origin: &str,
    o: &DrillOutcome,
    now: DateTime<Utc>,
    retry_after: std::time::Duration,
) -> Result<After, StateError> {
    let bundle = o.bundle.as_ref().ok().map(|b| b.dir.display().to_string());
    let latency = o.record.as_ref().and_then(DrillRecord::alert_latency_ms);
    store
        .run_ended(&RunRow {
            run_id: o.run_id.clone(),
            drill_id: d.id.clone(),
            origin: origin.into(),
            started: o.record.as_ref().map_or(now, |r| r.started),
            ended: Some(now),
            verdict: Some(o.verdict),
            sign_in_attempted: o.sign_in_attempted,
            key_id: key.map(str::to_owned),
            bundle,
            alert_latency_ms: latency,
        })
        .await?;
    let key_evidence = o.record.as_ref().and_then(|r| r.key.as_ref());
    if let (Some(k), Some(n)) = (key, key_evidence.and_then(|e| e.sign_count_after)) {
        // The highest counter seen stays the baseline: a clone that went
        // back is caught again next time, not taken as the new normal.
        let before = key_evidence.and_then(|e| e.sign_count_before).unwrap_or(0);
        store.set_key_counter(&d.id, k, n.max(before), now).await?;
    }
    // A key finding (a lowered PIN counter, a wrong PIN, a counter that did
    // not increase) needs a person whatever the verdict: each automatic
    // try could burn a PIN retry or use a cloned key.
    let key_findings: Vec<String> = key_evidence.map(|e| e.findings.clone()).unwrap_or_default();
    if !key_findings.is_empty() && o.verdict != Verdict::Pass {
        let why = format!(
            "{} at {} (run {}, {origin}): the key needs a person: {}; no automatic run until a custodian has checked the key (`glassdrill keys check {}`) and run `glassdrill run {}`",
            o.verdict,
            crate::support::time::rfc3339_ms(now),
            o.run_id,
            key_findings.join("; "),
            d.id,
            d.id
        );
        store.hold(&d.id, &why).await?;
        return Ok(After::Held(why));
    }
    Ok(match (o.verdict, o.sign_in_attempted) {
        (Verdict::Pass, _) => {
            store.passed(&d.id).await?;
            if let Some(k) = key {
                store.key_proven(&d.id, k, now).await?;
            }
            After::Passed
        }
        (Verdict::Interrupted, false) => After::Unchanged,
        (verdict, attempted) => {
            let retries = store.drill(&d.id).await?.retries;
            if let Some(at) = decide(verdict, attempted, retries, retry_after, now) {
                store.retry_later(&d.id, at).await?;
                After::Retry(at)
            } else {
                let why = format!(
                    "{verdict} at {} (run {}, {origin}): {}; no automatic retry (a second sign-in could lock the account out): fix the cause, then run `glassdrill run {}`",
                    crate::support::time::rfc3339_ms(now),
                    o.run_id,
                    o.reasons.join("; "),
                    d.id
                );
                store.hold(&d.id, &why).await?;
                After::Held(why)
            }
        }
    })
}

/// How long a custodian's key is plugged in before the daemon starts the
/// drill by itself (time for the custodian's own `glassdrill run`).
const CUSTODIAN_GRACE: chrono::Duration = chrono::Duration::minutes(2);

/// The retry time of an ERROR before any sign-in: `retry_after` doubling
/// per retry, at most 4 h.
fn retry_delay(first: std::time::Duration, retries: u32) -> chrono::Duration {
    let d = chrono::Duration::from_std(first).unwrap_or(chrono::Duration::minutes(15));
    (d * (1i32 << retries.min(8))).min(chrono::Duration::hours(4))
}

impl Daemon {
    /// Opens the state store, starts the services (recovering runs that
    /// died, and holding a drill whose dead run may have signed in), and
    /// the notification channels.
    pub async fn start(
        host: HostConfig,
        clock: Arc<dyn Clock>,
        opts: DaemonOptions,
        cancel: CancellationToken,
    ) -> Result<Self, DaemonError> {
        let store = StateStore::open_host(&host, false).await?;
        let token = match &host.webhook.token {
            None => secrecy::SecretString::from(crate::secret::random_token(32)),
            Some(t) => t
                .resolve()
                .map_err(|e| DaemonError::Config(format!("webhook.token: {e}")))?,
        };
        let channels = Arc::new(Channels::new(&host.notify)?);
        let outbox = Outbox::new(store.clone(), channels, clock.clone());
        let progress = LogProgress::log("-");
        let services = Services::start(
            &host,
            WebhookSettings {
                listen: host.webhook.listen,
                token,
            },
            &progress,
        )
        .await?
        .with_notifier(Box::new(outbox.clone()));
        let d = Self {
            host,
            store,
            services: Arc::new(services),
            outbox,
            clock,
            opts,
            cancel,
            running: Mutex::new(HashMap::new()),
            random: Mutex::new(Box::new(os_random)),
            waiting: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            key_seen: Mutex::new(HashMap::new()),
            unservable_told: Mutex::new(HashMap::new()),
            registered_keys: Mutex::new(None),
            unservable_checked: Mutex::new(None),
            probed: Mutex::new(HashMap::new()),
        };
        d.reconcile_recovered().await?;
        d.store
            .host_started(VERSION, &crate::state::fleet::machine_id(), d.clock.now())
            .await?;
        d.publish(true).await;
        Ok(d)
    }

    /// In a fleet (PostgreSQL), publishes what the fleet's store and log
    /// do not hold yet of this host's evidence (`join`: at the start, with
    /// this host's signing key registered first); a failure is logged and
    /// tried again after the next run.
    async fn publish(&self, join: bool) {
        if self.store.backend() != crate::state::Backend::Postgres {
            return;
        }
        let (key, now) = (self.services.signing_key(), self.clock.now());
        // The key is registered once, at the start (it is loaded then).
        let published = if join {
            crate::state::fleet::join_and_publish(&self.store, &self.host, key, now).await
        } else {
            crate::state::fleet::publish_pending(
                &self.store,
                &self.host.evidence_dir(),
                key,
                &self.host.state.fleet,
                now,
            )
            .await
        };
        match published {
            Ok(0) => {}
            Ok(n) => tracing::info!(bundles = n, "published to the fleet's evidence"),
            Err(e) => {
                tracing::warn!(error = %e, "could not publish to the fleet's evidence; tried again after the next run");
            }
        }
    }

    /// The keys of each drill attached to this host now, registered in
    /// the state store (a fleet's hosts claim only drills they have a key
    /// of). A virtual authenticator is on every host: its drills' keys are
    /// all attached.
    ///
    /// A USB key is asked (a silent probe) only when no run of this host
    /// is using a key (a probe must never cut into a ceremony), and then
    /// only for a drill that is due or whose answer is ten minutes old;
    /// otherwise the last answer stands.
    async fn attached(
        &self,
        drills: &[DrillConfig],
        snapshot: &HashMap<String, (crate::state::DrillState, crate::state::RunSummary)>,
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<String>>, DaemonError> {
        use crate::config::drill::{AuthenticatorConfig, KeyKind};
        let mut out = HashMap::new();
        let mut rows = Vec::new();
        let me = self.store.host().to_owned();
        // Only a host with USB keys asks whether one is in use.
        let has_hid = drills.iter().any(
            |d| matches!(&d.authenticator, AuthenticatorConfig::Key(c) if c.kind == KeyKind::Hid),
        );
        let busy = has_hid
            && ({
                let mut running = self
                    .running
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                running.retain(|_, h| !h.is_finished());
                !running.is_empty()
            } || self
                .store
                .locks_at(now)
                .await?
                .iter()
                .any(|l| l.host == me && l.name.starts_with("key:")));
        for d in drills {
            let due = snapshot
                .get(&d.id)
                .and_then(|(s, _)| s.due)
                .is_none_or(|t| t <= now);
            let cached = self
                .probed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&d.id)
                .cloned();
            let probe = match &d.authenticator {
                AuthenticatorConfig::Key(cfg) if cfg.kind == KeyKind::Hid => {
                    !busy
                        && (due
                            || cached
                                .as_ref()
                                .is_none_or(|(t, _)| now < *t || *t + PROBE_EVERY <= now))
                }
                _ => true,
            };
            let keys: Vec<Probed> = match (&d.authenticator, probe) {
                (_, false) => match cached {
                    Some((_, keys)) => keys,
                    None => continue,
                },
                (AuthenticatorConfig::Virtual(_), true) => {
                    let names = if d.schedule.keys.is_empty() {
                        vec!["virtual".to_owned()]
                    } else {
                        d.schedule.keys.clone()
                    };
                    names.into_iter().map(|k| (k, None, None)).collect()
                }
                (AuthenticatorConfig::Key(cfg), true) => {
                    let c = cfg.clone();
                    let names = crate::fido::blocking(
                        std::time::Duration::from_secs(20),
                        crate::fido::KeyError::Device("the keys did not answer".into()),
                        move || Ok(crate::authenticator::key::attached_keys(&c)),
                    )
                    .await
                    .unwrap_or_default();
                    names
                        .into_iter()
                        .map(|n| {
                            let e = cfg.keys.iter().find(|e| e.name == n);
                            (
                                n,
                                e.and_then(|e| e.aaguid.clone()),
                                e.and_then(|e| e.credential_id.as_deref())
                                    .map(crate::support::hash::sha256_hex),
                            )
                        })
                        .collect()
                }
            };
            for (k, aaguid, cred) in &keys {
                rows.push(crate::state::fleet::HostKey {
                    host: me.clone(),
                    drill_id: d.id.clone(),
                    key_id: k.clone(),
                    aaguid: aaguid.clone(),
                    credential_sha256: cred.clone(),
                    seen: now,
                });
            }
            if probe {
                self.probed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(d.id.clone(), (now, keys.clone()));
            }
            out.insert(d.id.clone(), keys.into_iter().map(|k| k.0).collect());
        }
        // Written when they change (a key plugged in or pulled out), not at
        // every tick: the heartbeat says the host is alive.
        let listed: Vec<KeyRow> = rows
            .iter()
            .map(|k| {
                (
                    k.drill_id.clone(),
                    k.key_id.clone(),
                    k.aaguid.clone(),
                    k.credential_sha256.clone(),
                )
            })
            .collect();
        let changed = self
            .registered_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            != Some(&listed);
        if changed {
            match self.store.set_host_keys(&rows, now).await {
                Ok(()) => {
                    *self
                        .registered_keys
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listed);
                }
                Err(e) => tracing::warn!(error = %e, "could not register this host's keys"),
            }
        }
        Ok(out)
    }

    /// In a fleet: drills no live host has a key of are a finding, told
    /// once a day by the fleet's speaker (its first live host by name).
    async fn unservable_drills(
        &self,
        drills: &[DrillConfig],
        now: DateTime<Utc>,
    ) -> Result<(), DaemonError> {
        if self.store.backend() != crate::state::Backend::Postgres {
            return Ok(());
        }
        // Looked at every ten minutes (a finding told once a day), not at
        // every tick: it reads every host's keys.
        {
            let mut last = self
                .unservable_checked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| now >= t && now - t < chrono::Duration::minutes(10)) {
                return Ok(());
            }
            *last = Some(now);
        }
        let hosts = self.store.hosts().await?;
        if crate::state::fleet::speaker(&hosts, now) != Some(self.store.host()) {
            return Ok(());
        }
        let keys = self.store.host_keys().await?;
        let lost = crate::state::fleet::unservable(
            drills.iter().map(|d| d.id.as_str()),
            &hosts,
            &keys,
            now,
        );
        for id in lost {
            let told = self
                .unservable_told
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&id)
                .copied();
            if told.is_some_and(|t| now - t < chrono::Duration::hours(24)) {
                continue;
            }
            self.outbox
                .notify(
                    Some(&id),
                    Kind::Escalation,
                    &format!("glassdrill: FINDING: no drill host can serve drill {id}"),
                    &format!(
                        "None of drill {id}'s keys is attached to a live drill host of fleet {} ({} host(s) registered). The drill cannot run until a custodian attaches one of its keys to a drill host; `glassdrill fleet status` shows each host's keys.",
                        self.host.state.fleet,
                        hosts.len()
                    ),
                )
                .await;
            self.unservable_told
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, now);
        }
        Ok(())
    }

    /// Replaces the random source (tests).
    pub fn with_random(self, f: impl FnMut() -> u64 + Send + 'static) -> Self {
        *self
            .random
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Box::new(f);
        self
    }

    /// The state store.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Holds a drill whose run may have signed in without a result (no
    /// automatic run until a person runs it) and tells the escalation
    /// list.
    async fn hold_and_escalate(
        &self,
        drill: &str,
        why: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), StateError> {
        self.store.hold(drill, why).await?;
        self.outbox
            .notify(Some(drill), Kind::Escalation, subject, body)
            .await;
        Ok(())
    }

    /// Indexes the runs recovered at start; a drill whose dead run may have
    /// signed in is held (never re-run automatically) and escalated.
    async fn reconcile_recovered(&self) -> Result<(), DaemonError> {
        for dir in self.services.recovered().to_vec() {
            let Ok(bytes) = std::fs::read(dir.join("drill.json")) else {
                continue;
            };
            let Ok(r) = DrillRecord::from_json(&bytes) else {
                continue;
            };
            let attempted = r.recovery.as_ref().is_some_and(|x| x.sign_in_attempted);
            self.store
                .run_ended(&RunRow {
                    run_id: r.run_id.clone(),
                    drill_id: r.drill.id.clone(),
                    origin: "recovered".into(),
                    started: r.started,
                    ended: Some(r.recorded),
                    verdict: Some(r.verdict),
                    sign_in_attempted: attempted,
                    key_id: None,
                    bundle: Some(dir.display().to_string()),
                    alert_latency_ms: None,
                })
                .await?;
            if attempted {
                let why = format!(
                    "run {} died after its sign-in had started (recovered as {}); not re-run automatically: check the sign-in log and the evidence, then run `glassdrill run {}`",
                    r.run_id, r.verdict, r.drill.id
                );
                self.hold_and_escalate(
                    &r.drill.id,
                    &why,
                    &format!(
                        "glassdrill: drill {} was interrupted after its sign-in started",
                        r.drill.id
                    ),
                    &format!("{why}\n\nevidence: {}", dir.display()),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Loads the drill files; broken ones disable their drill (by file
    /// name), reported once per change of reason.
    async fn load(&self, tick: &mut Tick) -> Result<Vec<DrillConfig>, DaemonError> {
        let (drills, problems) = crate::config::drill::load_drills(&self.host.drills_dir);
        let mut broken: HashMap<String, Vec<String>> = HashMap::new();
        for p in problems
            .0
            .iter()
            .filter(|p| p.severity == crate::config::Severity::Error)
        {
            let id = p
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            broken.entry(id).or_default().push(p.to_string());
        }
        // One read of every drill's row, not one per drill.
        let disabled: HashMap<String, String> = self
            .store
            .drills()
            .await?
            .into_iter()
            .filter_map(|s| s.disabled.map(|r| (s.drill_id, r)))
            .collect();
        for (id, msgs) in &broken {
            let reason = msgs.join("; ");
            let before = disabled.get(id);
            if before != Some(&reason) {
                self.store.set_disabled(id, Some(&reason)).await?;
                self.outbox
                    .notify(
                        Some(id),
                        Kind::Disabled,
                        &format!("glassdrill: drill {id} is disabled: its file is broken"),
                        &format!("{reason}\n\nFix the file; the daemon picks it up at its next tick. No drill of {id} runs until then."),
                    )
                    .await;
            }
            tick.disabled.push(id.clone());
        }
        let drills: Vec<DrillConfig> = drills
            .into_iter()
            .filter(|d| !broken.contains_key(&d.id))
            .collect();
        for d in drills.iter().filter(|d| disabled.contains_key(&d.id)) {
            self.store.set_disabled(&d.id, None).await?;
        }
        Ok(drills)
    }

    fn memory_hold(&self, id: &str) -> Option<String> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn hold_in_memory(&self, id: &str, why: String) {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned(), why);
    }

    fn is_running(&self, id: &str) -> bool {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|_, h| !h.is_finished());
        running.contains_key(id)
    }

    /// Runs that started, never ended, and whose account nobody holds a
    /// lock on any more: their process died (`kill -9` of a `glassdrill
    /// run`, a lost SSH session, a crash) without recording a result. One
    /// that had reached the sign-in holds its drill (a sign-in may have
    /// happened) and is escalated; each is closed as INTERRUPTED.
    async fn reconcile_dead_runs(&self, drills: &[DrillConfig]) -> Result<(), DaemonError> {
        let unfinished = self.store.unfinished().await?;
        if unfinished.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        // A lapsed lease is no lock: its host died or lost the database.
        let locked: Vec<String> = self
            .store
            .locks_at(now)
            .await?
            .into_iter()
            .map(|l| l.name)
            .collect();
        for (run, stage) in unfinished {
            let Some(d) = drills.iter().find(|d| d.id == run.drill_id) else {
                continue;
            };
            if self.is_running(&d.id)
                || lock_names(&d.group_key(), &d.account, None)
                    .iter()
                    .any(|n| locked.contains(n))
            {
                continue;
            }
            let past_sign_in = stage.as_deref().is_some_and(|s| {
                [
                    "sign-in", "confirm", "alerts", "teardown", "record", "report",
                ]
                .contains(&s)
            });
            let on_host = self
                .store
                .run_host(&run.run_id)
                .await?
                .filter(|h| h != self.store.host())
                .map(|h| format!(" on host {h}"))
                .unwrap_or_default();
            // Under the run's own locks (taken over: they lapsed), and only
            // if it has still not ended: a run that finished meanwhile keeps
            // its verdict, and of two hosts reconciling it one records it.
            let holder = format!(
                "reconciling run {} (daemon, pid {})",
                run.run_id,
                std::process::id()
            );
            let Ok(locks) = self
                .store
                .try_lock(&lock_names(&d.group_key(), &d.account, None), &holder, now)
                .await?
            else {
                continue;
            };
            let ended = self
                .store
                .interrupt_unfinished(&run.run_id, &d.id, now, past_sign_in)
                .await;
            self.store.release(locks).await?;
            if !ended? {
                continue;
            }
            tracing::warn!(drill = %d.id, run = %run.run_id, "a run{on_host} stopped without recording a result: recorded INTERRUPTED");
            if past_sign_in {
                let why = format!(
                    "run {} ({}{on_host}) stopped in its {} stage without recording a result; a sign-in may have happened: check the sign-in log and its evidence, then run `glassdrill run {}`",
                    run.run_id,
                    run.origin,
                    stage.as_deref().unwrap_or("?"),
                    d.id
                );
                self.hold_and_escalate(
                    &d.id,
                    &why,
                    &format!(
                        "glassdrill: a run of drill {} stopped after its sign-in started",
                        d.id
                    ),
                    &why,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// One pass: draws missing due times, notifies overdue drills, starts
    /// the drills that are due, retries undelivered notifications.
    pub async fn tick(self: &Arc<Self>) -> Result<Tick, DaemonError> {
        let now = self.clock.now();
        let mut tick = Tick::default();
        let drills = self.load(&mut tick).await?;
        self.store.heartbeat(VERSION, now).await?;
        self.reconcile_dead_runs(&drills).await?;
        let gap = chrono::Duration::from_std(self.host.daemon.group_gap)
            .unwrap_or(chrono::Duration::hours(24));
        // Every drill's state and run summary in one read; what this tick
        // writes for one drill (a drawn due time) is re-read for the rest.
        let mut snapshot = self.store.summaries().await?;
        let attached = self.attached(&drills, &snapshot, now).await?;
        self.unservable_drills(&drills, now).await?;
        for d in &drills {
            let (state, summary) = snapshot.get(&d.id).cloned().unwrap_or_default();
            let last_pass = summary.last_pass;
            // Group: the other drills' due times and latest runs.
            let group: Vec<DateTime<Utc>> = drills
                .iter()
                .filter(|o| o.group_key() == d.group_key() && o.id != d.id)
                .filter_map(|o| snapshot.get(&o.id))
                .flat_map(|(s, r)| s.due.into_iter().chain(r.last_run))
                .collect();
            let due = match state.due {
                Some(due) => due,
                None => {
                    let random = (self
                        .random
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner))(
                    );
                    let input = DrawInput {
                        last_pass,
                        now,
                        cadence: d.schedule.cadence,
                        windows: &d.schedule.windows,
                        group: &group,
                        gap,
                    };
                    match draw(&input, random) {
                        Err(e) => {
                            // Never silently: a drill that cannot be
                            // scheduled is as good as overdue.
                            if state
                                .overdue_notified
                                .is_none_or(|t| now - t >= chrono::Duration::hours(24))
                            {
                                self.outbox
                                    .notify(
                                        Some(&d.id),
                                        Kind::Overdue,
                                        &format!(
                                            "glassdrill: break-glass drill {} cannot be scheduled",
                                            d.id
                                        ),
                                        &format!("Drill {} ({}): {e}.", d.id, d.account),
                                    )
                                    .await;
                                self.store.overdue_notified(&d.id, now).await?;
                            }
                            tick.waiting.push((d.id.clone(), e.to_string()));
                            continue;
                        }
                        Ok(drawn) => {
                            tracing::info!(drill = %d.id, due = %drawn.due, why = %drawn.why, "next drill drawn");
                            let due = self
                                .store
                                .set_due_once(&d.id, drawn.due, &drawn.why, now)
                                .await?;
                            snapshot.entry(d.id.clone()).or_default().0.due = Some(due);
                            due
                        }
                    }
                }
            };
            if overdue(last_pass, due, d.schedule.cadence, now)
                && state
                    .overdue_notified
                    .is_none_or(|t| now - t >= chrono::Duration::hours(24))
            {
                let since = last_pass.map_or_else(
                    || "never passed".to_owned(),
                    |p| {
                        format!(
                            "last PASS {} ({} days ago)",
                            crate::support::time::rfc3339_ms(p),
                            (now - p).num_days()
                        )
                    },
                );
                self.outbox
                    .notify(
                        Some(&d.id),
                        Kind::Overdue,
                        &format!("glassdrill: break-glass drill {} is OVERDUE", d.id),
                        &format!(
                            "Drill {} ({}) is overdue: {since}; its cadence is {}..{} days.{}",
                            d.id,
                            d.account,
                            d.schedule.cadence.min.num_days(),
                            d.schedule.cadence.max.num_days(),
                            state
                                .hold
                                .as_ref()
                                .map(|h| format!("\nIt is on hold: {h}"))
                                .unwrap_or_default()
                        ),
                    )
                    .await;
                self.store.overdue_notified(&d.id, now).await?;
            }
            if due > now {
                continue;
            }
            if let Some(h) = state.hold.clone().or_else(|| self.memory_hold(&d.id)) {
                tick.waiting.push((d.id.clone(), format!("on hold: {h}")));
                continue;
            }
            if state.retry_at.is_some_and(|r| r > now) {
                tick.waiting.push((d.id.clone(), "waiting to retry".into()));
                continue;
            }
            if !d.schedule.windows.contains(now) {
                tick.waiting
                    .push((d.id.clone(), "outside its windows".into()));
                continue;
            }
            if self.is_running(&d.id) {
                continue;
            }
            if let Some(busy) = drills
                .iter()
                .filter(|o| o.group_key() == d.group_key() && o.id != d.id)
                .find(|o| self.is_running(&o.id))
            {
                tick.waiting.push((
                    d.id.clone(),
                    format!("drill {} of its group is running", busy.id),
                ));
                continue;
            }
            if group.iter().any(|t| *t <= now && now - *t < gap) {
                tick.waiting.push((
                    d.id.clone(),
                    "another drill of its group ran less than the group gap ago".into(),
                ));
                continue;
            }
            if d.schedule.custody == Custody::Custodian {
                // The key plugged in within the window starts the drill,
                // after a grace period: a custodian who plugged it in to
                // run `glassdrill run --operator … --witness …` (which
                // records who was present) goes first.
                let proofs = self.store.key_proofs(&d.id).await.unwrap_or_default();
                // Only a real key is plugged in (a virtual one is not).
                let plugged = match d.authenticator {
                    crate::config::drill::AuthenticatorConfig::Key(_) => {
                        attached.get(&d.id).map_or(&[][..], Vec::as_slice)
                    }
                    crate::config::drill::AuthenticatorConfig::Virtual(_) => &[][..],
                };
                if let Some(k) = next_key(plugged, &proofs) {
                    let first = *self
                        .key_seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(d.id.clone())
                        .or_insert(now);
                    if now - first < CUSTODIAN_GRACE {
                        tick.waiting.push((
                            d.id.clone(),
                            format!(
                                "custodian: key {k} plugged in at {}; the drill starts by itself at {} unless a custodian runs it first",
                                crate::support::time::rfc3339_ms(first),
                                crate::support::time::rfc3339_ms(first + CUSTODIAN_GRACE)
                            ),
                        ));
                        continue;
                    }
                    self.key_seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&d.id);
                    if self
                        .start_run_with(d.clone(), now, Some(k), true, &drills)
                        .await?
                    {
                        tick.started.push(d.id.clone());
                    } else {
                        tick.waiting
                            .push((d.id.clone(), "locked by another process".into()));
                    }
                    continue;
                }
                self.key_seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&d.id);
                // Announced now, and again daily until someone runs it.
                if state
                    .custody_reminded
                    .is_none_or(|t| now - t >= chrono::Duration::hours(24))
                {
                    self.announce_custody(d, due).await?;
                }
                tick.waiting.push((
                    d.id.clone(),
                    "custodian: waiting for its key to be plugged in, or for `glassdrill run`"
                        .into(),
                ));
                continue;
            }
            // Only a host with one of the drill's keys claims it (in a
            // fleet, the keys are split between hosts).
            let here = attached.get(&d.id).map_or(&[][..], Vec::as_slice);
            if here.is_empty() {
                tick.waiting.push((
                    d.id.clone(),
                    format!(
                        "none of its keys is attached to this host ({})",
                        self.store.host()
                    ),
                ));
                continue;
            }
            let key = if matches!(
                d.authenticator,
                crate::config::drill::AuthenticatorConfig::Key(_)
            ) {
                let proofs = self.store.key_proofs(&d.id).await?;
                next_key(here, &proofs)
            } else {
                None
            };
            if self
                .start_run_with(d.clone(), now, key, false, &drills)
                .await?
            {
                tick.started.push(d.id.clone());
            } else {
                tick.waiting
                    .push((d.id.clone(), "locked by another process".into()));
            }
        }
        self.outbox.deliver_due().await;
        let mut last = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, why) in &tick.waiting {
            if last.get(id) != Some(why) {
                tracing::info!(drill = %id, "due, not started: {why}");
            }
        }
        *last = tick.waiting.iter().cloned().collect();
        for id in &tick.started {
            tracing::info!(drill = %id, "drill started");
        }
        drop(last);
        Ok(tick)
    }

    /// Announces a due custodian drill; the next reminder is a day later.
    async fn announce_custody(
        &self,
        d: &DrillConfig,
        due: DateTime<Utc>,
    ) -> Result<(), DaemonError> {
        let now = self.clock.now();
        let windows: Vec<String> = d
            .schedule
            .windows
            .list
            .iter()
            .map(|w| format!("{}-{}", w.from.format("%H:%M"), w.to.format("%H:%M")))
            .collect();
        self.outbox
            .notify(
                Some(&d.id),
                Kind::Touch,
                &format!("glassdrill: break-glass drill {} is due: bring its key", d.id),
                &format!(
                    "Drill {} ({}) is due since {}. A custodian brings the key to the drill host inside a window ({} {}): plugged in, the drill starts by itself within a minute; or run `glassdrill run {} --operator NAME --witness NAME --seal-before N --seal-after N` to record who was present and the envelope's seals.",
                    d.id,
                    d.account,
                    crate::support::time::rfc3339_ms(due),
                    if windows.is_empty() { "any time".to_owned() } else { windows.join(", ") },
                    d.schedule.windows.tz,
                    d.id
                ),
            )
            .await;
        self.store.custody_reminded(&d.id, now).await?;
        Ok(())
    }

    /// Takes the locks and starts the run in the background, with `key`
    /// (or the next key in turn); `false` when another process holds a
    /// lock.
    async fn start_run_with(
        self: &Arc<Self>,
        d: DrillConfig,
        now: DateTime<Utc>,
        key: Option<String>,
        plugged: bool,
        drills: &[DrillConfig],
    ) -> Result<bool, DaemonError> {
        // `plugged`: a custodian's key, plugged in: the run says so (who
        // brought it is only known when they run `glassdrill run
        // --operator`).
        // One read of the key proofs: which key, and which are stale.
        let proofs = self.store.key_proofs(&d.id).await?;
        let key = key.or_else(|| next_key(&d.schedule.keys, &proofs));
        let stale = stale_keys(&d.schedule.keys, &proofs, d.schedule.cadence, now);
        let holder = format!("drill {} (daemon, pid {})", d.id, std::process::id());
        let locks = match self
            .store
            .try_lock(
                &lock_names(&d.group_key(), &d.account, key.as_deref()),
                &holder,
                // The lease runs from now, not from the tick's start.
                self.clock.now(),
            )
            .await?
        {
            Ok(l) => l,
            Err(h) => {
                tracing::info!(drill = %d.id, held_by = %h.holder, "not started: locked");
                return Ok(false);
            }
        };
        // Between this tick's reading of the drill and the locks, a run
        // (this daemon's, or a `glassdrill run`) may have finished and
        // released them: read again, under the locks, before signing in.
        let fresh = self.store.drill(&d.id).await?;
        let still_due = fresh.hold.is_none()
            && fresh.due.is_some_and(|due| due <= now)
            && fresh.retry_at.is_none_or(|r| r <= now)
            && self.memory_hold(&d.id).is_none();
        // And the group's gap, from the runs themselves (another host's
        // drill of the group may have started since this tick read them).
        let gap = chrono::Duration::from_std(self.host.daemon.group_gap)
            .unwrap_or(chrono::Duration::hours(24));
        let mut gap_ok = true;
        for o in drills
            .iter()
            .filter(|o| o.group_key() == d.group_key() && o.id != d.id)
        {
            // A start after this host's `now` (another host's clock, or
            // this tick's age) is inside the gap too.
            if let Some(r) = self.store.runs(&o.id, 1).await?.first()
                && now - r.started < gap
            {
                gap_ok = false;
            }
        }
        if !still_due || !gap_ok {
            self.store.release(locks).await?;
            return Ok(false);
        }
        let me = self.clone();
        let id = d.id.clone();
        // The run stops if the lease is lost (never two hosts on a drill).
        let cancel = me.cancel.child_token();
        let renewal = me.store.keep_renewed(&locks, cancel.clone());
        let handle = tokio::spawn(async move {
            let mut opts = me.opts.run.clone();
            if plugged {
                opts.operator =
                    Some("glassdrill daemon: the custodian plugged the key in (not named)".into());
            } else if opts.operator.is_none() {
                opts.operator = Some("glassdrill daemon".into());
            }
            opts.custody.key_id.clone_from(&key);
            if let Some(k) = &key {
                opts.last_sign_count = me.store.key_counter(&d.id, k).await.ok().flatten();
            }
            // Sign-ins since the drill's previous run that no drill made are
            // unexpected use.
            opts.previous_drill_end = me
                .store
                .runs(&d.id, 1)
                .await
                .ok()
                .and_then(|r| r.first().map(|r| r.ended.unwrap_or(r.started)));
            opts.findings.extend(stale.into_iter().map(|k| {
                format!(
                    "key {k} of drill {} has not been proven within {} days: it is used in turn; check it is still registered and in custody",
                    d.id,
                    d.schedule.cadence.max.num_days()
                )
            }));
            // The run in a task of its own: a panic in it must not leave
            // the locks held by this (live) process for ever.
            let run = {
                let me = me.clone();
                let d = d.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    let log = LogProgress::log(&d.id);
                    let (progress, writer) =
                        RecordingProgress::start(&log, me.store.clone(), &d.id, "daemon", key);
                    let outcome = crate::runner::run_with(
                        &me.services,
                        &me.host,
                        &d,
                        &opts,
                        &progress,
                        &cancel,
                    )
                    .await;
                    drop(progress);
                    let _ = writer.await;
                    outcome
                })
            };
            match run.await {
                Ok(outcome) => {
                    if let Err(e) = me.after_run(&d, key.as_deref(), outcome).await {
                        // Not recorded: never run again before a person
                        // has looked (the run may have signed in).
                        let why = format!(
                            "the result of the last run could not be recorded ({e}); check the evidence and run `glassdrill run {}`",
                            d.id
                        );
                        // In the state store too if it can be (the other
                        // hosts of a fleet must not run it either).
                        let _ = me.store.hold(&d.id, &why).await;
                        me.hold_in_memory(&d.id, why);
                        tracing::error!(drill = %d.id, error = %e, "could not record the run's result in the state store; the drill is held");
                    }
                }
                Err(e) => {
                    me.hold_in_memory(
                        &d.id,
                        format!("glassdrill failed during the last run (a bug: {e}); check the evidence and run `glassdrill run {}`", d.id),
                    );
                    tracing::error!(drill = %d.id, error = %e, "a drill run failed; the drill is held");
                }
            }
            drop(renewal);
            if let Err(e) = me.store.release(locks).await {
                tracing::warn!(drill = %d.id, error = %e, "could not release the run's locks; they lapse after the lease");
            }
            me.publish(false).await;
        });
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, handle);
        Ok(true)
    }

    /// Applies the verdict policy to a finished run and tells people.
    async fn after_run(
        &self,
        d: &DrillConfig,
        key: Option<&str>,
        outcome: Result<DrillOutcome, RunError>,
    ) -> Result<(), DaemonError> {
        let now = self.clock.now();
        let o = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Nothing ran (a secret missing, a service down): no sign-in
                // was attempted, so it is retried like an ERROR before it.
                let retries = self.store.drill(&d.id).await?.retries;
                self.store
                    .retry_later(
                        &d.id,
                        now + retry_delay(self.host.daemon.retry_after, retries),
                    )
                    .await?;
                self.outbox
                    .notify(
                        Some(&d.id),
                        Kind::Report,
                        &format!("glassdrill: drill {} could not start", d.id),
                        &format!("{e}\n\nNo sign-in was attempted; the daemon retries it."),
                    )
                    .await;
                return Ok(());
            }
        };
        let after = record_outcome(
            &self.store,
            d,
            key,
            "daemon",
            &o,
            now,
            self.host.daemon.retry_after,
        )
        .await?;
        if let After::Held(why) = after {
            let evidence = o.bundle.as_ref().map_or_else(
                |e| format!("NOT WRITTEN: {e}"),
                |b| b.dir.display().to_string(),
            );
            self.outbox
                .notify(
                    Some(&d.id),
                    Kind::Escalation,
                    &format!(
                        "glassdrill: ESCALATION: break-glass drill {} {}",
                        d.id, o.verdict
                    ),
                    &format!(
                        "Drill {} ({}) ended {}.\n  {}\n\n{why}\n\nevidence: {evidence}",
                        d.id,
                        d.account,
                        o.verdict,
                        o.reasons.join("\n  ")
                    ),
                )
                .await;
        }
        Ok(())
    }

    /// Waits for every run in progress (tests; shutdown).
    pub async fn idle(&self) {
        let handles: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }

    /// Runs until `cancel`: a tick per `daemon.tick`, the metrics server,
    /// the heartbeat after each tick. On a stop, the runs in progress are
    /// told to stop (they tear down and write INTERRUPTED evidence) and
    /// waited for.
    pub async fn run(self: Arc<Self>) -> Result<(), DaemonError> {
        use tokio_cron_scheduler::{Job, JobScheduler};
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let sched = JobScheduler::new()
            .await
            .map_err(|e| DaemonError::Scheduler(e.to_string()))?;
        let job = Job::new_async(self.host.daemon.tick.as_str(), move |_, _| {
            let tx = tx.clone();
            Box::pin(async move {
                // A tick still running absorbs the next one.
                let _ = tx.try_send(());
            })
        })
        .map_err(|e| DaemonError::Scheduler(format!("`{}`: {e}", self.host.daemon.tick)))?;
        sched
            .add(job)
            .await
            .map_err(|e| DaemonError::Scheduler(e.to_string()))?;
        sched
            .start()
            .await
            .map_err(|e| DaemonError::Scheduler(e.to_string()))?;
        let metrics = match self.host.daemon.metrics_listen {
            Some(addr) => Some(metrics::serve(addr, self.clone()).await?),
            None => None,
        };
        let heartbeat = match &self.host.daemon.heartbeat_url {
            Some(r) => Some(
                r.resolve()
                    .map_err(|e| DaemonError::Config(format!("daemon.heartbeat_url: {e}")))?,
            ),
            None => None,
        };
        let http =
            crate::support::http::client().map_err(|e| DaemonError::Config(e.to_string()))?;
        let control = control::serve(self.clone(), self.cancel.clone())
            .await
            .map_err(|e| DaemonError::Config(format!("control socket: {e}")))?;
        tracing::info!(tick = %self.host.daemon.tick, state = %self.store.location(), host = %self.store.host(), "glassdrill daemon started");
        // A first tick at once, then on schedule.
        let mut first = true;
        loop {
            if !first {
                tokio::select! {
                    () = self.cancel.cancelled() => break,
                    got = rx.recv() => if got.is_none() { break },
                }
            }
            first = false;
            match self.tick().await {
                Ok(t) => {
                    tracing::debug!(?t, "tick");
                    if let Some(url) = &heartbeat {
                        use secrecy::ExposeSecret as _;
                        if let Err(e) = http.get(url.expose_secret()).send().await {
                            tracing::warn!(error = %e.without_url(), "heartbeat not delivered");
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "tick failed; the next one tries again"),
            }
        }
        tracing::info!("stopping: waiting for runs in progress to tear down and record");
        control.shutdown().await;
        self.idle().await;
        let mut sched = sched;
        let _ = sched.shutdown().await;
        if let Some(m) = metrics {
            m.shutdown().await;
        }
        self.store.close().await;
        Ok(())
    }

    /// The drills and their state now (for `/metrics`): read only, no
    /// notification, whatever the drill files say.
    pub async fn status(&self) -> Result<Vec<status::DrillStatus>, DaemonError> {
        let (drills, _) = crate::config::drill::load_drills(&self.host.drills_dir);
        Ok(status::collect(&self.store, &drills, self.clock.now()).await?)
    }
}
