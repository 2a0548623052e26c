//! Owns chromedriver, Chromium, the temporary profile and the WebDriver
//! session.
//!
//! [`Browser::launch`] starts chromedriver on a free loopback port in its own
//! process group, polls `/status` until it is ready (never sleeps blindly),
//! and opens a fantoccini session on a headless Chromium. Everything the
//! browser writes lives in one private directory, `glassdrill-<pid>-*`:
//! the profile (`profile/`) and, through `TMPDIR`/`HOME`/XDG variables, its
//! temp files, caches and crash database. Chromium is chromedriver's child
//! and stays in its process group, except its crash handler, which starts a
//! session of its own but names the private directory; so [`Drop`] and
//! [`Browser::close`] find every process by group or by that directory,
//! kill them, reap them (glassdrill is a child subreaper), and remove the
//! directory, even when the drill is cancelled or panics. A drill leaves no
//! process or directory behind; [`reap_orphans`] cleans up after one that
//! was SIGKILLed. Knows nothing of drills.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

mod processes;

pub(crate) use processes::reap_orphans;
use processes::{Guard, browser_processes, reap};
use tokio_util::sync::CancellationToken;

use crate::support::retry::{Attempt, Backoff, RetryError, retry};

/// What can go wrong with the browser; none of these is a finding about the
/// account (they make a drill ERROR, not FAIL).
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// A binary is missing.
    #[error(
        "{what} not found at {path}: run `deploy/setup.sh` (installs chromium and chromium-driver) or set [browser] {field} in glassdrill.toml"
    )]
    Missing {
        /// chromium / chromedriver.
        what: &'static str,
        /// Config field.
        field: &'static str,
        /// Where we looked.
        path: String,
    },
    /// Process or directory set-up failed.
    #[error("cannot start {what}: {reason}")]
    Start {
        /// What failed.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// chromedriver did not become ready.
    #[error("chromedriver did not become ready within {0:?}")]
    NotReady(Duration),
    /// The WebDriver session could not be created.
    #[error("Chromium session could not be started through chromedriver: {0}")]
    Session(String),
    /// A WebDriver command failed.
    #[error("WebDriver command {command} failed: {reason}")]
    Command {
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
}

/// Browser settings.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// Chromium binary.
    pub chromium: PathBuf,
    /// chromedriver binary.
    pub chromedriver: PathBuf,
    /// Where the profile and the browser's temp files go (the system temp
    /// dir when `None`); removed after the drill either way.
    pub temp_dir: Option<PathBuf>,
    /// Loopback servers Chromium is to treat as public
    /// (`--ip-address-space-overrides`), so a page of the rehearsal tenant
    /// meets Local Network Access as a page of login.microsoft.com would
    /// (D4: a bridge that fetched loopback would fail here too).
    pub public_address_space: Vec<std::net::SocketAddr>,
}

/// Flags for an unattended, offline Chromium. Background networking, sync
/// and component updates are off because the drill host reaches only what
/// the drill needs; `--no-sandbox` because drill hosts often run as a
/// service user inside a container or systemd sandbox.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--password-store=basic",
    "--window-size=1280,900",
];

/// chromedriver's process; its process group is killed on drop.
struct Driver {
    child: tokio::process::Child,
    pgid: Option<Pid>,
    port: u16,
    /// The private directory; every process of this browser names it.
    dir: PathBuf,
    /// The dead man's switch: see [`Guard`].
    guard: Option<Guard>,
}

