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
        let mut c = assert_cmd::Command::cargo_bin("glassdrill").expect("binary");
        c.current_dir(self.path())
            .env("XDG_STATE_HOME", self.state())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("HOME", self.path().join("home"))
            .env("TMPDIR", self.browser_tmp())
            .env_remove("GLASSDRILL_LOG");
        c
    }

    /// Runs `glassdrill ARGS` in this world to the end.
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Run {
        let out = self.cmd().args(args).output().expect("run glassdrill");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `glassdrill evidence verify BUNDLE`.
    pub fn verify(&self, bundle: &Path) -> Run {
        self.run([
            std::ffi::OsStr::new("evidence"),
            "verify".as_ref(),
            bundle.as_os_str(),
        ])
    }

    /// Starts `glassdrill ARGS` in this world in the background, stdout and
    /// stderr piped, for tests that signal it mid-run.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args).spawn().expect("spawn glassdrill")
    }

    /// `glassdrill ARGS` in this world, stdout and stderr piped, not
    /// started yet.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("glassdrill"));
        c.current_dir(self.path())
            .env("XDG_STATE_HOME", self.state())
            .env("HOME", self.path().join("home"))
            .env("TMPDIR", self.browser_tmp())
            .env_remove("GLASSDRILL_TEST_PAUSE")
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

/// Runs the built-in rehearsal drill with `faults`.
pub async fn rehearse(world: &World, faults: &[Fault], deadline: Duration) -> DrillOutcome {
    let drill = glassdrill::config::DrillConfig::rehearsal().expect("rehearsal drill");
    let opts = RunOptions {
        faults: faults.to_vec(),
        alert_delay: Duration::from_millis(200),
        alert_deadline: Some(deadline),
        step_timeout: Some(Duration::from_secs(8)),
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
        use glassdrill::authenticator::{Credential, VirtualAuthenticator};
        use glassdrill::tenant::{DOMAIN, RehearsalTenant, TenantOptions, rehearsal_account};
        use secrecy::{ExposeSecret, SecretString};
        let drill = glassdrill::config::DrillConfig::rehearsal().expect("rehearsal drill");
        let cred = Credential::generate(&format!("ceremony.{DOMAIN}")).expect("credential");
        let account = rehearsal_account(&drill.account, &cred).expect("account");
        let receiver = glassdrill::alerts::WebhookReceiver::start(
            "127.0.0.1:0".parse().expect("addr"),
            SecretString::from("tok"),
            65536,
        )
        .await
        .expect("receiver");
        let tenant = RehearsalTenant::start(TenantOptions {
            account,
            client_id: "glassdrill-rehearsal".into(),
            client_secret: SecretString::from(MANUAL_SECRET),
            faults: faults.to_vec(),
            alert_delay: Duration::ZERO,
            alert_late_delay: Duration::ZERO,
            log_delay: Duration::ZERO,
            webhook_url: Some(receiver.url_with_token().expose_secret().to_owned()),
            listen: "127.0.0.1:0".parse().expect("addr"),
        })
        .await
        .expect("tenant");
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
        })
        .expect("token cache");
        glassdrill::drill::RunPlan {
            drill: &self.drill,
            host_digest: "0".into(),
            tenant: glassdrill::drill::TenantEndpoints {
                authority: urls.authority.clone(),
                tenant_id: glassdrill::tenant::TENANT_ID.into(),
                graph: urls.graph.clone(),
            },
            graph: GraphClient::new(&urls.graph, std::sync::Arc::new(tokens)),
            authenticator: &self.auth,
            alert_checks,
            browser: glassdrill::browser::BrowserOptions {
                chromium: self.host.browser.chromium.clone(),
                chromedriver: self.host.browser.chromedriver.clone(),
                temp_dir: self.host.browser.temp_dir.clone(),
            },
            step_timeout: Duration::from_secs(8),
            operator: None,
            witness: None,
        }
    }

    /// Where the run writes.
    pub fn sinks(&self) -> glassdrill::drill::Sinks<'_> {
        glassdrill::drill::Sinks {
            evidence_dir: self.evidence.clone(),
            signing_key: &self.key,
            signer: "test@glassdrill",
            notifier: &glassdrill::notify::Console,
        }
    }

    pub async fn shutdown(self) {
        self.tenant.shutdown().await;
        self.receiver.shutdown().await;
    }
}
