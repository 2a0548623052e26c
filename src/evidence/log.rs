//! The evidence log (D8): every sealed bundle's `SHA256SUMS` digest
//! appended in order, as an RFC 6962 leaf, with a checkpoint signed after
//! each append in the C2SP `tlog-checkpoint` / `signed-note` format. A
//! deleted, altered, added or reordered bundle no longer matches it.
//!
//! Layout, `<evidence>/.log/` (a drill id never starts with a dot):
//! - `entries.jsonl`: one JSON object per line; the leaf is the exact bytes
//!   of the line without its newline, so anyone can recompute the tree
//!   from the file (the export's `verify_log.py` does, in plain Python);
//! - `checkpoint`: the latest signed checkpoint;
//! - `checkpoint.<size>`: every checkpoint ever signed (witness copies).
//!
//! Appends are serialised across processes with `flock` on `.log/lock`.
//! The note key is the evidence signing key (Ed25519) under the signer's
//! principal; the origin names the log: `glassdrill-evidence-log/<signer>`.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use serde::{Deserialize, Serialize};

use super::*;
use crate::evidence::allowed_signers;
use crate::ledger::merkle::{self, Hash};
use crate::ledger::note::{Checkpoint, NoteVerifier};

/// The log's directory under the evidence root.
pub const LOG_DIR: &str = ".log";
const ENTRIES: &str = "entries.jsonl";
const CHECKPOINT: &str = "checkpoint";
/// Largest log read (a line is ~200 bytes: millions of drills).
const MAX_LOG: u64 = 1 << 30;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `bundle`, or a custody event such as `export`.
    pub kind: String,
    /// Drill id (bundles).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub drill: String,
    /// Run id (bundles).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// SHA-256 of the bundle's (or the export's) `SHA256SUMS`, hex.
    pub manifest_sha256: String,
    /// What a custody event did, or a review's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who reviewed or classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A review's outcome: `accepted` or `follow-up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// A classification: `drill`, `emergency` or `misuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The sign-in a classification is about (its sign-in log id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<String>,
    /// The account a classification is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When it was appended (RFC 3339, UTC).
    pub appended: String,
}

impl Entry {
    /// A sealed bundle's entry.
    pub fn bundle(drill: &str, run: &str, manifest_sha256: &str) -> Self {
        Self {
            drill: drill.to_owned(),
            run: run.to_owned(),
            manifest_sha256: manifest_sha256.to_owned(),
            ..Self::new("bundle")
        }
    }

    /// An entry of `kind`, appended now, every other field empty.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            drill: String::new(),
            run: String::new(),
            manifest_sha256: String::new(),
            note: None,
            by: None,
            outcome: None,
            class: None,
            signin: None,
            account: None,
            appended: crate::support::time::rfc3339_ms(crate::support::time::now()),
        }
    }
}

/// What an append gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry's index (0-based).
    pub index: u64,
    /// The signed checkpoint over the log including it.
    pub checkpoint: String,
}

/// The log's origin line for `signer`.
pub fn origin(signer: &str) -> String {
    format!("glassdrill-evidence-log/{signer}")
}

/// The log of an evidence root.
#[derive(Debug, Clone)]
pub struct EvidenceLog {
    dir: PathBuf,
}

/// The log as read: its lines and their leaf hashes.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Parsed entries (a line that does not parse is a finding and `None`).
    pub entries: Vec<Option<Entry>>,
    /// Leaf hashes, one per line.
    pub leaves: Vec<Hash>,
    /// Bytes after the last newline (a torn append).
    pub torn_tail: usize,
}

