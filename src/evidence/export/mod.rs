//! `glassdrill evidence export`: the bundles of a period, the evidence log
//! and its latest checkpoint, the pinned `allowed_signers`, an
//! `index.html` and `summary.csv` for people, the cadence findings, and
//! `VERIFY.txt` with the exact commands an auditor runs on their own
//! machine (ssh-keygen, sha256sum, and `verify_log.py`, which needs only
//! Python's standard library). The export has its own signed manifest and
//! is recorded in the log as a custody event.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use chrono::{DateTime, Utc};

use super::log::{EvidenceLog, bundles_on_disk};
use super::*;
use crate::record::{DrillRecord, Verdict};
use crate::support::html::esc;

const VERIFY_PY: &str = include_str!("verify_log.py");

/// What to export.
pub struct ExportRequest<'a> {
    /// The evidence directory.
    pub root: &'a Path,
    /// First day (inclusive, UTC).
    pub from: DateTime<Utc>,
    /// Last moment (exclusive, UTC).
    pub to: DateTime<Utc>,
    /// Only this drill.
    pub drill: Option<&'a str>,
    /// The directory to create (must not exist).
    pub out: &'a Path,
    /// The trusted signer keys (copied into the export).
    pub allowed_signers: &'a Path,
    /// The signer principal.
    pub signer: &'a str,
    /// Each drill's `max_days` (drills not listed: 60).
    pub max_days: &'a BTreeMap<String, i64>,
    /// Each drill's registered keys.
    pub keys: &'a BTreeMap<String, Vec<String>>,
    /// The controls the drills evidence.
    pub controls: &'a [String],
}

/// What was exported.
#[derive(Debug)]
pub struct Exported {
    /// Bundles copied.
    pub bundles: usize,
    /// Cadence and confirmation findings.
    pub findings: Vec<String>,
    /// SHA-256 of the export's SHA256SUMS.
    pub manifest_sha256: String,
}

struct Row {
    drill: String,
    run: String,
    record: Option<DrillRecord>,
    verifies: bool,
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), EvidenceError> {
    fs::create_dir_all(to).map_err(io_err("create", to))?;
    for e in fs::read_dir(from).map_err(io_err("read", from))?.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().map_err(io_err("inspect", &src))?;
        if ty.is_dir() {
            copy_dir(&src, &dst)?;
        } else if ty.is_file() {
            fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
        }
        // Symlinks are never followed out of a bundle.
    }
    Ok(())
}

/// Writes the export into `out`, a directory, or (ending in `.tar.gz`) a
/// gzipped tar of that directory; refuses an existing `out`.
pub fn export(req: &ExportRequest<'_>, key: &SigningKey) -> Result<Exported, EvidenceError> {
    let name = req.out.to_string_lossy();
    let Some(stem) = name.strip_suffix(".tar.gz") else {
        return export_dir(req, key);
    };
    if req.out.exists() {
        return Err(EvidenceError::BundleExists {
            path: req.out.to_path_buf(),
        });
    }
    // Built beside the archive, packed, then removed.
    let staging = PathBuf::from(format!("{stem}.partial"));
    let dir_req = ExportRequest {
        out: &staging,
        ..*req
    };
    let done = export_dir(&dir_req, key);
    let packed = done.and_then(|d| {
        let top = Path::new(stem)
            .file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(req.out)
            .map_err(io_err("create", req.out))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(&top, &staging)
            .map_err(io_err("pack", req.out))?;
        tar.into_inner()
            .and_then(flate2::write::GzEncoder::finish)
            .and_then(|f| f.sync_all())
            .map_err(io_err("write", req.out))?;
        Ok(d)
    });
    let _ = fs::remove_dir_all(&staging);
    packed
}

