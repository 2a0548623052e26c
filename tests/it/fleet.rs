//! A fleet of drill hosts on one PostgreSQL (a real throw-away cluster,
//! Debian's server binaries, `support::pgtest`): each host a `glassdrill
//! daemon` process of its own world (config, keys, evidence), the state
//! shared. Exactly one host runs a due drill; a host killed during the
//! sign-in loses its lease and another records INTERRUPTED without
//! signing in again; a group's drills on two hosts are spaced by the gap;
//! the fleet's evidence verifies from every host and an altered bundle
//! row is caught.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glassdrill::support::pgtest::{Cluster, PASSWORD};
use serde_json::Value;

use crate::util::{Spawned, Stream, World};

const PATIENCE: Duration = Duration::from_secs(180);
const PIN: &str = "739104";

fn secret_file(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

/// The cluster, one database, and the password file hosts refer to.
struct Fleet {
    cluster: Cluster,
    db: String,
    url: String,
    secrets: tempfile::TempDir,
}

impl Fleet {
    fn new(db: &str) -> Self {
        let cluster = Cluster::start().unwrap();
        let url = cluster.create_db(db).unwrap();
        let secrets = tempfile::Builder::new()
            .prefix("glassdrill-test-fleet-")
            .tempdir()
            .unwrap();
        secret_file(&secrets.path().join("db-password"), PASSWORD);
        secret_file(&secrets.path().join("pin"), PIN);
        Self {
            cluster,
            db: db.to_owned(),
            url,
            secrets,
        }
    }

    fn sql(&self, sql: &str) -> String {
        self.cluster.psql(&self.db, sql).unwrap()
    }

    /// A drill host's world: its config names the fleet's database, this
    /// host, a short lease and a tick every second.
    fn host(&self, name: &str, gap: &str) -> World {
        let w = World::new();
        std::fs::write(
            w.path().join("glassdrill.toml"),
            format!(
                "[daemon]\ntick = \"* * * * * *\"\ngroup_gap = \"{gap}\"\n[browser]\ntemp_dir = \"tmp\"\n\
                 [evidence]\nsigner = \"glassdrill@{name}\"\n\
                 [state]\nurl = \"{}\"\npassword = \"file:{}\"\ntls = \"disable\"\nhost = \"{name}\"\nfleet = \"test-fleet\"\nlease = \"4s\"\n",
                self.url,
                self.secrets.path().join("db-password").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(w.path().join("drills")).unwrap();
        w
    }

    /// A soft key for the rehearsal account (`keys soft-new`), shared by
    /// every host's drill file: "attached" to each.
    fn soft_key(&self, w: &World) -> PathBuf {
        let key = self.secrets.path().join("soft-a.json");
        w.run([
            "keys",
            "soft-new",
            key.to_str().unwrap(),
            "--rp-id",
            glassdrill::tenant::RP_ID,
            "--user-name",
            "breakglass1@rehearsal.onmicrosoft.com",
            "--tenant-id",
            glassdrill::tenant::TENANT_ID,
            "--object-id",
            glassdrill::tenant::REHEARSAL_OBJECT_ID,
            "--pin",
            &format!("file:{}", self.secrets.path().join("pin").display()),
        ])
        .expect_exit(0);
        key
    }

    /// `drills/<id>.toml` in `w`: the soft key, or a virtual authenticator.
    fn drill(&self, w: &World, id: &str, group: &str, soft: Option<&Path>) {
        self.drill_of(w, id, group, soft, None);
    }

    /// The same, of tenant `tenant`.
    fn drill_of(
        &self,
        w: &World,
        id: &str,
        group: &str,
        soft: Option<&Path>,
        tenant: Option<&str>,
    ) {
        let auth = match soft {
            Some(k) => format!(
                "[authenticator]\nkind = \"soft\"\npin = \"file:{}\"\n[[authenticator.keys]]\nname = \"{id}-key\"\nstate = \"{}\"\n",
                self.secrets.path().join("pin").display(),
                k.display()
            ),
            None => "authenticator = { kind = \"virtual\" }\n".into(),
        };
        let top = if soft.is_some() {
            String::new()
        } else {
            auth.clone()
        };
        let table = if soft.is_some() { auth } else { String::new() };
        let tenant = tenant
            .map(|t| format!("tenant_name = \"{t}\"\n"))
            .unwrap_or_default();
        std::fs::write(
            w.path().join(format!("drills/{id}.toml")),
            format!(
                "id = \"{id}\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ngroup = \"{group}\"\ntenant = \"rehearsal\"\n{tenant}\
                 flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n{top}{table}\
                 [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n"
            ),
        )
        .unwrap();
    }

    /// `(drill, host, verdict)` of every run, in start order.
    fn runs(&self) -> Vec<(String, String, String, i64)> {
        // Before the first host has made the schema: no runs.
        self.cluster.psql(&self.db, "SELECT drill_id, COALESCE(host, ''), COALESCE(verdict, ''), started_ms FROM runs ORDER BY started_ms")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[2].to_owned(),
                    f[3].parse().unwrap(),
                )
            })
            .collect()
    }

    /// Waits until `done` holds of the runs.
    fn wait_runs(&self, what: &str, done: impl Fn(&[(String, String, String, i64)]) -> bool) {
        let start = Instant::now();
        loop {
            let runs = self.runs();
            if done(&runs) {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "{what}: runs {runs:?}");
            nap(Duration::from_millis(250));
        }
    }
}