impl EvidenceLog {
    /// The log of `evidence_root`.
    pub fn at(evidence_root: &Path) -> Self {
        Self {
            dir: evidence_root.join(LOG_DIR),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unexpected uses no classification accounts for (none when the
    /// log cannot be read).
    pub fn open_uses(&self) -> Vec<OpenUse> {
        self.read()
            .map(|c| open_uses(&c.entries.into_iter().flatten().collect::<Vec<_>>()))
            .unwrap_or_default()
    }

    /// The log's bytes and the length of its complete lines (an absent
    /// log is empty).
    fn bytes(&self) -> Result<(Vec<u8>, usize), EvidenceError> {
        let path = self.dir.join(ENTRIES);
        let bytes = match read_capped(&path, MAX_LOG) {
            Ok(b) => b,
            Err(ReadCappedError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(ReadCappedError::Io(e)) => return Err(io_err("read", &path)(e)),
            Err(ReadCappedError::TooLarge) => {
                return Err(EvidenceError::Serialize {
                    what: "the evidence log",
                    why: format!("{} is larger than 1 GiB", path.display()),
                });
            }
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        Ok((bytes, complete))
    }

    /// The log's complete lines (an entry's exact bytes each), for a fleet
    /// to mirror.
    pub fn lines(&self) -> Result<Vec<String>, EvidenceError> {
        let (bytes, complete) = self.bytes()?;
        Ok(bytes[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| String::from_utf8(l.to_vec()).ok())
            .collect())
    }

    /// Reads the entries (an absent log is empty).
    pub fn read(&self) -> Result<LogContents, EvidenceError> {
        let (bytes, complete) = self.bytes()?;
        let mut out = LogContents {
            torn_tail: bytes.len() - complete,
            ..LogContents::default()
        };
        if complete > 0 {
            // Without the final newline: exactly one piece per line.
            for line in bytes[..complete - 1].split(|b| *b == b'\n') {
                out.leaves.push(merkle::leaf_hash(line));
                out.entries.push(serde_json::from_slice(line).ok());
            }
        }
        Ok(out)
    }

    /// Takes the log's lock (across processes), held until dropped.
    fn lock(&self) -> Result<nix::fcntl::Flock<fs::File>, EvidenceError> {
        crate::support::fs::create_private_dirs(&self.dir).map_err(io_err("create", &self.dir))?;
        let lock_path = self.dir.join("lock");
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &lock_path)(io::Error::from(e)))
    }

    /// Appends a sealed bundle and signs a new checkpoint; serialised
    /// across processes. Returns the entry's index and the checkpoint.
    pub fn append(
        &self,
        drill: &str,
        run: &str,
        manifest_sha256: &str,
        key: &SigningKey,
        signer: &str,
    ) -> Result<Appended, EvidenceError> {
        self.append_entry(Entry::bundle(drill, run, manifest_sha256), key, signer)
    }

    /// Appends `entry` (a review, a classification, a custody event) under
    /// the lock.
    pub fn append_entry(
        &self,
        entry: Entry,
        key: &SigningKey,
        signer: &str,
    ) -> Result<Appended, EvidenceError> {
        let _lock = self.lock()?;
        self.write_entries(vec![entry], key, signer)
    }

    /// Appends `entries` (at least one) and signs one checkpoint after
    /// them: a catch-up of thousands of bundles hashes the tree once.
    fn write_entries(
        &self,
        entries: Vec<Entry>,
        key: &SigningKey,
        signer: &str,
    ) -> Result<Appended, EvidenceError> {
        let path = self.dir.join(ENTRIES);
        let before = self.read()?;
        if before.torn_tail > 0 {
            // An append that died half-written: never covered by a
            // checkpoint; cut so the log stays one entry per line.
            let len = fs::metadata(&path).map_err(io_err("inspect", &path))?.len();
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            f.set_len(len - before.torn_tail as u64)
                .map_err(io_err("truncate", &path))?;
            tracing::warn!(log = %path.display(), bytes = before.torn_tail, "cut a half-written entry from the evidence log");
        }
        // Never sign over a log that no longer matches what was signed: an
        // edited or cut log is refused, not re-signed. Entries after the
        // checkpoint (an append that died before signing) are covered now.
        match self.latest_checkpoint() {
            Some(note) => {
                let c = key
                    .note_verifier(signer)
                    .ok()
                    .and_then(|v| v.open(&note).ok().map(str::to_owned))
                    .and_then(|t| Checkpoint::parse(&t).ok());
                let matches = c.as_ref().is_some_and(|c| {
                    usize::try_from(c.size).is_ok_and(|n| {
                        n <= before.leaves.len() && merkle::root(&before.leaves[..n]) == c.root
                    })
                });
                if !matches {
                    return Err(EvidenceError::Serialize {
                        what: "the evidence log",
                        why: format!(
                            "{} no longer matches its latest checkpoint (edited, cut, or signed by another key): nothing is appended; run `glassdrill evidence verify` and keep the evidence as it is for an investigation",
                            path.display()
                        ),
                    });
                }
            }
            None if !before.leaves.is_empty() => {
                return Err(EvidenceError::Serialize {
                    what: "the evidence log",
                    why: format!(
                        "{} has entries but no checkpoint (deleted?): nothing is appended; run `glassdrill evidence verify`",
                        path.display()
                    ),
                });
            }
            None => {}
        }
        let mut leaves = before.leaves;
        let mut buf = Vec::new();
        for entry in &entries {
            let line = serde_json::to_vec(entry).map_err(|e| EvidenceError::Serialize {
                what: "a log entry",
                why: e.to_string(),
            })?;
            leaves.push(merkle::leaf_hash(&line));
            buf.extend_from_slice(&line);
            buf.push(b'\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open", &path))?;
        f.write_all(&buf).map_err(io_err("append to", &path))?;
        f.sync_all().map_err(io_err("sync", &path))?;
        let index = leaves.len() as u64 - 1;
        let checkpoint = Checkpoint {
            origin: origin(signer),
            size: leaves.len() as u64,
            root: merkle::root(&leaves),
        };
        let note = key
            .note_signer(signer)?
            .sign(&checkpoint.body())
            .map_err(|e| EvidenceError::Crypto {
                action: "signing the log checkpoint",
                why: e.to_string(),
            })?;
        crate::support::fs::write_atomic(
            &self.dir.join(format!("{CHECKPOINT}.{}", checkpoint.size)),
            note.as_bytes(),
            0o600,
            crate::support::fs::Existing::Replace,
        )
        .map_err(io_err("write", &self.dir))?;
        crate::support::fs::write_atomic(
            &self.dir.join(CHECKPOINT),
            note.as_bytes(),
            0o600,
            crate::support::fs::Existing::Replace,
        )
        .map_err(io_err("write", &self.dir))?;
        Ok(Appended {
            index,
            checkpoint: note,
        })
    }

    /// Copies the entries and the latest checkpoint into `dir` under the
    /// log's lock (one consistent pair).
    pub fn copy_to(&self, dir: &Path) -> Result<(), EvidenceError> {
        let _lock = self.lock()?;
        fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        for f in [ENTRIES, CHECKPOINT] {
            let src = self.dir.join(f);
            if src.exists() {
                fs::copy(&src, dir.join(f)).map_err(io_err("copy", &src))?;
            }
        }
        Ok(())
    }

    /// The latest checkpoint's text, if any.
    pub fn latest_checkpoint(&self) -> Option<String> {
        fs::read_to_string(self.dir.join(CHECKPOINT)).ok()
    }
}

/// A sealed bundle found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDisk {
    /// Drill id.
    pub drill: String,
    /// Run id.
    pub run: String,
}

impl OnDisk {
    /// SHA-256 of its `SHA256SUMS` (`None`: no manifest), read when asked:
    /// listing the bundles at every start reads no file.
    pub fn manifest_sha256(&self, root: &Path) -> Option<String> {
        read_capped(
            &root.join(&self.drill).join(&self.run).join(MANIFEST),
            MAX_MANIFEST_FILE,
        )
        .ok()
        .map(|b| sha256_hex(&b))
    }
}

/// Entries under `root` (drill directories and their runs) whose names are
/// not UTF-8: never written by glassdrill, shown lossily.
fn odd_names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in fs::read_dir(root).into_iter().flatten().flatten() {
        if d.file_name().to_str().is_none() {
            out.push(d.file_name().to_string_lossy().into_owned());
            continue;
        }
        if d.path().is_dir() {
            for r in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                if r.file_name().to_str().is_none() {
                    out.push(format!(
                        "{}/{}",
                        d.file_name().to_string_lossy(),
                        r.file_name().to_string_lossy()
                    ));
                }
            }
        }
    }
    out
}

/// The log entry kind of an unexpected use a drill found.
pub const UNEXPECTED_USE: &str = "unexpected-use";

/// An unexpected use in the log that no classification accounts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUse {
    /// The account (UPN).
    pub account: String,
    /// The sign-in log record's id.
    pub signin: String,
    /// When it happened.
    pub created: String,
    /// The drill run that found it (`drill/run`).
    pub found_by: String,
}

impl OpenUse {
    /// In words, for status, reports and exports.
    pub fn words(&self) -> String {
        format!(
            "{} signed in at {} (sign-in {}, found by {})",
            self.account, self.created, self.signin, self.found_by
        )
    }

