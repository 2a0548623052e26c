//! `evidence verify`: one bundle, or every bundle and the evidence log,
//! against signer keys the verifier trusts (never only a bundle's own copy
//! when better is at hand).

use super::*;
use crate::evidence;

/// Where trust comes from.
enum Anchor {
    /// A file the person passed.
    Pinned(PathBuf),
    /// The host's configured keys, written to a private temp file.
    Host(tempfile::NamedTempFile, String),
    /// The fleet's signer keys, from its database.
    Fleet(PathBuf),
}

impl Anchor {
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Pinned(p) => p,
            Self::Host(f, _) => f.path(),
            Self::Fleet(p) => p,
        }
    }
    fn describe(&self) -> String {
        match self {
            Self::Pinned(p) => format!("the pinned {}", p.display()),
            Self::Host(_, from) => format!("the host's signer keys ({from})"),
            Self::Fleet(_) => "the fleet's signer keys (every host's, from its database)".into(),
        }
    }
}

/// The host's trusted signers: `[evidence] allowed_signers` when set (a
/// key history with validity windows), else the current signing key's
/// public half under the configured principal.
fn host_anchor(host: &HostConfig) -> Option<Anchor> {
    let (text, from) = match &host.evidence.allowed_signers {
        Some(p) => (std::fs::read_to_string(p).ok()?, p.display().to_string()),
        None => {
            let mut pub_path = host.evidence.signing_key.clone().into_os_string();
            pub_path.push(".pub");
            let pub_path = PathBuf::from(pub_path);
            let line = std::fs::read_to_string(&pub_path).ok()?;
            let mut parts = line.split_whitespace();
            let (kind, key) = (parts.next()?, parts.next()?);
            (
                format!(
                    "{} namespaces=\"{}\" {kind} {key}\n",
                    host.evidence.signer,
                    evidence::NAMESPACE
                ),
                pub_path.display().to_string(),
            )
        }
    };
    let f = evidence::pinned_allowed_signers(&text).ok()?;
    Some(Anchor::Host(f, from))
}

/// `glassdrill evidence verify [BUNDLE]`.
pub(crate) fn verify_command(a: VerifyArgs, host: Option<&HostConfig>) -> u8 {
    let anchor = match (&a.allowed_signers, host) {
        (Some(p), _) => Some(Anchor::Pinned(p.clone())),
        (None, Some(h)) => host_anchor(h),
        (None, None) => None,
    };
    match a.bundle {
        Some(b) => verify_one(&b, anchor.as_ref()),
        None => {
            let Some(dir) = a
                .evidence_dir
                .clone()
                .or_else(|| host.map(HostConfig::evidence_dir))
            else {
                errln!("error: no evidence directory: pass --evidence-dir DIR (or a bundle)");
                return EXIT_USAGE;
            };
            let Some(anchor) = anchor else {
                errln!(
                    "error: no signer keys to trust: pass --allowed-signers FILE (an auditor's pinned file), or run on the drill host whose config names its signing key"
                );
                return EXIT_USAGE;
            };
            verify_every(
                &dir,
                &anchor,
                a.signer
                    .as_deref()
                    .or(host.map(|h| h.evidence.signer.as_str())),
                a.since_checkpoint.as_deref(),
            )
        }
    }
}

fn verify_one(bundle: &std::path::Path, anchor: Option<&Anchor>) -> u8 {
    match evidence::verify_bundle_all(bundle, anchor.map(Anchor::path)) {
        Ok(v) => {
            // The record is read before anything says OK.
            let r = match evidence::read_record(&v) {
                Ok(r) => r,
                Err(e) => {
                    errln!("FAILED: {e}");
                    return 1;
                }
            };
            out!(
                "OK: {} files verified; signed by {} ({})",
                v.files.len(),
                v.signer,
                v.fingerprint
            );
            out!(
                "record: drill {} run {} for {}: {} (schema {} v{})",
                r.drill.id,
                r.run_id,
                r.drill.account,
                r.verdict,
                r.schema,
                r.schema_version
            );
            match anchor {
                Some(a) => out!("trust: checked against {}", a.describe()),
                None => out!(
                    "note: checked against the bundle's own allowed_signers only (no signer keys of a host here); pass --allowed-signers with a key you trust to prove who signed"
                ),
            }
            0
        }
        Err(errors) => {
            for e in &errors {
                errln!("FAILED: {e}");
            }
            1
        }
    }
}