impl Driver {
    /// Kills chromedriver and every browser process; returns the pids to
    /// reap (all but chromedriver, which tokio reaps).
    fn kill_group(&mut self) -> Vec<Pid> {
        let mut killed = Vec::new();
        if let Some(pgid) = self.pgid.take() {
            // List them first (a killed process's /proc entry goes blank at
            // once), then kill the group and the stragglers.
            killed = browser_processes(&self.dir, Some(pgid));
            // The guard names the directory too; it is stopped (and waited
            // for) through its own handle, never killed and reaped here.
            let guard = self
                .guard
                .as_ref()
                .and_then(|g| g.child.id())
                .and_then(|id| i32::try_from(id).ok());
            killed.retain(|p| Some(p.as_raw()) != guard);
            let _ = killpg(pgid, Signal::SIGKILL);
            for p in &killed {
                let _ = nix::sys::signal::kill(*p, Signal::SIGKILL);
            }
            killed.retain(|p| *p != pgid);
        }
        let _ = self.child.start_kill();
        killed
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut pids = self.kill_group();
        reap(&mut pids);
        if let Some(g) = self.guard.as_mut() {
            g.stop();
        }
        // Processes glassdrill adopts a moment later (it is a subreaper) are
        // reaped by a short-lived thread: `Drop` cannot wait, and a
        // long-lived process must not collect zombies. The private
        // directory is removed right after this drop; a process still dying
        // then can add an entry to it (ENOTEMPTY), so the thread removes
        // what is left once they are gone.
        let dir = self.dir.clone();
        let _ = std::thread::Builder::new()
            .name("glassdrill-reaper".into())
            .spawn(move || {
                for _ in 0..200 {
                    reap(&mut pids);
                    if pids.is_empty() {
                        break;
                    }
                    // A detached thread of its own, not the async runtime.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(Duration::from_millis(10));
                }
                for _ in 0..40 {
                    // A detached thread of its own, not the async runtime.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(Duration::from_millis(25));
                    match std::fs::remove_dir_all(&dir) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
                        _ => break,
                    }
                }
            });
    }
}

/// A running headless Chromium driven over WebDriver.
pub struct Browser {
    client: Option<Client>,
    driver: Driver,
    // Fields drop in order: the client (which only stops fantoccini's task),
    // then the driver, whose Drop kills and reaps every browser process, and
    // only then the directory they were writing to.
    dir: tempfile::TempDir,
}

/// Name prefix of a browser's private directory; the owner's pid follows,
/// so a later run can tell the leftovers of a glassdrill that was killed
/// outright from those of one still running. Short on purpose: Chromium
/// puts a Unix socket below it (see [`MAX_DIR_LEN`]).
const DIR_PREFIX: &str = "glassdrill-";

/// Longest private directory path Chromium can work in: it creates
/// `<TMPDIR>/.org.chromium.Chromium.XXXXXX/SingletonSocket` (46 bytes more)
/// and a Unix socket path has at most 107 bytes.
const MAX_DIR_LEN: usize = 107 - 46;

fn free_port() -> Result<u16, BrowserError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| BrowserError::Start {
        what: "chromedriver",
        reason: format!("no free loopback port: {e}"),
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BrowserError::Start {
            what: "chromedriver",
            reason: e.to_string(),
        })
}