    /// The command that classifies it.
    pub fn fix(&self) -> String {
        format!(
            "glassdrill evidence classify --signin {} --account {} --as drill|emergency|misuse",
            self.signin, self.account
        )
    }
}

/// The unexpected uses in the log no classification accounts for, oldest
/// first.
pub fn open_uses(entries: &[Entry]) -> Vec<OpenUse> {
    let classified: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| e.kind == "classification")
        .filter_map(|e| e.signin.as_deref().map(str::to_ascii_lowercase))
        .collect();
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .filter(|e| e.kind == UNEXPECTED_USE)
        .filter_map(|e| {
            let signin = e.signin.clone()?;
            let key = signin.to_ascii_lowercase();
            (!classified.contains(&key) && seen.insert(key)).then(|| OpenUse {
                account: e.account.clone().unwrap_or_default(),
                signin,
                created: e.note.clone().unwrap_or_default(),
                found_by: format!("{}/{}", e.drill, e.run),
            })
        })
        .collect()
}

/// The sign-ins the bundles under `root` record, by correlation id (lower
/// case), each with its `drill/run`: those sign-ins were drills.
pub fn drill_sign_ins(root: &Path) -> std::collections::HashMap<String, String> {
    bundles_on_disk(root)
        .into_iter()
        .filter_map(|b| {
            let text = fs::read(root.join(&b.drill).join(&b.run).join("drill.json")).ok()?;
            let corr = crate::record::DrillRecord::from_json(&text)
                .ok()?
                .sign_in
                .correlation_id?;
            Some((corr.to_ascii_lowercase(), format!("{}/{}", b.drill, b.run)))
        })
        .collect()
}

