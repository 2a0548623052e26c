//! `check-config` and `keygen`.

use super::*;
use crate::config::load_drills;
use crate::evidence::{self, SigningKey};

pub(crate) fn check_config(host: &HostConfig) -> u8 {
    match &host.source {
        Some(p) => out!("host config: {}", p.display()),
        None => out!("host config: none found; using built-in defaults"),
    }
    out!("data directory: {}", host.data_dir.display());
    out!("drills directory: {}", host.drills_dir.display());
    print_problems(&Problems(host.warnings.clone()));
    let (drills, problems) = load_drills(&host.drills_dir);
    print_problems(&problems);
    for d in &drills {
        out!(
            "drill {}: {} ({} alert(s)) from {}",
            d.id,
            d.account,
            d.alerts.len(),
            d.source.display()
        );
    }
    for (dir, drill, run) in crate::evidence::recover::leftovers(&host.evidence_dir()) {
        errln!(
            "warning: run {run} of drill {drill} is running now or did not finish writing its evidence ({}); if it died, the next drill on this host turns it into a signed INTERRUPTED bundle",
            dir.display()
        );
    }
    if problems.has_errors() {
        errln!("configuration has errors");
        EXIT_USAGE
    } else {
        out!("configuration OK");
        0
    }
}

pub(crate) fn keygen(host: &HostConfig, a: KeygenArgs) -> u8 {
    let path = a.out.unwrap_or_else(|| host.evidence.signing_key.clone());
    let comment = a.comment.unwrap_or_else(|| host.evidence.signer.clone());
    match SigningKey::generate(&path, &comment) {
        Ok(k) => {
            out!(
                "created {} (mode 0600) and {}.pub",
                path.display(),
                path.display()
            );
            out!("fingerprint: {}", k.fingerprint());
            out!("allowed_signers line for auditors:");
            out!(
                "{comment} namespaces=\"{}\" {}",
                evidence::NAMESPACE,
                k.public_key_openssh()
            );
            0
        }
        Err(e) => {
            errln!("error: {e}");
            EXIT_USAGE
        }
    }
}
