//! Offline verification of a bundle: signature, every hash, no file added
//! or removed.

use super::*;

/// One problem found while verifying a bundle. Messages name the exact
/// file concerned.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The path is not a directory, or has neither `SHA256SUMS` nor
    /// `SHA256SUMS.sig`.
    #[error("{} is not an evidence bundle: {why}", dir.display())]
    NotABundle {
        /// The directory given.
        dir: PathBuf,
        /// What is missing.
        why: String,
    },

    /// `SHA256SUMS` is missing although `SHA256SUMS.sig` is present.
    #[error("{} is missing: the bundle's manifest was deleted", path.display())]
    ManifestMissing {
        /// Where `SHA256SUMS` should be.
        path: PathBuf,
    },

    /// `SHA256SUMS.sig` is missing although `SHA256SUMS` is present.
    #[error("{} is missing: the bundle is not signed", path.display())]
    SignatureMissing {
        /// Where `SHA256SUMS.sig` should be.
        path: PathBuf,
    },

    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A file is larger than the verifier is willing to read into memory.
    #[error("{} is larger than {limit} bytes; it cannot be a genuine bundle file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// A line of `SHA256SUMS` is not `<64 lowercase hex>  <relative path>`,
    /// or the lines are not sorted and unique.
    #[error("{} line {line}: {why}", path.display())]
    ManifestMalformed {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },

    /// `SHA256SUMS.sig` is not an armored SSH signature.
    #[error("{} is not an SSH signature: {why}", path.display())]
    SignatureMalformed {
        /// The signature file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },

    /// The signature does not verify over `SHA256SUMS` (the manifest or the
    /// signature was changed), or it was made for another namespace.
    #[error("signature {} does not verify over SHA256SUMS: {why}", path.display())]
    SignatureInvalid {
        /// The signature file.
        path: PathBuf,
        /// Why.
        why: String,
    },

    /// A line of the allowed signers file cannot be parsed.
    #[error("{} line {line}: {why}", path.display())]
    AllowedSignersMalformed {
        /// The allowed signers file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },

    /// The key that made the signature is not in the allowed signers file
    /// for namespace [`NAMESPACE`] (or not at this time).
    #[error(
        "the bundle was signed by key {fingerprint}, which {} does not allow to sign \
         glassdrill evidence",
        allowed_signers.display()
    )]
    SignerUnknown {
        /// Fingerprint (`SHA256:...`) of the key in the signature.
        fingerprint: String,
        /// The allowed signers file consulted.
        allowed_signers: PathBuf,
    },

    /// A listed file's contents do not match its hash in `SHA256SUMS`.
    #[error(
        "{} was modified after signing: its sha256 is {actual}, SHA256SUMS lists {expected}",
        path.display()
    )]
    FileModified {
        /// The file.
        path: PathBuf,
        /// Hash listed in `SHA256SUMS`.
        expected: String,
        /// Hash of the file as found.
        actual: String,
    },

    /// A file listed in `SHA256SUMS` does not exist.
    #[error("{} is listed in SHA256SUMS but missing", path.display())]
    FileMissing {
        /// The missing file.
        path: PathBuf,
    },

    /// A listed path is not a regular file (a symlink, a directory, or
    /// reached through a symlinked directory).
    #[error("{} is listed in SHA256SUMS but {why}", path.display())]
    FileNotRegular {
        /// The offending path.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },

    /// A file or symlink in the bundle that `SHA256SUMS` does not list.
    #[error("{} is in the bundle but not listed in SHA256SUMS (added after signing?)", path.display())]
    FileUnlisted {
        /// The unlisted file.
        path: PathBuf,
    },

    /// The signed `drill.json` is not a drill record this version reads,
    /// or does not belong where it is.
    #[error("{}: {why}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads the signed drill record of a verified bundle, through the typed
/// schema, and checks that it belongs where it lies: its run id is the
/// bundle directory's name and its drill id the parent's, both following
/// the one identifier rule.
pub fn read_record(v: &VerifiedBundle) -> Result<crate::record::DrillRecord, VerifyError> {
    let path = v.dir.join("drill.json");
    let err = |why: String| VerifyError::Record {
        path: path.clone(),
        why,
    };
    if !v.files.iter().any(|f| f == "drill.json") {
        return Err(err("the bundle has no drill.json".into()));
    }
    let bytes = read_capped(&path, MAX_MANIFEST_FILE).map_err(|_| err("cannot be read".into()))?;
    let r = crate::record::DrillRecord::from_json(&bytes).map_err(|e| err(e.to_string()))?;
    for (what, id) in [("run id", &r.run_id), ("drill id", &r.drill.id)] {
        crate::support::ids::check(id).map_err(|why| err(format!("{what} {id:?} {why}")))?;
    }
    let name = |p: Option<&Path>| p.and_then(Path::file_name).map(|n| n.to_os_string());
    let dir_name = name(Some(&v.dir));
    let parent_name = name(v.dir.parent());
    if dir_name.as_deref() != Some(std::ffi::OsStr::new(&r.run_id))
        || parent_name.as_deref() != Some(std::ffi::OsStr::new(&r.drill.id))
    {
        return Err(err(format!(
            "records drill {} run {}, but lies in {} (moved or renamed?)",
            r.drill.id,
            r.run_id,
            v.dir.display()
        )));
    }
    Ok(r)
}

/// A bundle that passed every check in [`verify_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The principal(s) of the allowed signers line that matched the
    /// signing key, as written there.
    pub signer: String,
    /// Fingerprint (`SHA256:...`) of the signing key.
    pub fingerprint: String,
    /// Every file listed in `SHA256SUMS`, in manifest order.
    pub files: Vec<String>,
    /// Lowercase hex sha256 of the `SHA256SUMS` bytes.
    pub manifest_sha256: String,
}