/// Every sealed bundle under `root` (`<drill>/<run>/SHA256SUMS`), sorted
/// by run id (time order).
pub fn bundles_on_disk(root: &Path) -> Vec<OnDisk> {
    let mut out = Vec::new();
    for d in fs::read_dir(root).into_iter().flatten().flatten() {
        let Some(drill) = d.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // The entry's own type: a symlinked drill or run directory is not
        // followed (it could pull files from anywhere into an export).
        if crate::support::ids::check(&drill).is_err() || !d.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for r in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let Some(run) = r.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if run.starts_with('.') || !r.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            out.push(OnDisk {
                drill: drill.clone(),
                run,
            });
        }
    }
    out.sort_by(|a, b| a.run.cmp(&b.run).then(a.drill.cmp(&b.drill)));
    out
}

/// Appends every sealed bundle the log does not hold yet (a run that died
/// between sealing and appending), in time order; returns how many.
pub fn catch_up(root: &Path, key: &SigningKey, signer: &str) -> Result<usize, EvidenceError> {
    let log = EvidenceLog::at(root);
    // One lock for the whole pass: two processes starting at once never
    // append the same bundle twice.
    let _lock = log.lock()?;
    let have: std::collections::HashSet<(String, String)> = log
        .read()?
        .entries
        .into_iter()
        .flatten()
        .filter(|e| e.kind == "bundle")
        .map(|e| (e.drill, e.run))
        .collect();
    // This host's key, pinned: a bundle someone dropped in with its own
    // key and allowed_signers never enters the log.
    let pinned = pinned_allowed_signers(&key.allowed_signers_line(signer)?).map_err(io_err(
        "write",
        Path::new("a temporary allowed_signers file"),
    ))?;
    let mut missing = Vec::new();
    for b in bundles_on_disk(root) {
        if have.contains(&(b.drill.clone(), b.run.clone())) {
            continue;
        }
        let Some(digest) = b.manifest_sha256(root) else {
            continue;
        };
        // Only what verifies with this host's key enters its log.
        let dir = root.join(&b.drill).join(&b.run);
        if verify_bundle_all(&dir, Some(pinned.path())).is_err() {
            tracing::warn!(bundle = %dir.display(), "not appended to the evidence log: it does not verify");
            continue;
        }
        missing.push(Entry {
            note: Some("appended at start (sealed before it reached the log)".into()),
            ..Entry::bundle(&b.drill, &b.run, &digest)
        });
    }
    let n = missing.len();
    if n > 0 {
        log.write_entries(missing, key, signer)?;
    }
    Ok(n)
}

