//! The daemon: a real rehearsal drill run when due (time injected), its
//! announcement and report delivered to a real SMTP server on loopback,
//! the schedule drawn once and kept, the verdict policy (a FAIL is held and
//! escalated, never signed in again automatically), `/metrics` scraped and
//! parsed; and as a real process: `kill -9` during the sign-in and during
//! the record stage, then a restart; `glassdrill run` beside it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use glassdrill::config::{HostConfig, SmtpConfig, SmtpSecurity};
use glassdrill::daemon::{Daemon, DaemonOptions, ManualClock};
use glassdrill::record::Verdict;
use glassdrill::runner::RunOptions;
use glassdrill::tenant::Fault;
use tokio_util::sync::CancellationToken;

use crate::util::{Spawned, Stream, World};

const PATIENCE: Duration = Duration::from_secs(180);

/// A message the test SMTP server received.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

/// A real SMTP server (`mailin-embedded`) on loopback, keeping every
/// message. Its thread serves until the test binary exits (the server has
/// no stop); it holds no files and no child process.
#[derive(Clone, Default)]
struct Inbox {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Arc<Mutex<Mail>>,
}

impl mailin_embedded::Handler for Inbox {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        *self.current.lock().unwrap() = Mail {
            to: to.to_vec(),
            data: String::new(),
        };
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current
            .lock()
            .unwrap()
            .data
            .push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let m = self.current.lock().unwrap().clone();
        self.mails.lock().unwrap().push(m);
        mailin_embedded::response::OK
    }
}

fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind smtp");
    let addr = listener.local_addr().expect("addr");
    let inbox = Inbox::default();
    let mails = inbox.mails.clone();
    let mut server = mailin_embedded::Server::new(inbox);
    server
        .with_name("smtp.localhost")
        .with_num_threads(2)
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (addr, mails)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `drills/<id>.toml`: the rehearsal account with a fresh credential, no
/// windows (any time), one alert.
fn drill_file(w: &World, id: &str, account: &str, group: &str) {
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    std::fs::write(
        w.path().join(format!("drills/{id}.toml")),
        format!(
            "id = \"{id}\"\naccount = \"{account}\"\ngroup = \"{group}\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n\
             authenticator = {{ kind = \"virtual\" }}\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n\
             [schedule]\nkeys = [\"{id}-key-a\", \"{id}-key-b\"]\n"
        ),
    )
    .unwrap();
}

fn host(w: &World, smtp: SocketAddr) -> HostConfig {
    let mut h = w.host();
    h.drills_dir = w.path().join("drills");
    h.notify.smtp = Some(SmtpConfig {
        host: smtp.ip().to_string(),
        port: smtp.port(),
        security: SmtpSecurity::Plain,
        username: None,
        password: None,
        from: "glassdrill <glassdrill@drillhost.localhost>".into(),
        to: vec!["soc@soc.localhost".into()],
        escalate_to: vec!["oncall@identity.localhost".into()],
    });
    h
}

fn opts(faults: &[Fault]) -> DaemonOptions {
    DaemonOptions {
        run: RunOptions {
            faults: faults.to_vec(),
            alert_delay: Duration::from_millis(200),
            step_timeout: Some(Duration::from_secs(60)),
            ..RunOptions::default()
        },
    }
}

