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
        Err(e) => {
            errln!("error: {e}");
            if e.is_user_error() {
                EXIT_USAGE
            } else {
                Verdict::Error.exit_code()
            }
        }
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
