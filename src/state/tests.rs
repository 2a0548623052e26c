use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Where a scenario's store lives: a fresh SQLite file, or a fresh
/// database of a throw-away PostgreSQL cluster. The same scenarios run on
/// both (`every_scenario_on_postgres`).
enum Db {
    Lite(tempfile::TempDir),
    /// The database, and the directory of its password file.
    Pg(
        crate::config::PostgresConfig,
        #[allow(dead_code)] tempfile::TempDir,
    ),
}

impl Db {
    fn lite() -> Self {
        Self::Lite(tempfile::tempdir().unwrap())
    }

    fn pg(cluster: &crate::support::pgtest::Cluster, name: &str) -> Self {
        use std::os::unix::fs::OpenOptionsExt as _;
        let url = cluster.create_db(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("db-password");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pw)
            .unwrap();
        std::io::Write::write_all(&mut f, crate::support::pgtest::PASSWORD.as_bytes()).unwrap();
        Self::Pg(
            crate::config::PostgresConfig {
                url,
                password: Some(
                    crate::secret::SecretRef::parse(&format!("file:{}", pw.display())).unwrap(),
                ),
                tls: crate::config::PgTls::Disable,
                tls_ca: None,
            },
            dir,
        )
    }

    /// Opens (again) the store, as host `host`.
    async fn open_as(&self, host: &str) -> StateStore {
        let s = match self {
            Self::Lite(d) => StateStore::open(&d.path().join("state/state.db"))
                .await
                .unwrap(),
            Self::Pg(cfg, _) => StateStore::open_postgres(cfg).await.unwrap(),
        };
        s.named(host, std::time::Duration::from_secs(30))
    }

    async fn open(&self) -> StateStore {
        self.open_as(&crate::config::state::hostname()).await
    }
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
    due_once(Db::lite()).await;
}

async fn due_once(db: Db) {
    let s = db.open().await;
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
    let s = db.open().await;
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
    runs_and_summaries(Db::lite()).await;
}

async fn runs_and_summaries(db: Db) {
    let s = db.open().await;
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
    locks(Db::lite()).await;
}

async fn locks(db: Db) {
    let s = db.open().await;
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
    assert_eq!(s.locks_at(now).await.unwrap().len(), 3);
    s.release(held).await.unwrap();
    assert!(s.locks_at(now).await.unwrap().is_empty());

    // A lock whose process is gone is taken over.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = i64::from(child.id());
    child.wait().unwrap();
    sqlx::query(
        "INSERT INTO locks (name, holder, host, pid, acquired_ms) VALUES ($1, $2, $3, $4, 0)",
    )
    .bind("group:tenant-a")
    .bind("drill bg1 run that died")
    .bind(s.host())
    .bind(dead)
    .execute(&s.pool)
    .await
    .unwrap();
    let taken = s.try_lock(&b, "drill bg2 run r3", now).await.unwrap();
    assert!(taken.is_ok(), "{taken:?}");
}

#[tokio::test]
async fn notifications_are_queued_retried_and_delivered() {
    notifications(Db::lite()).await;
}

