//! The daemon's control socket: `glassdrill run` while the daemon is up
//! asks the daemon to run the drill, so the run uses the daemon's webhook
//! receiver (the port the action group posts to) and its secrets (systemd
//! credentials exist only inside its unit).
//!
//! A Unix socket beside the state database, mode 0600, in a 0700
//! directory; a peer of another user (bar root) is refused (`SO_PEERCRED`).
//! One JSON line asks ([`RunRequest`]); JSON lines answer ([`Event`]): the
//! run's progress as it happens, then [`Event::Done`] or
//! [`Event::Refused`]. A client that goes away stops its run (torn down,
//! INTERRUPTED evidence), as Ctrl-C does to a run in its own process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Daemon;
use super::ondemand::{self, Refusal, Summary};
use crate::drill::Progress;
use crate::record::{Stage, StageRecord};
use crate::runner::RunOptions;

/// The largest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// Where the daemon of `state_db` listens.
pub fn socket_path(state_db: &Path) -> PathBuf {
    crate::support::fs::parent_dir(state_db).join("daemon.sock")
}

/// `glassdrill run`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// Drill id, or a drill file path (read by the daemon).
    pub drill: String,
    /// `--key`.
    pub key: Option<String>,
    /// `--wait`.
    pub wait: bool,
    /// `--operator`.
    pub operator: Option<String>,
    /// `--witness`.
    pub witness: Option<String>,
    /// `--seal-before`.
    pub seal_before: Option<String>,
    /// `--seal-after`.
    pub seal_after: Option<String>,
    /// Rehearsal-tenant faults, by name.
    pub faults: Vec<String>,
    /// Rehearsal alert delay (ms).
    pub alert_delay_ms: u64,
    /// `--step-timeout` (ms).
    pub step_timeout_ms: Option<u64>,
}

/// What the daemon says, one JSON line each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon took the request.
    Accepted {
        /// The daemon's pid.
        pid: u32,
    },
    /// A run id was given.
    RunStarted {
        /// Run id.
        run_id: String,
    },
    /// A stage started.
    StageStarted {
        /// Which.
        stage: Stage,
    },
    /// A stage ended.
    StageFinished {
        /// Its record.
        record: StageRecord,
    },
    /// A progress note.
    Note {
        /// Text.
        text: String,
    },
    /// Waiting for a lock (`--wait`).
    Waiting {
        /// Who holds what.
        text: String,
    },
    /// Not started.
    Refused(Refusal),
    /// Finished.
    Done(Box<Summary>),
}

/// Forwards a run's progress to the client.
struct Forward(tokio::sync::mpsc::UnboundedSender<Event>);

impl Progress for Forward {
    fn run_started(&self, run_id: &str) {
        let _ = self.0.send(Event::RunStarted {
            run_id: run_id.to_owned(),
        });
    }
    fn stage_started(&self, stage: Stage) {
        let _ = self.0.send(Event::StageStarted { stage });
    }
    fn stage_finished(&self, record: &StageRecord) {
        let _ = self.0.send(Event::StageFinished {
            record: record.clone(),
        });
    }
    fn note(&self, text: &str) {
        let _ = self.0.send(Event::Note {
            text: text.to_owned(),
        });
    }
}

/// The listening socket and its connections.
pub struct ControlServer {
    path: PathBuf,
    tracker: TaskTracker,
    stop: CancellationToken,
    accept: tokio::task::JoinHandle<()>,
}

impl ControlServer {
    /// Stops accepting, stops the runs in progress (each tears down and
    /// records INTERRUPTED) and waits for them; removes the socket.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.accept.await;
        self.tracker.close();
        self.tracker.wait().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket (replacing a stale one: a socket file nobody
/// answers on) and serves it until `cancel`.
pub async fn serve(
    daemon: Arc<Daemon>,
    cancel: CancellationToken,
) -> std::io::Result<ControlServer> {
    let path = socket_path(&daemon.host.daemon.state_db);
    if UnixStream::connect(&path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "{} answers: another glassdrill daemon runs on this state",
                path.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let tracker = TaskTracker::new();
    let stop = cancel.child_token();
    let (t, s) = (tracker.clone(), stop.clone());
    let accept = tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                () = s.cancelled() => return,
                c = listener.accept() => c,
            };
            match conn {
                Ok((stream, _)) => {
                    let (d, s2) = (daemon.clone(), s.clone());
                    t.spawn(async move { handle(d, stream, s2).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    tracing::info!(socket = %path.display(), "control socket listening");
    Ok(ControlServer {
        path,
        tracker,
        stop,
        accept,
    })
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, ev: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // A client that stops reading never holds the daemon up.
    tokio::time::timeout(Duration::from_secs(10), w.write_all(&line))
        .await
        .map_err(|_| std::io::Error::other("the client stopped reading"))?
}

async fn handle(daemon: Arc<Daemon>, stream: UnixStream, stop: CancellationToken) {
    // Only the daemon's own user (or root) may drive it.
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(c) if c.uid() == me || c.uid() == 0 => {}
        Ok(c) => {
            tracing::warn!(
                uid = c.uid(),
                "control socket: refused a peer of another user"
            );
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "control socket: peer unknown; refused");
            return;
        }
    }
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut limited = tokio::io::AsyncReadExt::take(&mut reader, MAX_REQUEST as u64 + 1);
        tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line).await
    })
    .await;
    let req: RunRequest = match read {
        Ok(Ok(n)) if n > 0 && n <= MAX_REQUEST => match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = send(&mut w, &refused(format!("not a run request: {e}"), 64)).await;
                return;
            }
        },
        _ => {
            let _ = send(
                &mut w,
                &refused("no request (or one over 64 KiB) within 10 s".into(), 64),
            )
            .await;
            return;
        }
    };
    let _ = send(
        &mut w,
        &Event::Accepted {
            pid: std::process::id(),
        },
    )
    .await;
    // The client going away stops its run.
    let cancel = stop.child_token();
    let c2 = cancel.clone();
    let watch = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match tokio::io::AsyncReadExt::read(&mut reader, &mut buf).await {
                Ok(0) | Err(_) => {
                    c2.cancel();
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let writer = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if send(&mut w, &ev).await.is_err() {
                // Keep draining: the run goes on to its teardown.
                while rx.recv().await.is_some() {}
                return;
            }
        }
    });
    let result = run_request(&daemon, req, &tx, &cancel).await;
    let _ = tx.send(match result {
        Ok(s) => Event::Done(Box::new(s)),
        Err(r) => Event::Refused(r),
    });
    drop(tx);
    let _ = writer.await;
    watch.abort();
}

