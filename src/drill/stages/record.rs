//! `record`: the typed drill record and the signed bundle around it. The
//! record is built by a pure function ([`build`]); the exact bytes written
//! are the bytes hashed and signed.

use super::{Ended, Gathered};
use crate::drill::plan::{RunPlan, Sinks};
use tokio_util::sync::CancellationToken;

use crate::evidence::{BundleWriter, EvidenceError, SealedBundle};
use crate::record::{
    AlertRecord, ConfigDigest, DrillInfo, DrillRecord, IgnoredAlert, MatchedAlert, RunnerInfo,
    SCHEMA, SCHEMA_VERSION, SignInRecord, StageRecord, StageStatus, Verdict,
};

/// A file for the bundle besides `drill.json`.
type File = (String, Vec<u8>);

/// Keeps the exact payload of a counted (or late) alert as a bundle file.
fn keep(
    files: &mut Vec<File>,
    index: usize,
    m: &crate::alerts::ReceivedAlert,
    kind: &str,
    matched_by: Option<crate::record::MatchKind>,
) -> MatchedAlert {
    let file = format!("alerts/{:02}-{:03}-{kind}.json", index + 1, m.seq);
    files.push((file.clone(), m.raw.to_vec()));
    MatchedAlert {
        file,
        alert_id: m.alert.alert_id.clone(),
        rule: m.alert.rule.clone(),
        severity: m.alert.severity.clone(),
        fired: m.alert.fired,
        received: m.received_at,
        matched_by,
    }
}

/// The record and the alert payload files it names (pure).
pub(crate) fn build(
    plan: &RunPlan<'_>,
    signer: &str,
    g: &Gathered,
    stages: &[StageRecord],
    verdict: Verdict,
    reasons: Vec<String>,
) -> (DrillRecord, Vec<File>) {
    let drill = plan.drill;
    let mut files = Vec::new();
    let alerts = g
        .observations
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let matched = o
                .obs
                .matched
                .as_ref()
                .map(|m| keep(&mut files, i, m, "matched", o.obs.matched_by));
            let ignored = o
                .obs
                .ignored
                .iter()
                .map(|(a, r)| {
                    let file = format!("alerts/{:02}-{:03}-ignored.json", i + 1, a.seq);
                    files.push((file.clone(), a.raw.to_vec()));
                    IgnoredAlert {
                        file,
                        alert_id: a.alert.alert_id.clone(),
                        fired: a.alert.fired,
                        received: a.received_at,
                        why: r.to_string(),
                        reason: r.clone(),
                    }
                })
                .collect();
            let late = o
                .obs
                .late
                .as_ref()
                .map(|m| keep(&mut files, i, m, "late", o.obs.matched_by));
            AlertRecord {
                name: o.expected.name.clone(),
                kind: o.expected.kind.name().to_owned(),
                rule: Some(o.expected.rule.clone()),
                late,
                deadline_ms: crate::support::time::millis(o.expected.deadline),
                matched,
                latency: o.latency.clone(),
                ignored,
                error: o.obs.error.clone(),
            }
        })
        .collect();
    let record = DrillRecord {
        schema: SCHEMA.to_owned(),
        schema_version: SCHEMA_VERSION,
        run_id: g.run_id.clone(),
        drill: DrillInfo {
            id: drill.id.clone(),
            account: drill.account.clone(),
            group: drill.group.clone(),
            description: drill.description.clone(),
            tenant: drill.tenant,
            tenant_id: plan.tenant.tenant_id.clone(),
            flow: drill.flow.name.clone(),
            source: drill.source.display().to_string(),
        },
        config_digest: ConfigDigest {
            drill_and_flow_sha256: drill.digest.sha256().to_owned(),
            host_sha256: plan.host_digest.clone(),
        },
        runner: RunnerInfo {
            name: "glassdrill".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            signer: signer.to_owned(),
        },
        operator: plan.operator.clone(),
        witness: plan.witness.clone(),
        key_id: plan.custody.key_id.clone(),
        seal_before: plan.custody.seal_before.clone(),
        seal_after: plan.custody.seal_after.clone(),
        started: g.started,
        recorded: crate::support::time::now(),
        verdict,
        reasons,
        stages: stages.to_vec(),
        // Asked again: a key's identity is known once preflight found it.
        authenticator: plan.authenticator.identity(),
        announcement: g.announcement.clone(),
        sign_in: SignInRecord {
            correlation_id: g.correlation_id.clone(),
            steps: g.steps.clone(),
            log_record: g.signin_record.as_ref().map(|_| "signin.json".to_owned()),
        },
        alerts,
        recovery: None,
        key: plan.authenticator.key_evidence(),
        posture: g
            .posture
            .checks
            .iter()
            .map(|c| crate::record::PostureRecord {
                account: c.account.clone(),
                check: c.name.to_owned(),
                status: match c.status {
                    crate::posture::Status::Pass => "PASS",
                    crate::posture::Status::Fail => "FAIL",
                    crate::posture::Status::Unknown => "UNKNOWN",
                }
                .to_owned(),
                detail: c.detail.clone(),
            })
            .collect(),
        earlier_unreviewed_uses: Vec::new(),
        unexpected_uses: g
            .posture
            .unexpected
            .iter()
            .enumerate()
            .map(|(i, (account, raw))| {
                // The raw sign-in record, as the log gave it.
                let file = format!("unexpected/{:02}-signin.json", i + 1);
                files.push((file.clone(), raw.to_string().into_bytes()));
                crate::record::UnexpectedUse {
                    account: account.clone(),
                    signin_id: raw["id"].as_str().unwrap_or_default().to_owned(),
                    created: raw["createdDateTime"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    error_code: raw["status"]["errorCode"].as_i64().unwrap_or(-1),
                    file,
                }
            })
            .collect(),
    };
    (record, files)
}

