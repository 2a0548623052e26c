//! Recovery of runs that died. Every run stages its bundle from its first
//! moment (`<root>/<drill>/.<run>.partial`, locked by the running process)
//! and journals each stage into it. A staging directory nobody holds
//! locked belongs to a run that was killed, crashed or lost power; at the
//! next start it becomes a signed INTERRUPTED bundle at `<drill>/<run>`:
//! the dead run's files kept as found under `recovered/`, and a
//! `drill.json` rebuilt from the journal saying where the run died and
//! which files were recovered. No sign-in is left without evidence.

use super::*;
use crate::record::{DrillRecord, JournalLine, Recovery, Stage};

/// Suffix of a staging directory.
const PARTIAL: &str = ".partial";
/// Suffix of a staging directory being recovered (moved aside first, so a
/// recovery that dies half-way is finished by the next one).
const RECOVERING: &str = ".recovering";
/// Largest file taken from a dead run's staging directory.
const MAX_RECOVERED_FILE: u64 = 64 * 1024 * 1024;

/// What recovery did with one dead run.
#[derive(Debug)]
pub enum Recovered {
    /// Turned into a signed INTERRUPTED bundle.
    Sealed {
        /// The bundle.
        bundle: SealedBundle,
        /// The stage the run died in.
        died_during: Option<Stage>,
    },
    /// Nothing had been written (the run died before its first journal
    /// line): the empty directory was removed.
    Empty(PathBuf),
    /// Could not be recovered; left in place.
    Failed {
        /// The staging directory.
        dir: PathBuf,
        /// Why.
        why: String,
    },
}

/// Staging directories under `root` (`<drill>/.<run>.partial` or
/// `.recovering`), with their drill and run ids.
pub fn leftovers(root: &Path) -> Vec<(PathBuf, String, String)> {
    let mut found = Vec::new();
    let Ok(drills) = fs::read_dir(root) else {
        return found;
    };
    for d in drills.flatten() {
        let Some(drill) = d.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if crate::support::ids::check(&drill).is_err() {
            continue;
        }
        let Ok(runs) = fs::read_dir(d.path()) else {
            continue;
        };
        for r in runs.flatten() {
            let name = r.file_name();
            let Some(run) = name
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| {
                    n.strip_suffix(PARTIAL)
                        .or_else(|| n.strip_suffix(RECOVERING))
                })
            else {
                continue;
            };
            if crate::support::ids::check(run).is_ok() && r.file_type().is_ok_and(|t| t.is_dir()) {
                found.push((r.path(), drill.clone(), run.to_owned()));
            }
        }
    }
    found.sort();
    found
}

/// Recovers every dead run under `root`, signing with `key` as `signer`.
/// Runs still alive (their staging directory locked) are left alone.
pub fn recover_all(root: &Path, key: &SigningKey, signer: &str) -> Vec<Recovered> {
    remove_dead_creating(root);
    leftovers(root)
        .into_iter()
        .filter_map(
            |(dir, drill, run)| match recover_one(root, &dir, &drill, &run, key, signer) {
                Ok(r) => r,
                Err(e) => Some(Recovered::Failed {
                    dir,
                    why: e.to_string(),
                }),
            },
        )
        .collect()
}

/// Removes `.<run>.creating` directories of runs that died between
/// creating and locking them (they are empty: nothing is written before
/// the rename to `.partial`).
fn remove_dead_creating(root: &Path) {
    let Ok(drills) = fs::read_dir(root) else {
        return;
    };
    for d in drills.flatten() {
        let Ok(runs) = fs::read_dir(d.path()) else {
            continue;
        };
        for r in runs.flatten() {
            let is_creating = r
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(bundle::CREATING));
            if is_creating && let Ok(Some(_lock)) = lock_dir(&r.path()) {
                let _ = fs::remove_dir(r.path());
            }
        }
    }
}

