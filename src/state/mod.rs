//! The daemon's state (DESIGN D11): each drill's drawn due time and hold,
//! the runs (started, verdict, bundle), keys' last proof, cross-process
//! locks and the notification outbox, in SQLite through `sqlx` with
//! migrations (`migrations/`), WAL journal.
//!
//! The SQL is portable (PostgreSQL runs the same statements, `$n`
//! placeholders, `ON CONFLICT`, BIGINT milliseconds) so a fleet can point
//! the same code at a shared database later. The evidence bundles stay
//! files: [`StateStore::rebuild`] recreates the runs from them.
//!
//! A database this version cannot read (corrupted, or migrated by a newer
//! glassdrill) is refused with a message, never overwritten.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row as _, SqlitePool};

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
    /// A query failed.
    #[error("state database: {0}")]
    Query(#[from] sqlx::Error),
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

type Row = sqlx::sqlite::SqliteRow;

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
    pool: SqlitePool,
    path: PathBuf,
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

/// This host's name, for lock holders.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
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
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| unreadable(&e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            // Rows cross from sqlx's worker thread in batches, not one
            // thread switch each (`status` reads a row per drill).
            .row_buffer_size(4096)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
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
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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
            "INSERT INTO runs (run_id, drill_id, origin, started_ms, key_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(drill_id)
        .bind(origin)
        .bind(ms(started))
        .bind(key_id)
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

    /// Takes every lock in `names` for `holder`, or none: `Ok(Err(h))`
    /// names who holds one. A lock of a process of this host that is gone
    /// (`kill -9`, power loss) is taken over.
    pub async fn try_lock(
        &self,
        names: &[String],
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Locks, LockHolder>, StateError> {
        let host = host_name();
        let pid = i64::from(std::process::id());
        let mut taken: Vec<String> = Vec::new();
        for name in names {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let inserted = sqlx::query(
                    "INSERT INTO locks (name, holder, host, pid, acquired_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(holder)
                .bind(&host)
                .bind(pid)
                .bind(ms(now))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    taken.push(name.clone());
                    break;
                }
                let current = self.lock_holder(name).await?;
                match current {
                    // Released meanwhile: try again.
                    None if attempt < 3 => continue,
                    Some(h) if h.host == host && !alive(h.pid) && attempt < 3 => {
                        sqlx::query("DELETE FROM locks WHERE name = $1 AND host = $2 AND pid = $3")
                            .bind(name)
                            .bind(&h.host)
                            .bind(h.pid)
                            .execute(&self.pool)
                            .await?;
                        continue;
                    }
                    other => {
                        self.unlock(&taken, holder).await?;
                        return Ok(Err(other.unwrap_or(LockHolder {
                            name: name.clone(),
                            holder: "another process".into(),
                            host: host.clone(),
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
        }))
    }

    async fn lock_holder(&self, name: &str) -> Result<Option<LockHolder>, StateError> {
        let row = sqlx::query("SELECT * FROM locks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| LockHolder {
            name: r.try_get("name").unwrap_or_default(),
            holder: r.try_get("holder").unwrap_or_default(),
            host: r.try_get("host").unwrap_or_default(),
            pid: r.try_get("pid").unwrap_or_default(),
            since: at(r.try_get("acquired_ms").unwrap_or_default()),
        }))
    }

    /// Every lock held now.
    pub async fn locks(&self) -> Result<Vec<LockHolder>, StateError> {
        let rows = sqlx::query("SELECT name FROM locks ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let name: String = r.try_get("name").unwrap_or_default();
            if let Some(h) = self.lock_holder(&name).await? {
                out.push(h);
            }
        }
        Ok(out)
    }

    async fn unlock(&self, names: &[String], holder: &str) -> Result<(), StateError> {
        for n in names {
            sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
                .bind(n)
                .bind(holder)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
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
#[derive(Debug)]
pub struct Locks {
    names: Vec<String>,
    holder: String,
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