/// When a bundle's run started: its record's time, else the run id's
/// (`YYYYMMDDTHHMMSSZ-…`).
fn bundle_time(root: &Path, b: &OnDisk) -> Option<chrono::DateTime<chrono::Utc>> {
    let dir = root.join(&b.drill).join(&b.run);
    read_capped(&dir.join("drill.json"), MAX_MANIFEST_FILE)
        .ok()
        .and_then(|t| crate::record::DrillRecord::from_json(&t).ok())
        .map(|r| r.started)
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(b.run.get(..16)?, "%Y%m%dT%H%M%SZ")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// Deletes the bundles whose runs started before `cutoff`, recording each
/// in the log first (kind `pruned`, with its digest), so verification
/// knows them as pruned, not missing. The log itself is never rewritten.
pub fn prune(
    root: &Path,
    cutoff: chrono::DateTime<chrono::Utc>,
    key: &SigningKey,
    signer: &str,
) -> Result<Vec<(String, String)>, EvidenceError> {
    let log = EvidenceLog::at(root);
    let _lock = log.lock()?;
    // Only what the log recorded, with the same digest, and by the log's
    // time (a bundle's own files could claim any date); anything else is
    // kept for a person to look at.
    let recorded: std::collections::HashMap<(String, String), (String, String)> = log
        .read()?
        .entries
        .into_iter()
        .flatten()
        .filter(|e| e.kind == "bundle")
        .map(|e| ((e.drill, e.run), (e.manifest_sha256, e.appended)))
        .collect();
    let mut pruned = Vec::new();
    for b in bundles_on_disk(root) {
        let Some((digest, appended)) = recorded.get(&(b.drill.clone(), b.run.clone())) else {
            continue;
        };
        let on_disk = b.manifest_sha256(root);
        if on_disk.as_deref() != Some(digest.as_str()) {
            tracing::warn!(drill = %b.drill, run = %b.run, "not pruned: the bundle differs from its log record");
            continue;
        }
        let logged = crate::support::time::parse_rfc3339(appended);
        let when = match (logged, bundle_time(root, &b)) {
            // The later of the two: neither a back-dated record nor a
            // catch-up append makes a bundle look older than it is.
            (Some(l), Some(t)) => Some(l.max(t)),
            (l, t) => l.or(t),
        };
        if when.is_none_or(|t| t >= cutoff) {
            continue;
        }
        log.write_entries(
            vec![Entry {
                drill: b.drill.clone(),
                run: b.run.clone(),
                manifest_sha256: on_disk.unwrap_or_default(),
                note: Some(format!(
                    "pruned: older than {}",
                    crate::support::time::rfc3339_ms(cutoff)
                )),
                ..Entry::new("pruned")
            }],
            key,
            signer,
        )?;
        let dir = root.join(&b.drill).join(&b.run);
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
        pruned.push((b.drill, b.run));
    }
    Ok(pruned)
}

/// What verifying the log against the bundles found.
#[derive(Debug, Default)]
pub struct LogReport {
    /// Entries in the log.
    pub size: u64,
    /// The size the latest checkpoint covers (`None`: no valid checkpoint).
    pub checkpoint_size: Option<u64>,
    /// Problems, each naming the entry or bundle.
    pub findings: Vec<String>,
}

/// Verifies the log of `root`: the latest checkpoint is signed by
/// `verifier` and matches the entries; every bundle on disk is in the log
/// with the same manifest digest; every entry has its bundle; no entry is
/// duplicated. With `since`, an older checkpoint: the log only grew since.
pub fn verify_log(
    root: &Path,
    verifier: &NoteVerifier,
    signer: &str,
    since: Option<&str>,
) -> LogReport {
    verify_log_any(root, std::slice::from_ref(verifier), signer, since)
}

/// [`verify_log`] accepting a checkpoint signed by any of `verifiers` (the
/// signer's current and retired keys).
pub fn verify_log_any(
    root: &Path,
    verifiers: &[NoteVerifier],
    signer: &str,
    since: Option<&str>,
) -> LogReport {
    let log = EvidenceLog::at(root);
    let mut r = LogReport::default();
    let contents = match log.read() {
        Ok(c) => c,
        Err(e) => {
            r.findings
                .push(format!("the evidence log cannot be read: {e}"));
            return r;
        }
    };
    r.size = contents.leaves.len() as u64;
    if contents.torn_tail > 0 {
        r.findings.push(format!(
            "the log ends in {} bytes of a half-written entry (an append that died, or a truncated log)",
            contents.torn_tail
        ));
    }
    for (i, e) in contents.entries.iter().enumerate() {
        if e.is_none() {
            r.findings
                .push(format!("log entry {i} is not a valid entry (altered?)"));
        }
    }
    let check = |note: &str, what: &str, findings: &mut Vec<String>| -> Option<Checkpoint> {
        let opened = verifiers.iter().map(|v| v.open(note)).find(Result::is_ok);
        let text = match opened {
            Some(Ok(t)) => t,
            _ => {
                findings.push(format!(
                    "{what} is not signed by {signer}'s key{}",
                    if verifiers.len() > 1 { "s" } else { "" }
                ));
                return None;
            }
        };
        match Checkpoint::parse(text) {
            Ok(c) if c.origin != origin(signer) => {
                findings.push(format!(
                    "{what} is for log {:?}, not {:?} (a checkpoint of another log)",
                    c.origin,
                    origin(signer)
                ));
                None
            }
            Ok(c) => Some(c),
            Err(e) => {
                findings.push(format!("{what} is not a checkpoint: {e}"));
                None
            }
        }
    };
    match log.latest_checkpoint() {
        None if r.size > 0 => r
            .findings
            .push("the log has entries but no checkpoint".into()),
        None => {}
        Some(note) => {
            if let Some(c) = check(&note, "the latest checkpoint", &mut r.findings) {
                if c.size > r.size {
                    r.findings.push(format!(
                        "the latest checkpoint covers {} entries but the log has {}: entries were removed (truncated log)",
                        c.size, r.size
                    ));
                } else if merkle::root(&contents.leaves[..c.size as usize]) != c.root {
                    r.findings.push(format!(
                        "the first {} log entries do not match the latest checkpoint: entries were altered, reordered or replaced",
                        c.size
                    ));
                } else {
                    r.checkpoint_size = Some(c.size);
                    if c.size < r.size {
                        r.findings.push(format!(
                            "log entries {}..{} are not covered by a checkpoint (an append that died before signing)",
                            c.size,
                            r.size - 1
                        ));
                    }
                }
            }
        }
    }
    // Every checkpoint ever signed (witness copies kept beside the log)
    // must still describe a prefix of it: a log edited and re-signed
    // would contradict its older checkpoints.
    let mut kept: Vec<(u64, String)> = fs::read_dir(log.dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let n = name.strip_prefix("checkpoint.")?.parse::<u64>().ok()?;
            Some((n, fs::read_to_string(e.path()).ok()?))
        })
        .collect();
    kept.sort();
    let sizes: std::collections::BTreeSet<usize> = kept
        .iter()
        .filter_map(|(n, _)| usize::try_from(*n).ok())
        .filter(|n| *n <= contents.leaves.len())
        .collect();
    let roots = merkle::prefix_roots(&contents.leaves, &sizes);
    for (n, note) in &kept {
        let what = format!("kept checkpoint.{n}");
        let Some(c) = check(note, &what, &mut r.findings) else {
            continue;
        };
        let ok = usize::try_from(c.size)
            .ok()
            .and_then(|s| roots.get(&s))
            .is_some_and(|root| *root == c.root);
        if c.size != *n || !ok {
            r.findings.push(format!(
                "{what} (size {}) does not describe the first {} entries of the log: the log was edited, cut or re-signed",
                c.size, c.size
            ));
        }
    }
    if let Some(old) = since
        && let Some(c) = check(old, "the given checkpoint", &mut r.findings)
    {
        if c.size > r.size {
            r.findings.push(format!(
                "the given checkpoint covers {} entries but the log now has {}: the log was cut",
                c.size, r.size
            ));
        } else {
            let proof = merkle::consistency_proof(c.size as usize, &contents.leaves);
            let new_root = merkle::root(&contents.leaves);
            let ok = proof.is_some_and(|p| {
                merkle::verify_consistency(c.size, r.size, &p, &c.root, &new_root).is_ok()
            });
            if !ok {
                r.findings.push(format!(
                    "the log is not an extension of the given checkpoint (size {}): its history was rewritten",
                    c.size
                ));
            }
        }
    }
    // Bundles against entries.
    let mut seen: std::collections::HashMap<(String, String), (usize, String)> =
        std::collections::HashMap::new();
    for (i, e) in contents.entries.iter().enumerate() {
        let Some(e) = e else { continue };
        if e.kind != "bundle" {
            continue;
        }
        let key = (e.drill.clone(), e.run.clone());
        if let Some((first, _)) = seen.get(&key) {
            r.findings.push(format!(
                "log entries {first} and {i} both record bundle {}/{}",
                e.drill, e.run
            ));
            continue;
        }
        seen.insert(key, (i, e.manifest_sha256.clone()));
    }
    for (i, e) in contents.entries.iter().enumerate() {
        if let Some(e) = e
            && e.kind == "review"
            && seen
                .get(&(e.drill.clone(), e.run.clone()))
                .is_none_or(|(b, _)| *b >= i)
        {
            r.findings.push(format!(
                "log entry {i}: a review of {}/{}, which no earlier entry records",
                e.drill, e.run
            ));
        }
    }
    let mut on_disk = std::collections::HashSet::new();
    for b in bundles_on_disk(root) {
        let key = (b.drill.clone(), b.run.clone());
        match (seen.get(&key), &b.manifest_sha256(root)) {
            (None, _) => r.findings.push(format!(
                "bundle {}/{} is not in the evidence log (added afterwards?)",
                b.drill, b.run
            )),
            (Some((i, want)), Some(got)) if want != got => r.findings.push(format!(
                "bundle {}/{}: its SHA256SUMS is not the one log entry {i} recorded (altered after sealing)",
                b.drill, b.run
            )),
            _ => {}
        }
        on_disk.insert(key);
    }
    let pruned: std::collections::HashSet<(String, String)> = contents
        .entries
        .iter()
        .flatten()
        .filter(|e| e.kind == "pruned")
        .map(|e| (e.drill.clone(), e.run.clone()))
        .collect();
    let mut missing: Vec<(usize, &String, &String)> = seen
        .iter()
        .filter(|(k, _)| !on_disk.contains(*k) && !pruned.contains(*k))
        .map(|((drill, run), (i, _))| (*i, drill, run))
        .collect();
    missing.sort();
    for (i, drill, run) in missing {
        r.findings.push(format!(
            "log entry {i}: bundle {drill}/{run} is missing (deleted?)"
        ));
    }
    r
}