fn recover_one(
    root: &Path,
    dir: &Path,
    drill: &str,
    run: &str,
    key: &SigningKey,
    signer: &str,
) -> Result<Option<Recovered>, EvidenceError> {
    // A live run holds its lock; so does a recovery running elsewhere.
    let Some(_lock) = lock_dir(dir)? else {
        return Ok(None);
    };
    let final_dir = root.join(drill).join(run);
    let aside = root.join(drill).join(format!(".{run}{RECOVERING}"));
    if dir != aside {
        if fs::symlink_metadata(&aside).is_ok() {
            // A recovery of this run died after moving it aside: this
            // staging directory is that recovery's half-built bundle (no
            // journal of its own). It goes; the run is recovered from
            // `aside` in its own turn.
            if !dir.join(bundle::JOURNAL).exists() {
                fs::remove_dir_all(dir).map_err(io_err("remove", dir))?;
            }
            return Ok(None);
        }
        fs::rename(dir, &aside).map_err(io_err("move aside", dir))?;
    }
    if fs::symlink_metadata(&final_dir).is_ok() {
        // A previous recovery sealed the bundle and died before cleaning up.
        fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))?;
        return Ok(None);
    }
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    collect(&aside, "", &mut files, &mut skipped)?;
    if files.is_empty() {
        fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))?;
        return Ok(Some(Recovered::Empty(aside)));
    }
    let journal = files
        .iter()
        .find(|(rel, _)| rel == bundle::JOURNAL)
        .map(|(_, b)| b.as_slice())
        .unwrap_or_default();
    let Some((mut record, died_during, attempted)) = replay(journal) else {
        return Err(EvidenceError::Serialize {
            what: "a dead run's journal",
            why: format!(
                "{} has no readable journal; inspect it and remove it by hand",
                aside.display()
            ),
        });
    };
    let names: Vec<String> = files
        .iter()
        .map(|(rel, _)| format!("recovered/{rel}"))
        .collect();
    // The stages the dead run finished still count: a finding it made
    // (a refused sign-in, a missing alert) stays a FAIL; otherwise the
    // run was stopped, by whatever killed it.
    let (verdict, mut reasons) = crate::record::verdict(&record.stages, true);
    reasons.push(format!(
        "the run died {} (killed, crashed or powered off); this record was rebuilt from its journal at the next start, with {} file(s) it had written{}",
        match (died_during, record.stages.last()) {
            (Some(s), _) => format!("during {}", s.name()),
            (None, Some(last)) => format!("after {}", last.stage.name()),
            (None, None) => "before its first stage".to_owned(),
        },
        names.len(),
        if attempted { "; a sign-in may have happened" } else { "; no sign-in had been attempted" }
    ));
    record.verdict = verdict;
    record.reasons = reasons
        .into_iter()
        .filter(|r| r != "the drill was told to stop")
        .collect();
    record.recorded = crate::support::time::now();
    record.recovery = Some(Recovery {
        died_during,
        sign_in_attempted: attempted,
        recovered_files: names.clone(),
        not_recovered: skipped.clone(),
        recovered_at: record.recorded,
    });
    let mut w = BundleWriter::create(root, drill, run)?;
    for ((_, bytes), name) in files.iter().zip(&names) {
        w.add(name, bytes)?;
    }
    let json = record.to_json().map_err(|e| EvidenceError::Serialize {
        what: "drill.json",
        why: e.to_string(),
    })?;
    w.add("drill.json", &json)?;
    let staged = w.staging_dir().to_path_buf();
    let image = |name: &str| {
        // Only a plain relative name inside the staging directory.
        (!name.contains("..") && !name.starts_with('/'))
            .then(|| read_capped(&staged.join(name), MAX_MANIFEST_FILE).ok())
            .flatten()
    };
    w.add(
        "report.html",
        super::report::html(&record, &image).as_bytes(),
    )?;
    let bundle = w.finish(key, signer)?;
    if skipped.is_empty() {
        fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))?;
    } else {
        // What could not be copied is never deleted: it stays for a person
        // to look at, and the record names it.
        let kept = root.join(drill).join(format!(".{run}.kept"));
        fs::rename(&aside, &kept).map_err(io_err("keep", &aside))?;
    }
    Ok(Some(Recovered::Sealed {
        bundle,
        died_during,
    }))
}

/// The record skeleton and stages from a journal, the stage that had
/// started without ending, and whether the ceremony had been started. A
/// torn last line (the run died mid-write) is ignored. Pure.
pub(crate) fn replay(journal: &[u8]) -> Option<(DrillRecord, Option<Stage>, bool)> {
    let mut record: Option<DrillRecord> = None;
    let mut open = None;
    let mut ceremony = false;
    for line in journal.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<JournalLine>(line) {
            Ok(JournalLine::Begin { record: r }) => record = Some(*r),
            Ok(JournalLine::Started { stage }) => open = Some(stage),
            Ok(JournalLine::Ceremony) => ceremony = true,
            Ok(JournalLine::Ended { record: s }) => {
                if open == Some(s.stage) {
                    open = None;
                }
                if let Some(r) = record.as_mut() {
                    r.stages.push(s);
                }
            }
            Err(_) => {}
        }
    }
    record.map(|r| (r, open, ceremony))
}

