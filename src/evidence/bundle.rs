//! Writing a bundle: staged, fsynced, sealed with `SHA256SUMS` and its
//! signature, renamed into place.

use super::*;
use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};

/// Writes one bundle into a hidden staging directory and, on
/// [`finish`](BundleWriter::finish), seals and renames it into place.
///
/// A bundle therefore appears at its final path complete and signed, or not
/// at all. A writer dropped without `finish` or [`abandon`](Self::abandon)
/// leaves its staging directory behind for inspection; [`create`](Self::create)
/// refuses to reuse it.
#[derive(Debug)]
pub(crate) struct BundleWriter {
    staging: PathBuf,
    final_dir: PathBuf,
    drill_dir: PathBuf,
    /// Relative path -> sha256 hex of the exact bytes written. A `BTreeMap`
    /// over `String` iterates in bytewise order, which is the manifest order.
    files: BTreeMap<String, String>,
    /// Every directory prefix of an added path, relative to the staging
    /// directory (used to catch file/directory conflicts and to fsync).
    dirs: BTreeSet<String>,
    /// An exclusive lock on the staging directory, held until the writer
    /// is gone: a staging directory nobody holds locked belongs to a run
    /// that died ([`super::recover`]).
    _lock: nix::fcntl::Flock<File>,
}

/// Appends one line to a journal and fsyncs it (and, when it creates the
/// journal, its directory).
pub(crate) fn append_journal(path: &Path, line: &[u8]) -> Result<(), EvidenceError> {
    use std::io::Write as _;
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("open", path))?;
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    f.write_all(&bytes)
        .and_then(|()| f.sync_data())
        .map_err(io_err("append to", path))?;
    if new {
        sync_dir(&parent_dir(path))?;
    }
    Ok(())
}

/// The journal file of a bundle.
pub(crate) const JOURNAL: &str = "journal.jsonl";

/// Suffix of a staging directory being created (not yet locked).
pub(crate) const CREATING: &str = ".creating";

/// Locks a staging directory exclusively without waiting; `None` when
/// another process holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<Option<nix::fcntl::Flock<File>>, EvidenceError> {
    let f = File::open(dir).map_err(io_err("open", dir))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io_err("lock", dir)(io::Error::from(e))),
    }
}