/// Verifies a bundle offline and returns the first problem found.
///
/// Same checks and order as [`verify_bundle_all`]; see there.
pub fn verify_bundle(
    dir: &Path,
    allowed_signers: Option<&Path>,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_all(dir, allowed_signers).map_err(|mut errs| {
        if errs.is_empty() {
            // verify_bundle_all never returns an empty list; be safe anyway.
            VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "verification failed".to_string(),
            }
        } else {
            errs.swap_remove(0)
        }
    })
}

/// Verifies a bundle offline and lists every problem found.
///
/// Checks, in this order:
///
/// 1. the SSH signature `SHA256SUMS.sig` over the exact bytes of
///    `SHA256SUMS`, in namespace [`NAMESPACE`], made by a key that the
///    allowed signers file permits for that namespace (what
///    `ssh-keygen -Y verify` checks);
/// 2. that `SHA256SUMS` is well formed (lowercase hex, two spaces, safe
///    relative paths, sorted, no duplicates) and every listed file exists,
///    is a regular file, and has the listed sha256 (what
///    `sha256sum -c --strict` checks);
/// 3. that no file or symlink anywhere in the bundle is missing from
///    `SHA256SUMS`, other than `SHA256SUMS` and `SHA256SUMS.sig` themselves
///    (which `sha256sum` cannot check).
///
/// `allowed_signers` is the auditor's own allowed signers file, listing the
/// key(s) they trust. With `None`, the bundle's own `allowed_signers` is
/// used: that proves only that the bundle is intact and self-consistent
/// (integrity), NOT who made it (origin), since whoever forged a bundle
/// would ship their own key in it. To prove origin, the auditor must pin the
/// expected key in a file they obtained independently, or compare the
/// returned fingerprint with the published one.
///
/// Problems are reported in check order; later checks run even after an
/// earlier one fails, so the list is complete.
pub fn verify_bundle_all(
    dir: &Path,
    allowed_signers: Option<&Path>,
) -> Result<VerifiedBundle, Vec<VerifyError>> {
    let mut errs = Vec::new();

    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "not a directory".to_string(),
            }]);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "no such directory".to_string(),
            }]);
        }
        Err(source) => {
            return Err(vec![VerifyError::Unreadable {
                path: dir.to_path_buf(),
                source,
            }]);
        }
    }

    let manifest_path = dir.join(MANIFEST);
    let sig_path = dir.join(SIGNATURE);
    let manifest = read_bundle_file(&manifest_path, MAX_MANIFEST_FILE);
    let sig = read_bundle_file(&sig_path, MAX_SIGNATURE_FILE);
    let (manifest, sig) = match (manifest, sig) {
        (Err(ReadBundleError::Missing), Err(ReadBundleError::Missing)) => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "it has neither SHA256SUMS nor SHA256SUMS.sig".to_string(),
            }]);
        }
        (m, s) => (
            m.map_err(|e| e.into_verify_error(&manifest_path, ManifestOrSig::Manifest)),
            s.map_err(|e| e.into_verify_error(&sig_path, ManifestOrSig::Signature)),
        ),
    };

    // 1. Signature.
    let signer = match (&manifest, sig) {
        (Ok(manifest), Ok(sig)) => {
            let allowed_path = allowed_signers
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join(ALLOWED_SIGNERS));
            match check_signature(manifest, &sig, &sig_path, &allowed_path, dir) {
                Ok(s) => Some(s),
                Err(mut e) => {
                    errs.append(&mut e);
                    None
                }
            }
        }
        (Ok(_), Err(e)) => {
            errs.push(e);
            None
        }
        (Err(_), Err(e)) => {
            // The manifest error is reported below with the other manifest
            // problems; the signature's own problem comes first.
            errs.push(e);
            None
        }
        (Err(_), Ok(_)) => None,
    };

    // 2. Manifest and listed files.
    let mut listed: Vec<String> = Vec::new();
    let mut manifest_sha256 = String::new();
    match manifest {
        Ok(manifest) => {
            manifest_sha256 = sha256_hex(&manifest);
            let (entries, mut malformed) = parse_manifest(&manifest, &manifest_path);
            errs.append(&mut malformed);
            for (rel, expected) in &entries {
                if let Err(e) = check_listed_file(dir, rel, expected) {
                    errs.push(e);
                }
            }
            listed = entries.into_iter().map(|(p, _)| p).collect();
        }
        Err(e) => errs.push(e),
    }

    // 3. Unlisted files.
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    walk_bundle(dir, "", &mut found, &mut errs);
    found.sort();
    for rel in found {
        if rel == MANIFEST || rel == SIGNATURE || listed_set.contains(rel.as_str()) {
            continue;
        }
        errs.push(VerifyError::FileUnlisted {
            path: dir.join(&rel),
        });
    }

    match signer {
        Some((signer, fingerprint)) if errs.is_empty() => Ok(VerifiedBundle {
            dir: dir.to_path_buf(),
            signer,
            fingerprint,
            files: listed,
            manifest_sha256,
        }),
        _ if errs.is_empty() => Err(vec![VerifyError::SignatureInvalid {
            path: sig_path,
            why: "signature could not be checked".to_string(),
        }]),
        _ => Err(errs),
    }
}