async fn notifications(db: Db) {
    let s = db.open().await;
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
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM drills")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Leases between hosts: the holder's lease keeps another host out until
/// it lapses; a lapsed lease is taken over and its old holder learns it
/// lost it; two hosts racing for one lock: exactly one gets it.
async fn leases(db: Db) {
    let a = db.open_as("host-a").await;
    let b = db.open_as("host-b").await;
    let now = t("2026-01-01T00:00:00Z");
    let names = lock_names("tenant-a", "bg1@contoso.onmicrosoft.com", None);
    let held = a
        .try_lock(&names, "drill bg1 (host-a)", now)
        .await
        .unwrap()
        .unwrap();
    assert!(a.renew(&held).await.unwrap());
    let refused = b
        .try_lock(
            &names,
            "drill bg1 (host-b)",
            now + chrono::Duration::seconds(10),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        (refused.host.as_str(), refused.holder.as_str()),
        ("host-a", "drill bg1 (host-a)")
    );
    assert_eq!(
        b.locks_at(now + chrono::Duration::seconds(10))
            .await
            .unwrap()
            .len(),
        2
    );
    // Host A stops renewing (it died): after the lease, B takes over.
    let later = now + chrono::Duration::seconds(31);
    assert!(b.locks_at(later).await.unwrap().is_empty());
    let b_held = b
        .try_lock(&names, "drill bg1 (host-b)", later)
        .await
        .unwrap()
        .unwrap();
    assert!(!a.renew(&held).await.unwrap(), "A learns it lost the lease");
    // A lapsed lease is not revived by a late renewal either.
    let c = db.open_as("host-c").await;
    let names_c = lock_names("tenant-c", "bg3@contoso.onmicrosoft.com", None);
    let c_held = c
        .try_lock(&names_c, "drill bg3 (host-c)", now)
        .await
        .unwrap()
        .unwrap();
    sqlx::query("UPDATE locks SET expires_ms = 0 WHERE host = 'host-c'")
        .execute(&c.pool)
        .await
        .unwrap();
    assert!(
        !c.renew(&c_held).await.unwrap(),
        "a lapsed lease stays lapsed"
    );
    a.release(held).await.unwrap();
    assert_eq!(
        a.locks_at(later).await.unwrap().len(),
        2,
        "A's release leaves B's lease"
    );
    b.release(b_held).await.unwrap();

    // Racing: one winner per round.
    for round in 0..20 {
        let name = vec![format!("group:race-{round}")];
        let at = now + chrono::Duration::minutes(round);
        let (x, y) = tokio::join!(a.try_lock(&name, "a", at), b.try_lock(&name, "b", at));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            x.is_ok() != y.is_ok(),
            "round {round}: exactly one host holds it"
        );
    }
}

