//! `rehearse` and `run`: a drill with live progress, the verdict and the
//! verify commands on stdout.

use super::*;
use crate::daemon::control;
use crate::daemon::ondemand::{self, Refusal, Summary};
use crate::drill::DrillOutcome;
use crate::evidence;
use crate::runner;

pub(crate) async fn drill_command(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
    mode: ProgressMode,
    cancel: &CancellationToken,
) -> u8 {
    let progress = progress_for(mode);
    match runner::run_configured(host, drill, opts, progress.as_ref(), cancel).await {
        Ok(outcome) => {
            print_outcome(drill, host, &outcome);
            outcome.verdict.exit_code()
        }
        Err(e) => failed_to_start(&e),
    }
}

/// A drill that could not start: a configuration mistake (64) or an
/// outage (2).
fn failed_to_start(e: &runner::RunError) -> u8 {
    errln!("error: {e}");
    e.exit_code()
}

fn print_outcome(drill: &DrillConfig, host: &HostConfig, o: &DrillOutcome) {
    let summary = Summary::of(o);
    print_summary(&drill.id, host, &summary);
}

fn print_summary(drill_id: &str, host: &HostConfig, o: &Summary) {
    out!("{}  drill {}  run {}", o.verdict, drill_id, o.run_id);
    for r in &o.reasons {
        out!("  reason: {r}");
    }
    for s in &o.stages {
        out!(
            "  {:<9} {:<11} {:>8.2}s",
            s.stage.name(),
            s.status.name(),
            s.duration_ms as f64 / 1000.0
        );
    }
    for (name, fired, received) in &o.latencies {
        out!("  alert {name}: fired {fired} ms and delivered {received} ms after the sign-in");
    }
    for w in &o.weak_matches {
        out!("  note: {w}");
    }
    match &o.bundle {
        Ok(d) => {
            out!("evidence: {d}");
            out!("verify it:");
            out!(
                "  ssh-keygen -Y verify -f {d}/allowed_signers -I {} -n {} -s {d}/SHA256SUMS.sig < {d}/SHA256SUMS",
                host.evidence.signer,
                evidence::NAMESPACE
            );
            out!("  (cd {d} && sha256sum -c --strict SHA256SUMS)");
        }
        Err(e) => out!("evidence: NOT WRITTEN: {e}"),
    }
    match &o.log {
        Some(Ok((index, checkpoint))) => {
            out!(
                "evidence log: entry {index}; checkpoint (keep it; `glassdrill evidence verify --since-checkpoint FILE` proves the log only grew since):"
            );
            out!("{}", checkpoint.trim_end());
        }
        Some(Err(e)) => {
            errln!("warning: not yet in the evidence log ({e}); appended at the next start")
        }
        None => {}
    }
    if let Some(why) = &o.held {
        errln!("the daemon holds this drill: {why}");
    }
    if let Some(e) = &o.unrecorded {
        errln!(
            "warning: the result is not in the state database ({e}); the evidence is kept; `glassdrill state rebuild` indexes it"
        );
    }
}

/// How `run` takes its locks.
pub(crate) struct Locking {
    /// `--key`.
    pub key: Option<String>,
    /// `--wait`.
    pub wait: bool,
    /// `--local`: in this process even while the daemon runs.
    pub local: bool,
}

/// `glassdrill run`: the drill under the state store's locks (no two
/// drills on one group, account or key at once, across processes), and
/// its result recorded so the daemon's schedule counts it. While the
/// daemon runs, the daemon runs it (its webhook receiver, its secrets),
/// and this process shows the progress; Ctrl-C stops it there too.
pub(crate) async fn run_command(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: RunOptions,
    mode: ProgressMode,
    locking: Locking,
    cancel: &CancellationToken,
) -> u8 {
    // The daemon runs the drills of its drills directory; a drill file
    // elsewhere runs here.
    let daemons = crate::config::find_drill(&host.drills_dir, &drill.id)
        .is_ok_and(|d| d.source == drill.source);
    if !locking.local && daemons {
        match control::connect(&host.daemon.state_db).await {
            Ok(Some(stream)) => {
                return through_daemon(host, drill, opts, mode, locking, stream, cancel).await;
            }
            Ok(None) => {}
            Err(e) => {
                errln!("error: {e}");
                return Verdict::Error.exit_code();
            }
        }
    }
    let store = match crate::state::StateStore::open_host(host, true).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let progress = progress_for(mode);
    let result = ondemand::run(
        ondemand::Host::Own(host),
        &store,
        drill,
        ondemand::Request {
            opts,
            key: locking.key,
            wait: locking.wait,
            holder: format!(
                "drill {} (glassdrill run, pid {})",
                drill.id,
                std::process::id()
            ),
        },
        progress.as_ref(),
        &|t: &str| errln!("{t}"),
        cancel,
    )
    .await;
    store.close().await;
    finish(&drill.id, host, result)
}

fn finish(drill_id: &str, host: &HostConfig, result: Result<Summary, Refusal>) -> u8 {
    match result {
        Ok(s) => {
            print_summary(drill_id, host, &s);
            s.exit_code()
        }
        Err(r) => {
            errln!("error: {}", r.message);
            r.code
        }
    }
}

async fn through_daemon(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: RunOptions,
    mode: ProgressMode,
    locking: Locking,
    stream: tokio::net::UnixStream,
    cancel: &CancellationToken,
) -> u8 {
    let req = control::RunRequest {
        drill: drill.id.clone(),
        key: locking.key,
        wait: locking.wait,
        operator: opts.operator,
        witness: opts.witness,
        seal_before: opts.custody.seal_before,
        seal_after: opts.custody.seal_after,
        faults: opts.faults.iter().map(|f| f.name().to_owned()).collect(),
        alert_delay_ms: u64::try_from(opts.alert_delay.as_millis()).unwrap_or(u64::MAX),
        step_timeout_ms: opts
            .step_timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let progress = progress_for(mode);
    let asked = control::request(stream, &req, |ev| match ev {
        control::Event::Accepted { pid } => {
            progress.note(&format!(
                "the glassdrill daemon (pid {pid}) runs this drill"
            ));
        }
        control::Event::RunStarted { run_id } => progress.run_started(run_id),
        control::Event::StageStarted { stage } => progress.stage_started(*stage),
        control::Event::StageFinished { record } => progress.stage_finished(record),
        control::Event::Note { text } => progress.note(text),
        control::Event::Waiting { text } => errln!("{text}"),
        control::Event::Done(_) | control::Event::Refused(_) => {}
    });
    // Ctrl-C drops the request, closing the socket: the daemon stops the
    // run, tears it down and records it INTERRUPTED.
    let ended = tokio::select! {
        r = asked => r,
        () = cancel.cancelled() => {
            errln!("stopped: the daemon tears the run down and records it INTERRUPTED; `glassdrill status` shows it");
            return Verdict::Interrupted.exit_code();
        }
    };
    match ended {
        Ok(control::Event::Done(s)) => finish(&drill.id, host, Ok(*s)),
        Ok(control::Event::Refused(r)) => finish(&drill.id, host, Err(r)),
        Ok(_) => Verdict::Error.exit_code(),
        Err(e) => {
            errln!("error: {e}");
            Verdict::Error.exit_code()
        }
    }
}