impl BundleWriter {
    /// Starts a bundle for run `run_id` of drill `drill_id` under
    /// `evidence_root`, staging it in `<root>/<drill_id>/.<run_id>.partial`
    /// (mode 0700; missing parents are created 0700 too).
    ///
    /// Both ids must be safe single path components (ASCII letters, digits,
    /// `-_.+@`, not starting with `.`). Fails if the final bundle directory
    /// `<root>/<drill_id>/<run_id>` already exists, or if a staging directory
    /// from an interrupted run is in the way.
    pub(crate) fn create(
        evidence_root: &Path,
        drill_id: &str,
        run_id: &str,
    ) -> Result<Self, EvidenceError> {
        validate_id("drill id", drill_id)?;
        validate_id("run id", run_id)?;
        let drill_dir = evidence_root.join(drill_id);
        let final_dir = drill_dir.join(run_id);
        let staging = drill_dir.join(format!(".{run_id}.partial"));
        create_dirs(&drill_dir)?;
        match fs::symlink_metadata(&final_dir) {
            Ok(_) => return Err(EvidenceError::BundleExists { path: final_dir }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &final_dir)(e)),
        }
        // Created under a name recovery ignores, locked, and only then
        // given its staging name: recovery never sees an unlocked staging
        // directory of a live run.
        let creating = drill_dir.join(format!(".{run_id}{CREATING}"));
        match DirBuilder::new().mode(DIR_MODE).create(&creating) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(EvidenceError::StagingExists { path: creating });
            }
            Err(e) => return Err(io_err("create directory", &creating)(e)),
        }
        let lock = lock_dir(&creating)?.ok_or_else(|| EvidenceError::StagingExists {
            path: creating.clone(),
        })?;
        if let Err(e) = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &creating,
            nix::fcntl::AT_FDCWD,
            &staging,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            let _ = fs::remove_dir(&creating);
            return Err(if e == nix::errno::Errno::EEXIST {
                EvidenceError::StagingExists { path: staging }
            } else {
                io_err("rename", &creating)(io::Error::from(e))
            });
        }
        Ok(Self {
            staging,
            final_dir,
            drill_dir,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            _lock: lock,
        })
    }

    /// Where the run's journal goes (appended with [`append_journal`]).
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.staging.join(JOURNAL)
    }

    /// Adds one file to the bundle: writes exactly `bytes` to
    /// `<staging>/<rel_path>` (mode 0600, creating subdirectories 0700),
    /// fsyncs it, and records the sha256 of those same bytes for
    /// `SHA256SUMS`.
    ///
    /// `rel_path` is '/'-separated, e.g. `screenshots/01-username.png`.
    /// Rejected: absolute paths, `.`/`..`/empty components, backslashes,
    /// newlines and other control characters (`sha256sum` would escape them
    /// and the manifest would no longer be plain), the reserved top-level
    /// names `SHA256SUMS`, `SHA256SUMS.sig` and `allowed_signers`, paths
    /// already added, and paths that would make a file also a directory.
    pub(crate) fn add(&mut self, rel_path: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        validate_rel_path(rel_path).map_err(|why| EvidenceError::InvalidPath {
            path: rel_path.to_string(),
            why,
        })?;
        if [MANIFEST, SIGNATURE, ALLOWED_SIGNERS, JOURNAL].contains(&rel_path) {
            return Err(EvidenceError::ReservedPath {
                path: rel_path.to_string(),
            });
        }
        self.check_new_path(rel_path)?;

        let prefixes = dir_prefixes(rel_path);
        if let Some(parent) = prefixes.last() {
            create_dirs(&self.staging.join(parent))?;
        }
        write_new_file(&self.staging.join(rel_path), bytes)?;
        self.dirs.extend(prefixes.into_iter().map(str::to_string));
        self.files.insert(rel_path.to_string(), sha256_hex(bytes));
        Ok(())
    }

    /// Refuses a path already added, or one that is a file where another
    /// path needs a directory (or the other way round).
    fn check_new_path(&self, rel_path: &str) -> Result<(), EvidenceError> {
        if self.files.contains_key(rel_path) {
            return Err(EvidenceError::DuplicatePath {
                path: rel_path.to_string(),
            });
        }
        for prefix in dir_prefixes(rel_path) {
            if self.files.contains_key(prefix) {
                return Err(EvidenceError::PathConflict {
                    path: rel_path.to_string(),
                    other: prefix.to_string(),
                });
            }
        }
        if self.dirs.contains(rel_path) {
            let below = format!("{rel_path}/");
            let other = self
                .files
                .range(below.clone()..)
                .next()
                .map(|(k, _)| k.clone())
                .filter(|k| k.starts_with(&below))
                .unwrap_or(below);
            return Err(EvidenceError::PathConflict {
                path: rel_path.to_string(),
                other,
            });
        }
        Ok(())
    }

    /// Seals the bundle: writes `allowed_signers` (binding `signer` to the
    /// key's public half in namespace [`NAMESPACE`]), `SHA256SUMS` (every
    /// file, sorted bytewise) and `SHA256SUMS.sig` (the signature over the
    /// exact `SHA256SUMS` bytes written), fsyncs everything, renames the
    /// staging directory to `<root>/<drill_id>/<run_id>` and fsyncs the
    /// drill directory so the rename is durable.
    ///
    /// `signer` is the principal the auditor passes to `ssh-keygen -Y verify
    /// -I`; it must be a plain name (letters, digits, `@._+-`), never a
    /// pattern.
    ///
    /// The rename is refused if the final directory appeared meanwhile; a
    /// non-empty one can never be replaced (the kernel refuses), and an
    /// empty one is only replaced in a narrow race, losing nothing.
    pub(crate) fn finish(
        mut self,
        key: &SigningKey,
        signer: &str,
    ) -> Result<SealedBundle, EvidenceError> {
        validate_signer(signer)?;
        let journal = self.journal_path();
        // Appended and fsynced line by line by the run; hashed here from
        // the bytes on disk, which are what is sealed.
        if journal.exists() {
            let bytes = read_capped(&journal, MAX_MANIFEST_FILE).map_err(|e| match e {
                ReadCappedError::Io(source) => io_err("read", &journal)(source),
                ReadCappedError::TooLarge => EvidenceError::Serialize {
                    what: "journal.jsonl",
                    why: "larger than a bundle may hold".into(),
                },
            })?;
            self.files.insert(JOURNAL.to_string(), sha256_hex(&bytes));
        }
        let allowed = key.allowed_signers_line(signer)?;
        write_new_file(&self.staging.join(ALLOWED_SIGNERS), allowed.as_bytes())?;
        self.files
            .insert(ALLOWED_SIGNERS.to_string(), sha256_hex(allowed.as_bytes()));

        let mut manifest = String::new();
        for (path, hash) in &self.files {
            manifest.push_str(hash);
            manifest.push_str("  ");
            manifest.push_str(path);
            manifest.push('\n');
        }
        let manifest = manifest.into_bytes();
        // Sign the very buffer that is written next: nothing is re-encoded
        // between signing and writing.
        let signature = key.sign(&manifest)?;
        write_new_file(&self.staging.join(MANIFEST), &manifest)?;
        write_new_file(&self.staging.join(SIGNATURE), signature.as_bytes())?;

        // Deepest directories first, so each fsync covers entries whose own
        // contents are already durable.
        for dir in self.dirs.iter().rev() {
            sync_dir(&self.staging.join(dir))?;
        }
        sync_dir(&self.staging)?;

        match fs::symlink_metadata(&self.final_dir) {
            Ok(_) => {
                return Err(EvidenceError::BundleExists {
                    path: self.final_dir.clone(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &self.final_dir)(e)),
        }
        fs::rename(&self.staging, &self.final_dir).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
            ) {
                EvidenceError::BundleExists {
                    path: self.final_dir.clone(),
                }
            } else {
                io_err("rename staging directory to", &self.final_dir)(e)
            }
        })?;
        sync_dir(&self.drill_dir)?;

        Ok(SealedBundle {
            dir: self.final_dir,
            manifest_sha256: sha256_hex(&manifest),
            files: std::mem::take(&mut self.files).into_keys().collect(),
            log: None,
        })
    }

    /// Discards the bundle: removes the staging directory and everything
    /// added to it. Use when a run is cancelled before there is anything
    /// worth keeping.
    #[cfg(test)]
    pub(crate) fn abandon(self) -> Result<(), EvidenceError> {
        fs::remove_dir_all(&self.staging).map_err(io_err("remove", &self.staging))
    }

    /// The hidden staging directory files are written into until `finish`.
    pub(crate) fn staging_dir(&self) -> &Path {
        &self.staging
    }
}