/// Hosts register, list their keys and beat their hearts.
async fn hosts_and_keys(db: Db) {
    let a = db.open_as("host-a").await;
    let b = db.open_as("host-b").await;
    let now = t("2026-01-01T00:00:00Z");
    a.host_started("1.0.0", "machine-a", now).await.unwrap();
    b.host_started("1.0.0", "machine-b", now).await.unwrap();
    // A second machine under host A's name is refused while A is alive
    // (each would take the other's leases for dead); the same machine
    // restarting is not; a machine that replaced a silent one is not.
    let clone = db.open_as("host-a").await;
    let err = clone
        .host_started("1.0.0", "machine-c", now + chrono::Duration::minutes(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use by another machine"), "{err}");
    a.host_started("1.0.0", "machine-a", now).await.unwrap();
    let key = |drill: &str, key: &str| fleet::HostKey {
        host: String::new(),
        drill_id: drill.into(),
        key_id: key.into(),
        aaguid: Some("ee882879-721c-4913-9775-3dfcce97072a".into()),
        credential_sha256: Some("ab".repeat(32)),
        seen: now,
    };
    a.set_host_keys(&[key("bg1", "k1"), key("bg2", "k2")], now)
        .await
        .unwrap();
    b.set_host_keys(&[key("bg1", "k3")], now).await.unwrap();
    // A key unplugged from A: gone from its list, B's untouched.
    let later = now + chrono::Duration::minutes(1);
    a.set_host_keys(&[key("bg2", "k2")], later).await.unwrap();
    a.heartbeat("1.0.1", later).await.unwrap();
    let keys = b.host_keys().await.unwrap();
    let listed: Vec<(&str, &str, &str)> = keys
        .iter()
        .map(|k| (k.host.as_str(), k.drill_id.as_str(), k.key_id.as_str()))
        .collect();
    assert_eq!(listed, [("host-a", "bg2", "k2"), ("host-b", "bg1", "k3")]);
    let hosts = b.hosts().await.unwrap();
    assert_eq!(hosts.len(), 2);
    clone
        .host_started("1.0.0", "machine-c", later + fleet::SILENT_AFTER)
        .await
        .unwrap();
    a.heartbeat("1.0.1", later).await.unwrap();
    assert_eq!(
        (
            hosts[0].version.as_str(),
            hosts[0].heartbeat,
            hosts[0].started
        ),
        ("1.0.1", later, now)
    );
}

/// The fleet's log: two hosts append in turn, each signing with its own
/// key; the materialized log verifies against the fleet's signers; a
/// bundle row altered in the database is caught by its address.
async fn fleet_evidence(db: Db) {
    use crate::evidence::log::Entry;
    let dir = tempfile::tempdir().unwrap();
    let a = db.open_as("host-a").await;
    let b = db.open_as("host-b").await;
    let now = t("2026-01-01T00:00:00Z");
    let ka = crate::evidence::SigningKey::generate(&dir.path().join("a"), "a").unwrap();
    let kb = crate::evidence::SigningKey::generate(&dir.path().join("b"), "b").unwrap();
    let bare = |k: &crate::evidence::SigningKey| {
        let line = k.public_key_openssh();
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    a.register_signer("glassdrill@host-a", &bare(&ka), now)
        .await
        .unwrap();
    b.register_signer("glassdrill@host-b", &bare(&kb), now)
        .await
        .unwrap();
    let verifiers = vec![
        ka.note_verifier("fleet-x").unwrap(),
        kb.note_verifier("fleet-x").unwrap(),
    ];
    for i in 0..3 {
        let (s, k) = if i % 2 == 0 { (&a, &ka) } else { (&b, &kb) };
        let mut e = Entry::new("export");
        e.manifest_sha256 = format!("{i:064}");
        assert_eq!(
            s.fleet_append(&e, k, "fleet-x", &verifiers).await.unwrap(),
            i
        );
    }
    // Concurrent appends from both hosts: serialised, none lost.
    let (mut ea, mut eb) = (Entry::new("export"), Entry::new("export"));
    ea.manifest_sha256 = "a".repeat(64);
    eb.manifest_sha256 = "b".repeat(64);
    let (x, y) = tokio::join!(
        a.fleet_append(&ea, &ka, "fleet-x", &verifiers),
        b.fleet_append(&eb, &kb, "fleet-x", &verifiers)
    );
    let mut got = [x.unwrap(), y.unwrap()];
    got.sort_unstable();
    assert_eq!(got, [3, 4]);

    // A stored bundle, content-addressed.
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(bundle.join("screenshots")).unwrap();
    std::fs::write(bundle.join("drill.json"), b"{}").unwrap();
    std::fs::write(bundle.join("screenshots/1.png"), [0u8, 159, 146, 150]).unwrap();
    std::fs::write(bundle.join("SHA256SUMS"), b"sums\n").unwrap();
    let digest = crate::support::hash::sha256_hex(b"sums\n");
    let wrong = a
        .store_bundle(&bundle, "bg1", "r1", &"0".repeat(64), now)
        .await;
    assert!(wrong.is_err(), "a wrong address is refused");
    a.store_bundle(&bundle, "bg1", "r1", &digest, now)
        .await
        .unwrap();
    b.store_bundle(&bundle, "bg1", "r1", &digest, now)
        .await
        .unwrap();
    assert_eq!(
        b.bundle_digests().await.unwrap(),
        std::slice::from_ref(&digest)
    );
    // Two hosts publishing the same bundle at once: one entry.
    let bundle_entry = Entry::bundle("bg1", "r1", &digest);
    let (x, y) = tokio::join!(
        a.fleet_append(&bundle_entry, &ka, "fleet-x", &verifiers),
        b.fleet_append(&bundle_entry, &kb, "fleet-x", &verifiers)
    );
    assert_eq!((x.unwrap(), y.unwrap()), (5, 5));

    let out = dir.path().join("out");
    let m = b.materialize(&out, "fleet-x").await.unwrap();
    assert_eq!((m.bundles, m.entries), (1, 6));
    assert!(m.findings.is_empty(), "{:?}", m.findings);
    assert_eq!(
        std::fs::read(out.join("evidence/bg1/r1/screenshots/1.png")).unwrap(),
        [0u8, 159, 146, 150]
    );
    let signers = std::fs::read_to_string(out.join("allowed_signers")).unwrap();
    assert_eq!(signers.lines().count(), 2, "{signers}");
    assert!(
        signers.contains("glassdrill@host-a,fleet-x namespaces="),
        "{signers}"
    );
    assert!(!signers.contains("valid-before"), "{signers}");
    // Host A's key rotated: the old one listed until the rotation.
    let ka2 = crate::evidence::SigningKey::generate(&dir.path().join("a2"), "a2").unwrap();
    let later = now + chrono::Duration::days(30);
    a.register_signer("glassdrill@host-a", &bare(&ka2), later)
        .await
        .unwrap();
    let rotated = a.fleet_allowed_signers("fleet-x").await.unwrap();
    assert_eq!(rotated.lines().count(), 3, "{rotated}");
    let old_line = rotated.lines().find(|l| l.contains(&bare(&ka))).unwrap();
    assert!(
        old_line.contains(&format!(
            "valid-before=\"{}\"",
            later.format("%Y%m%d%H%M%SZ")
        )),
        "{rotated}"
    );
    let verifiers =
        crate::evidence::log::log_verifiers(&out.join("allowed_signers"), "fleet-x").unwrap();
    assert_eq!(verifiers.len(), 2);
    let root = out.join("evidence");
    let r = crate::evidence::log::verify_log_any(&root, &verifiers, "fleet-x", None);
    assert_eq!((r.size, r.checkpoint_size), (6, Some(6)));
    assert!(r.findings.is_empty(), "{:?}", r.findings);

    // Altered in the database: the bundle's file, then a log line.
    sqlx::query("UPDATE bundle_files SET content = $1 WHERE path = 'SHA256SUMS'")
        .bind("c3VtczIK")
        .execute(&a.pool)
        .await
        .unwrap();
    let m = a
        .materialize(&dir.path().join("out2"), "fleet-x")
        .await
        .unwrap();
    assert!(
        m.findings
            .iter()
            .any(|f| f.contains("altered in the database")),
        "{:?}",
        m.findings
    );
    sqlx::query("UPDATE fleet_log SET line = $1 WHERE seq = 1")
        .bind(r#"{"kind":"review","manifest_sha256":"ff","appended":"2026-01-01T00:00:00Z"}"#)
        .execute(&a.pool)
        .await
        .unwrap();
    let out3 = dir.path().join("out3");
    a.materialize(&out3, "fleet-x").await.unwrap();
    let r =
        crate::evidence::log::verify_log_any(&out3.join("evidence"), &verifiers, "fleet-x", None);
    assert!(
        r.findings.iter().any(|f| f.contains("checkpoint")),
        "an edited line is caught: {:?}",
        r.findings
    );
    let refused = a
        .fleet_append(&Entry::new("export"), &ka, "fleet-x", &verifiers)
        .await;
    assert!(refused.is_err(), "no append over an edited log");
}

#[tokio::test]
async fn leases_between_hosts() {
    leases(Db::lite()).await;
}

#[tokio::test]
async fn hosts_register_their_keys() {
    hosts_and_keys(Db::lite()).await;
}

#[tokio::test]
async fn the_fleet_log_and_bundles() {
    fleet_evidence(Db::lite()).await;
}

/// Every scenario above, each on a fresh database of one throw-away
/// PostgreSQL cluster; then one host's SQLite state migrated into it.
#[tokio::test]
async fn every_scenario_on_postgres() {
    let cluster = crate::support::pgtest::Cluster::start().unwrap();
    due_once(Db::pg(&cluster, "due_once")).await;
    runs_and_summaries(Db::pg(&cluster, "runs")).await;
    locks(Db::pg(&cluster, "locks")).await;
    notifications(Db::pg(&cluster, "notifications")).await;
    leases(Db::pg(&cluster, "leases")).await;
    hosts_and_keys(Db::pg(&cluster, "hosts")).await;
    fleet_evidence(Db::pg(&cluster, "fleet")).await;

    // `state migrate`: a single host's rows into the fleet; again: kept.
    let lite = Db::lite();
    let from = lite.open().await;
    from.run_ended(&run(
        "r1",
        "bg1",
        "2026-01-01T10:00:00Z",
        Some(Verdict::Pass),
    ))
    .await
    .unwrap();
    from.set_due_once(
        "bg1",
        t("2026-02-10T09:00:00Z"),
        "drawn",
        t("2026-01-01T11:00:00Z"),
    )
    .await
    .unwrap();
    from.set_key_counter("bg1", "key-a", 7, t("2026-01-01T10:00:00Z"))
        .await
        .unwrap();
    from.queue(
        "smtp",
        Some("bg1"),
        "report",
        "PASS",
        "body",
        t("2026-01-01T10:01:00Z"),
    )
    .await
    .unwrap();
    let fleet = Db::pg(&cluster, "migrated");
    let to = fleet.open().await;
    let copied = migrate::copy_state(&from, &to).await.unwrap();
    let n = |t: &str| {
        copied
            .tables
            .iter()
            .find(|x| x.0 == t)
            .map(|x| (x.1, x.2))
            .unwrap()
    };
    assert_eq!(
        (
            n("drills"),
            n("runs"),
            n("key_counters"),
            n("notifications")
        ),
        ((1, 0), (1, 0), (1, 0), (1, 0))
    );
    assert_eq!(
        to.last_pass("bg1").await.unwrap(),
        Some(t("2026-01-01T10:00:00Z"))
    );
    assert_eq!(
        to.drill("bg1").await.unwrap().due,
        Some(t("2026-02-10T09:00:00Z"))
    );
    assert_eq!(to.key_counter("bg1", "key-a").await.unwrap(), Some(7));
    assert_eq!(
        to.summaries().await.unwrap()["bg1"].1.by_verdict,
        [1, 0, 0, 0]
    );
    let again = migrate::copy_state(&from, &to).await.unwrap();
    assert!(again.tables.iter().all(|x| x.1 == 0), "{again:?}");
    to.close().await;
}

/// `[state] tls` is real: a server that takes TCP only over TLS is
/// reached with `verify-full` against its CA; without TLS it refuses us,
/// and `verify-full` without its CA (the public roots) refuses it. No
/// error names the password.
#[tokio::test]
async fn postgres_over_tls_is_verified_against_the_configured_ca() {
    use crate::config::PgTls;
    let cluster = crate::support::pgtest::Cluster::start_tls().unwrap();
    let Db::Pg(mut cfg, _keep) = Db::pg(&cluster, "tls") else {
        unreachable!()
    };
    cfg.tls = PgTls::VerifyFull;
    cfg.tls_ca = cluster.ca().map(Path::to_path_buf);
    let s = StateStore::open_postgres(&cfg).await.unwrap();
    s.set_due_once(
        "bg1",
        t("2026-02-10T09:00:00Z"),
        "drawn",
        t("2026-01-01T00:00:00Z"),
    )
    .await
    .unwrap();
    s.close().await;
    for (tls, ca) in [
        (PgTls::Disable, cfg.tls_ca.clone()),
        (PgTls::VerifyFull, None),
    ] {
        let mut c = cfg.clone();
        c.tls = tls;
        c.tls_ca = ca;
        let err = match StateStore::open_postgres(&c).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{tls:?} connected"),
        };
        assert!(
            err.contains("cannot be used") && err.contains(&cfg.url),
            "{err}"
        );
        assert!(!err.contains(crate::support::pgtest::PASSWORD), "{err}");
    }
}