#[cfg(test)]
mod tests;

/// What `glassdrill evidence verify` (no bundle named) found.
#[derive(Debug, Default)]
pub struct AllReport {
    /// Bundles verified.
    pub bundles: usize,
    /// Bundles that did not verify, with every problem.
    pub failed: Vec<(PathBuf, Vec<String>)>,
    /// The log's verification.
    pub log: LogReport,
}

/// Verifies every bundle under `root` against the pinned `allowed_signers`
/// (never a bundle's own copy), and the evidence log against the key
/// `allowed_signers` lists for `signer`; with `since`, that the log only
/// grew since that checkpoint.
pub fn verify_all(
    root: &Path,
    allowed_signers: &Path,
    signer: &str,
    since: Option<&str>,
) -> Result<AllReport, String> {
    let verifiers = log_verifiers(allowed_signers, signer)?;
    let mut report = AllReport::default();
    let dirs: Vec<PathBuf> = bundles_on_disk(root)
        .into_iter()
        .map(|b| root.join(&b.drill).join(&b.run))
        .collect();
    report.bundles = dirs.len();
    // On every core: hashing the files is the work.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = dirs.len().div_ceil(workers).max(16);
    report.failed = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|dir| {
                            verify_bundle_all(dir, Some(allowed_signers))
                                .err()
                                .map(|errs| {
                                    (dir.clone(), errs.iter().map(ToString::to_string).collect())
                                })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![(
                        root.to_path_buf(),
                        vec!["a verifier thread panicked".into()],
                    )]
                })
            })
            .collect()
    });
    for name in odd_names(root) {
        report.failed.push((
            root.join(&name),
            vec![format!(
                "{name}: a name that is not UTF-8 (not a bundle glassdrill wrote; look at it)"
            )],
        ));
    }
    report.log = verify_log_any(root, &verifiers, signer, since);
    Ok(report)
}