#[tokio::test]
async fn a_due_drill_runs_is_announced_and_reported_by_mail_and_the_next_is_drawn_once() {
    let w = World::new();
    let (smtp, mails) = smtp_server();
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    let clock = Arc::new(ManualClock::new(t("2026-11-26T10:00:00Z")));
    let d = Arc::new(
        Daemon::start(
            host(&w, smtp),
            clock.clone(),
            opts(&[]),
            CancellationToken::new(),
        )
        .await
        .expect("daemon")
        .with_random(|| 0),
    );
    // No PASS yet: due at once.
    let tick = d.tick().await.unwrap();
    assert_eq!(tick.started, vec!["bg1".to_owned()], "{tick:?}");
    d.idle().await;
    let store = d.store();
    let runs = store.runs("bg1", 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].verdict, Some(Verdict::Pass), "{runs:?}");
    assert_eq!(
        runs[0].key_id.as_deref(),
        Some("bg1-key-a"),
        "the key never proven goes first"
    );
    let bundle = runs[0].bundle.clone().expect("bundle");
    w.verify(std::path::Path::new(&bundle)).expect_exit(0);

    // The next due time is drawn at the next tick, inside the cadence,
    // and kept: later ticks (and a restart) never draw again.
    let tick = d.tick().await.unwrap();
    assert!(tick.started.is_empty(), "{tick:?}");
    let due = store.drill("bg1").await.unwrap().due.expect("drawn");
    let pass = runs[0].started;
    assert!(due >= pass + chrono::Duration::days(30) && due <= pass + chrono::Duration::days(60));
    clock.set(t("2026-12-01T10:00:00Z"));
    d.tick().await.unwrap();
    assert_eq!(store.drill("bg1").await.unwrap().due, Some(due));
    // A clock that jumps backwards runs nothing twice.
    clock.set(t("2026-11-26T09:00:00Z"));
    assert!(d.tick().await.unwrap().started.is_empty());
    assert_eq!(store.runs("bg1", 10).await.unwrap().len(), 1);

    // The messages reached the SOC, readable, with no secret.
    let got = mails.lock().unwrap().clone();
    let announce = got
        .iter()
        .find(|m| m.data.contains("starts now"))
        .unwrap_or_else(|| panic!("no announcement in {got:#?}"));
    assert_eq!(announce.to, vec!["soc@soc.localhost".to_owned()]);
    assert!(
        announce
            .data
            .contains("breakglass1@rehearsal.onmicrosoft.com")
            && announce.data.contains("sev0"),
        "{}",
        announce.data
    );
    let report = got
        .iter()
        .find(|m| m.data.contains("PASS drill bg1"))
        .unwrap_or_else(|| panic!("no report in {got:#?}"));
    assert!(
        report.data.contains("evidence: ") && report.data.contains("alerts "),
        "{}",
        report.data
    );
    use secrecy::ExposeSecret as _;
    let url = d.services().receiver().url_with_token();
    let token = url.expose_secret().rsplit('/').next().unwrap().to_owned();
    for m in &got {
        assert!(
            !m.data.contains(&token),
            "a notification holds the webhook token"
        );
    }
    assert!(store.undelivered().await.unwrap().is_empty());

    // /metrics, scraped over HTTP and parsed as Prometheus text.
    let m = glassdrill::daemon::metrics::serve("127.0.0.1:0".parse().unwrap(), d.clone())
        .await
        .unwrap();
    let body = reqwest::get(format!("http://{}/metrics", m.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = |name: &str, verdict: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("drill") == Some("bg1")
                    && verdict.is_none_or(|v| s.labels.get("verdict") == Some(v))
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} in\n{body}"))
    };
    assert_eq!(sample("glassdrill_drill_results_total", Some("PASS")), 1.0);
    // Labelled by tenant and by the host reporting it.
    let labelled = scrape
        .samples
        .iter()
        .find(|s| s.metric == "glassdrill_overdue")
        .unwrap();
    assert_eq!(labelled.labels.get("tenant"), Some("rehearsal"));
    assert_eq!(labelled.labels.get("host"), Some(d.store().host()));
    assert_eq!(sample("glassdrill_overdue", None), 0.0);
    assert!(
        (sample("glassdrill_next_due_timestamp_seconds", None) - due.timestamp() as f64).abs()
            < 1.0
    );
    assert!(
        (sample("glassdrill_last_pass_timestamp_seconds", None) - pass.timestamp() as f64).abs()
            < 1.0
    );
    assert!(sample("glassdrill_alert_latency_seconds", None) > 0.0);
    m.shutdown().await;

    // The same state, read by the CLI: status, plan, and a rebuild from
    // the bundles.
    let st = w.run(["status"]);
    st.expect_exit(0);
    let row = st
        .stdout
        .lines()
        .find(|l| l.starts_with("bg1"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        row.contains("PASS") && row.contains(&due.format("%Y-%m-%d %H:%M").to_string()),
        "{}",
        st.stdout
    );
    assert!(row.contains("bg1-key-b"), "the other key is next: {row}");
    assert!(
        st.stdout
            .contains("finding: drill bg1: key(s) not proven within max_days: bg1-key-b"),
        "{}",
        st.stdout
    );
    let plan = w.run(["plan", "--days", "365"]);
    plan.expect_exit(0);
    let lines: Vec<&str> = plan.stdout.lines().collect();
    assert!(lines[0].starts_with("bg1: due "), "{}", plan.stdout);
    assert!(
        lines.len() >= 6 && lines[1].starts_with("bg1: between "),
        "{}",
        plan.stdout
    );
    store.clear_runs().await.unwrap();
    let rb = w.run(["state", "rebuild"]);
    rb.expect_exit(0);
    assert!(rb.stdout.contains("indexed 1 bundle(s)"), "{}", rb.stdout);
    assert_eq!(
        store
            .last_pass("bg1")
            .await
            .unwrap()
            .map(|p| p.timestamp_millis()),
        Some(pass.timestamp_millis())
    );
    w.assert_clean();
}