pub(crate) enum ReadBundleError {
    Missing,
    TooLarge(u64),
    Io(io::Error),
}

#[derive(Clone, Copy)]
pub(crate) enum ManifestOrSig {
    Manifest,
    Signature,
}

impl ReadBundleError {
    fn into_verify_error(self, path: &Path, which: ManifestOrSig) -> VerifyError {
        let path = path.to_path_buf();
        match (self, which) {
            (Self::Missing, ManifestOrSig::Manifest) => VerifyError::ManifestMissing { path },
            (Self::Missing, ManifestOrSig::Signature) => VerifyError::SignatureMissing { path },
            (Self::TooLarge(limit), _) => VerifyError::TooLarge { path, limit },
            (Self::Io(source), _) => VerifyError::Unreadable { path, source },
        }
    }
}

/// Reads one of the bundle's own small files (which must be regular files,
/// not symlinks pointing elsewhere).
pub(crate) fn read_bundle_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadBundleError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(ReadBundleError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadBundleError::Missing),
        Err(e) => return Err(ReadBundleError::Io(e)),
    }
    read_capped(path, cap).map_err(|e| match e {
        ReadCappedError::Io(e) => ReadBundleError::Io(e),
        ReadCappedError::TooLarge => ReadBundleError::TooLarge(cap),
    })
}