/// The checkpoint verifiers of every key `allowed_signers` lists for
/// `signer` (current and retired: checkpoints signed before a rotation
/// stay valid).
pub fn log_verifiers(allowed_signers: &Path, signer: &str) -> Result<Vec<NoteVerifier>, String> {
    let text = fs::read_to_string(allowed_signers)
        .map_err(|e| format!("cannot read {}: {e}", allowed_signers.display()))?;
    let (entries, errs) = allowed_signers::parse_allowed_signers(&text, allowed_signers);
    if let Some(e) = errs.first() {
        return Err(e.to_string());
    }
    let verifiers: Vec<NoteVerifier> = entries
        .iter()
        .filter(|e| {
            !e.cert_authority
                && allowed_signers::match_pattern_list(signer, &e.principals)
                && e.namespaces
                    .as_deref()
                    .is_none_or(|n| allowed_signers::match_pattern_list(NAMESPACE, n))
        })
        .filter_map(|e| e.key.key_data().ed25519().map(|k| k.0))
        .filter_map(|k| NoteVerifier::from_ed25519(signer, &k).ok())
        .collect();
    if verifiers.is_empty() {
        return Err(format!(
            "{} lists no Ed25519 key for signer {signer} in namespace {NAMESPACE}",
            allowed_signers.display()
        ));
    }
    Ok(verifiers)
}