#[tokio::test]
async fn a_fail_is_escalated_and_held_never_signed_in_again_automatically() {
    let w = World::new();
    let (smtp, mails) = smtp_server();
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    let clock = Arc::new(ManualClock::new(t("2026-11-26T10:00:00Z")));
    let d = Arc::new(
        Daemon::start(
            host(&w, smtp),
            clock.clone(),
            opts(&[Fault::CredentialRevoked]),
            CancellationToken::new(),
        )
        .await
        .expect("daemon"),
    );
    assert_eq!(d.tick().await.unwrap().started, vec!["bg1".to_owned()]);
    d.idle().await;
    let state = d.store().drill("bg1").await.unwrap();
    let hold = state.hold.expect("held after a FAIL");
    assert!(
        hold.contains("FAIL") && hold.contains("no automatic retry"),
        "{hold}"
    );
    // Days later it is overdue and still not run: only a person can.
    clock.set(t("2027-02-01T10:00:00Z"));
    let tick = d.tick().await.unwrap();
    assert!(tick.started.is_empty(), "{tick:?}");
    assert!(
        tick.waiting
            .iter()
            .any(|(id, why)| id == "bg1" && why.starts_with("on hold")),
        "{tick:?}"
    );
    assert_eq!(
        d.store().runs("bg1", 10).await.unwrap().len(),
        1,
        "one sign-in, ever"
    );
    let got = mails.lock().unwrap().clone();
    let esc = got
        .iter()
        .find(|m| m.data.contains("ESCALATION"))
        .unwrap_or_else(|| panic!("no escalation in {got:#?}"));
    assert!(
        esc.to.contains(&"oncall@identity.localhost".to_owned()),
        "{esc:?}"
    );
    assert!(esc.data.contains("AADSTS135011"), "{}", esc.data);
    assert!(
        got.iter().any(|m| m.data.contains("OVERDUE")),
        "an overdue notice: {got:#?}"
    );
    w.assert_clean();
}