/// Every regular file under `dir/rel` with its bytes; what cannot be
/// copied (a symlink or other special file, a name that is not UTF-8 or
/// not a valid bundle path, an unreadable or huge file) is named in
/// `skipped`, never silently dropped.
fn collect(
    root: &Path,
    rel: &str,
    out: &mut Vec<(String, Vec<u8>)>,
    skipped: &mut Vec<String>,
) -> Result<(), EvidenceError> {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut entries: Vec<_> = fs::read_dir(&here)
        .map_err(io_err("read", &here))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let shown = e.path().strip_prefix(root).map_or_else(
            |_| e.path().display().to_string(),
            |p| p.display().to_string(),
        );
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            skipped.push(format!("{shown} (name is not UTF-8)"));
            continue;
        };
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => collect(root, &child, out, skipped)?,
            Ok(t) if t.is_file() && validate_rel_path(&child).is_ok() => {
                match read_capped(&e.path(), MAX_RECOVERED_FILE) {
                    Ok(bytes) => out.push((child, bytes)),
                    Err(_) => skipped.push(format!("{child} (unreadable or larger than 64 MiB)")),
                }
            }
            _ => skipped.push(format!("{shown} (not a regular file with a bundle name)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::testutil::*;
    use crate::record::{StageRecord, StageStatus, Verdict};

    fn stage(stage: Stage, status: StageStatus) -> StageRecord {
        StageRecord::instant(stage, status, format!("{} {}", stage.name(), status.name()))
    }

    /// A dead run's staging directory: a journal with `stages` and the
    /// stage it died in, plus `extra` files.
    fn dead_run(root: &Path, run: &str, stages: &[StageRecord], died_in: Option<Stage>) -> PathBuf {
        let skeleton: DrillRecord = serde_json::from_slice(include_bytes!(
            "../../tests/it/fixtures/drill-0.1.0-pass.json"
        ))
        .unwrap();
        let mut skeleton = DrillRecord {
            run_id: run.into(),
            stages: Vec::new(),
            ..skeleton
        };
        skeleton.drill.id = "bg-1".into();
        let dir = root.join("bg-1").join(format!(".{run}.partial"));
        fs::create_dir_all(&dir).unwrap();
        let mut journal = serde_json::to_vec(&JournalLine::Begin {
            record: Box::new(skeleton),
        })
        .unwrap();
        journal.push(b'\n');
        for s in stages {
            for line in [
                JournalLine::Started { stage: s.stage },
                JournalLine::Ended { record: s.clone() },
            ] {
                journal.extend(serde_json::to_vec(&line).unwrap());
                journal.push(b'\n');
            }
        }
        if let Some(s) = died_in {
            journal.extend(serde_json::to_vec(&JournalLine::Started { stage: s }).unwrap());
            journal.extend(b"\n{\"event\":\"ended\",\"rec"); // torn last line
        }
        fs::write(dir.join("journal.jsonl"), journal).unwrap();
        dir
    }

    #[test]
    fn a_finding_of_a_dead_run_stays_a_fail_and_nothing_uncopied_is_deleted() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("evidence");
        let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
        let dir = dead_run(
            &root,
            "run-fail",
            &[
                stage(Stage::Preflight, StageStatus::Passed),
                stage(Stage::SignIn, StageStatus::Failed),
            ],
            Some(Stage::Teardown),
        );
        std::os::unix::fs::symlink("/etc/passwd", dir.join("odd-link")).unwrap();
        let done = recover_all(&root, &key, SIGNER);
        let Some(Recovered::Sealed {
            bundle,
            died_during,
        }) = done.first()
        else {
            panic!("{done:?}");
        };
        assert_eq!(*died_during, Some(Stage::Teardown));
        let v = verify_bundle(&bundle.dir, None).unwrap();
        let r = read_record(&v).unwrap();
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "the refused sign-in is still a finding: {:?}",
            r.reasons
        );
        assert!(
            r.reasons
                .iter()
                .any(|x| x.contains("the run died during teardown")),
            "{:?}",
            r.reasons
        );
        let rec = r.recovery.unwrap();
        assert_eq!(rec.recovered_files, ["recovered/journal.jsonl"]);
        assert_eq!(rec.not_recovered.len(), 1, "{:?}", rec.not_recovered);
        assert!(
            rec.not_recovered[0].starts_with("odd-link"),
            "{:?}",
            rec.not_recovered
        );
        assert!(
            root.join("bg-1/.run-fail.kept/odd-link").exists(),
            "kept for a person to look at"
        );
        assert!(leftovers(&root).is_empty());
    }

    #[test]
    fn a_recovery_that_died_half_way_is_finished_by_the_next() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("evidence");
        let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
        let dir = dead_run(
            &root,
            "run-2",
            &[stage(Stage::Preflight, StageStatus::Passed)],
            Some(Stage::Announce),
        );
        // The first recovery moved the run aside and died while building
        // the new bundle in the staging name.
        let aside = root.join("bg-1/.run-2.recovering");
        fs::rename(&dir, &aside).unwrap();
        fs::create_dir_all(dir.join("recovered")).unwrap();
        fs::write(dir.join("recovered/journal.jsonl"), b"half").unwrap();
        let done = recover_all(&root, &key, SIGNER);
        assert!(
            done.iter().any(|r| matches!(r, Recovered::Sealed { .. })),
            "{done:?}"
        );
        let v = verify_bundle(&root.join("bg-1/run-2"), None).unwrap();
        assert_eq!(read_record(&v).unwrap().verdict, Verdict::Interrupted);
        assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    }

    #[test]
    fn a_live_run_is_never_recovered() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("evidence");
        let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
        let w = BundleWriter::create(&root, "bg-1", "run-live").unwrap();
        assert!(recover_all(&root, &key, SIGNER).is_empty());
        assert_eq!(leftovers(&root).len(), 1, "listed, but left alone");
        drop(w);
    }
}
