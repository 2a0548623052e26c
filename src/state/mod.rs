//! The daemon's state (DESIGN D11): each drill's drawn due time and hold,
//! the runs (started, verdict, bundle), keys' last proof, cross-process
//! locks (leases) and the notification outbox, through `sqlx`'s `Any`
//! driver with one set of migrations (`migrations/`): the embedded SQLite
//! file by default (WAL journal), or a fleet's PostgreSQL (`[state] url`).
//!
//! The SQL is portable (the same statements on both: `$n` placeholders,
//! `ON CONFLICT`, BIGINT milliseconds, no BLOBs), and the same tests run on
//! both backends. The evidence bundles stay files: [`rebuild`] recreates
//! the runs from them. A fleet's hosts, keys, signers, bundles and its one
//! evidence log are in [`fleet`].
//!
//! A database this version cannot read (corrupted, or migrated by a newer
//! glassdrill) is refused with a message, never overwritten.

pub mod fleet;
pub mod migrate;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sqlx::AnyPool;
use sqlx::Row as _;
use sqlx::any::AnyPoolOptions;

use crate::record::Verdict;

/// Why the state store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file is not a database glassdrill can read.
    #[error(
        "the state database {} cannot be read ({reason}); it was left as it is: move it aside and run `glassdrill state rebuild` to recreate it from the evidence bundles",
        path.display()
    )]
    Unreadable {
        /// The database file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A newer glassdrill has migrated it.
    #[error(
        "the state database {} was written by a newer glassdrill (migration {version} is unknown to this one); it was left as it is: run the newer glassdrill",
        path.display()
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// The unknown migration.
        version: i64,
    },
    /// Its directory cannot be created.
    #[error("cannot create {}: {source}; check the data directory's owner", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PostgreSQL database cannot be reached or used.
    #[error(
        "the state database {url} cannot be used ({reason}); check [state] url, password and tls in glassdrill.toml, and that the database is up"
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// A query failed.
    #[error("state database: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which database the state is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// A fleet's PostgreSQL.
    Postgres,
}

/// Milliseconds since the epoch.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored time; one outside years 1970..=9999 (a hand-edited or
/// damaged row) is clamped, so date arithmetic on it cannot overflow.
fn at(ms: i64) -> DateTime<Utc> {
    const MAX_MS: i64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z
    DateTime::from_timestamp_millis(ms.clamp(0, MAX_MS)).unwrap_or_default()
}

type Row = sqlx::any::AnyRow;

/// A nullable time column (milliseconds).
fn time_col(r: &Row, c: &str) -> Option<DateTime<Utc>> {
    r.try_get::<Option<i64>, _>(c).ok().flatten().map(at)
}

/// A nullable verdict column.
fn verdict_col(r: &Row, c: &str) -> Option<Verdict> {
    r.try_get::<Option<String>, _>(c)
        .ok()
        .flatten()
        .and_then(|v| verdict_from(&v))
}

/// A count column.
fn count_col(r: &Row, c: &str) -> u32 {
    r.try_get::<i64, _>(c)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// The schedule row of a drill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillState {
    /// Drill id.
    pub drill_id: String,
    /// The drawn due time.
    pub due: Option<DateTime<Utc>>,
    /// How it was drawn.
    pub due_why: Option<String>,
    /// Why no automatic run happens until a person runs it.
    pub hold: Option<String>,
    /// An ERROR before the sign-in is retried, not before this.
    pub retry_at: Option<DateTime<Utc>>,
    /// Retries so far since the last PASS.
    pub retries: u32,
    /// When the last overdue notification went out.
    pub overdue_notified: Option<DateTime<Utc>>,
    /// When custodians were last told the drill is due.
    pub custody_reminded: Option<DateTime<Utc>>,
    /// Why the drill is disabled (its file is broken).
    pub disabled: Option<String>,
}

/// A run as the state store indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Run id.
    pub run_id: String,
    /// Drill id.
    pub drill_id: String,
    /// `daemon`, `run` or `recovered`.
    pub origin: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// Its verdict, once ended.
    pub verdict: Option<Verdict>,
    /// Whether the WebAuthn ceremony was started.
    pub sign_in_attempted: bool,
    /// The key used.
    pub key_id: Option<String>,
    /// The bundle directory.
    pub bundle: Option<String>,
    /// Sign-in to the slowest counted alert's delivery.
    pub alert_latency_ms: Option<i64>,
}

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The lock.
    pub name: String,
    /// What holds it, in words (drill, run, process).
    pub holder: String,
    /// Host and pid of the holding process.
    pub host: String,
    /// Its pid.
    pub pid: i64,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// A queued notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Id.
    pub id: String,
    /// The drill it is about.
    pub drill_id: Option<String>,
    /// The channel it goes through.
    pub channel: String,
    /// `announce`, `report`, `escalation`, `overdue`, `touch`, `disabled`.
    pub kind: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created: DateTime<Utc>,
}