/// Adds every file to the staged bundle; sealing is left to the caller.
fn stage_files(
    mut w: BundleWriter,
    record: &DrillRecord,
    g: &Gathered,
    files: &[File],
) -> Result<BundleWriter, EvidenceError> {
    let json = |what: &'static str, r: Result<Vec<u8>, serde_json::Error>| {
        r.map_err(|e| EvidenceError::Serialize {
            what,
            why: e.to_string(),
        })
    };
    w.add("drill.json", &json("drill.json", record.to_json())?)?;
    if let Some(s) = &g.signin_record {
        w.add(
            "signin.json",
            &json("signin.json", serde_json::to_vec_pretty(s))?,
        )?;
    }
    for (name, bytes) in files {
        w.add(name, bytes)?;
    }
    for c in &g.captures {
        w.add(&c.name, &c.bytes)?;
    }
    let staged = w.staging_dir().to_path_buf();
    w.add(
        "report.html",
        crate::evidence::report::html(record, &|name| {
            // Screenshots were written into the staged bundle as they were
            // taken (the rest are still in memory).
            g.captures
                .iter()
                .find(|c| c.name == name)
                .map(|c| c.bytes.clone())
                .or_else(|| {
                    (!name.contains("..") && !name.starts_with('/'))
                        .then(|| std::fs::read(staged.join(name)).ok())
                        .flatten()
                })
        })
        .as_bytes(),
    )?;
    Ok(w)
}

/// Builds the record and writes the signed bundle into the run's staged
/// bundle (or a new one, if it could not be staged at the start).
pub(crate) async fn run(
    plan: &RunPlan<'_>,
    sinks: &Sinks<'_>,
    writer: Option<BundleWriter>,
    g: Gathered,
    stages: &[StageRecord],
    (verdict, reasons): (Verdict, Vec<String>),
    cancel: &CancellationToken,
) -> Ended<(Option<DrillRecord>, Result<SealedBundle, EvidenceError>)> {
    let (mut record, files) = build(plan, sinks.signer, &g, stages, verdict, reasons);
    // Earlier drills' unexpected uses nobody has classified: every report
    // lists them until someone does.
    record.earlier_unreviewed_uses = crate::evidence::log::EvidenceLog::at(&sinks.evidence_dir)
        .open_uses()
        .iter()
        .map(crate::evidence::log::OpenUse::words)
        .collect();
    let writer = match writer {
        Some(w) => Ok(w),
        None => BundleWriter::create(&sinks.evidence_dir, &record.drill.id, &record.run_id),
    };
    let staging = writer.as_ref().ok().map(|w| w.staging_dir().to_path_buf());
    let bundle = match writer.and_then(|w| stage_files(w, &record, &g, &files)) {
        Ok(w) => {
            crate::support::testpoint::pause("record:sealing", cancel).await;
            w.finish(sinks.signing_key, sinks.signer)
        }
        Err(e) => Err(e),
    };
    let bundle = bundle.map(|mut b| {
        // Into the evidence log at once; one that fails is appended at
        // glassdrill's next start (`evidence::log::catch_up`).
        b.log = Some(
            crate::evidence::log::EvidenceLog::at(&sinks.evidence_dir)
                .append(
                    &record.drill.id,
                    &record.run_id,
                    &b.manifest_sha256,
                    sinks.signing_key,
                    sinks.signer,
                )
                .map_err(|e| e.to_string()),
        );
        // Each unexpected use enters the log too: `status` and later
        // reports list it until a classification entry accounts for it.
        if matches!(b.log, Some(Ok(_))) {
            let log = crate::evidence::log::EvidenceLog::at(&sinks.evidence_dir);
            for u in &record.unexpected_uses {
                let entry = crate::evidence::log::Entry {
                    drill: record.drill.id.clone(),
                    run: record.run_id.clone(),
                    manifest_sha256: b.manifest_sha256.clone(),
                    signin: Some(u.signin_id.clone()),
                    account: Some(u.account.clone()),
                    note: Some(u.created.clone()),
                    ..crate::evidence::log::Entry::new(crate::evidence::log::UNEXPECTED_USE)
                };
                if let Err(e) = log.append_entry(entry, sinks.signing_key, sinks.signer) {
                    tracing::warn!(error = %e, "an unexpected use could not enter the evidence log");
                }
            }
        }
        b
    });
    match &bundle {
        Ok(b) => Ended::new(
            StageStatus::Passed,
            match &b.log {
                Some(Ok(a)) => format!(
                    "{} ({} files); evidence log entry {}",
                    b.dir.display(),
                    b.files.len(),
                    a.index
                ),
                Some(Err(e)) => format!(
                    "{} ({} files); not yet in the evidence log ({e}): appended at the next start",
                    b.dir.display(),
                    b.files.len()
                ),
                None => format!("{} ({} files)", b.dir.display(), b.files.len()),
            },
            (Some(record), bundle),
        ),
        Err(e) => {
            // Whatever was staged stays where it is, journal included, and
            // is sealed into a recovered bundle at glassdrill's next start.
            let detail = match staging.filter(|d| d.exists()) {
                Some(d) => format!(
                    "{e}; the partial evidence stays in {} and is sealed into a recovered bundle at glassdrill's next start",
                    d.display()
                ),
                None => e.to_string(),
            };
            Ended::new(StageStatus::Errored, detail, (Some(record), bundle))
        }
    }
}