/// The directory prefixes of a relative path, shortest first:
/// `"a/b/c.json"` -> `["a", "a/b"]`.
pub(crate) fn dir_prefixes(rel_path: &str) -> Vec<&str> {
    rel_path
        .match_indices('/')
        .map(|(i, _)| &rel_path[..i])
        .collect()
}

/// A bundle that `finish` sealed and moved into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBundle {
    /// The final bundle directory, `<root>/<drill_id>/<run_id>`.
    pub dir: PathBuf,
    /// Lowercase hex sha256 of the `SHA256SUMS` bytes: one short value that
    /// pins the whole bundle (e.g. to record in a ticket or log).
    pub manifest_sha256: String,
    /// Every file listed in `SHA256SUMS`, in its (bytewise sorted) order,
    /// including `allowed_signers`.
    pub files: Vec<String>,
    /// Its entry in the evidence log and the checkpoint signed after it
    /// (`None`: not appended by whoever sealed it).
    pub log: Option<Result<super::log::Appended, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::testutil::*;

    // ---- writing bundles ----

    #[test]
    fn round_trip_generate_bundle_verify() {
        let f = fixture();
        let dir = f.tmp.path().join("evidence/bg-1/run-1");
        assert_eq!(f.bundle.dir, dir);
        assert!(!f.tmp.path().join("evidence/bg-1/.run-1.partial").exists());

        let mut expected: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        expected.push(ALLOWED_SIGNERS.to_string());
        expected.sort();
        assert_eq!(f.bundle.files, expected);

        // Exact bytes were written.
        for (p, b) in FILES {
            assert_eq!(fs::read(dir.join(p)).unwrap(), *b, "{p}");
            assert_eq!(mode_of(&dir.join(p)), 0o600, "{p}");
        }
        for name in [MANIFEST, SIGNATURE, ALLOWED_SIGNERS] {
            assert_eq!(mode_of(&dir.join(name)), 0o600, "{name}");
        }
        for d in ["", "alerts", "screenshots", "a b"] {
            assert_eq!(mode_of(&dir.join(d)), 0o700, "{d:?}");
        }

        let manifest = fs::read(dir.join(MANIFEST)).unwrap();
        assert_eq!(f.bundle.manifest_sha256, sha256_hex(&manifest));
        let text = String::from_utf8(manifest).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), expected.len());
        for (line, path) in lines.iter().zip(&expected) {
            assert_eq!(&line[66..], path);
            assert_eq!(&line[64..66], "  ");
        }
        assert!(text.contains(&format!(
            "{}  drill.json\n",
            sha256_hex(b"{\"drill\":\"bg-1\"}\n")
        )));

        let allowed = fs::read_to_string(dir.join(ALLOWED_SIGNERS)).unwrap();
        let public = f.key.public_key_openssh();
        let bare: Vec<&str> = public.split(' ').take(2).collect();
        assert_eq!(
            allowed,
            format!("{SIGNER} namespaces=\"{NAMESPACE}\" {}\n", bare.join(" "))
        );

        let v = verify_bundle(&dir, None).unwrap();
        assert_eq!(v.signer, SIGNER);
        assert_eq!(v.fingerprint, f.key.fingerprint());
        assert_eq!(v.files, expected);
        assert_eq!(v.manifest_sha256, f.bundle.manifest_sha256);
        assert_eq!(v.dir, dir);

        // Pinned: an auditor's own allowed signers file.
        let pinned = f.tmp.path().join("auditor_allowed_signers");
        fs::write(
            &pinned,
            format!(
                "# auditor's trust file\n\nsomeone@else ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKN8zaTYvpJ5wwyH7sbxYqcw7QN2S2TVrXt02FW8U1rr\n\
                 ops@example.org,{SIGNER} namespaces=\"git,glassdrill-*\" {}\n",
                f.key.public_key_openssh()
            ),
        )
        .unwrap();
        let v = verify_bundle(&dir, Some(&pinned)).unwrap();
        assert_eq!(v.signer, format!("ops@example.org,{SIGNER}"));
    }

    #[test]
    fn bundle_passes_ssh_keygen_and_sha256sum() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let (ok, out) = ssh_keygen_verify(dir, &dir.join(ALLOWED_SIGNERS));
        assert!(ok, "ssh-keygen -Y verify failed: {out}");
        assert!(out.contains(SIGNER), "{out}");
        let (ok, out) = sha256sum_check(dir);
        assert!(ok, "sha256sum -c failed: {out}");
        assert_eq!(out.lines().count(), f.bundle.files.len(), "{out}");
    }

    #[test]
    fn ssh_keygen_signature_verifies_with_our_code() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let ours = fs::read(dir.join(SIGNATURE)).unwrap();
        fs::remove_file(dir.join(SIGNATURE)).unwrap();
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
            .arg(f.key.path())
            .arg(MANIFEST)
            .current_dir(dir));
        assert!(ok, "{out}");
        assert_eq!(fs::read(dir.join(SIGNATURE)).unwrap(), ours);
        verify_bundle(dir, None).unwrap();

        // And a signature over the manifest made by ssh-keygen with another
        // namespace is refused.
        fs::remove_file(dir.join(SIGNATURE)).unwrap();
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(f.key.path())
            .arg(MANIFEST)
            .current_dir(dir));
        assert!(ok, "{out}");
        let err = verify_bundle(dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::SignatureInvalid { why, .. } if why.contains("namespace")),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_bad_rel_paths() {
        let tmp = TempDir::new().unwrap();
        let mut w = BundleWriter::create(tmp.path(), "d", "r").unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\rb",
            "tab\there",
        ] {
            let err = w.add(bad, b"x").unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidPath { .. }),
                "{bad:?}: {err:?}"
            );
        }
        for reserved in [MANIFEST, SIGNATURE, ALLOWED_SIGNERS] {
            let err = w.add(reserved, b"x").unwrap_err();
            assert!(matches!(err, EvidenceError::ReservedPath { .. }), "{err:?}");
        }
        w.add("a/b.json", b"1").unwrap();
        let err = w.add("a/b.json", b"2").unwrap_err();
        assert!(
            matches!(err, EvidenceError::DuplicatePath { .. }),
            "{err:?}"
        );
        let err = w.add("a", b"x").unwrap_err();
        assert!(
            matches!(&err, EvidenceError::PathConflict { other, .. } if other == "a/b.json"),
            "{err:?}"
        );
        let err = w.add("a/b.json/c", b"x").unwrap_err();
        assert!(matches!(err, EvidenceError::PathConflict { .. }), "{err:?}");
        // Nested reserved names are ordinary files.
        w.add("alerts/SHA256SUMS", b"x").unwrap();
        // Nothing stray was written for the rejected paths.
        let mut names: Vec<_> = fs::read_dir(w.staging_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "alerts"]);
        assert_eq!(fs::read(w.staging_dir().join("a/b.json")).unwrap(), b"1");
    }

    #[test]
    fn rejects_bad_ids_and_signers() {
        let tmp = TempDir::new().unwrap();
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "x\n", "ü"] {
            let err = BundleWriter::create(tmp.path(), bad, "r").unwrap_err();
            assert!(
                matches!(
                    err,
                    EvidenceError::InvalidId {
                        what: "drill id",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
            let err = BundleWriter::create(tmp.path(), "d", bad).unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidId { what: "run id", .. }),
                "{bad:?}: {err:?}"
            );
        }
        BundleWriter::create(tmp.path(), "bg-1", "20250102T030405Z-ab.c_d").unwrap();

        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        for bad in ["", "a b", "a,b", "*", "a?", "!a", "\"q\"", "-x", "a\nb"] {
            let w = BundleWriter::create(tmp.path(), "d", "r").unwrap();
            let err = w.finish(&key, bad).unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidSigner { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(!tmp.path().join("d/r").exists());
            fs::remove_dir_all(tmp.path().join("d/.r.partial")).unwrap();
        }
    }

    #[test]
    fn create_refuses_existing_bundle_and_leftover_staging() {
        let f = fixture();
        let root = f.tmp.path().join("evidence");
        let err = BundleWriter::create(&root, "bg-1", "run-1").unwrap_err();
        assert!(matches!(err, EvidenceError::BundleExists { .. }), "{err:?}");

        let w = BundleWriter::create(&root, "bg-1", "run-2").unwrap();
        assert_eq!(w.staging_dir(), root.join("bg-1/.run-2.partial"));
        assert_eq!(mode_of(w.staging_dir()), 0o700);
        let err = BundleWriter::create(&root, "bg-1", "run-2").unwrap_err();
        assert!(
            matches!(err, EvidenceError::StagingExists { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("rm -r"), "{err}");
        w.abandon().unwrap();
        assert!(!root.join("bg-1/.run-2.partial").exists());
        BundleWriter::create(&root, "bg-1", "run-2").unwrap();

        // finish refuses if the final directory appeared meanwhile.
        let w = BundleWriter::create(&root, "bg-1", "run-3").unwrap();
        fs::create_dir(root.join("bg-1/run-3")).unwrap();
        fs::write(root.join("bg-1/run-3/x"), "x").unwrap();
        let err = w.finish(&f.key, SIGNER).unwrap_err();
        assert!(matches!(err, EvidenceError::BundleExists { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(root.join("bg-1/run-3/x")).unwrap(), "x");
    }

    #[test]
    fn empty_bundle_still_verifies() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let b = BundleWriter::create(tmp.path(), "d", "r")
            .unwrap()
            .finish(&key, SIGNER)
            .unwrap();
        assert_eq!(b.files, [ALLOWED_SIGNERS]);
        verify_bundle(&b.dir, None).unwrap();
    }
}
