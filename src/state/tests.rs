use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn store() -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open(&dir.path().join("state/state.db"))
        .await
        .unwrap();
    (dir, s)
}

fn run(id: &str, drill: &str, started: &str, verdict: Option<Verdict>) -> RunRow {
    RunRow {
        run_id: id.into(),
        drill_id: drill.into(),
        origin: "daemon".into(),
        started: t(started),
        ended: verdict.map(|_| t(started) + chrono::Duration::seconds(30)),
        verdict,
        sign_in_attempted: true,
        key_id: Some("key-a".into()),
        bundle: Some(format!("/evidence/{drill}/{id}")),
        alert_latency_ms: Some(2000),
    }
}

#[tokio::test]
async fn a_due_time_is_drawn_once_and_kept_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = StateStore::open(&path).await.unwrap();
    let now = t("2026-01-01T00:00:00Z");
    let first = s
        .set_due_once("bg1", t("2026-02-10T09:00:00Z"), "drawn", now)
        .await
        .unwrap();
    // A second draw (another process, a restart) does not replace it.
    let second = s
        .set_due_once("bg1", t("2026-02-20T09:00:00Z"), "drawn again", now)
        .await
        .unwrap();
    assert_eq!(first, second);
    s.close().await;
    let s = StateStore::open(&path).await.unwrap();
    let d = s.drill("bg1").await.unwrap();
    assert_eq!(d.due, Some(t("2026-02-10T09:00:00Z")));
    assert_eq!(d.due_why.as_deref(), Some("drawn"));
    // After a PASS it is drawn afresh, and holds and retries are cleared.
    s.hold("bg1", "FAIL").await.unwrap();
    s.retry_later("bg1", now).await.unwrap();
    s.passed("bg1").await.unwrap();
    let d = s.drill("bg1").await.unwrap();
    assert_eq!((d.due, d.hold, d.retries), (None, None, 0));
}

#[tokio::test]
async fn runs_give_the_last_pass_and_summaries() {
    let (_d, s) = store().await;
    s.run_ended(&run(
        "r1",
        "bg1",
        "2026-01-01T10:00:00Z",
        Some(Verdict::Pass),
    ))
    .await
    .unwrap();
    s.run_ended(&run(
        "r2",
        "bg1",
        "2026-02-01T10:00:00Z",
        Some(Verdict::Fail),
    ))
    .await
    .unwrap();
    s.run_started("r3", "bg2", "run", t("2026-02-02T10:00:00Z"), None)
        .await
        .unwrap();
    assert_eq!(
        s.last_pass("bg1").await.unwrap(),
        Some(t("2026-01-01T10:00:00Z"))
    );
    assert_eq!(s.last_pass("bg2").await.unwrap(), None);
    let sum = s.summaries().await.unwrap();
    assert_eq!(sum["bg1"].1.last_verdict, Some(Verdict::Fail));
    assert_eq!(sum["bg1"].1.runs, 2);
    assert_eq!(sum["bg1"].1.by_verdict, [1, 1, 0, 0]);
    assert_eq!(sum["bg1"].1.last_pass, Some(t("2026-01-01T10:00:00Z")));
    assert_eq!(sum["bg2"].1.running_since, Some(t("2026-02-02T10:00:00Z")));
    assert_eq!(s.unfinished().await.unwrap().len(), 1);
    let runs = s.runs("bg1", 10).await.unwrap();
    assert_eq!(runs[0].run_id, "r2", "newest first");
    assert_eq!(
        runs[1],
        run("r1", "bg1", "2026-01-01T10:00:00Z", Some(Verdict::Pass))
    );
}

#[tokio::test]
async fn locks_are_all_or_nothing_name_their_holder_and_outlive_no_process() {
    let (_d, s) = store().await;
    let now = t("2026-01-01T00:00:00Z");
    let a = lock_names("tenant-a", "BG1@contoso.onmicrosoft.com", Some("key-1"));
    let held = s
        .try_lock(&a, "drill bg1 run r1", now)
        .await
        .unwrap()
        .unwrap();
    // Another drill of the same group cannot start, and is told who runs.
    let b = lock_names("tenant-a", "bg2@contoso.onmicrosoft.com", Some("key-2"));
    let refused = s
        .try_lock(&b, "drill bg2 run r2", now)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.holder, "drill bg1 run r1");
    assert_eq!(refused.name, "group:tenant-a");
    // Nothing of the refused attempt was kept.
    assert_eq!(s.locks().await.unwrap().len(), 3);
    s.release(held).await.unwrap();
    assert!(s.locks().await.unwrap().is_empty());

    // A lock whose process is gone is taken over.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = i64::from(child.id());
    child.wait().unwrap();
    sqlx::query(
        "INSERT INTO locks (name, holder, host, pid, acquired_ms) VALUES ($1, $2, $3, $4, 0)",
    )
    .bind("group:tenant-a")
    .bind("drill bg1 run that died")
    .bind(host_name())
    .bind(dead)
    .execute(&s.pool)
    .await
    .unwrap();
    let taken = s.try_lock(&b, "drill bg2 run r3", now).await.unwrap();
    assert!(taken.is_ok(), "{taken:?}");
}

#[tokio::test]
async fn notifications_are_queued_retried_and_delivered() {
    let (_d, s) = store().await;
    let now = t("2026-01-01T00:00:00Z");
    let id = s
        .queue("smtp", Some("bg1"), "report", "PASS bg1", "body", now)
        .await
        .unwrap();
    assert_eq!(s.due_notifications(now).await.unwrap().len(), 1);
    s.delivery_failed(
        &id,
        "connection refused",
        now + chrono::Duration::minutes(5),
    )
    .await
    .unwrap();
    assert!(s.due_notifications(now).await.unwrap().is_empty());
    let pending = s.undelivered().await.unwrap();
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));
    let later = now + chrono::Duration::minutes(6);
    assert_eq!(s.due_notifications(later).await.unwrap().len(), 1);
    s.delivered(&id, later).await.unwrap();
    assert!(s.undelivered().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_corrupted_database_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let junk = b"this is not an SQLite database, and must survive being opened".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    let err = match StateStore::open(&path).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a corrupted file was accepted"),
    };
    assert!(
        err.contains("cannot be read") && err.contains("state rebuild"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), junk, "nothing overwritten");
}

#[tokio::test]
async fn a_database_from_a_newer_glassdrill_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = StateStore::open(&path).await.unwrap();
    s.set_due_once(
        "bg1",
        t("2026-02-10T09:00:00Z"),
        "drawn",
        t("2026-01-01T00:00:00Z"),
    )
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    s.close().await;
    let err = match StateStore::open(&path).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a newer database was accepted"),
    };
    assert!(
        err.contains("newer glassdrill") && err.contains("9999"),
        "{err}"
    );
    // Still readable by the newer one: the row is there.
    let pool = SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drills")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}