fn export_dir(req: &ExportRequest<'_>, key: &SigningKey) -> Result<Exported, EvidenceError> {
    if req.out.exists() {
        return Err(EvidenceError::BundleExists {
            path: req.out.to_path_buf(),
        });
    }
    crate::support::fs::create_private_dirs(req.out).map_err(io_err("create", req.out))?;
    // The bundles of the period.
    let mut rows = Vec::new();
    for b in bundles_on_disk(req.root) {
        if req.drill.is_some_and(|d| d != b.drill) {
            continue;
        }
        let dir = req.root.join(&b.drill).join(&b.run);
        let verified = verify_bundle_all(&dir, Some(req.allowed_signers));
        let record = match &verified {
            Ok(v) => read_record(v).ok(),
            Err(_) => fs::read(dir.join("drill.json"))
                .ok()
                .and_then(|t| DrillRecord::from_json(&t).ok()),
        };
        let in_range = record
            .as_ref()
            .is_some_and(|r| r.started >= req.from && r.started < req.to);
        if !in_range {
            continue;
        }
        copy_dir(&dir, &req.out.join("bundles").join(&b.drill).join(&b.run))?;
        rows.push(Row {
            drill: b.drill,
            run: b.run,
            record,
            verifies: verified.is_ok(),
        });
    }
    // The log and its checkpoint, the trusted keys.
    let log = EvidenceLog::at(req.root);
    log.copy_to(&req.out.join("log"))?;
    fs::copy(req.allowed_signers, req.out.join("allowed_signers"))
        .map_err(io_err("copy", req.allowed_signers))?;
    let mut findings = cadence_findings(&rows, req);
    // The log's own findings (deleted, altered, added bundles…), checked
    // against the pinned keys: an export never hides them. (The bundles
    // themselves were verified once, above, while being copied.)
    if let Ok(verifiers) = super::log::log_verifiers(req.allowed_signers, req.signer) {
        let log = super::log::verify_log_any(req.root, &verifiers, req.signer, None);
        findings.extend(
            log.findings
                .into_iter()
                .map(|f| format!("evidence log: {f}")),
        );
    }
    let entries: Vec<super::log::Entry> = log
        .read()
        .map(|c| c.entries.into_iter().flatten().collect())
        .unwrap_or_default();
    // Unexpected uses no classification accounts for stay findings (the
    // log holds every one a drill found).
    findings.extend(super::log::open_uses(&entries).iter().map(|u| {
        format!(
            "unreviewed use: {}; classify it with `{}`",
            u.words(),
            u.fix()
        )
    }));
    let meta = serde_json::json!({
        "signer": req.signer,
        "from": crate::support::time::rfc3339_ms(req.from),
        "to": crate::support::time::rfc3339_ms(req.to),
        "drill": req.drill,
        "created": crate::support::time::rfc3339_ms(crate::support::time::now()),
        "bundles": rows.iter().map(|r| serde_json::json!({"drill": r.drill, "run": r.run})).collect::<Vec<_>>(),
        "findings": findings,
    });
    let write = |name: &str, bytes: &[u8]| -> Result<(), EvidenceError> {
        let p = req.out.join(name);
        fs::write(&p, bytes).map_err(io_err("write", &p))
    };
    write(
        "export.json",
        serde_json::to_string_pretty(&meta)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    write("summary.csv", summary_csv(&rows).as_bytes())?;
    write(
        "index.html",
        index_html(&rows, &findings, &entries, req).as_bytes(),
    )?;
    write("verify_log.py", VERIFY_PY.as_bytes())?;
    write("VERIFY.txt", verify_txt(req.signer).as_bytes())?;
    // The export's own manifest, signed like a bundle's.
    let files = crate::support::fs::relative_files(req.out).map_err(io_err("read", req.out))?;
    let mut manifest = String::new();
    for f in &files {
        let bytes = fs::read(req.out.join(f)).map_err(io_err("read", &req.out.join(f)))?;
        let _ = writeln!(manifest, "{}  {f}", sha256_hex(&bytes));
    }
    let signature = key.sign(manifest.as_bytes())?;
    write(MANIFEST, manifest.as_bytes())?;
    write(SIGNATURE, signature.as_bytes())?;
    let manifest_sha256 = sha256_hex(manifest.as_bytes());
    // The custody event: who exported what, in the log itself (a log that
    // cannot take it is said so, the export is still made).
    let event = super::log::Entry {
        manifest_sha256: manifest_sha256.clone(),
        note: Some(format!(
            "{} bundle(s) to {}",
            rows.len(),
            // A tar.gz is built in `<name>.partial`, then packed.
            req.out
                .to_string_lossy()
                .strip_suffix(".partial")
                .map_or_else(|| req.out.display().to_string(), |s| format!("{s}.tar.gz"))
        )),
        ..super::log::Entry::new("export")
    };
    if let Err(e) = log.append_entry(event, key, req.signer) {
        tracing::warn!(error = %e, "the export could not be recorded in the evidence log");
    }
    Ok(Exported {
        bundles: rows.len(),
        findings,
        manifest_sha256,
    })
}

fn latency(r: &DrillRecord) -> Option<i64> {
    r.alerts
        .iter()
        .filter_map(|a| a.latency.as_ref().map(|l| l.signin_to_received_ms))
        .max()
}

/// The cadence findings of the period: intervals between PASSes longer
/// than `max_days`, drills with no PASS, PASSes without an alert
/// confirmation, keys not proven within `max_days`, bundles that do not
/// verify.
fn cadence_findings(rows: &[Row], req: &ExportRequest<'_>) -> Vec<String> {
    let mut f = Vec::new();
    let mut by_drill: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_drill.entry(&r.drill).or_default().push(r);
        if !r.verifies {
            f.push(format!(
                "bundle {}/{} does not verify against the pinned signer keys",
                r.drill, r.run
            ));
        }
    }
    let mut drills: Vec<&str> = req.max_days.keys().map(String::as_str).collect();
    drills.extend(by_drill.keys().copied());
    drills.sort_unstable();
    drills.dedup();
    for d in drills {
        if req.drill.is_some_and(|x| x != d) {
            continue;
        }
        let max = req.max_days.get(d).copied().unwrap_or(60);
        let runs = by_drill.get(d).cloned().unwrap_or_default();
        let mut passes: Vec<DateTime<Utc>> = runs
            .iter()
            .filter_map(|r| r.record.as_ref())
            .filter(|r| r.verdict == Verdict::Pass)
            .map(|r| r.started)
            .collect();
        passes.sort();
        if passes.is_empty() {
            f.push(format!(
                "drill {d}: no PASS between {} and {}",
                req.from.date_naive(),
                req.to.date_naive()
            ));
            continue;
        }
        for w in passes.windows(2) {
            let days = (w[1] - w[0]).num_days();
            if days > max {
                f.push(format!(
                    "drill {d}: {days} days between PASSes ({} → {}), more than max_days {max}",
                    w[0].date_naive(),
                    w[1].date_naive()
                ));
            }
        }
        for r in runs.iter().filter_map(|r| r.record.as_ref()) {
            if r.verdict == Verdict::Pass && latency(r).is_none() {
                f.push(format!(
                    "drill {d} run {}: PASS without an alert confirmation",
                    r.run_id
                ));
            }
        }
        for k in req.keys.get(d).into_iter().flatten() {
            let last = runs
                .iter()
                .filter_map(|r| r.record.as_ref())
                .filter(|r| r.verdict == Verdict::Pass && r.key_id.as_deref() == Some(k))
                .map(|r| r.started)
                .max();
            if last.is_none_or(|t| (req.to - t).num_days() > max) {
                f.push(format!("drill {d}: key {k} not proven within {max} days"));
            }
        }
    }
    f
}

