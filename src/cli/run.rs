//! `rehearse` and `run`: a drill with live progress, the verdict and the
//! verify commands on stdout.

use super::*;
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
    if e.is_user_error() {
        EXIT_USAGE
    } else {
        Verdict::Error.exit_code()
    }
}

fn print_outcome(drill: &DrillConfig, host: &HostConfig, o: &DrillOutcome) {
    out!("{}  drill {}  run {}", o.verdict, drill.id, o.run_id);
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
    let alerts = o.record.iter().flat_map(|r| &r.alerts);
    for l in alerts.filter_map(|a| a.latency.as_ref()) {
        out!(
            "  alert {}: fired {} ms and delivered {} ms after the sign-in",
            l.name,
            l.signin_to_fired_ms,
            l.signin_to_received_ms
        );
    }
    match &o.bundle {
        Ok(b) => {
            let d = b.dir.display();
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
}

/// How `run` takes its locks.
pub(crate) struct Locking {
    /// `--key`.
    pub key: Option<String>,
    /// `--wait`.
    pub wait: bool,
}

/// `glassdrill run`: the drill under the state store's locks (no two
/// drills on one group, account or key at once, across processes), and
/// its result recorded so the daemon's schedule counts it.
pub(crate) async fn run_command(
    host: &HostConfig,
    drill: &DrillConfig,
    mut opts: RunOptions,
    mode: ProgressMode,
    locking: Locking,
    cancel: &CancellationToken,
) -> u8 {
    let store = match crate::state::StateStore::open_quick(&host.daemon.state_db).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let key = match locking.key {
        Some(k) if !drill.schedule.keys.contains(&k) => {
            errln!(
                "error: --key {k} is not one of drill {}'s schedule.keys ({})",
                drill.id,
                drill.schedule.keys.join(", ")
            );
            return EXIT_USAGE;
        }
        Some(k) => Some(k),
        None => crate::schedule::next_key(
            &drill.schedule.keys,
            &store.key_proofs(&drill.id).await.unwrap_or_default(),
        ),
    };
    opts.custody.key_id.clone_from(&key);
    if let Some(k) = &key {
        opts.last_sign_count = store.key_counter(&drill.id, k).await.ok().flatten();
    }
    let names = crate::state::lock_names(&drill.group, &drill.account, key.as_deref());
    let holder = format!(
        "drill {} (glassdrill run, pid {})",
        drill.id,
        std::process::id()
    );
    let locks = loop {
        match store
            .try_lock(&names, &holder, crate::support::time::now())
            .await
        {
            Ok(Ok(l)) => break l,
            Ok(Err(h)) if locking.wait => {
                errln!(
                    "waiting: {} holds {} since {}",
                    h.holder,
                    h.name,
                    crate::support::time::rfc3339_ms(h.since)
                );
                tokio::select! {
                    () = cancel.cancelled() => return Verdict::Interrupted.exit_code(),
                    () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                }
            }
            Ok(Err(h)) => {
                errln!(
                    "error: drill {} not started: {} holds {} (since {}); drills of one group, account or key never run at once. Wait for it, or pass --wait",
                    drill.id,
                    h.holder,
                    h.name,
                    crate::support::time::rfc3339_ms(h.since)
                );
                return Verdict::Error.exit_code();
            }
            Err(e) => {
                errln!("error: {e}");
                return Verdict::Error.exit_code();
            }
        }
    };
    let progress = progress_for(mode);
    // The run's start and stages go to the state store as they happen: if
    // this process dies, the daemon knows how far it got.
    let (recording, writer) = crate::daemon::RecordingProgress::start(
        progress.as_ref(),
        store.clone(),
        &drill.id,
        "run",
        key.clone(),
    );
    let result = runner::run_configured(host, drill, &opts, &recording, cancel).await;
    drop(recording);
    let _ = writer.await;
    let code = match result {
        Ok(outcome) => {
            print_outcome(drill, host, &outcome);
            match crate::daemon::record_outcome(
                &store,
                drill,
                key.as_deref(),
                "run",
                &outcome,
                crate::support::time::now(),
                host.daemon.retry_after,
            )
            .await
            {
                Ok(crate::daemon::After::Held(why)) => errln!("the daemon holds this drill: {why}"),
                Ok(_) => {}
                Err(e) => errln!(
                    "warning: the result is not in the state database ({e}); the evidence is kept; `glassdrill state rebuild` indexes it"
                ),
            }
            outcome.verdict.exit_code()
        }
        Err(e) => failed_to_start(&e),
    };
    if let Err(e) = store.release(locks).await {
        errln!(
            "warning: could not release the drill's locks ({e}); they are taken over once this process has exited"
        );
    }
    store.close().await;
    code
}