/// A custodian drill waits for its key: announced while it is away, and
/// started by the next tick once it is plugged in; the touch it waits for
/// goes to the custodians' channel.
#[tokio::test]
async fn a_custodian_drill_starts_when_its_key_is_plugged_in_and_asks_for_the_touch() {
    use glassdrill::fido::soft::{NewSoftKey, SoftKey};
    use std::os::unix::fs::OpenOptionsExt as _;
    let w = World::new();
    let (smtp, mails) = smtp_server();
    let pin_file = w.path().join("pin");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pin_file)
        .unwrap();
    std::io::Write::write_all(&mut f, b"246810").unwrap();
    std::fs::create_dir_all(w.path().join("keys")).unwrap();
    let key_path = w.path().join("keys/bg-c-key.json");
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    std::fs::write(
        w.path().join("drills/bg-c.toml"),
        format!(
            "id = \"bg-c\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n\
             [authenticator]\nkind = \"soft\"\npin = \"file:{}\"\ntouch_timeout = \"20s\"\n\
             touch_command = [\"/bin/sh\", \"-c\", \"sleep 0.2; : > \\\"$0.touch\\\"\"]\n\
             [[authenticator.keys]]\nname = \"bg-c-key\"\nstate = \"{}\"\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n\
             [schedule]\ncustody = \"custodian\"\n",
            pin_file.display(),
            key_path.display()
        ),
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(t("2026-11-26T10:00:00Z")));
    let d = Arc::new(
        Daemon::start(
            host(&w, smtp),
            clock.clone(),
            opts(&[]),
            CancellationToken::new(),
        )
        .await
        .expect("daemon"),
    );
    // Due, but the key is away: announced, not started.
    let tick = d.tick().await.unwrap();
    assert!(tick.started.is_empty(), "{tick:?}");
    assert!(
        tick.waiting
            .iter()
            .any(|(id, why)| id == "bg-c" && why.contains("plugged in")),
        "{tick:?}"
    );
    // The custodian plugs the key in.
    let (key, _, _) = SoftKey::create(
        &key_path,
        &NewSoftKey {
            rp_id: glassdrill::tenant::RP_ID,
            user_handle: &glassdrill::tenant::rehearsal_user_handle(),
            user_name: "breakglass1@rehearsal.onmicrosoft.com",
            pin: &secrecy::SecretString::from("246810".to_owned()),
        },
    )
    .unwrap();
    key.tamper(|k| k.set_wait_for_touch(true)).unwrap();
    // Seen, not started at once: the custodian may run it themselves.
    clock.set(t("2026-11-26T10:01:00Z"));
    let tick = d.tick().await.unwrap();
    assert!(tick.started.is_empty(), "{tick:?}");
    assert!(
        tick.waiting
            .iter()
            .any(|(id, why)| id == "bg-c" && why.contains("starts by itself at")),
        "{tick:?}"
    );
    clock.set(t("2026-11-26T10:03:30Z"));
    let tick = d.tick().await.unwrap();
    assert_eq!(tick.started, vec!["bg-c".to_owned()], "{tick:?}");
    d.idle().await;
    let runs = d.store().runs("bg-c", 10).await.unwrap();
    assert_eq!(runs[0].verdict, Some(Verdict::Pass), "{runs:?}");
    assert_eq!(runs[0].key_id.as_deref(), Some("bg-c-key"));
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::path::Path::new(runs[0].bundle.as_ref().unwrap()).join("drill.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        record["operator"]
            .as_str()
            .unwrap()
            .contains("plugged the key in"),
        "{}",
        record["operator"]
    );
    let got = mails.lock().unwrap().clone();
    assert!(
        got.iter().any(|m| m.data.contains("bring its key")),
        "the custodians were told: {got:#?}"
    );
    let touch = got
        .iter()
        .find(|m| m.data.contains("touch the security key now"))
        .unwrap_or_else(|| panic!("no touch-needed message in {got:#?}"));
    assert!(!touch.data.contains("246810"), "{}", touch.data);
    w.assert_clean();
}