fn summary_csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "drill,run,account,started,verdict,operator,witness,key,seal_before,seal_after,alert_latency_ms,verifies,bundle\n",
    );
    for r in rows {
        let rec = r.record.as_ref();
        let field = |v: Option<&str>| csv(v.unwrap_or(""));
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv(&r.drill),
            csv(&r.run),
            field(rec.map(|x| x.drill.account.as_str())),
            field(
                rec.map(|x| crate::support::time::rfc3339_ms(x.started))
                    .as_deref()
            ),
            field(rec.map(|x| x.verdict.to_string()).as_deref()),
            field(rec.and_then(|x| x.operator.as_deref())),
            field(rec.and_then(|x| x.witness.as_deref())),
            field(rec.and_then(|x| x.key_id.as_deref())),
            field(rec.and_then(|x| x.seal_before.as_deref())),
            field(rec.and_then(|x| x.seal_after.as_deref())),
            rec.and_then(latency)
                .map(|l| l.to_string())
                .unwrap_or_default(),
            r.verifies,
            csv(&format!("bundles/{}/{}", r.drill, r.run)),
        );
    }
    s
}

/// The alert latencies of an account's runs as an inline SVG line.
fn chart(points: &[(DateTime<Utc>, i64)]) -> String {
    if points.len() < 2 {
        return String::new();
    }
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let span = (t1 - t0).num_seconds().max(1) as f64;
    let top = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let pts: Vec<String> = points
        .iter()
        .map(|(t, l)| {
            let x = 10.0 + 580.0 * (*t - t0).num_seconds() as f64 / span;
            let y = 110.0 - 100.0 * *l as f64 / top;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg viewBox=\"0 0 600 120\" width=\"600\" height=\"120\" role=\"img\" aria-label=\"alert latency over time\"><polyline fill=\"none\" stroke=\"#0078d4\" stroke-width=\"2\" points=\"{}\"/><text x=\"10\" y=\"10\" font-size=\"10\">max {} ms</text></svg>",
        pts.join(" "),
        top as i64
    )
}

fn index_html(
    rows: &[Row],
    findings: &[String],
    entries: &[super::log::Entry],
    req: &ExportRequest<'_>,
) -> String {
    let reviews_of = |run: &str| -> String {
        entries
            .iter()
            .filter(|e| e.kind == "review" && e.run == run)
            .map(|e| {
                format!(
                    "{} by {}: {}",
                    e.outcome.as_deref().unwrap_or("?"),
                    e.by.as_deref().unwrap_or("?"),
                    e.note.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut by_account: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let account = r.record.as_ref().map_or_else(
            || "(unreadable record)".to_owned(),
            |x| x.drill.account.clone(),
        );
        by_account.entry(account).or_default().push(r);
    }
    let mut body = String::new();
    for (account, runs) in &by_account {
        let _ = write!(
            body,
            "<h2>{}</h2><table><tr><th>run</th><th>drill</th><th>started</th><th>verdict</th><th>operator</th><th>witness</th><th>key</th><th>seals</th><th>alert latency</th><th>review</th><th>report</th></tr>",
            esc(account)
        );
        let mut points = Vec::new();
        for r in runs {
            let Some(rec) = &r.record else {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td colspan=\"8\">record unreadable</td></tr>",
                    esc(&r.run),
                    esc(&r.drill)
                );
                continue;
            };
            if let Some(l) = latency(rec) {
                points.push((rec.started, l));
            }
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"v{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td><a href=\"bundles/{}/{}/report.html\">report</a></td></tr>",
                esc(&r.run),
                esc(&r.drill),
                esc(&crate::support::time::rfc3339_ms(rec.started)),
                esc(&rec.verdict.to_string()),
                esc(&rec.verdict.to_string()),
                esc(rec.operator.as_deref().unwrap_or("-")),
                esc(rec.witness.as_deref().unwrap_or("-")),
                esc(rec.key_id.as_deref().unwrap_or("-")),
                esc(rec.seal_before.as_deref().unwrap_or("-")),
                esc(rec.seal_after.as_deref().unwrap_or("-")),
                latency(rec).map_or_else(|| "-".to_owned(), |l| format!("{l} ms")),
                esc(&reviews_of(&r.run)),
                esc(&r.drill),
                esc(&r.run),
            );
        }
        body.push_str("</table>");
        // Days between consecutive PASSes, per drill of the account.
        let mut passes: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
        for r in runs {
            if let Some(rec) = r.record.as_ref().filter(|x| x.verdict == Verdict::Pass) {
                passes.entry(&r.drill).or_default().push(rec.started);
            }
        }
        for (drill, mut times) in passes {
            times.sort();
            let gaps: Vec<String> = times
                .windows(2)
                .map(|w| format!("{} days", (w[1] - w[0]).num_days()))
                .collect();
            let _ = write!(
                body,
                "<p class=\"gaps\">{}: {} PASS(es){}</p>",
                esc(drill),
                times.len(),
                if gaps.is_empty() {
                    String::new()
                } else {
                    format!("; gaps between them: {}", esc(&gaps.join(", ")))
                }
            );
        }
        points.sort();
        body.push_str(&chart(&points));
    }
    let findings_html: String = if findings.is_empty() {
        "<p id=\"no-findings\">No findings in this period.</p>".into()
    } else {
        format!(
            "<ul id=\"findings\">{}</ul>",
            findings
                .iter()
                .map(|f| format!("<li>{}</li>", esc(f)))
                .collect::<String>()
        )
    };
    let controls: String = req
        .controls
        .iter()
        .map(|c| format!("<li>{}</li>", esc(c)))
        .collect();
    let classified: String = entries
        .iter()
        .filter(|e| e.kind == "classification")
        .map(|e| {
            format!(
                "<li>{} sign-in {} of {}: {} (by {}, {})</li>",
                esc(&e.appended),
                esc(e.signin.as_deref().unwrap_or("?")),
                esc(e.account.as_deref().unwrap_or("?")),
                esc(e.class.as_deref().unwrap_or("?")),
                esc(e.by.as_deref().unwrap_or("?")),
                esc(e.note.as_deref().unwrap_or(""))
            )
        })
        .collect();
    let body = if classified.is_empty() {
        body
    } else {
        format!(
            "{body}<h2>Sign-ins that were not drills</h2><ul id=\"classified\">{classified}</ul>"
        )
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>glassdrill evidence export</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}.vPASS{{color:#107c10}}.vFAIL{{color:#d13438}}.vERROR,.vINTERRUPTED{{color:#ca5010}}</style></head><body><h1>Break-glass drill evidence, {} to {}</h1><p>Signer: {}. {} run(s). Verify with the commands in VERIFY.txt.</p><h2>Findings</h2>{}{}<h2>Controls evidenced</h2><ul>{}</ul></body></html>",
        esc(&req.from.date_naive().to_string()),
        esc(&req.to.date_naive().to_string()),
        esc(req.signer),
        rows.len(),
        findings_html,
        body,
        controls
    )
}

fn verify_txt(signer: &str) -> String {
    format!(
        "How to verify this export without glassdrill (OpenSSH, coreutils, Python 3).

First get the drill host's signer key(s) from a source you trust (not this
export): its allowed_signers file, or the fingerprint its owners publish.
Below, PINNED is that file. (This export's own allowed_signers is a copy
for convenience; checked against it, a forged export would pass.)

1. The export's manifest is signed by the drill host's key:
   ssh-keygen -Y verify -f PINNED -I {signer} -n {NAMESPACE} -s SHA256SUMS.sig < SHA256SUMS
2. Every file is the one the manifest lists:
   sha256sum -c --strict SHA256SUMS
3. The evidence log matches its signed checkpoint, every exported bundle is
   recorded in it, and every bundle it recorded in the period is here:
   python3 verify_log.py . --allowed-signers PINNED
4. Each bundle on its own:
   for b in bundles/*/*/; do (cd \"$b\" && ssh-keygen -Y verify -f PINNED -I {signer} -n {NAMESPACE} -s SHA256SUMS.sig < SHA256SUMS && sha256sum -c --strict SHA256SUMS); done
   A bundle signed by a key that has since been retired (listed with
   valid-before in PINNED) verifies at the time it claims it was signed:
   add -Overify-time=YYYYMMDD (its drill.json \"recorded\" date); the log
   (step 3) is what shows it was recorded then.

Keep the checkpoint (log/checkpoint): a later export must extend it
(glassdrill evidence verify --since-checkpoint FILE).
"
    )
}

#[cfg(test)]
mod tests;