/// The state store.
#[derive(Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
    /// The file, or the URL without its password.
    location: String,
    /// This host's name (lock holders, runs, the fleet's registry).
    host: String,
    /// How long a lock lasts without renewal.
    lease: chrono::Duration,
}

fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Interrupted => "INTERRUPTED",
    }
}

fn verdict_from(s: &str) -> Option<Verdict> {
    Some(match s {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        "ERROR" => Verdict::Error,
        "INTERRUPTED" => Verdict::Interrupted,
        _ => return None,
    })
}

/// A path as a `sqlite://` URL (percent-encoded: a `?` or `%` in a
/// directory name stays part of the path).
fn sqlite_url(path: &Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::from("sqlite://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out.push_str("?mode=rwc");
    out
}

/// The drivers `Any` dispatches to (once per process).
fn install_drivers() {
    sqlx::any::install_default_drivers();
}

/// Whether a process of this host is alive.
fn alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

impl StateStore {
    /// Opens (creating if missing) the database at `path` and brings it
    /// to this version's schema. Refuses, changing nothing, a file that is
    /// not a glassdrill state database or one a newer glassdrill wrote.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        Self::open_checked(path, true).await
    }

    /// [`open`](Self::open) for a short-lived command (`status`, `plan`,
    /// `run`): the file is checked to be a database, not scanned page by
    /// page (the daemon scans it at its start).
    pub async fn open_quick(path: &Path) -> Result<Self, StateError> {
        Self::open_checked(path, false).await
    }

    async fn open_checked(path: &Path, thorough: bool) -> Result<Self, StateError> {
        install_drivers();
        if let Some(dir) = path.parent() {
            crate::support::fs::create_private_dirs(dir).map_err(|source| StateError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let unreadable = |e: &dyn std::fmt::Display| StateError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA busy_timeout = 10000",
                        "PRAGMA foreign_keys = ON",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&sqlite_url(path))
            .await
            .map_err(|e| unreadable(&e))?;
        // A corrupted file fails here, before any migration writes to it.
        if thorough {
            let check: Result<String, sqlx::Error> = sqlx::query_scalar("PRAGMA quick_check")
                .fetch_one(&pool)
                .await;
            match check {
                Ok(ok) if ok == "ok" => {}
                Ok(other) => return Err(unreadable(&other)),
                Err(e) => return Err(unreadable(&e)),
            }
        } else if let Err(e) = sqlx::query_scalar::<_, i64>("PRAGMA schema_version")
            .fetch_one(&pool)
            .await
        {
            return Err(unreadable(&e));
        }
        match sqlx::migrate!("./migrations").run(&pool).await {
            Ok(()) => {}
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
                return Err(StateError::Newer {
                    path: path.to_path_buf(),
                    version,
                });
            }
            Err(e) => return Err(unreadable(&e)),
        }
        Ok(Self::with_pool(
            pool,
            Backend::Sqlite,
            path.display().to_string(),
        ))
    }

    fn with_pool(pool: AnyPool, backend: Backend, location: String) -> Self {
        let defaults = crate::config::StateConfig::default();
        Self {
            pool,
            backend,
            location,
            host: defaults.host,
            lease: chrono::Duration::from_std(defaults.lease)
                .unwrap_or(chrono::Duration::minutes(2)),
        }
    }

    /// Connects to a fleet's PostgreSQL and brings it to this version's
    /// schema (migrations serialise on PostgreSQL's advisory lock, so
    /// hosts starting together migrate once).
    pub async fn open_postgres(cfg: &crate::config::PostgresConfig) -> Result<Self, StateError> {
        use secrecy::ExposeSecret as _;
        install_drivers();
        let failed = |reason: String| StateError::Connect {
            url: cfg.url.clone(),
            reason,
        };
        let mut url = url::Url::parse(&cfg.url).map_err(|e| failed(e.to_string()))?;
        if let Some(p) = &cfg.password {
            let secret = p
                .resolve()
                .map_err(|e| failed(format!("state.password: {e}")))?;
            url.set_password(Some(secret.expose_secret()))
                .map_err(|()| failed("the URL cannot carry a password".into()))?;
        }
        url.query_pairs_mut().append_pair("sslmode", cfg.tls.name());
        if let Some(ca) = &cfg.tls_ca {
            url.query_pairs_mut()
                .append_pair("sslrootcert", &ca.display().to_string());
        }
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(15))
            .connect(url.as_str())
            .await
            // sqlx's connect errors never carry the URL (nor its password).
            .map_err(|e| failed(e.to_string()))?;
        match sqlx::migrate!("./migrations").run(&pool).await {
            Ok(()) => {}
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
                return Err(failed(format!(
                    "it was migrated by a newer glassdrill (migration {version} is unknown to this one): run the newer glassdrill on every host"
                )));
            }
            Err(e) => return Err(failed(e.to_string())),
        }
        Ok(Self::with_pool(pool, Backend::Postgres, cfg.url.clone()))
    }

    /// The host config's state store: its PostgreSQL when `[state] url`
    /// is set, else the SQLite file `daemon.state`; named as `[state]
    /// host`, with its lease. `quick`: for a short-lived command.
    pub async fn open_host(
        host: &crate::config::HostConfig,
        quick: bool,
    ) -> Result<Self, StateError> {
        let store = match &host.state.postgres {
            Some(pg) => Self::open_postgres(pg).await?,
            None if quick => Self::open_quick(&host.daemon.state_db).await?,
            None => Self::open(&host.daemon.state_db).await?,
        };
        Ok(store.named(&host.state.host, host.state.lease))
    }

    /// This store as host `host`, with locks lasting `lease` unrenewed.
    #[must_use]
    pub fn named(mut self, host: &str, lease: std::time::Duration) -> Self {
        host.clone_into(&mut self.host);
        self.lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(2));
        self
    }

    /// Which database.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database file, or the URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// This host's name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- drills ---------------------------------------------------------

    /// Makes sure a row exists for each drill.
    pub async fn ensure_drill(&self, drill_id: &str) -> Result<(), StateError> {
        sqlx::query("INSERT INTO drills (drill_id) VALUES ($1) ON CONFLICT (drill_id) DO NOTHING")
            .bind(drill_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn drill_row(r: &Row) -> DrillState {
        DrillState {
            drill_id: r.try_get("drill_id").unwrap_or_default(),
            due: time_col(r, "due_ms"),
            due_why: r.try_get("due_why").ok().flatten(),
            hold: r.try_get("hold_reason").ok().flatten(),
            retry_at: time_col(r, "retry_ms"),
            retries: count_col(r, "retries"),
            overdue_notified: time_col(r, "overdue_notified_ms"),
            custody_reminded: time_col(r, "custody_reminded_ms"),
            disabled: r.try_get("disabled_reason").ok().flatten(),
        }
    }

    /// A drill's schedule row.
    /// (A drill the store has never seen reads as an empty row; reading
    /// writes nothing.)
    pub async fn drill(&self, drill_id: &str) -> Result<DrillState, StateError> {
        let r = sqlx::query("SELECT * FROM drills WHERE drill_id = $1")
            .bind(drill_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map_or_else(
            || DrillState {
                drill_id: drill_id.to_owned(),
                ..DrillState::default()
            },
            |r| Self::drill_row(&r),
        ))
    }

    /// Every drill's schedule row.
    pub async fn drills(&self) -> Result<Vec<DrillState>, StateError> {
        let rows = sqlx::query("SELECT * FROM drills ORDER BY drill_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(Self::drill_row).collect())
    }

    /// Persists a drawn due time, only if none is drawn yet: a draw happens
    /// once, and a second process drawing at the same moment does not
    /// replace the first one's. Returns the due time in force.
    pub async fn set_due_once(
        &self,
        drill_id: &str,
        due: DateTime<Utc>,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query(
            "UPDATE drills SET due_ms = $2, due_why = $3, drawn_ms = $4 WHERE drill_id = $1 AND due_ms IS NULL",
        )
        .bind(drill_id)
        .bind(ms(due))
        .bind(why)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(self.drill(drill_id).await?.due.unwrap_or(due))
    }

    /// After a PASS: the next due time is drawn afresh; holds, retries and
    /// the overdue reminder are cleared.
    pub async fn passed(&self, drill_id: &str) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query(
            "UPDATE drills SET due_ms = NULL, due_why = NULL, drawn_ms = NULL, hold_reason = NULL, retry_ms = NULL, retries = 0, overdue_notified_ms = NULL, custody_reminded_ms = NULL WHERE drill_id = $1",
        )
        .bind(drill_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Holds the drill: no automatic run until a person runs it.
    pub async fn hold(&self, drill_id: &str, reason: &str) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query("UPDATE drills SET hold_reason = $2, retry_ms = NULL WHERE drill_id = $1")
            .bind(drill_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An ERROR before any sign-in: retried at `retry_at`.
    pub async fn retry_later(
        &self,
        drill_id: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query("UPDATE drills SET retry_ms = $2, retries = retries + 1 WHERE drill_id = $1")
            .bind(drill_id)
            .bind(ms(retry_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that custodians were told at `now` that the drill is due.
    pub async fn custody_reminded(
        &self,
        drill_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query("UPDATE drills SET custody_reminded_ms = $2 WHERE drill_id = $1")
            .bind(drill_id)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the overdue notification went out at `now`.
    pub async fn overdue_notified(
        &self,
        drill_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query("UPDATE drills SET overdue_notified_ms = $2 WHERE drill_id = $1")
            .bind(drill_id)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Disables (with the reason) or re-enables (`None`) a drill.
    pub async fn set_disabled(
        &self,
        drill_id: &str,
        reason: Option<&str>,
    ) -> Result<(), StateError> {
        self.ensure_drill(drill_id).await?;
        sqlx::query("UPDATE drills SET disabled_reason = $2 WHERE drill_id = $1")
            .bind(drill_id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- runs -----------------------------------------------------------

    /// A run has started.
    pub async fn run_started(
        &self,
        run_id: &str,
        drill_id: &str,
        origin: &str,
        started: DateTime<Utc>,
        key_id: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO runs (run_id, drill_id, origin, started_ms, key_id, host) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(drill_id)
        .bind(origin)
        .bind(ms(started))
        .bind(key_id)
        .bind(&self.host)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run has ended (or was recovered): its verdict, bundle, and whether
    /// a sign-in may have happened. Inserts the run when it is not known
    /// yet (recovered and rebuilt runs).
    pub async fn run_ended(&self, run: &RunRow) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO runs (run_id, drill_id, origin, started_ms, ended_ms, verdict, sign_in_attempted, key_id, bundle, alert_latency_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (run_id) DO UPDATE SET started_ms = $4, ended_ms = $5, verdict = $6, sign_in_attempted = $7, bundle = $9, alert_latency_ms = $10",
        )
        .bind(&run.run_id)
        .bind(&run.drill_id)
        .bind(&run.origin)
        .bind(ms(run.started))
        .bind(run.ended.map(ms))
        .bind(run.verdict.map(verdict_name))
        .bind(i64::from(run.sign_in_attempted))
        .bind(&run.key_id)
        .bind(&run.bundle)
        .bind(run.alert_latency_ms)
        .execute(&self.pool)
        .await?;
        self.refresh_summary(Some(&run.drill_id)).await
    }

    fn run_row(r: &Row) -> RunRow {
        RunRow {
            run_id: r.try_get("run_id").unwrap_or_default(),
            drill_id: r.try_get("drill_id").unwrap_or_default(),
            origin: r.try_get("origin").unwrap_or_default(),
            started: at(r.try_get("started_ms").unwrap_or_default()),
            ended: time_col(r, "ended_ms"),
            verdict: verdict_col(r, "verdict"),
            sign_in_attempted: r.try_get::<i64, _>("sign_in_attempted").unwrap_or(0) != 0,
            key_id: r.try_get("key_id").ok().flatten(),
            bundle: r.try_get("bundle").ok().flatten(),
            alert_latency_ms: r.try_get("alert_latency_ms").ok().flatten(),
        }
    }

    /// A run in progress reached `stage`.
    pub async fn run_stage(&self, run_id: &str, stage: &str) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET stage = $2 WHERE run_id = $1")
            .bind(run_id)
            .bind(stage)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a run that has not ended as INTERRUPTED at `now` (a run whose
    /// process died); `false`: it had ended meanwhile, and keeps its
    /// verdict.
    pub async fn interrupt_unfinished(
        &self,
        run_id: &str,
        drill_id: &str,
        now: DateTime<Utc>,
        sign_in_attempted: bool,
    ) -> Result<bool, StateError> {
        let n = sqlx::query(
            "UPDATE runs SET ended_ms = $2, verdict = 'INTERRUPTED', sign_in_attempted = $3 WHERE run_id = $1 AND ended_ms IS NULL",
        )
        .bind(run_id)
        .bind(ms(now))
        .bind(i64::from(sign_in_attempted))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 1 {
            self.refresh_summary(Some(drill_id)).await?;
        }
        Ok(n == 1)
    }

    /// A run in progress is about to sign in: recorded, or an error (the
    /// run is not known, or the database cannot be written).
    pub async fn run_signing_in(&self, run_id: &str) -> Result<(), StateError> {
        let n =
            sqlx::query("UPDATE runs SET stage = 'sign-in' WHERE run_id = $1 AND ended_ms IS NULL")
                .bind(run_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if n == 1 {
            Ok(())
        } else {
            Err(StateError::Query(sqlx::Error::RowNotFound))
        }
    }

    /// A drill's last PASS.
    pub async fn last_pass(&self, drill_id: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(started_ms) FROM runs WHERE drill_id = $1 AND verdict = 'PASS'",
        )
        .bind(drill_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(v.map(at))
    }

    /// A drill's most recent runs, newest first.
    pub async fn runs(&self, drill_id: &str, limit: i64) -> Result<Vec<RunRow>, StateError> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE drill_id = $1 ORDER BY started_ms DESC LIMIT $2")
                .bind(drill_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(Self::run_row).collect())
    }

    /// Runs that started and never ended (their process died or is still
    /// running), with the stage each reached.
    pub async fn unfinished(&self) -> Result<Vec<(RunRow, Option<String>)>, StateError> {
        let rows = sqlx::query("SELECT * FROM runs WHERE ended_ms IS NULL ORDER BY started_ms")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (Self::run_row(r), r.try_get("stage").ok().flatten()))
            .collect())
    }

    /// Every drill's schedule row with its run summary (the summary
    /// columns kept with the runs) and runs in progress: two queries
    /// whatever the number of runs.
    pub async fn summaries(
        &self,
    ) -> Result<std::collections::HashMap<String, (DrillState, RunSummary)>, StateError> {
        let rows = sqlx::query("SELECT * FROM drills")
            .fetch_all(&self.pool)
            .await?;
        let mut out: std::collections::HashMap<String, (DrillState, RunSummary)> = rows
            .iter()
            .map(|r| {
                let n = |c: &str| r.try_get::<i64, _>(c).unwrap_or(0);
                let by_verdict = [n("n_pass"), n("n_fail"), n("n_error"), n("n_interrupted")];
                let state = Self::drill_row(r);
                let summary = RunSummary {
                    last_verdict: verdict_col(r, "last_verdict"),
                    last_run: time_col(r, "last_run_ms"),
                    last_pass: time_col(r, "last_pass_ms"),
                    running_since: None,
                    running_stage: None,
                    runs: by_verdict.iter().sum(),
                    last_alert_latency_ms: r
                        .try_get::<Option<i64>, _>("last_latency_ms")
                        .ok()
                        .flatten(),
                    by_verdict,
                };
                (state.drill_id.clone(), (state, summary))
            })
            .collect();
        let running = sqlx::query(
            "SELECT drill_id, started_ms, stage FROM runs WHERE ended_ms IS NULL ORDER BY started_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in running {
            let id: String = r.try_get("drill_id").unwrap_or_default();
            let e = &mut out.entry(id).or_default().1;
            e.running_since = time_col(&r, "started_ms");
            e.running_stage = r.try_get("stage").ok().flatten();
        }
        Ok(out)
    }

    /// Recomputes a drill's run summary (`None`: every drill's).
    async fn refresh_summary(&self, drill_id: Option<&str>) -> Result<(), StateError> {
        const REFRESH: &str = include_str!("summaries.sql");
        match drill_id {
            Some(id) => {
                self.ensure_drill(id).await?;
                sqlx::query(&format!("{REFRESH} WHERE drill_id = $1"))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
            None => {
                // `WHERE true`: SQLite needs it to tell the upsert from a
                // join clause of the SELECT.
                sqlx::query(
                    "INSERT INTO drills (drill_id) SELECT DISTINCT drill_id FROM runs WHERE true ON CONFLICT (drill_id) DO NOTHING",
                )
                .execute(&self.pool)
                .await?;
                sqlx::query(REFRESH).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    /// Forgets every run (before [`rebuild`]).
    pub async fn clear_runs(&self) -> Result<(), StateError> {
        sqlx::query("DELETE FROM runs").execute(&self.pool).await?;
        self.refresh_summary(None).await
    }

    // ---- keys -----------------------------------------------------------

    /// A key of a drill was proven (a PASS with it).
    pub async fn key_proven(
        &self,
        drill_id: &str,
        key_id: &str,
        at_time: DateTime<Utc>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO key_proofs (drill_id, key_id, proven_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (drill_id, key_id) DO UPDATE SET proven_ms = $3",
        )
        .bind(drill_id)
        .bind(key_id)
        .bind(ms(at_time))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When each key of a drill was last proven.
    pub async fn key_proofs(
        &self,
        drill_id: &str,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StateError> {
        let rows = sqlx::query("SELECT key_id, proven_ms FROM key_proofs WHERE drill_id = $1")
            .bind(drill_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.try_get::<String, _>("key_id").unwrap_or_default(),
                    at(r.try_get("proven_ms").unwrap_or_default()),
                )
            })
            .collect())
    }

    /// The signature counter a drill's key last showed.
    pub async fn key_counter(
        &self,
        drill_id: &str,
        key_id: &str,
    ) -> Result<Option<u32>, StateError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT sign_count FROM key_counters WHERE drill_id = $1 AND key_id = $2",
        )
        .bind(drill_id)
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.and_then(|n| u32::try_from(n).ok()))
    }

    /// Keeps the signature counter a drill's key showed.
    pub async fn set_key_counter(
        &self,
        drill_id: &str,
        key_id: &str,
        sign_count: u32,
        seen: DateTime<Utc>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO key_counters (drill_id, key_id, sign_count, seen_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (drill_id, key_id) DO UPDATE SET sign_count = $3, seen_ms = $4",
        )
        .bind(drill_id)
        .bind(key_id)
        .bind(i64::from(sign_count))
        .bind(ms(seen))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every drill's key proofs (one query).
    pub async fn all_key_proofs(
        &self,
    ) -> Result<
        std::collections::HashMap<String, std::collections::HashMap<String, DateTime<Utc>>>,
        StateError,
    > {
        let rows = sqlx::query("SELECT drill_id, key_id, proven_ms FROM key_proofs")
            .fetch_all(&self.pool)
            .await?;
        let mut out: std::collections::HashMap<
            String,
            std::collections::HashMap<String, DateTime<Utc>>,
        > = std::collections::HashMap::new();
        for r in rows {
            out.entry(r.try_get("drill_id").unwrap_or_default())
                .or_default()
                .insert(
                    r.try_get("key_id").unwrap_or_default(),
                    at(r.try_get("proven_ms").unwrap_or_default()),
                );
        }
        Ok(out)
    }

    // ---- locks ----------------------------------------------------------

    /// Whether a lock row still holds: not lapsed, and (on this host) its
    /// process is alive.
    fn lock_live(
        &self,
        h: &LockHolder,
        expires: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        if expires.is_some_and(|e| e <= now) {
            return false;
        }
        h.host != self.host || alive(h.pid)
    }

    /// Takes every lock in `names` for `holder`, or none: `Ok(Err(h))`
    /// names who holds one. Each is a lease lapsing `lease` after `now`
    /// unless renewed ([`Locks::renew`]). A lease that lapsed (its host
    /// died or lost the database), or a lock of a process of this host
    /// that is gone (`kill -9`, power loss), is taken over.
    pub async fn try_lock(
        &self,
        names: &[String],
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Locks, LockHolder>, StateError> {
        let pid = i64::from(std::process::id());
        let expires = ms(now + self.lease);
        let mut taken: Vec<String> = Vec::new();
        for name in names {
            let mut attempt = 0;
            loop {
                attempt += 1;
                // One statement: the primary key makes it atomic on both
                // backends (two hosts inserting at once: one row).
                let inserted = sqlx::query(
                    "INSERT INTO locks (name, holder, host, pid, acquired_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(holder)
                .bind(&self.host)
                .bind(pid)
                .bind(ms(now))
                .bind(expires)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    taken.push(name.clone());
                    break;
                }
                let current = self.lock_row(name).await?;
                match current {
                    // Released meanwhile: try again.
                    None if attempt < 3 => continue,
                    Some((h, exp)) if !self.lock_live(&h, exp, now) && attempt < 3 => {
                        // Only the row seen lapsed is deleted, as it was
                        // seen: one renewed or taken over meanwhile stays.
                        sqlx::query(
                            "DELETE FROM locks WHERE name = $1 AND host = $2 AND pid = $3 AND acquired_ms = $4 AND COALESCE(expires_ms, -1) = $5",
                        )
                        .bind(name)
                        .bind(&h.host)
                        .bind(h.pid)
                        .bind(ms(h.since))
                        .bind(exp.map_or(-1, ms))
                        .execute(&self.pool)
                        .await?;
                        continue;
                    }
                    other => {
                        self.unlock(&taken, holder).await?;
                        return Ok(Err(other.map(|(h, _)| h).unwrap_or(LockHolder {
                            name: name.clone(),
                            holder: "another process".into(),
                            host: self.host.clone(),
                            pid: 0,
                            since: now,
                        })));
                    }
                }
            }
        }
        Ok(Ok(Locks {
            names: taken,
            holder: holder.to_owned(),
            host: self.host.clone(),
            taken_at: now,
            started: std::time::Instant::now(),
        }))
    }

    async fn lock_row(
        &self,
        name: &str,
    ) -> Result<Option<(LockHolder, Option<DateTime<Utc>>)>, StateError> {
        let row = sqlx::query("SELECT * FROM locks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::lock_of))
    }

    /// A lock row: who holds it, and until when.
    fn lock_of(r: &Row) -> (LockHolder, Option<DateTime<Utc>>) {
        (
            LockHolder {
                name: r.try_get("name").unwrap_or_default(),
                holder: r.try_get("holder").unwrap_or_default(),
                host: r.try_get("host").unwrap_or_default(),
                pid: r.try_get("pid").unwrap_or_default(),
                since: at(r.try_get("acquired_ms").unwrap_or_default()),
            },
            time_col(r, "expires_ms"),
        )
    }

    /// Every lock that holds at `now` (lapsed leases and locks of dead
    /// processes of this host are not listed).
    pub async fn locks_at(&self, now: DateTime<Utc>) -> Result<Vec<LockHolder>, StateError> {
        // One read of every row (not one more per lock).
        let rows = sqlx::query("SELECT * FROM locks ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(Self::lock_of)
            .filter(|(h, exp)| self.lock_live(h, *exp, now))
            .map(|(h, _)| h)
            .collect())
    }

    /// Every lock that holds now.
    pub async fn locks(&self) -> Result<Vec<LockHolder>, StateError> {
        self.locks_at(crate::support::time::now()).await
    }

    /// Extends `locks`' lease to `lease` from the time they were taken
    /// plus the time elapsed since (so a test's manual clock and the real
    /// one agree). `false`: a lock is no longer this holder's (its lease
    /// lapsed and another host took it): the run must stop.
    pub async fn renew(&self, locks: &Locks) -> Result<bool, StateError> {
        let elapsed = chrono::Duration::from_std(locks.started.elapsed()).unwrap_or_default();
        let now = locks.taken_at + elapsed;
        let until = ms(now + self.lease);
        for n in &locks.names {
            // A lease that has lapsed is not revived: another host may
            // be taking it.
            let renewed = sqlx::query(
                "UPDATE locks SET expires_ms = $4 WHERE name = $1 AND holder = $2 AND host = $3 AND (expires_ms IS NULL OR expires_ms > $5)",
            )
            .bind(n)
            .bind(&locks.holder)
            .bind(&locks.host)
            .bind(until)
            .bind(ms(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
            if renewed != 1 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn unlock(&self, names: &[String], holder: &str) -> Result<(), StateError> {
        for n in names {
            sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2 AND host = $3")
                .bind(n)
                .bind(holder)
                .bind(&self.host)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Keeps `locks` renewed, every third of the lease, until the returned
    /// guard is dropped. When they are lost (another host took them after
    /// a lapse) or cannot be renewed for a whole lease (the database is
    /// out of reach: another host may take them), `lost` is cancelled: the
    /// run holding them must stop, so two hosts never drill at once.
    pub fn keep_renewed(
        &self,
        locks: &Locks,
        lost: tokio_util::sync::CancellationToken,
    ) -> Renewal {
        let store = self.clone();
        let locks = locks.clone();
        let lease = self
            .lease
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(120));
        let every = lease / 3;
        let task = tokio::spawn(async move {
            // From when the last renewal that went through was sent: the
            // database's lease runs from before that.
            let mut last_ok = std::time::Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let sent = std::time::Instant::now();
                // A renewal stuck on a dead connection counts as failed.
                let r = tokio::time::timeout(every, store.renew(&locks)).await;
                match r {
                    Ok(Ok(true)) => last_ok = sent,
                    Ok(Ok(false)) => {
                        tracing::error!(locks = ?locks.names, "the lease was lost (it lapsed, or another holder took it): stopping the run");
                        lost.cancel();
                        return;
                    }
                    Ok(Err(_)) | Err(_) if last_ok.elapsed() >= every * 2 => {
                        // A third of the lease is left: stop before it lapses.
                        tracing::error!(
                            "the lease could not be renewed for two thirds of it: stopping the run (another host may take the drill once it lapses)"
                        );
                        lost.cancel();
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not renew the lease; trying again")
                    }
                    Err(_) => tracing::warn!(
                        "renewing the lease took longer than a third of it; trying again"
                    ),
                }
            }
        });
        Renewal { task }
    }

    /// Releases locks taken by [`try_lock`](Self::try_lock).
    pub async fn release(&self, locks: Locks) -> Result<(), StateError> {
        self.unlock(&locks.names, &locks.holder).await
    }

    // ---- notifications --------------------------------------------------

    /// Queues a notification on `channel` for delivery now.
    pub async fn queue(
        &self,
        channel: &str,
        drill_id: Option<&str>,
        kind: &str,
        subject: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StateError> {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO notifications (id, created_ms, drill_id, channel, kind, subject, body, next_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $2)",
        )
        .bind(&id)
        .bind(ms(now))
        .bind(drill_id)
        .bind(channel)
        .bind(kind)
        .bind(subject)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    fn outgoing_row(r: &Row) -> Outgoing {
        Outgoing {
            id: r.try_get("id").unwrap_or_default(),
            drill_id: r.try_get("drill_id").ok().flatten(),
            channel: r.try_get("channel").unwrap_or_default(),
            kind: r.try_get("kind").unwrap_or_default(),
            subject: r.try_get("subject").unwrap_or_default(),
            body: r.try_get("body").unwrap_or_default(),
            attempts: count_col(r, "attempts"),
            last_error: r.try_get("last_error").ok().flatten(),
            created: at(r.try_get("created_ms").unwrap_or_default()),
        }
    }

    /// Notifications due for a delivery attempt at `now`, oldest first.
    pub async fn due_notifications(&self, now: DateTime<Utc>) -> Result<Vec<Outgoing>, StateError> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE delivered_ms IS NULL AND next_ms <= $1 ORDER BY created_ms",
        )
        .bind(ms(now))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Self::outgoing_row).collect())
    }

    /// Notifications not delivered yet (for `status`).
    pub async fn undelivered(&self) -> Result<Vec<Outgoing>, StateError> {
        let rows = sqlx::query(
            "SELECT * FROM notifications WHERE delivered_ms IS NULL ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(Self::outgoing_row).collect())
    }

    /// One notification.
    pub async fn notification(&self, id: &str) -> Result<Option<Outgoing>, StateError> {
        let row = sqlx::query("SELECT * FROM notifications WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(Self::outgoing_row))
    }

    /// Claims a notification for one delivery attempt: only one process
    /// or task at a time sends it (the claim pushes its next attempt
    /// `lease` ahead). `false`: someone else has it, or it is delivered.
    pub async fn claim(
        &self,
        id: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<bool, StateError> {
        let n = sqlx::query(
            "UPDATE notifications SET next_ms = $3 WHERE id = $1 AND delivered_ms IS NULL AND next_ms <= $2",
        )
        .bind(id)
        .bind(ms(now))
        .bind(ms(now + lease))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// A delivery went through.
    pub async fn delivered(&self, id: &str, now: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query("UPDATE notifications SET delivered_ms = $2, attempts = attempts + 1, last_error = NULL WHERE id = $1")
            .bind(id)
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A delivery failed: tried again at `next`.
    pub async fn delivery_failed(
        &self,
        id: &str,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE notifications SET attempts = attempts + 1, last_error = $2, next_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(error)
            .bind(ms(next))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// What [`rebuild`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Bundles indexed.
    pub indexed: usize,
    /// Directories skipped, with why (not a bundle, does not verify).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Recreates the runs from the evidence bundles under `evidence_root`
/// (`<drill>/<run>/`): every bundle that verifies (integrity, against its
/// own `allowed_signers`) is indexed with its record's verdict and times;
/// anything else is listed, never indexed. The schedule is kept.
pub async fn rebuild(store: &StateStore, evidence_root: &Path) -> Result<Rebuilt, StateError> {
    let mut out = Rebuilt::default();
    let mut runs = Vec::new();
    let drills = std::fs::read_dir(evidence_root)
        .into_iter()
        .flatten()
        .flatten();
    for d in drills {
        let Ok(bundles) = std::fs::read_dir(d.path()) else {
            continue;
        };
        for b in bundles.flatten() {
            let dir = b.path();
            let name = b.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !dir.is_dir() {
                continue;
            }
            let record = crate::evidence::verify_bundle_all(&dir, None)
                .map_err(|e| {
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .and_then(|v| crate::evidence::read_record(&v).map_err(|e| e.to_string()));
            match record {
                Ok(r) => runs.push(RunRow {
                    run_id: r.run_id.clone(),
                    drill_id: r.drill.id.clone(),
                    origin: if r.recovery.is_some() {
                        "recovered"
                    } else {
                        "run"
                    }
                    .into(),
                    started: r.started,
                    ended: Some(r.recorded),
                    verdict: Some(r.verdict),
                    sign_in_attempted: r
                        .recovery
                        .as_ref()
                        .map_or(r.sign_in.log_record.is_some(), |x| x.sign_in_attempted),
                    key_id: None,
                    bundle: Some(dir.display().to_string()),
                    alert_latency_ms: r.alert_latency_ms(),
                }),
                Err(why) => out.skipped.push((dir, why)),
            }
        }
    }
    store.clear_runs().await?;
    for r in &runs {
        store.run_ended(r).await?;
    }
    store.refresh_summary(None).await?;
    out.indexed = runs.len();
    Ok(out)
}

/// Per-drill run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// The most recent verdict.
    pub last_verdict: Option<Verdict>,
    /// The latest run's start, whatever its verdict.
    pub last_run: Option<DateTime<Utc>>,
    /// The last PASS.
    pub last_pass: Option<DateTime<Utc>>,
    /// A run started and not ended.
    pub running_since: Option<DateTime<Utc>>,
    /// The stage it has reached.
    pub running_stage: Option<String>,
    /// How many runs.
    pub runs: i64,
    /// The latest alert latency (sign-in to delivery).
    pub last_alert_latency_ms: Option<i64>,
    /// Runs by verdict: PASS, FAIL, ERROR, INTERRUPTED.
    pub by_verdict: [i64; 4],
}

/// Locks held by this process (release them with
/// [`StateStore::release`]; if the process dies, the next taker sees it is
/// gone and takes them over).
#[derive(Debug, Clone)]
pub struct Locks {
    names: Vec<String>,
    holder: String,
    host: String,
    taken_at: DateTime<Utc>,
    started: std::time::Instant,
}

/// Renews a run's locks while it lives ([`StateStore::keep_renewed`]).
#[derive(Debug)]
pub struct Renewal {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The lock names a run of `drill` takes: its group (drills of one group
/// never run at once), its account and its key.
pub fn lock_names(group: &str, account: &str, key: Option<&str>) -> Vec<String> {
    let mut v = vec![
        format!("group:{group}"),
        format!("account:{}", account.trim().to_lowercase()),
    ];
    if let Some(k) = key {
        v.push(format!("key:{k}"));
    }
    v
}

#[cfg(test)]
mod tests;