/// Verifies `sig` over `manifest` and finds the allowed signers line that
/// permits its key. Returns (principals, fingerprint).
pub(crate) fn check_signature(
    manifest: &[u8],
    sig: &[u8],
    sig_path: &Path,
    allowed_path: &Path,
    bundle_dir: &Path,
) -> Result<(String, String), Vec<VerifyError>> {
    let sig = SshSig::from_pem(sig).map_err(|e| {
        vec![VerifyError::SignatureMalformed {
            path: sig_path.to_path_buf(),
            why: e.to_string(),
        }]
    })?;
    if sig.namespace() != NAMESPACE {
        return Err(vec![VerifyError::SignatureInvalid {
            path: sig_path.to_path_buf(),
            why: format!(
                "it was made for namespace {:?}, not {NAMESPACE:?}",
                sig.namespace()
            ),
        }]);
    }
    let signing_key = PublicKey::new(sig.public_key().clone(), "");
    let fingerprint = signing_key.fingerprint(HashAlg::Sha256).to_string();
    if let Err(e) = signing_key.verify(NAMESPACE, manifest, &sig) {
        return Err(vec![VerifyError::SignatureInvalid {
            path: sig_path.to_path_buf(),
            why: format!("{e} (SHA256SUMS or SHA256SUMS.sig was changed after signing)"),
        }]);
    }

    let allowed = match read_allowed_signers(allowed_path, bundle_dir) {
        Ok(b) => b,
        Err(e) => return Err(vec![e]),
    };
    let allowed = String::from_utf8_lossy(&allowed);
    let (entries, malformed) = parse_allowed_signers(&allowed, allowed_path);
    let now = chrono::Utc::now();
    let hit = entries.into_iter().find(|entry| {
        !entry.cert_authority
            && entry.key.key_data() == sig.public_key()
            && entry
                .namespaces
                .as_deref()
                .is_none_or(|pats| match_pattern_list(NAMESPACE, pats))
            && entry.valid_after.is_none_or(|t| now >= t)
            && entry.valid_before.is_none_or(|t| now <= t)
    });
    match hit {
        Some(entry) => Ok((entry.principals, fingerprint)),
        None => {
            let mut errs = malformed;
            errs.push(VerifyError::SignerUnknown {
                fingerprint,
                allowed_signers: allowed_path.to_path_buf(),
            });
            Err(errs)
        }
    }
}

/// Parses `SHA256SUMS`. Returns the well-formed entries (path, hash) and an
/// error for each malformed line.
pub(crate) fn parse_manifest(
    bytes: &[u8],
    path: &Path,
) -> (Vec<(String, String)>, Vec<VerifyError>) {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut errs = Vec::new();
    let malformed = |line: usize, why: String| VerifyError::ManifestMalformed {
        path: path.to_path_buf(),
        line,
        why,
    };
    if bytes.is_empty() {
        errs.push(malformed(1, "SHA256SUMS is empty".to_string()));
        return (entries, errs);
    }
    if !bytes.ends_with(b"\n") {
        let line = bytes.split(|&b| b == b'\n').count();
        errs.push(malformed(
            line,
            "last line does not end with a newline".to_string(),
        ));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = BTreeSet::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            errs.push(malformed(n, "not valid UTF-8".to_string()));
            continue;
        };
        let Some((hash, rel)) = line.split_at_checked(64) else {
            errs.push(malformed(
                n,
                "expected `<64 hex digits>  <path>`".to_string(),
            ));
            continue;
        };
        if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            errs.push(malformed(
                n,
                "hash is not 64 lowercase hex digits".to_string(),
            ));
            continue;
        }
        let Some(rel) = rel.strip_prefix("  ") else {
            errs.push(malformed(
                n,
                "hash must be followed by two spaces and the path".to_string(),
            ));
            continue;
        };
        if let Err(why) = validate_rel_path(rel) {
            errs.push(malformed(n, format!("path {rel:?} {why}")));
            continue;
        }
        if rel == MANIFEST || rel == SIGNATURE {
            errs.push(malformed(n, format!("{rel} cannot list itself")));
            continue;
        }
        if !seen.insert(rel.to_string()) {
            errs.push(malformed(n, format!("{rel} is listed twice")));
            continue;
        }
        if let Some((prev, _)) = entries.last()
            && prev.as_str() > rel
        {
            errs.push(malformed(
                n,
                format!("{rel} is out of order (lines must be sorted by path)"),
            ));
        }
        entries.push((rel.to_string(), hash.to_string()));
    }
    (entries, errs)
}