/// A broken drill file disables that drill (and says so), never the
/// daemon: the other drill still runs.
#[tokio::test]
async fn a_broken_drill_file_disables_that_drill_only() {
    let w = World::new();
    let (smtp, mails) = smtp_server();
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    std::fs::write(w.path().join("drills/bg2.toml"), "id = \"bg2\"\naccount = ").unwrap();
    let clock = Arc::new(ManualClock::new(t("2026-11-26T10:00:00Z")));
    let d = Arc::new(
        Daemon::start(host(&w, smtp), clock, opts(&[]), CancellationToken::new())
            .await
            .expect("daemon"),
    );
    let tick = d.tick().await.unwrap();
    assert_eq!(tick.started, vec!["bg1".to_owned()]);
    assert_eq!(tick.disabled, vec!["bg2".to_owned()]);
    d.idle().await;
    let bg2 = d.store().drill("bg2").await.unwrap();
    assert!(
        bg2.disabled
            .as_deref()
            .is_some_and(|r| r.contains("bg2.toml")),
        "{bg2:?}"
    );
    assert!(
        mails
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.data.contains("drill bg2 is disabled")),
        "notified"
    );
    w.assert_clean();
}

/// Writes a host config for the daemon process: state under the world,
/// ticks every second.
fn host_file(w: &World) {
    std::fs::write(
        w.path().join("glassdrill.toml"),
        "[daemon]\ntick = \"* * * * * *\"\n[browser]\ntemp_dir = \"tmp\"\n",
    )
    .unwrap();
}

/// Starts `glassdrill daemon`, paused at `point` of its first drill.
fn daemon_paused_at(w: &World, point: &str) -> Spawned {
    let mut cmd = w.command(&["daemon", "-v"]);
    cmd.env("GLASSDRILL_TEST_PAUSE", point);
    let mut s = Spawned::start(cmd);
    let want = format!("[test-pause] {point}");
    s.line(|st, l| st == Stream::Stderr && l == want, PATIENCE);
    s
}

/// `kill -9` of the daemon during the sign-in and during the record
/// stage; the restarted daemon records the run INTERRUPTED (a verifiable
/// bundle), holds the drill, and signs in no second time.
#[test]
fn kill_9_during_the_sign_in_or_the_record_then_a_restart_records_interrupted_and_holds() {
    for point in ["step:stay signed in:wait", "stage:record"] {
        let w = World::new();
        host_file(&w);
        drill_file(
            &w,
            "bg1",
            "breakglass1@rehearsal.onmicrosoft.com",
            "tenant-a",
        );
        let s = daemon_paused_at(&w, point);
        s.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = s.finish(PATIENCE);

        // Restart; wait for its first tick to say the drill is held.
        let mut s = w.spawn(&["daemon", "-v"]);
        s.line(|_, l| l.contains("recovered a run that died"), PATIENCE);
        s.line(|_, l| l.contains("on hold"), PATIENCE);
        s.signal(nix::sys::signal::Signal::SIGTERM);
        let r = s.finish(PATIENCE);
        assert_eq!(r.code, Some(0), "{point}: {}", r.stderr);

        let status = w.run(["status", "--json"]);
        status.expect_exit(0);
        let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let row = &v["drills"][0];
        assert_eq!(row["drill"], "bg1");
        assert_eq!(row["last_verdict"], "INTERRUPTED", "{point}: {row:#}");
        assert!(
            row["hold"]
                .as_str()
                .is_some_and(|h| h.contains("died after its sign-in had started")),
            "{point}: {row:#}"
        );
        // One bundle: the recovered one, and it verifies.
        let evidence = w.state().join("glassdrill/evidence/bg1");
        let bundles: Vec<_> = std::fs::read_dir(&evidence)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert_eq!(bundles.len(), 1, "{point}: no second sign-in: {bundles:?}");
        w.verify(&bundles[0]).expect_exit(0);
        w.assert_clean();
    }
}