async fn wait_ready(
    port: u16,
    child: &mut tokio::process::Child,
    limit: Duration,
) -> Result<(), BrowserError> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| BrowserError::Start {
            what: "chromedriver",
            reason: e.to_string(),
        })?;
    let url = format!("http://127.0.0.1:{port}/status");
    // Poll fast at first: chromedriver is usually ready within 50 ms.
    let polling = Backoff {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(200),
        max_elapsed: limit,
        max_attempts: u32::MAX,
        jitter: false,
    };
    let ready = retry(&polling, &CancellationToken::new(), |_| {
        let exited = child.try_wait();
        let http = &http;
        let url = &url;
        async move {
            if let Ok(Some(status)) = exited {
                return Attempt::Fail(BrowserError::Start {
                    what: "chromedriver",
                    reason: format!("it exited at once ({status})"),
                });
            }
            match http.get(url).send().await {
                Ok(resp) => match resp.json::<Value>().await {
                    Ok(v) if v["value"]["ready"].as_bool() == Some(true) => Attempt::Done(()),
                    _ => Attempt::Retry {
                        error: BrowserError::NotReady(limit),
                        after: None,
                    },
                },
                Err(_) => Attempt::Retry {
                    error: BrowserError::NotReady(limit),
                    after: None,
                },
            }
        }
    })
    .await;
    match ready {
        Ok(()) => Ok(()),
        Err(RetryError::Failed(e) | RetryError::Exhausted { last: e, .. }) => Err(e),
        Err(RetryError::Cancelled) => Err(BrowserError::NotReady(limit)),
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn launch(opts: &BrowserOptions) -> Result<Self, BrowserError> {
        if !opts.chromium.exists() {
            return Err(BrowserError::Missing {
                what: "Chromium",
                field: "chromium",
                path: opts.chromium.display().to_string(),
            });
        }
        if !opts.chromedriver.exists() {
            return Err(BrowserError::Missing {
                what: "chromedriver",
                field: "chromedriver",
                path: opts.chromedriver.display().to_string(),
            });
        }
        let start_err = |what: &'static str| {
            move |e: std::io::Error| BrowserError::Start {
                what,
                reason: e.to_string(),
            }
        };
        let root = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        reap_orphans(&root);
        // Chromium's processes outlive chromedriver for a moment when it is
        // killed; as a subreaper, glassdrill inherits and reaps them.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&root)
            .map_err(start_err("browser directory"))?;
        if dir.path().as_os_str().len() > MAX_DIR_LEN {
            return Err(BrowserError::Start {
                what: "Chromium",
                reason: format!(
                    "its temp directory {} is too long for Chromium's socket path: set [browser] temp_dir in glassdrill.toml (or TMPDIR) to a path of at most {} bytes",
                    root.display(),
                    // Our directory's own name: prefix, pid, '-', 6 random.
                    MAX_DIR_LEN
                        .saturating_sub(dir.path().as_os_str().len() - root.as_os_str().len())
                ),
            });
        }

        // A port picked by binding :0 can be taken before chromedriver binds
        // it: start it again on another port, a few times.
        let starts = Backoff {
            initial: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(60),
            max_attempts: 3,
            jitter: true,
        };
        let started = retry(&starts, &CancellationToken::new(), |_| async {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => return Attempt::Fail(e),
            };
            let mut cmd = tokio::process::Command::new(&opts.chromedriver);
            cmd.arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                // Chromium writes its crash database and caches under HOME
                // and XDG dirs: keep them in the private dir, not the
                // service user's home.
                .env("TMPDIR", dir.path())
                .env("HOME", dir.path())
                .env("XDG_CONFIG_HOME", dir.path().join(".config"))
                .env("XDG_CACHE_HOME", dir.path().join(".cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => return Attempt::Fail(start_err("chromedriver")(e)),
            };
            let pgid = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw);
            let guard = match pgid.map(|g| Guard::spawn(g, dir.path())) {
                Some(Ok(g)) => Some(g),
                Some(Err(e)) => {
                    let _ = child.start_kill();
                    return Attempt::Fail(e);
                }
                None => None,
            };
            let ready = wait_ready(port, &mut child, Duration::from_secs(15)).await;
            let driver = Driver {
                child,
                pgid,
                port,
                dir: dir.path().to_path_buf(),
                guard,
            };
            match ready {
                Ok(()) => Attempt::Done(driver),
                // Dropping the driver kills and reaps what it started.
                Err(error) => Attempt::Retry { error, after: None },
            }
        })
        .await;
        match started {
            Ok(driver) => Self::open_session(driver, dir, opts).await,
            Err(RetryError::Failed(e) | RetryError::Exhausted { last: e, .. }) => Err(e),
            Err(RetryError::Cancelled) => Err(BrowserError::NotReady(Duration::from_secs(15))),
        }
    }

    async fn open_session(
        driver: Driver,
        dir: tempfile::TempDir,
        opts: &BrowserOptions,
    ) -> Result<Self, BrowserError> {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ));
        if !opts.public_address_space.is_empty() {
            let list: Vec<String> = opts
                .public_address_space
                .iter()
                .map(|a| format!("{a}=public"))
                .collect();
            args.push(format!("--ip-address-space-overrides={}", list.join(",")));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": opts.chromium, "args": args }),
        );
        caps.insert("pageLoadStrategy".into(), json!("normal"));
        let url = format!("http://127.0.0.1:{}", driver.port);
        let mut browser = Self {
            client: None,
            driver,
            dir,
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .map_err(|e| BrowserError::Session(e.to_string()))?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver client.
    pub fn client(&self) -> Result<&Client, BrowserError> {
        self.client.as_ref().ok_or_else(|| BrowserError::Command {
            command: "session".into(),
            reason: "the browser session is closed".into(),
        })
    }

    /// The browser's private directory, profile included (destroyed on
    /// close).
    pub(crate) fn profile_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Sends a chromedriver command under `/session/{id}/{path}`, such as the
    /// W3C WebAuthn extension's `webauthn/authenticator`.
    pub(crate) async fn session_command(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        let cmd = SessionCommand {
            method,
            path: path.to_owned(),
            body,
        };
        let label = format!("{} {}", cmd.method, cmd.path);
        self.client()?
            .issue_cmd(cmd)
            .await
            .map_err(|e| BrowserError::Command {
                command: label,
                reason: e.to_string(),
            })
    }

    /// A screenshot of the viewport as JPEG (Chrome DevTools
    /// `Page.captureScreenshot`, about half the time of WebDriver's PNG);
    /// falls back to WebDriver's PNG. Returns the bytes and the file
    /// extension.
    pub async fn screenshot(&self) -> Result<(Vec<u8>, &'static str), BrowserError> {
        use base64::Engine as _;
        let params = json!({"format": "jpeg", "quality": 85, "optimizeForSpeed": true});
        if let Ok(v) = self.cdp("Page.captureScreenshot", params).await
            && let Some(Ok(bytes)) = v["data"]
                .as_str()
                .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
        {
            return Ok((bytes, "jpg"));
        }
        #[allow(clippy::disallowed_methods)] // the one sanctioned fallback
        let png = self
            .client()?
            .screenshot()
            .await
            .map_err(|e| BrowserError::Command {
                command: "screenshot".into(),
                reason: e.to_string(),
            })?;
        Ok((png, "png"))
    }

    /// Types `text` into the element matching `selector`, replacing its
    /// value: focus and select it, then Chrome DevTools `Input.insertText`,
    /// which fires the same input events as typing, in one round trip.
    pub(crate) async fn type_into(&self, selector: &str, text: &str) -> Result<(), BrowserError> {
        let focused = self
            .client()?
            .execute(
                "const e = document.querySelector(arguments[0]); if (!e) return false; e.focus(); if (e.select) e.select(); return true;",
                vec![json!(selector)],
            )
            .await
            .map_err(|e| BrowserError::Command { command: "focus".into(), reason: e.to_string() })?;
        if focused != json!(true) {
            return Err(BrowserError::Command {
                command: "focus".into(),
                reason: format!("{selector} is gone"),
            });
        }
        self.cdp("Input.insertText", json!({ "text": text }))
            .await
            .map(|_| ())
    }

    /// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
    pub(crate) async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, BrowserError> {
        self.session_command(
            http::Method::POST,
            "goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
        .await
    }

    /// Ends the browser: kills every browser process and reaps them,
    /// waiting for them (bounded), unlike the best-effort `Drop`; the private
    /// directory is removed when `self` drops right after. No WebDriver `DELETE
    /// /session` first: the profile is thrown away, so a graceful shutdown
    /// saves nothing and costs ~150 ms.
    pub async fn close(mut self) -> Result<(), BrowserError> {
        drop(self.client.take());
        let mut pids = self.driver.kill_group();
        // SIGKILLed processes exit at once; give the kernel a moment to
        // reparent them to us, bounded.
        for _ in 0..200 {
            reap(&mut pids);
            if pids.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let waited =
            self.driver
                .child
                .wait()
                .await
                .map(|_| ())
                .map_err(|e| BrowserError::Command {
                    command: "wait for chromedriver".into(),
                    reason: e.to_string(),
                });
        if let Some(mut g) = self.driver.guard.take() {
            g.stop();
            let _ = g.child.wait().await;
        }
        // A process that was dying as the directory was removed can still
        // have added an entry to it (ENOTEMPTY): try again, bounded, so no
        // profile is left behind on a loaded machine.
        let dir = self.dir.path().to_path_buf();
        for _ in 0..20 {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "browser directory not removed yet; trying again");
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        waited
    }
}

/// A chromedriver command relative to the current session.
#[derive(Debug)]
struct SessionCommand {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for SessionCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let sid = session_id.unwrap_or_default();
        base_url.join(&format!("session/{sid}/{}", self.path))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}