/// Waits `d` in a test thread (no runtime here to block).
fn nap(d: Duration) {
    let (_tx, rx) = std::sync::mpsc::channel::<()>();
    let _ = rx.recv_timeout(d);
}

fn daemon(w: &World) -> Spawned {
    w.spawn(&["daemon", "-v"])
}

fn stop(s: Spawned) -> String {
    s.signal(nix::sys::signal::Signal::SIGTERM);
    let r = s.finish(PATIENCE);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.stderr
}

/// Bundles on a host.
fn bundles(w: &World) -> Vec<PathBuf> {
    let root = w.state().join("glassdrill/evidence");
    std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| !d.file_name().to_string_lossy().starts_with('.'))
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|b| b.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

fn assert_clean_soon(w: &World) {
    let start = Instant::now();
    while !w.browser_processes().is_empty() && start.elapsed() < Duration::from_secs(30) {
        nap(Duration::from_millis(200));
    }
    w.assert_clean();
}

/// Two daemons, one due drill, its soft key attached to both: exactly one
/// runs it, the other sees it done. Both hosts register with their keys;
/// the fleet's evidence (the bundle in the database, the one log)
/// verifies from each host and gives the same answer; a bundle row altered
/// in the database is caught from each host.
#[test]
fn two_hosts_one_due_drill_exactly_one_runs_it_and_the_evidence_verifies_from_both() {
    let fleet = Fleet::new("one_drill");
    let a = fleet.host("host-a", "24h");
    let b = fleet.host("host-b", "24h");
    let key = fleet.soft_key(&a);
    fleet.drill(&a, "bg1", "tenant-a", Some(&key));
    fleet.drill(&b, "bg1", "tenant-a", Some(&key));
    // And a drill whose key is attached to no host.
    let nowhere = fleet.secrets.path().join("not-attached.json");
    for w in [&a, &b] {
        fleet.drill(w, "bg9", "tenant-b", Some(&nowhere));
    }

    // Host A first (it speaks for the fleet: first by name), then B.
    let mut da = daemon(&a);
    da.line(|_, l| l.contains("glassdrill daemon started"), PATIENCE);
    let db = daemon(&b);
    fleet.wait_runs("one PASS", |r| r.iter().any(|x| x.2 == "PASS"));
    // Both keep ticking for a few more seconds: nobody runs it again.
    nap(Duration::from_secs(4));
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "exactly one run: {runs:?}");
    assert_eq!(runs[0].0, "bg1", "bg9 cannot run anywhere: {runs:?}");
    let winner = runs[0].1.clone();
    let (won, lost) = if winner == "host-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(bundles(won).len(), 1);
    assert!(
        bundles(lost).is_empty(),
        "the other host signed in: {:?}",
        bundles(lost)
    );

    // The fleet: both hosts, the key attached to each, the drill served.
    let st = b.run(["fleet", "status", "--json"]);
    // bg9 is a finding: exit 1.
    st.expect_exit(1);
    let v: Value = serde_json::from_str(&st.stdout).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{v:#}");
    for h in hosts {
        assert_eq!(h["keys"].as_array().unwrap().len(), 1, "{v:#}");
        assert_eq!(h["keys"][0]["key"], "bg1-key", "{v:#}");
        assert_eq!(h["drills"], serde_json::json!(["bg1"]), "{v:#}");
        assert_eq!(h["silent"], false, "{v:#}");
    }
    assert_eq!(v["unservable"], serde_json::json!(["bg9"]), "{v:#}");
    let text = a.run(["fleet", "status"]);
    assert!(
        text.stdout
            .contains("FINDING: drill bg9: no live host has one of its keys attached"),
        "{}",
        text.stdout
    );
    // Told once, by the fleet's speaker only.
    let told = [stop(da), stop(db)]
        .iter()
        .map(|e| e.matches("no drill host can serve drill bg9").count())
        .collect::<Vec<_>>();
    assert_eq!(told, [1, 0], "host A tells, once; host B does not");

    // A review on the host that ran it goes to the fleet's log too.
    let run_id = bundles(won)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let r = won.run([
        "evidence",
        "review",
        &run_id,
        "--by",
        "auditor",
        "--outcome",
        "accepted",
        "--note",
        "seen",
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("appended to the fleet's log"),
        "{}",
        r.stdout
    );

    // One evidence history, the same answer from either host.
    let mut answers = Vec::new();
    for w in [&a, &b] {
        let r = w.run(["evidence", "verify"]);
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
        assert!(
            r.stdout
                .contains("OK: 1 bundle(s) verified against the fleet's signer keys"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout
                .contains("evidence log: 2 entries, latest checkpoint covers 2"),
            "{}",
            r.stdout
        );
        answers.push(r.stdout.clone());
    }
    assert_eq!(answers[0], answers[1]);
    // The auditor's export, from either host: the same bundle and log,
    // verified offline by the export's own standard-library script.
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut logs = Vec::new();
    for (w, name) in [(&a, "export-a"), (&b, "export-b")] {
        let out = fleet.secrets.path().join(name);
        let e = w.run([
            "evidence",
            "export",
            "--from",
            &today,
            "--to",
            &today,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(e.code, Some(0), "{}{}", e.stdout, e.stderr);
        assert!(e.stdout.contains("exported 1 bundle(s)"), "{}", e.stdout);
        assert!(
            out.join(format!("bundles/bg1/{run_id}/SHA256SUMS"))
                .is_file(),
            "{}",
            e.stdout
        );
        let py = std::process::Command::new("python3")
            .arg(out.join("verify_log.py"))
            .arg(&out)
            .arg("--allowed-signers")
            .arg(out.join("allowed_signers"))
            .output()
            .unwrap();
        assert!(
            py.status.success(),
            "{}{}",
            String::from_utf8_lossy(&py.stdout),
            String::from_utf8_lossy(&py.stderr)
        );
        logs.push(std::fs::read(out.join("log/entries.jsonl")).unwrap());
    }
    // The second export's log holds the first export's entry: the same
    // history, grown by one.
    assert!(logs[1].starts_with(&logs[0]) && logs[1].len() > logs[0].len());
    // A status from the other host reads the same fleet state.
    let s: Value = serde_json::from_str(&lost.run(["status", "--json"]).stdout).unwrap();
    assert_eq!(s["drills"][0]["drill"], "bg1", "{s:#}");
    assert_eq!(s["drills"][0]["last_verdict"], "PASS", "{s:#}");

    // A file of the bundle altered in the database: caught from each host.
    fleet.sql("UPDATE bundle_files SET content = 'e30K' WHERE path = 'drill.json'");
    for w in [&a, &b] {
        let r = w.run(["evidence", "verify"]);
        assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("FAILED: ") && r.stderr.contains("drill.json"),
            "{}",
            r.stderr
        );
    }
    assert_clean_soon(&a);
    assert_clean_soon(&b);
}

/// `kill -9` of the host holding the lease during the sign-in: the other
/// host records the run INTERRUPTED once the lease has lapsed, holds the
/// drill, and never signs in again.
#[test]
fn kill_9_during_the_sign_in_the_other_host_records_interrupted_after_the_lease_and_never_signs_in()
{
    let fleet = Fleet::new("kill9");
    let a = fleet.host("host-a", "24h");
    let b = fleet.host("host-b", "24h");
    let key = fleet.soft_key(&a);
    fleet.drill(&a, "bg1", "tenant-a", Some(&key));
    fleet.drill(&b, "bg1", "tenant-a", Some(&key));

    let point = "step:stay signed in:wait";
    let mut cmd = a.command(&["daemon", "-v"]);
    cmd.env("GLASSDRILL_TEST_PAUSE", point);
    let mut da = Spawned::start(cmd);
    let want = format!("[test-pause] {point}");
    da.line(|st, l| st == Stream::Stderr && l == want, PATIENCE);
    let db = daemon(&b);
    // B ticks while A holds the lease: it does not start the drill.
    nap(Duration::from_secs(2));
    assert_eq!(fleet.runs().len(), 1);
    let killed = Instant::now();
    da.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = da.finish(PATIENCE);
    fleet.wait_runs("INTERRUPTED", |r| r.iter().any(|x| x.2 == "INTERRUPTED"));
    assert!(
        // A 4 s lease renewed every third: it lapses 2.7 to 4 s after the kill.
        killed.elapsed() >= Duration::from_secs(2),
        "recorded before the lease could lapse"
    );
    nap(Duration::from_secs(3));
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1, "no second run: {runs:?}");
    assert_eq!(runs[0].1, "host-a");
    assert!(
        bundles(&b).is_empty(),
        "host B signed in: {:?}",
        bundles(&b)
    );
    let s: Value = serde_json::from_str(&b.run(["status", "--json"]).stdout).unwrap();
    let row = &s["drills"][0];
    assert_eq!(row["last_verdict"], "INTERRUPTED", "{row:#}");
    assert!(
        row["hold"]
            .as_str()
            .is_some_and(|h| h.contains("on host host-a") && h.contains("sign-in")),
        "{row:#}"
    );
    let err = stop(db);
    assert!(err.contains("INTERRUPTED"), "{err}");
    // Host A comes back: it recovers its dead run's evidence (and its
    // browser's temp dir), publishes it, and signs in no second time.
    let mut da = daemon(&a);
    da.line(|_, l| l.contains("recovered a run that died"), PATIENCE);
    da.line(|_, l| l.contains("on hold"), PATIENCE);
    stop(da);
    assert_eq!(bundles(&a).len(), 1, "only the recovered bundle");
    assert_eq!(fleet.runs().len(), 1);
    let v = b.run(["evidence", "verify"]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("OK: 1 bundle(s)"), "{}", v.stdout);
    assert_clean_soon(&a);
    assert_clean_soon(&b);
}

/// A group's two drills, both due now, on two hosts: the second starts
/// no sooner than the group gap after the first.
#[test]
fn a_groups_two_drills_due_at_once_on_two_hosts_are_spaced_by_the_gap() {
    let fleet = Fleet::new("gap");
    let a = fleet.host("host-a", "12s");
    let b = fleet.host("host-b", "12s");
    for w in [&a, &b] {
        fleet.drill(w, "bg1", "tenant-a", None);
        fleet.drill(w, "bg2", "tenant-a", None);
    }
    // The schema, then both drills due now (as if drawn long ago).
    a.run(["fleet", "status"]);
    let now_ms = chrono::Utc::now().timestamp_millis() - 1000;
    fleet.sql(&format!(
        "INSERT INTO drills (drill_id, due_ms, due_why) VALUES ('bg1', {now_ms}, 'test'), ('bg2', {now_ms}, 'test')"
    ));
    let da = daemon(&a);
    let db = daemon(&b);
    fleet.wait_runs("both drills PASS", |r| {
        r.iter().filter(|x| x.2 == "PASS").count() == 2
    });
    stop(da);
    stop(db);
    let runs = fleet.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_ne!(runs[0].0, runs[1].0, "{runs:?}");
    let apart = runs[1].3 - runs[0].3;
    assert!(apart >= 12_000, "started {apart} ms apart: {runs:?}");
    assert_clean_soon(&a);
    assert_clean_soon(&b);
}

/// `state migrate --to`: a single host's state and bundle into the
/// fleet; its `evidence verify` then reads the fleet's history.
#[test]
fn state_migrate_copies_a_single_hosts_state_and_evidence_into_the_fleet() {
    let fleet = Fleet::new("migrate");
    let w = World::new();
    std::fs::write(
        w.path().join("glassdrill.toml"),
        "[browser]\ntemp_dir = \"tmp\"\n[state]\nhost = \"solo\"\nfleet = \"test-fleet\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    fleet.drill(&w, "bg1", "tenant-a", None);
    let run = w.run(["run", "bg1", "--progress", "plain"]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let m = w.run([
        "state",
        "migrate",
        "--to",
        &fleet.url,
        "--password",
        &format!(
            "file:{}",
            fleet.secrets.path().join("db-password").display()
        ),
        "--tls",
        "disable",
    ]);
    assert_eq!(m.code, Some(0), "{}{}", m.stdout, m.stderr);
    assert!(m.stdout.contains("runs: 1 row(s) copied"), "{}", m.stdout);
    assert!(m.stdout.contains("evidence: 1 bundle(s)"), "{}", m.stdout);
    assert!(!m.stdout.contains(PASSWORD) && !m.stderr.contains(PASSWORD));
    let runs = fleet.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].2, "PASS");
    // Now a fleet host: the same evidence, from the database.
    let mut cfg = std::fs::read_to_string(w.path().join("glassdrill.toml")).unwrap();
    cfg.push_str(&format!(
        "url = \"{}\"\npassword = \"file:{}\"\ntls = \"disable\"\n",
        fleet.url,
        fleet.secrets.path().join("db-password").display()
    ));
    std::fs::write(w.path().join("glassdrill.toml"), cfg).unwrap();
    let v = w.run(["evidence", "verify"]);
    assert_eq!(v.code, Some(0), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("OK: 1 bundle(s)"), "{}", v.stdout);
    w.assert_clean();
}

/// Many tenants: two tenants' drills in groups of the same name are not
/// spaced by each other's gap (a tenant's groups are its own), and
/// `status --tenant` shows one tenant's drills, from either host.
#[test]
fn many_tenants_have_their_own_groups_and_status_shows_one_tenant() {
    let fleet = Fleet::new("tenants");
    let a = fleet.host("host-a", "24h");
    let b = fleet.host("host-b", "24h");
    for w in [&a, &b] {
        fleet.drill_of(w, "contoso-bg1", "break-glass", None, Some("contoso"));
        fleet.drill_of(w, "fabrikam-bg1", "break-glass", None, Some("fabrikam"));
    }
    a.run(["fleet", "status"]);
    let now_ms = chrono::Utc::now().timestamp_millis() - 1000;
    fleet.sql(&format!(
        "INSERT INTO drills (drill_id, due_ms, due_why) VALUES ('contoso-bg1', {now_ms}, 'test'), ('fabrikam-bg1', {now_ms}, 'test')"
    ));
    let da = daemon(&a);
    let db = daemon(&b);
    fleet.wait_runs("both tenants' drills PASS", |r| {
        r.iter().filter(|x| x.2 == "PASS").count() == 2
    });
    stop(da);
    stop(db);
    let s = b.run(["status", "--json", "--tenant", "fabrikam"]);
    s.expect_exit(0);
    let v: Value = serde_json::from_str(&s.stdout).unwrap();
    let rows = v["drills"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v:#}");
    assert_eq!(rows[0]["drill"], "fabrikam-bg1");
    assert_eq!(rows[0]["tenant"], "fabrikam");
    assert_eq!(rows[0]["last_verdict"], "PASS");
    let none = a.run(["status", "--tenant", "northwind"]);
    assert_eq!(none.code, Some(64), "{}", none.stderr);
    assert!(
        none.stderr.contains("no drill of tenant northwind"),
        "{}",
        none.stderr
    );
    assert_clean_soon(&a);
    assert_clean_soon(&b);
}

/// The sign-in begins only once the state store has recorded it: a run
/// whose store cannot record it makes no sign-in (ERROR before the
/// sign-in, retried), and the recording progress writes `sign-in` before
/// the ceremony.
#[tokio::test]
async fn no_sign_in_begins_before_the_state_store_has_recorded_it() {
    use glassdrill::drill::{Progress, Quiet, StageRecord};
    use glassdrill::record::{Stage, StageStatus, Verdict};

    /// A progress whose store refuses the sign-in's start.
    struct Refusing;
    impl Progress for Refusing {
        fn stage_started(&self, _: Stage) {}
        fn stage_finished(&self, _: &StageRecord) {}
        fn note(&self, _: &str) {}
        fn before_sign_in(&self) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Err("the state store cannot be written (test)".to_owned()) })
        }
    }
    let w = World::new();
    let drill = glassdrill::config::DrillConfig::rehearsal().unwrap();
    let opts = glassdrill::runner::RunOptions {
        alert_delay: Duration::from_millis(200),
        ..glassdrill::runner::RunOptions::default()
    };
    let o = glassdrill::runner::run_configured(
        &w.host(),
        &drill,
        &opts,
        &Refusing,
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        o.verdict,
        Verdict::Error,
        "{:?} {:#?}",
        o.reasons,
        o.stages
            .iter()
            .map(|s| (s.stage, s.status, s.detail.clone()))
            .collect::<Vec<_>>()
    );
    assert!(!o.sign_in_attempted);
    let s = crate::util::stage(&o, Stage::SignIn);
    assert_eq!(s.status, StageStatus::Errored);
    assert!(s.detail.contains("cannot be written"), "{}", s.detail);

    // The daemon's recording progress: `sign-in` is in the store when the
    // barrier answers; a run the store does not know is refused.
    let store = glassdrill::state::StateStore::open(&w.path().join("state.db"))
        .await
        .unwrap();
    let (p, writer) =
        glassdrill::daemon::RecordingProgress::start(&Quiet, store.clone(), "bg1", "daemon", None);
    assert!(p.before_sign_in().await.is_err(), "no run id yet");
    p.run_started("r1");
    p.stage_started(Stage::Announce);
    p.before_sign_in().await.unwrap();
    let unfinished = store.unfinished().await.unwrap();
    assert_eq!(unfinished[0].1.as_deref(), Some("sign-in"));
    drop(p);
    writer.await.unwrap();
    w.assert_clean();
}
