//! Test helpers: each test gets its own temp dir (state, browser temp
//! files), a host config pointing into it, and a check that no browser
//! process or temp directory outlives the drill.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use glassdrill::config::{Environment, HostConfig};
use glassdrill::drill::Progress;
use glassdrill::drill::{DrillOutcome, Stage, StageRecord};
use glassdrill::runner::{RunOptions, run_configured};
use glassdrill::tenant::Fault;
use tokio_util::sync::CancellationToken;

/// A test's own world.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("glassdrill-test-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn browser_tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn host(&self) -> HostConfig {
        let env = Environment {
            cwd: self.path().to_path_buf(),
            home: Some(self.path().join("home")),
            xdg_config_home: None,
            xdg_state_home: Some(self.state()),
        };
        let mut h = HostConfig::defaults(&env);
        h.browser.temp_dir = Some(self.browser_tmp());
        h
    }

    /// A `glassdrill` command isolated in this world.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.command(&[]))
    }

    /// Runs `glassdrill ARGS` in this world to the end (killed, and the
    /// test failed, if it takes more than 10 minutes).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Run {
        let mut c = self.command(&[]);
        c.args(args);
        Spawned::start(c).finish(Duration::from_secs(600))
    }

    /// `glassdrill evidence verify BUNDLE`.
    pub fn verify(&self, bundle: &Path) -> Run {
        self.run([
            std::ffi::OsStr::new("evidence"),
            "verify".as_ref(),
            bundle.as_os_str(),
        ])
    }

    /// Starts `glassdrill ARGS` in this world in the background, for tests
    /// that signal it mid-run. The returned owner kills it when dropped.
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        Spawned::start(self.command(args))
    }

    /// `glassdrill ARGS` in this world, stdout and stderr piped, not
    /// started yet: its own working directory, state, config, home and
    /// temp dirs, and none of the caller's glassdrill variables.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("glassdrill"));
        c.current_dir(self.path())
            .env("XDG_STATE_HOME", self.state())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("HOME", self.path().join("home"))
            .env("TMPDIR", self.browser_tmp())
            .env_remove("GLASSDRILL_LOG")
            .env_remove("GLASSDRILL_TEST_PAUSE")
            .env_remove("GLASSDRILL_TEST_RESUME")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// Asserts that no process mentions this world's paths (chromedriver
    /// and Chromium carry the temp dir in their command line or
    /// environment) and that the browser temp dir is empty again.
    pub fn assert_clean(&self) {
        let survivors = self.browser_processes();
        assert!(
            survivors.is_empty(),
            "browser processes survived: {survivors:#?}"
        );
        let left: Vec<_> = std::fs::read_dir(self.browser_tmp())
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "temp dirs left behind: {left:?}");
    }

    /// Live processes (not zombies) that mention this world's browser temp
    /// dir in their command line or environment.
    pub fn browser_processes(&self) -> Vec<String> {
        let needle = self.browser_tmp().display().to_string();
        let me = std::process::id();
        let mut survivors = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let hay =
                String::from_utf8_lossy(&cmdline).to_string() + &String::from_utf8_lossy(&environ);
            if hay.contains(&needle) {
                // A zombie that is already dead but not reaped has an empty cmdline.
                survivors.push(format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
        survivors
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A spawned `glassdrill` and the owner of its process: every read from it
/// has a deadline (its output is read on threads), and dropping it kills
/// and reaps the process, so a failing test never leaves it running.
pub struct Spawned {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Stream, String)>,
    /// Lines seen so far, in order.
    pub seen: Vec<(Stream, String)>,
}

impl Spawned {
    /// Starts `cmd` (stdout and stderr must be piped).
    pub fn start(mut cmd: std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd.spawn().expect("spawn glassdrill");
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        /// Forwards every line (bytes that are not UTF-8 shown lossily)
        /// until the stream closes.
        fn forward(
            r: impl std::io::Read,
            which: Stream,
            tx: std::sync::mpsc::Sender<(Stream, String)>,
        ) {
            let mut r = std::io::BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.strip_suffix('\n').unwrap_or(&line);
                        let _ = tx.send((which, line.to_owned()));
                    }
                }
            }
        }
        let t = tx.clone();
        std::thread::spawn(move || forward(out, Stream::Stdout, t));
        std::thread::spawn(move || forward(err, Stream::Stderr, tx));
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// Whether the process has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("signal glassdrill");
    }

    /// Everything seen so far, for failure messages.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(s, l)| format!("{}: {l}", if *s == Stream::Stdout { "out" } else { "err" }))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `timeout` for a line that satisfies `want`; `None` when
    /// the process ended or the time ran out first.
    pub fn try_line(
        &mut self,
        want: impl Fn(Stream, &str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((s, l)) => {
                    let hit = want(s, &l);
                    self.seen.push((s, l.clone()));
                    if hit {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits up to `timeout` for a line that satisfies `want`; panics with
    /// the transcript when it does not come.
    #[track_caller]
    pub fn line(&mut self, want: impl Fn(Stream, &str) -> bool, timeout: Duration) -> String {
        match self.try_line(want, timeout) {
            Some(l) => l,
            None => panic!(
                "the expected line did not come within {timeout:?}:\n{}",
                self.transcript()
            ),
        }
    }

    /// Waits up to `timeout` for the process to end and returns how it
    /// ended with all its output; kills it and panics when it does not.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Run {
        let deadline = std::time::Instant::now() + timeout;
        let code = loop {
            match self.child.try_wait().expect("wait for glassdrill") {
                Some(status) => break status.code(),
                None if std::time::Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.drain(Duration::from_secs(2));
                    panic!(
                        "glassdrill did not exit within {timeout:?}:\n{}",
                        self.transcript()
                    );
                }
                None => match self.lines.recv_timeout(Duration::from_millis(50)) {
                    Ok(l) => self.seen.push(l),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    // Both streams closed, the process not reaped yet:
                    // poll its exit without spinning.
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        #[allow(clippy::disallowed_methods)]
                        std::thread::sleep(Duration::from_millis(20));
                    }
                },
            }
        };
        self.drain(Duration::from_secs(5));
        let pick = |want: Stream| {
            self.seen
                .iter()
                .filter(|(s, _)| *s == want)
                .map(|(_, l)| format!("{l}\n"))
                .collect::<String>()
        };
        Run {
            code,
            stdout: pick(Stream::Stdout),
            stderr: pick(Stream::Stderr),
        }
    }

    /// Collects the rest of the output (both streams end when the process
    /// and its children have closed them), for at most `timeout`.
    fn drain(&mut self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return,
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A finished `glassdrill` run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code, showing both streams when it is wrong.
    #[track_caller]
    pub fn expect_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Captures progress notes (the receiver's address is one).
#[derive(Default)]
pub struct Notes(pub Mutex<Vec<String>>, pub Mutex<Vec<Stage>>);

impl Progress for Notes {
    fn stage_started(&self, stage: Stage) {
        self.1.lock().unwrap().push(stage);
    }
    fn stage_finished(&self, _: &StageRecord) {}
    fn note(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_owned());
    }
}

/// A rehearsal tenant's options for the rehearsal account with `cred`:
/// `faults`, the app secret `secret`, no delays, no webhook, a free
/// loopback port; a test changes what it needs with `..`.
pub fn tenant_options(
    cred: &glassdrill::authenticator::Credential,
    faults: &[Fault],
    secret: &str,
) -> glassdrill::tenant::TenantOptions {
    glassdrill::tenant::TenantOptions {
        account: glassdrill::tenant::rehearsal_account(
            "breakglass1@rehearsal.onmicrosoft.com",
            cred,
        )
        .expect("account"),
        client_id: "glassdrill-rehearsal".into(),
        client_secret: secrecy::SecretString::from(secret.to_owned()),
        faults: faults.to_vec(),
        alert_delay: Duration::ZERO,
        alert_late_delay: Duration::ZERO,
        log_delay: Duration::ZERO,
        webhook_url: None,
        alert_rules: Vec::new(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow_list: false,
        lax_session_cookie: false,
        secure_webhook: None,
    }
}

/// Runs the built-in rehearsal drill with `faults`, the alert `deadline`
/// and each flow step's `step_timeout`.
pub async fn rehearse(
    world: &World,
    faults: &[Fault],
    deadline: Duration,
    step_timeout: Duration,
) -> DrillOutcome {
    let drill = glassdrill::config::DrillConfig::rehearsal().expect("rehearsal drill");
    let opts = RunOptions {
        faults: faults.to_vec(),
        alert_delay: Duration::from_millis(200),
        alert_deadline: Some(deadline),
        step_timeout: Some(step_timeout),
        ..RunOptions::default()
    };
    run_configured(
        &world.host(),
        &drill,
        &opts,
        &glassdrill::drill::Quiet,
        &CancellationToken::new(),
    )
    .await
    .expect("drill starts")
}

/// The stage record of `stage`.
pub fn stage(o: &DrillOutcome, stage: Stage) -> &StageRecord {
    o.stages
        .iter()
        .find(|s| s.stage == stage)
        .expect("stage recorded")
}

/// Files of a bundle, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).expect("read").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("prefix").display().to_string());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The bundle directory a run printed (`evidence: DIR`).
pub fn bundle_from_stdout(out: &str) -> PathBuf {
    out.lines()
        .find_map(|l| l.strip_prefix("evidence: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no evidence line in:\n{out}"))
}

/// The parts of a rehearsal put together by hand, for tests that need a
/// plan no configuration can express (a wrong app secret, an alert check
/// that breaks).
pub struct Manual {
    pub drill: glassdrill::config::DrillConfig,
    pub receiver: glassdrill::alerts::WebhookReceiver,
    pub tenant: glassdrill::tenant::RehearsalTenant,
    pub auth: glassdrill::authenticator::VirtualAuthenticator,
    pub key: glassdrill::evidence::SigningKey,
    pub host: HostConfig,
    pub evidence: PathBuf,
}

/// The rehearsal tenant's app secret in [`Manual`].
pub const MANUAL_SECRET: &str = "the-right-secret";

impl Manual {
    pub async fn start(w: &World) -> Self {
        Self::start_with(w, &[]).await
    }

    /// The same, with the tenant's `faults` switched on.
    pub async fn start_with(w: &World, faults: &[Fault]) -> Self {
        Self::start_tuned(w, faults, |_| {}).await
    }

    /// The same, with the tenant's options changed by `tune` first.
    pub async fn start_tuned(
        w: &World,
        faults: &[Fault],
        tune: impl FnOnce(&mut glassdrill::tenant::TenantOptions),
    ) -> Self {
        use glassdrill::authenticator::{Credential, VirtualAuthenticator};
        use glassdrill::tenant::{
            RP_ID, RehearsalTenant, TenantOptions, rehearsal_account, rehearsal_user_handle,
        };
        use secrecy::{ExposeSecret, SecretString};
        let drill = glassdrill::config::DrillConfig::rehearsal().expect("rehearsal drill");
        let cred = Credential::generate(RP_ID, rehearsal_user_handle()).expect("credential");
        let account = rehearsal_account(&drill.account, &cred).expect("account");
        let receiver = glassdrill::alerts::WebhookReceiver::start(
            "127.0.0.1:0".parse().expect("addr"),
            SecretString::from("tok"),
            65536,
        )
        .await
        .expect("receiver");
        let mut opts = TenantOptions {
            account,
            log_delay: Duration::from_secs(2),
            webhook_url: Some(receiver.url_with_token().expose_secret().to_owned()),
            ..tenant_options(&cred, faults, MANUAL_SECRET)
        };
        tune(&mut opts);
        let tenant = RehearsalTenant::start(opts).await.expect("tenant");
        let auth = VirtualAuthenticator::new(
            cred.id.clone(),
            cred.pkcs8,
            tenant.urls().rp_id.clone(),
            cred.user_handle.clone(),
        )
        .expect("authenticator");
        let key =
            glassdrill::evidence::SigningKey::generate(&w.path().join("key"), "test@glassdrill")
                .expect("key");
        Self {
            drill,
            receiver,
            tenant,
            auth,
            key,
            host: w.host(),
            evidence: w.path().join("evidence"),
        }
    }

    /// The webhook checks of the drill's expected alerts.
    pub fn checks(&self) -> Vec<Box<dyn glassdrill::alerts::AlertCheck>> {
        self.drill
            .alerts
            .iter()
            .map(|a| {
                Box::new(self.receiver.attach(
                    &self.drill.account,
                    self.drill.object_id.as_deref(),
                    &a.rule,
                )) as Box<dyn glassdrill::alerts::AlertCheck>
            })
            .collect()
    }

    /// A plan with the app secret `secret` and these alert checks.
    pub fn plan(
        &self,
        secret: &str,
        alert_checks: Vec<Box<dyn glassdrill::alerts::AlertCheck>>,
    ) -> glassdrill::drill::RunPlan<'_> {
        use glassdrill::cloud::{AppCredentials, GraphClient, TokenCache};
        let urls = self.tenant.urls();
        let tokens = TokenCache::new(AppCredentials {
            authority: urls.authority.clone(),
            tenant_id: glassdrill::tenant::TENANT_ID.into(),
            client_id: "glassdrill-rehearsal".into(),
            client_secret: secrecy::SecretString::from(secret),
            certificate: None,
        })
        .expect("token cache");
        glassdrill::drill::RunPlan {
            drill: &self.drill,
            host_digest: "0".into(),
            tenant: glassdrill::drill::TenantEndpoints {
                authority: urls.authority.clone(),
                tenant_id: glassdrill::tenant::TENANT_ID.into(),
                graph: urls.graph.clone(),
                management: urls.management.clone(),
                log_analytics: urls.log_analytics.clone(),
            },
            graph: GraphClient::new(&urls.graph, std::sync::Arc::new(tokens)),
            authenticator: &self.auth,
            alert_checks,
            browser: glassdrill::browser::BrowserOptions {
                chromium: self.host.browser.chromium.clone(),
                chromedriver: self.host.browser.chromedriver.clone(),
                temp_dir: self.host.browser.temp_dir.clone(),
                public_address_space: Vec::new(),
            },
            // Long enough for a page on a loaded CI machine, short enough
            // that a drift (found when the wait runs out) is quick.
            step_timeout: Duration::from_secs(15),
            operator: None,
            witness: None,
            custody: glassdrill::drill::Custody::default(),
            findings: Vec::new(),
            posture: None,
        }
    }

    /// Where the run writes.
    pub fn sinks(&self) -> glassdrill::drill::Sinks<'_> {
        glassdrill::drill::Sinks {
            evidence_dir: self.evidence.clone(),
            signing_key: &self.key,
            signer: "test@glassdrill",
            notifier: &glassdrill::notify::Console,
            controls: &[],
        }
    }

    pub async fn shutdown(self) {
        self.tenant.shutdown().await;
        self.receiver.shutdown().await;
    }
}

/// Runs `f` over `items`, `n` at a time (each item drives its own browser;
/// the machine has two cores).
pub fn in_parallel<T: Send, R: Send>(items: Vec<T>, n: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut results = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch: Vec<T> = items.by_ref().take(n).collect();
        let f = &f;
        results.extend(std::thread::scope(|s| {
            let handles: Vec<_> = batch.into_iter().map(|i| s.spawn(move || f(i))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect::<Vec<_>>()
        }));
    }
    results
}