fn refused(message: String, code: u8) -> Event {
    Event::Refused(Refusal { message, code })
}

async fn run_request(
    daemon: &Arc<Daemon>,
    req: RunRequest,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
    cancel: &CancellationToken,
) -> Result<Summary, Refusal> {
    let host = &daemon.host;
    // Only the daemon's own drills, by id: a peer can never make the
    // daemon read a drill file of its choosing (whose touch_command would
    // run inside the unit, next to its credentials).
    if let Err(why) = crate::support::ids::check(&req.drill) {
        return Err(Refusal {
            message: format!(
                "drill `{}` {why}: the daemon runs the drills of its drills directory, by id (use `glassdrill run --local` for a drill file elsewhere)",
                req.drill
            ),
            code: ondemand::EXIT_USAGE,
        });
    }
    let drill = crate::config::find_drill(&host.drills_dir, &req.drill).map_err(|p| Refusal {
        message: p.to_string(),
        code: ondemand::EXIT_USAGE,
    })?;
    let mut faults = Vec::new();
    for f in &req.faults {
        match crate::tenant::Fault::ALL.iter().find(|x| x.name() == f) {
            Some(f) => faults.push(*f),
            None => {
                return Err(Refusal {
                    message: format!("fault `{f}` is not known"),
                    code: ondemand::EXIT_USAGE,
                });
            }
        }
    }
    let opts = RunOptions {
        operator: req.operator,
        witness: req.witness,
        custody: crate::drill::Custody {
            key_id: None,
            seal_before: req.seal_before,
            seal_after: req.seal_after,
        },
        faults,
        alert_delay: Duration::from_millis(req.alert_delay_ms),
        step_timeout: req.step_timeout_ms.map(Duration::from_millis),
        ..RunOptions::default()
    };
    tracing::info!(drill = %drill.id, "run requested through the control socket");
    let forward = Forward(tx.clone());
    let tx2 = tx.clone();
    let waiting = move |t: &str| {
        let _ = tx2.send(Event::Waiting { text: t.to_owned() });
    };
    ondemand::run(
        ondemand::Host::Daemon(host, &daemon.services),
        &daemon.store,
        &drill,
        ondemand::Request {
            opts,
            key: req.key,
            wait: req.wait,
            holder: format!(
                "drill {} (glassdrill run through the daemon, pid {})",
                drill.id,
                std::process::id()
            ),
        },
        &forward,
        &waiting,
        cancel,
    )
    .await
}

/// The client side: connects to the daemon of `state_db`, if one listens.
/// `Ok(None)`: no daemon (run in this process). `Err`: a daemon is there
/// but cannot be asked (another user's).
pub async fn connect(state_db: &Path) -> Result<Option<UnixStream>, String> {
    let path = socket_path(state_db);
    match UnixStream::connect(&path).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
            "the glassdrill daemon is running (socket {}) but this user may not ask it: run as the daemon's user (`sudo -u glassdrill glassdrill run …`)",
            path.display()
        )),
        Err(_) => Ok(None),
    }
}

/// Sends `req` and hands every event to `on_event` until the run ends;
/// returns the last event (`Done` or `Refused`). Dropping the future (a
/// Ctrl-C) closes the socket, which stops the run in the daemon.
pub async fn request(
    stream: UnixStream,
    req: &RunRequest,
    mut on_event: impl FnMut(&Event),
) -> Result<Event, String> {
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| format!("the daemon did not take the request: {e}"))?;
    let mut lines = BufReader::new(r).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(l)) => {
                let ev: Event = serde_json::from_str(&l)
                    .map_err(|e| format!("the daemon sent something unreadable ({e})"))?;
                match ev {
                    Event::Done(_) | Event::Refused(_) => return Ok(ev),
                    other => on_event(&other),
                }
            }
            Ok(None) => {
                return Err("the daemon closed the connection before the run ended (stopped or restarted?); `glassdrill status` shows the run".into());
            }
            Err(e) => return Err(format!("reading from the daemon: {e}")),
        }
    }
}

impl Summary {
    /// The exit code `glassdrill run` ends with.
    pub fn exit_code(&self) -> u8 {
        self.verdict.exit_code()
    }
}