fn verify_every(
    dir: &std::path::Path,
    anchor: &Anchor,
    signer: Option<&str>,
    since: Option<&std::path::Path>,
) -> u8 {
    let signer = match signer {
        Some(s) => s.to_owned(),
        None => match only_principal(anchor.path()) {
            Some(s) => s,
            None => {
                errln!(
                    "error: pass --signer NAME: the allowed_signers file names several principals"
                );
                return EXIT_USAGE;
            }
        },
    };
    let since_text = match since.map(std::fs::read_to_string) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            errln!("error: --since-checkpoint: cannot read it ({e})");
            return EXIT_USAGE;
        }
        None => None,
    };
    match evidence::log::verify_all(dir, anchor.path(), &signer, since_text.as_deref()) {
        Ok(r) => {
            for (b, errs) in &r.failed {
                for e in errs {
                    errln!("FAILED: {}: {e}", b.display());
                }
            }
            for f in &r.log.findings {
                errln!("FAILED: evidence log: {f}");
            }
            let ok = r.failed.is_empty() && r.log.findings.is_empty();
            out!(
                "{}: {} bundle(s) verified against {} ({} failed); evidence log: {} entries, latest checkpoint covers {}{}",
                if ok { "OK" } else { "FAILED" },
                r.bundles,
                anchor.describe(),
                r.failed.len(),
                r.log.size,
                r.log
                    .checkpoint_size
                    .map_or_else(|| "none".to_owned(), |n| n.to_string()),
                if since.is_some() && ok {
                    "; the log only grew since the given checkpoint"
                } else {
                    ""
                }
            );
            u8::from(!ok)
        }
        Err(e) => {
            errln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// Verifies a fleet's evidence written out under `dir` against its
/// signers, the log's checkpoints signed under the fleet's name.
pub(crate) fn verify_fleet_dir(
    dir: &std::path::Path,
    allowed_signers: &std::path::Path,
    fleet: &str,
    since: Option<&std::path::Path>,
) -> u8 {
    verify_every(
        dir,
        &Anchor::Fleet(allowed_signers.to_path_buf()),
        Some(fleet),
        since,
    )
}

/// The one principal an allowed_signers file names, if only one.
fn only_principal(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut names: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [one] if !one.contains(',') && !one.contains('*') => Some(one.trim_matches('"').to_owned()),
        _ => None,
    }
}

/// The host's evidence signing key (for what it appends to the log or
/// signs), or the exit code after saying why not.
fn signing_key(host: &HostConfig) -> Result<evidence::SigningKey, u8> {
    evidence::SigningKey::load(&host.evidence.signing_key).map_err(|e| {
        errln!("error: {e}");
        EXIT_USAGE
    })
}

/// `glassdrill evidence export`.
pub(crate) fn export_command(host: &HostConfig, a: &ExportArgs) -> u8 {
    if a.to < a.from {
        errln!("error: --to {} is before --from {}", a.to, a.from);
        return EXIT_USAGE;
    }
    let Some(anchor) = host_anchor(host) else {
        errln!(
            "error: no signer keys: {}.pub is missing (and no [evidence] allowed_signers): the export pins the keys auditors verify with",
            host.evidence.signing_key.display()
        );
        return EXIT_USAGE;
    };
    let key = match signing_key(host) {
        Ok(k) => k,
        Err(code) => return code,
    };
    export_from(
        host,
        a,
        &host.evidence_dir(),
        anchor.path(),
        &host.evidence.signer,
        &key,
    )
    .0
}

/// Exports the evidence under `root` (a host's, or a fleet's written out),
/// trusting `allowed_signers` for `signer`; the exit code and the export's
/// manifest digest.
pub(crate) fn export_from(
    host: &HostConfig,
    a: &ExportArgs,
    root: &std::path::Path,
    allowed_signers: &std::path::Path,
    signer: &str,
    key: &evidence::SigningKey,
) -> (u8, Option<String>) {
    let (drills, _) = crate::config::drill::load_drills(&host.drills_dir);
    let max_days = drills
        .iter()
        .map(|d| (d.id.clone(), d.schedule.cadence.max.num_days()))
        .collect();
    let keys = drills
        .iter()
        .map(|d| (d.id.clone(), d.schedule.keys.clone()))
        .collect();
    let day = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    let req = evidence::export::ExportRequest {
        root,
        from: day(a.from),
        to: day(a.to) + chrono::Duration::days(1),
        drill: a.drill.as_deref(),
        out: &a.out,
        allowed_signers,
        signer,
        max_days: &max_days,
        keys: &keys,
        controls: &host.evidence.controls,
    };
    match evidence::export::export(&req, key) {
        Ok(done) => {
            for f in &done.findings {
                out!("finding: {f}");
            }
            out!(
                "exported {} bundle(s) to {} ({} finding(s)); manifest SHA-256 {}; verify it with the commands in its VERIFY.txt",
                done.bundles,
                a.out.display(),
                done.findings.len(),
                done.manifest_sha256
            );
            (0, Some(done.manifest_sha256))
        }
        Err(e) => {
            errln!("error: {e}");
            (1, None)
        }
    }
}

fn append(host: &HostConfig, entry: evidence::log::Entry, what: &str) -> u8 {
    let key = match signing_key(host) {
        Ok(k) => k,
        Err(code) => return code,
    };
    match evidence::log::EvidenceLog::at(&host.evidence_dir()).append_entry(
        entry,
        &key,
        &host.evidence.signer,
    ) {
        Ok(a) => {
            out!(
                "{what} recorded as evidence log entry {}; checkpoint:",
                a.index
            );
            out!("{}", a.checkpoint.trim_end());
            0
        }
        Err(e) => {
            errln!("error: {e}");
            1
        }
    }
}

/// `glassdrill evidence review RUN`.
pub(crate) fn review_command(host: &HostConfig, a: &ReviewArgs) -> u8 {
    let root = host.evidence_dir();
    let found = evidence::log::bundles_on_disk(&root)
        .into_iter()
        .find(|b| b.run == a.run);
    let Some(b) = found else {
        errln!(
            "error: no bundle of run {} under {}: name a run id as `glassdrill run` printed it",
            a.run,
            root.display()
        );
        return EXIT_USAGE;
    };
    let entry = evidence::log::Entry {
        manifest_sha256: b.manifest_sha256(&root).unwrap_or_default(),
        drill: b.drill,
        run: b.run,
        by: Some(a.by.clone()),
        outcome: Some(a.outcome.clone()),
        note: Some(a.note.clone()),
        ..evidence::log::Entry::new("review")
    };
    append(
        host,
        entry,
        &format!("review of run {} ({})", a.run, a.outcome),
    )
}

/// `glassdrill evidence classify`.
pub(crate) fn classify_command(host: &HostConfig, a: &ClassifyArgs) -> u8 {
    let entry = evidence::log::Entry {
        signin: Some(a.signin.clone()),
        account: Some(a.account.clone()),
        class: Some(a.class.clone()),
        by: Some(a.by.clone()),
        note: Some(a.note.clone()),
        ..evidence::log::Entry::new("classification")
    };
    append(
        host,
        entry,
        &format!(
            "sign-in {} of {} classified as {}",
            a.signin, a.account, a.class
        ),
    )
}

/// `glassdrill evidence prune`.
pub(crate) fn prune_command(host: &HostConfig, a: &PruneArgs) -> u8 {
    if a.older_than < host.evidence.audit_window && !a.force {
        errln!(
            "error: --older-than {} days is inside the audit window ({} days, [evidence] audit_window): evidence that young is kept; pass --force to delete it anyway",
            a.older_than.as_secs() / 86_400,
            host.evidence.audit_window.as_secs() / 86_400
        );
        return EXIT_USAGE;
    }
    let key = match signing_key(host) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let Some(cutoff) = chrono::Duration::from_std(a.older_than)
        .ok()
        .and_then(|d| crate::support::time::now().checked_sub_signed(d))
    else {
        errln!("error: --older-than is too long");
        return EXIT_USAGE;
    };
    match evidence::log::prune(&host.evidence_dir(), cutoff, &key, &host.evidence.signer) {
        Ok(gone) => {
            for (d, r) in &gone {
                out!("pruned {d}/{r}");
            }
            out!(
                "{} bundle(s) older than {} pruned, each recorded in the evidence log",
                gone.len(),
                crate::support::time::rfc3339_ms(cutoff)
            );
            0
        }
        Err(e) => {
            errln!("error: {e}");
            1
        }
    }
}
