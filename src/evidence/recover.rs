//! Recovery of runs that died. Every run stages its bundle from its first
//! moment (`<root>/<drill>/.<run>.partial`, locked by the running process)
//! and journals each stage into it. A staging directory nobody holds
//! locked belongs to a run that was killed, crashed or lost power; at the
//! next start it becomes a signed INTERRUPTED bundle at `<drill>/<run>`:
//! the dead run's files kept as found under `recovered/`, and a
//! `drill.json` rebuilt from the journal saying where the run died and
//! which files were recovered. No sign-in is left without evidence.

use super::*;
use crate::record::{DrillRecord, JournalLine, Recovery, Stage, Verdict};

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
        fs::rename(dir, &aside).map_err(io_err("move aside", dir))?;
    }
    if fs::symlink_metadata(&final_dir).is_ok() {
        // A previous recovery sealed the bundle and died before cleaning up.
        fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))?;
        return Ok(None);
    }
    let mut files = Vec::new();
    collect(&aside, "", &mut files)?;
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
    record.verdict = Verdict::Interrupted;
    record.reasons = vec![format!(
        "the run died{} (killed, crashed or powered off); this record was rebuilt from its journal at the next start, with {} file(s) it had written{}",
        died_during
            .map(|s| format!(" during {}", s.name()))
            .unwrap_or_default(),
        names.len(),
        if attempted {
            "; a sign-in may have happened"
        } else {
            "; no sign-in had been attempted"
        }
    )];
    record.recorded = crate::support::time::now();
    record.recovery = Some(Recovery {
        died_during,
        sign_in_attempted: attempted,
        recovered_files: names.clone(),
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
    w.add("report.html", super::report::html(&record).as_bytes())?;
    let bundle = w.finish(key, signer)?;
    fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))?;
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

/// Every regular file under `dir/rel` with its bytes (symlinks and other
/// special files are not followed or read).
fn collect(root: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), EvidenceError> {
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
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match e.file_type() {
            Ok(t) if t.is_dir() => collect(root, &child, out)?,
            Ok(t) if t.is_file() && validate_rel_path(&child).is_ok() => {
                if let Ok(bytes) = read_capped(&e.path(), MAX_RECOVERED_FILE) {
                    out.push((child, bytes));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