/// `glassdrill run` while the daemon runs the same drill: refused, naming
/// the daemon's run; with `--wait`, it waits.
#[test]
fn run_beside_the_daemon_on_the_same_drill_is_refused_naming_the_running_drill() {
    let w = World::new();
    host_file(&w);
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    let daemon = daemon_paused_at(&w, "stage:alerts");
    // status shows the daemon's run and the last stage it started (the
    // pause point is before the alerts stage is reported).
    let st = w.run(["status"]);
    st.expect_exit(0);
    assert!(
        st.stdout.contains("running since")
            && st.stdout.contains(", in confirm")
            && st.stdout.contains("running: drill bg1 (daemon, pid"),
        "{}",
        st.stdout
    );
    let r = w.run(["run", "bg1", "--progress", "none"]);
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("drill bg1 not started: drill bg1 (daemon, pid")
            && r.stderr.contains("holds group:tenant-a"),
        "{}",
        r.stderr
    );
    // A drill of another group is not held back (its file kept outside
    // the drills directory, so the daemon does not run it too; `--local`,
    // as the paused daemon would pause it too).
    let other = World::new();
    drill_file(
        &other,
        "other",
        "breakglass2@rehearsal.onmicrosoft.com",
        "tenant-b",
    );
    let file = other.path().join("drills/other.toml");
    let r = w.run([
        "run",
        file.to_str().unwrap(),
        "--local",
        "--progress",
        "none",
        "--alert-delay",
        "200ms",
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let out = daemon.finish(PATIENCE);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    w.assert_clean();
}

/// `glassdrill run` while the daemon is up: the daemon runs the drill (its
/// receiver, its secrets) and the command shows the progress and the
/// verdict; the PASS counts for the schedule. Ctrl-C on the command stops
/// the run in the daemon: torn down and recorded INTERRUPTED.
#[test]
fn run_while_the_daemon_is_up_goes_through_the_daemon_and_ctrl_c_stops_it_there() {
    let w = World::new();
    host_file(&w);
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    // A custodian drill with no key to watch: the daemon never starts it
    // by itself.
    let path = w.path().join("drills/bg1.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[schedule]\n", "[schedule]\ncustody = \"custodian\"\n"),
    )
    .unwrap();
    let mut daemon = w.spawn(&["daemon", "-v"]);
    daemon.line(
        |st, l| st == Stream::Stderr && l.contains("control socket listening"),
        PATIENCE,
    );
    let r = w.run([
        "run",
        "bg1",
        "--operator",
        "Alice Custodian",
        "--progress",
        "plain",
        "--alert-delay",
        "200ms",
    ]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("PASS  drill bg1"), "{}", r.stdout);
    assert!(
        r.stderr.contains("the glassdrill daemon (pid") && r.stderr.contains("[sign-in] ok"),
        "{}",
        r.stderr
    );
    let bundle = crate::util::bundle_from_stdout(&r.stdout);
    w.verify(&bundle).expect_exit(0);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("drill.json")).unwrap()).unwrap();
    assert_eq!(record["operator"], "Alice Custodian");
    let st = w.run(["status", "--json"]);
    assert!(st.stdout.contains("\"PASS\""), "{}", st.stdout);

    // Ctrl-C on the command, mid-drill.
    let mut run = w.spawn(&[
        "run",
        "bg1",
        "--progress",
        "plain",
        "--alert-delay",
        "60s",
        "--step-timeout",
        "60s",
    ]);
    run.line(
        |s, l| s == Stream::Stderr && l.starts_with("[alerts] started"),
        PATIENCE,
    );
    run.signal(nix::sys::signal::Signal::SIGINT);
    let out = run.finish(PATIENCE);
    assert_eq!(out.code, Some(2), "{}{}", out.stdout, out.stderr);
    // The daemon tears the run down and records it.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let st = w.run(["status", "--json"]);
        if st.stdout.contains("INTERRUPTED") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", st.stdout);
        #[allow(clippy::disallowed_methods)] // a plain #[test], no runtime
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let out = daemon.finish(PATIENCE);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    w.assert_clean();
}

/// A secret reference to a private file holding `value`.
fn secret_file(w: &World, name: &str, value: &str) -> glassdrill::secret::SecretRef {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = w.path().join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, value.as_bytes()).unwrap();
    glassdrill::secret::SecretRef::parse(&format!("file:{}", path.display())).unwrap()
}