/// Checks one listed file: every component up to it is a real directory,
/// it is a regular file, and its sha256 is `expected`.
pub(crate) fn check_listed_file(dir: &Path, rel: &str, expected: &str) -> Result<(), VerifyError> {
    let full = dir.join(rel);
    for prefix in dir_prefixes(rel) {
        let p = dir.join(prefix);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(VerifyError::FileNotRegular {
                    path: full,
                    why: format!("is reached through the symlink {}", p.display()),
                });
            }
            Ok(_) => {
                return Err(VerifyError::FileMissing { path: full });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VerifyError::FileMissing { path: full });
            }
            Err(source) => return Err(VerifyError::Unreadable { path: p, source }),
        }
    }
    match fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "is a symlink"
            } else if m.is_dir() {
                "is a directory"
            } else {
                "is not a regular file"
            };
            return Err(VerifyError::FileNotRegular {
                path: full,
                why: what.to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::FileMissing { path: full });
        }
        Err(source) => return Err(VerifyError::Unreadable { path: full, source }),
    }
    let actual = File::open(&full)
        .and_then(|mut f| {
            let mut h = Sha256::new();
            io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .map_err(|source| VerifyError::Unreadable {
            path: full.clone(),
            source,
        })?;
    if actual != expected {
        return Err(VerifyError::FileModified {
            path: full,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Collects the '/'-joined relative path of every non-directory entry
/// (files, symlinks, anything else) under `dir/rel`, without following
/// symlinks.
pub(crate) fn walk_bundle(
    root: &Path,
    rel: &str,
    found: &mut Vec<String>,
    errs: &mut Vec<VerifyError>,
) {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd = match fs::read_dir(&here) {
        Ok(rd) => rd,
        Err(source) => {
            errs.push(VerifyError::Unreadable { path: here, source });
            return;
        }
    };
    let mut entries = Vec::new();
    for entry in rd {
        match entry {
            Ok(e) => entries.push(e),
            Err(source) => {
                errs.push(VerifyError::Unreadable {
                    path: here.clone(),
                    source,
                });
                return;
            }
        }
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_bundle(root, &child, found, errs),
            Ok(_) => found.push(child),
            Err(source) => errs.push(VerifyError::Unreadable {
                path: entry.path(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::testutil::*;

    // ---- tampering ----

    #[test]
    fn changing_any_byte_of_any_file_is_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let mut all: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        all.extend([ALLOWED_SIGNERS, MANIFEST, SIGNATURE].map(String::from));
        for (i, rel) in all.iter().enumerate() {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let pinned = tmp.path().join(format!("pinned-{i}"));
            fs::copy(b.dir.join(ALLOWED_SIGNERS), &pinned).unwrap();
            let target = b.dir.join(rel);
            flip_byte(&target);

            let err = verify_bundle(&b.dir, None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&target.display().to_string()), "{rel}: {msg}");
            match rel.as_str() {
                MANIFEST | SIGNATURE => {
                    assert!(
                        matches!(
                            err,
                            VerifyError::SignatureInvalid { .. }
                                | VerifyError::SignatureMalformed { .. }
                        ),
                        "{rel}: {err:?}"
                    );
                    let (ok, out) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(!ok, "ssh-keygen accepted tampered {rel}: {out}");
                }
                ALLOWED_SIGNERS => {
                    assert!(
                        matches!(
                            err,
                            VerifyError::SignerUnknown { .. }
                                | VerifyError::AllowedSignersMalformed { .. }
                        ),
                        "{rel}: {err:?}"
                    );
                    // With the auditor's pinned copy, the signature is fine
                    // and the changed file is reported as modified.
                    let err = verify_bundle(&b.dir, Some(&pinned)).unwrap_err();
                    assert!(
                        matches!(&err, VerifyError::FileModified { path, .. } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, _) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted tampered {rel}");
                }
                _ => {
                    assert!(
                        matches!(&err, VerifyError::FileModified { path, .. } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, out) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted tampered {rel}: {out}");
                    let (ok, out) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(ok, "signature itself is still fine: {out}");
                }
            }
        }
    }

    #[test]
    fn deleting_any_file_is_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let mut all: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        all.extend([ALLOWED_SIGNERS, MANIFEST, SIGNATURE].map(String::from));
        for (i, rel) in all.iter().enumerate() {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let pinned = tmp.path().join(format!("pinned-{i}"));
            fs::copy(b.dir.join(ALLOWED_SIGNERS), &pinned).unwrap();
            let target = b.dir.join(rel);
            fs::remove_file(&target).unwrap();

            let err = verify_bundle(&b.dir, Some(&pinned)).unwrap_err();
            assert!(
                err.to_string().contains(&target.display().to_string()),
                "{rel}: {err}"
            );
            match rel.as_str() {
                MANIFEST => {
                    assert!(
                        matches!(err, VerifyError::ManifestMissing { .. }),
                        "{err:?}"
                    );
                }
                SIGNATURE => {
                    assert!(
                        matches!(err, VerifyError::SignatureMissing { .. }),
                        "{err:?}"
                    );
                    let (ok, _) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(!ok);
                }
                _ => {
                    assert!(
                        matches!(&err, VerifyError::FileMissing { path } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, _) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted missing {rel}");
                }
            }
        }
        // Without a pinned file, a deleted allowed_signers is reported too.
        let b = make_bundle(tmp.path(), &key, "run-x");
        fs::remove_file(b.dir.join(ALLOWED_SIGNERS)).unwrap();
        let err = verify_bundle(&b.dir, None).unwrap_err();
        assert!(err.to_string().contains(ALLOWED_SIGNERS), "{err}");
    }

    #[test]
    fn unlisted_files_are_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        for (i, extra) in [
            "extra.txt",
            "alerts/002.json",
            "new/dir/deep.txt",
            ".hidden",
        ]
        .iter()
        .enumerate()
        {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let target = b.dir.join(extra);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(&target, "sneaky").unwrap();
            let err = verify_bundle(&b.dir, None).unwrap_err();
            assert!(
                matches!(&err, VerifyError::FileUnlisted { path } if *path == target),
                "{extra}: {err:?}"
            );
            assert!(err.to_string().contains(&target.display().to_string()));
            // The standard tools alone do not notice this.
            assert!(sha256sum_check(&b.dir).0);
        }

        // A symlink counts as a file, even a dangling one.
        let b = make_bundle(tmp.path(), &key, "run-link");
        std::os::unix::fs::symlink("/etc/passwd", b.dir.join("alerts/link")).unwrap();
        let err = verify_bundle(&b.dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::FileUnlisted { path } if path.ends_with("alerts/link")),
            "{err:?}"
        );

        // An empty directory holds no evidence and is not an error.
        let b = make_bundle(tmp.path(), &key, "run-emptydir");
        fs::create_dir(b.dir.join("empty")).unwrap();
        verify_bundle(&b.dir, None).unwrap();
    }

    #[test]
    fn listed_file_replaced_by_symlink_is_caught() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let outside = f.tmp.path().join("outside.json");
        fs::write(&outside, b"{\"ok\":true}").unwrap();
        fs::remove_file(dir.join("signin.json")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("signin.json")).unwrap();
        let err = verify_bundle(dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::FileNotRegular { path, .. } if path.ends_with("signin.json")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_all_lists_every_problem() {
        let f = fixture();
        let dir = &f.bundle.dir;
        flip_byte(&dir.join("drill.json"));
        fs::remove_file(dir.join("report.html")).unwrap();
        fs::write(dir.join("screenshots/99-extra.png"), "x").unwrap();
        let errs = verify_bundle_all(dir, None).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            matches!(&errs[0], VerifyError::FileModified { path, .. } if path.ends_with("drill.json"))
        );
        assert!(
            matches!(&errs[1], VerifyError::FileMissing { path } if path.ends_with("report.html"))
        );
        assert!(
            matches!(&errs[2], VerifyError::FileUnlisted { path } if path.ends_with("screenshots/99-extra.png"))
        );
        let first = verify_bundle(dir, None).unwrap_err();
        assert_eq!(first.to_string(), errs[0].to_string());
    }

    #[test]
    fn resigned_bundle_is_rejected_by_pinned_key_only() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let pinned = f.tmp.path().join("pinned");
        fs::copy(dir.join(ALLOWED_SIGNERS), &pinned).unwrap();

        // A forger rebuilds the bundle with altered evidence and their own key.
        let forger = SigningKey::generate(&f.tmp.path().join("forger"), "evil").unwrap();
        let forged_root = f.tmp.path().join("forged");
        let mut w = BundleWriter::create(&forged_root, "bg-1", "run-1").unwrap();
        for (p, b) in FILES {
            let b: &[u8] = if *p == "signin.json" {
                b"{\"ok\":false}"
            } else {
                b
            };
            w.add(p, b).unwrap();
        }
        let forged = w.finish(&forger, SIGNER).unwrap();

        // Integrity-only check (the bundle's own allowed_signers) passes...
        let v = verify_bundle(&forged.dir, None).unwrap();
        assert_eq!(v.fingerprint, forger.fingerprint());
        assert_ne!(v.fingerprint, f.key.fingerprint());
        // ...but the auditor's pinned key rejects it, naming the key.
        let err = verify_bundle(&forged.dir, Some(&pinned)).unwrap_err();
        assert!(
            matches!(&err, VerifyError::SignerUnknown { fingerprint, .. } if *fingerprint == forger.fingerprint()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&pinned.display().to_string()));
        let (ok, _) = ssh_keygen_verify(&forged.dir, &pinned);
        assert!(!ok);
    }

    #[test]
    fn allowed_signers_options_are_honoured() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let pk = f.key.public_key_openssh();
        let allowed = f.tmp.path().join("allowed");
        let check = |content: String| {
            fs::write(&allowed, content).unwrap();
            verify_bundle(dir, Some(&allowed))
        };
        check(format!("{SIGNER} {pk}\n")).unwrap();
        check(format!(
            "\"{SIGNER}\" cert-authority,namespaces=\"x\" {pk}\n{SIGNER} {pk}\n"
        ))
        .unwrap();
        check(format!(
            "{SIGNER} valid-after=\"20000101\",valid-before=\"29991231Z\" {pk}\n"
        ))
        .unwrap();
        check(format!("{SIGNER} NAMESPACES=\"*\" {pk}\n")).unwrap();
        for bad in [
            format!("{SIGNER} namespaces=\"git,file\" {pk}\n"),
            format!("{SIGNER} namespaces=\"*,!glassdrill-*\" {pk}\n"),
            format!("{SIGNER} valid-before=\"20000101\" {pk}\n"),
            format!("{SIGNER} valid-after=\"29990101\" {pk}\n"),
            format!("{SIGNER} cert-authority {pk}\n"),
            String::new(),
        ] {
            let err = check(bad.clone()).unwrap_err();
            assert!(
                matches!(err, VerifyError::SignerUnknown { .. }),
                "{bad}: {err:?}"
            );
        }
        // A broken line is reported (with its line number) when no other
        // line allows the key.
        let errs = {
            fs::write(&allowed, format!("# c\n{SIGNER} bogus=\"1\" {pk}\n")).unwrap();
            verify_bundle_all(dir, Some(&allowed)).unwrap_err()
        };
        assert!(
            matches!(
                &errs[0],
                VerifyError::AllowedSignersMalformed { line: 2, .. }
            ),
            "{errs:?}"
        );
        assert!(
            matches!(&errs[1], VerifyError::SignerUnknown { .. }),
            "{errs:?}"
        );

        // Missing auditor file.
        let err = verify_bundle(dir, Some(&f.tmp.path().join("nope"))).unwrap_err();
        assert!(matches!(err, VerifyError::Unreadable { .. }), "{err:?}");
    }

    #[test]
    fn malformed_manifests_are_reported_by_line() {
        let (entries, errs) = parse_manifest(
            format!(
                "{h}  b\n{H}  c\n{h} *d\n{h}  /abs\n{h}  a\n{h}  b\n{h}  SHA256SUMS\nshort\n{h}  e",
                h = "a".repeat(64),
                H = "A".repeat(64)
            )
            .as_bytes(),
            Path::new("SHA256SUMS"),
        );
        let lines: Vec<usize> = errs
            .iter()
            .map(|e| match e {
                VerifyError::ManifestMalformed { line, .. } => *line,
                other => panic!("{other:?}"),
            })
            .collect();
        // Line 9 lacks its newline (reported first), 2 uppercase, 3 binary
        // mode, 4 absolute, 5 out of order, 6 duplicate, 7 self, 8 short.
        assert_eq!(lines, [9, 2, 3, 4, 5, 6, 7, 8]);
        let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["b", "a", "e"]);

        let (_, errs) = parse_manifest(b"", Path::new("SHA256SUMS"));
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn not_a_bundle() {
        let tmp = TempDir::new().unwrap();
        let err = verify_bundle(tmp.path(), None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
        let err = verify_bundle(&tmp.path().join("missing"), None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = verify_bundle(&file, None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
    }
}