/// Teams and Slack incoming webhooks get the announcement and the report;
/// an SMTP relay that is down leaves its messages queued, retried and
/// listed in `status`, and the drill's verdict is the drill's own.
#[tokio::test]
async fn chat_webhooks_get_the_messages_and_an_smtp_outage_changes_no_verdict() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let w = World::new();
    drill_file(
        &w,
        "bg1",
        "breakglass1@rehearsal.onmicrosoft.com",
        "tenant-a",
    );
    let chat = MockServer::start().await;
    for p in ["/teams/hook", "/slack/hook"] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200))
            .mount(&chat)
            .await;
    }
    // A relay that is down: a port nobody listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h = host(&w, down);
    h.notify.webhooks = vec![
        glassdrill::config::ChatHook {
            url: secret_file(&w, "teams-url", &format!("{}/teams/hook", chat.uri())),
            format: glassdrill::config::ChatFormat::Teams,
        },
        glassdrill::config::ChatHook {
            url: secret_file(&w, "slack-url", &format!("{}/slack/hook", chat.uri())),
            format: glassdrill::config::ChatFormat::Slack,
        },
    ];
    let clock = Arc::new(ManualClock::new(t("2026-11-26T10:00:00Z")));
    let d = Arc::new(
        Daemon::start(h, clock.clone(), opts(&[]), CancellationToken::new())
            .await
            .expect("daemon"),
    );
    d.tick().await.unwrap();
    d.idle().await;
    let runs = d.store().runs("bg1", 1).await.unwrap();
    assert_eq!(
        runs[0].verdict,
        Some(Verdict::Pass),
        "a notification outage is no drill failure"
    );
    let got = chat.received_requests().await.unwrap();
    for p in ["/teams/hook", "/slack/hook"] {
        let bodies: Vec<serde_json::Value> = got
            .iter()
            .filter(|r| r.url.path() == p)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert!(
            bodies
                .iter()
                .any(|b| b["text"].as_str().is_some_and(|t| t.contains("starts now"))),
            "{p}: {bodies:#?}"
        );
        assert!(
            bodies.iter().any(|b| b["text"]
                .as_str()
                .is_some_and(|t| t.contains("PASS drill bg1"))),
            "{p}: {bodies:#?}"
        );
    }
    let pending = d.store().undelivered().await.unwrap();
    assert!(pending.len() >= 2, "{pending:#?}");
    assert!(
        pending
            .iter()
            .all(|n| n.channel == "smtp" && n.attempts >= 1 && n.last_error.is_some())
    );
    // Retried later: still down, attempts go up, nothing is lost.
    clock.set(t("2026-11-26T11:00:00Z"));
    d.tick().await.unwrap();
    let again = d.store().undelivered().await.unwrap();
    assert_eq!(again.len(), pending.len());
    assert!(again.iter().all(|n| n.attempts >= 2), "{again:#?}");
    w.assert_clean();
}

/// The heartbeat URL is requested after each tick (a dead man's switch for
/// the drill host), and a stop ends the daemon.
#[tokio::test]
async fn the_heartbeat_is_requested_after_each_tick() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let w = World::new();
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    let hc = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ping/abc"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&hc)
        .await;
    let mut h = w.host();
    h.drills_dir = w.path().join("drills");
    h.daemon.tick = "* * * * * *".into();
    h.daemon.heartbeat_url = Some(secret_file(&w, "hc-url", &format!("{}/ping/abc", hc.uri())));
    let cancel = CancellationToken::new();
    let d = Arc::new(
        Daemon::start(
            h,
            Arc::new(glassdrill::daemon::SystemClock),
            opts(&[]),
            cancel.clone(),
        )
        .await
        .expect("daemon"),
    );
    let running = tokio::spawn(d.run());
    // Two heartbeats: the first tick's and a scheduled one (polled, with
    // a bound far above the one-second tick).
    let t0 = std::time::Instant::now();
    while hc.received_requests().await.unwrap_or_default().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no heartbeat came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    running.await.unwrap().unwrap();
}
