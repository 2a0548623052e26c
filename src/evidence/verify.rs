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
pub(crate) fn read_record(v: &VerifiedBundle) -> Result<crate::record::DrillRecord, VerifyError> {
    let path = v.dir.join("drill.json");
    let err = |why: String| VerifyError::Record {
        path: path.clone(),
        why,
    };
    let Some(signed) = v.hashes.get("drill.json") else {
        return Err(err("the bundle has no drill.json".into()));
    };
    let bytes = read_capped(&path, MAX_MANIFEST_FILE).map_err(|_| err("cannot be read".into()))?;
    // The bytes read here are the bytes checked: a file swapped after the
    // verification above is caught, not trusted.
    if sha256_hex(&bytes) != *signed {
        return Err(err("changed since it was verified".into()));
    }
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
    /// The signed hash of each listed file, by path.
    pub hashes: BTreeMap<String, String>,
}

#[cfg(test)]
/// Verifies a bundle offline and returns the first problem found.
///
/// Same checks and order as [`verify_bundle_all`]; see there.
pub(crate) fn verify_bundle(
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
            match check_signature(
                manifest,
                &sig,
                &sig_path,
                &allowed_path,
                dir,
                signed_at(dir),
            ) {
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
    let mut hashes = BTreeMap::new();
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
            listed = entries.iter().map(|(p, _)| p.clone()).collect();
            hashes = entries.into_iter().collect();
        }
        Err(e) => errs.push(e),
    }

    // 3. Unlisted files.
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    walk_bundle(dir, "", &mut found, &mut errs);
    found.sort();
    for (path, rel) in found {
        let accounted = rel
            .as_deref()
            .is_some_and(|r| r == MANIFEST || r == SIGNATURE || listed_set.contains(r));
        if !accounted {
            errs.push(VerifyError::FileUnlisted { path });
        }
    }

    match signer {
        Some((signer, fingerprint)) if errs.is_empty() => Ok(VerifiedBundle {
            dir: dir.to_path_buf(),
            signer,
            fingerprint,
            files: listed,
            manifest_sha256,
            hashes,
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
/// When the bundle says it was signed: its record's `recorded` time (a
/// file the signature covers). A retired key's `valid-before` window is
/// judged at that time, as `ssh-keygen -Y verify -Overify-time=` does, so
/// bundles signed before a key rotation stay valid after it.
fn signed_at(dir: &Path) -> chrono::DateTime<chrono::Utc> {
    read_capped(&dir.join("drill.json"), MAX_MANIFEST_FILE)
        .ok()
        .and_then(|t| crate::record::DrillRecord::from_json(&t).ok())
        .map_or_else(chrono::Utc::now, |r| r.recorded)
}

pub(crate) fn check_signature(
    manifest: &[u8],
    sig: &[u8],
    sig_path: &Path,
    allowed_path: &Path,
    bundle_dir: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, String), Vec<VerifyError>> {
    let raw = sig;
    let sig = SshSig::from_pem(sig).map_err(|e| {
        vec![VerifyError::SignatureMalformed {
            path: sig_path.to_path_buf(),
            why: e.to_string(),
        }]
    })?;
    // The armor is taken exactly as glassdrill writes it: a byte that the
    // PEM decoder would overlook (a base64 character's unused bits, a
    // line break's neighbour) is still a change to the bundle.
    let canonical = sig
        .to_pem(ssh_key::LineEnding::LF)
        .map(|mut p| {
            if !p.ends_with('\n') {
                p.push('\n');
            }
            p
        })
        .unwrap_or_default();
    if canonical.as_bytes() != raw {
        return Err(vec![VerifyError::SignatureMalformed {
            path: sig_path.to_path_buf(),
            why: "it is not byte for byte the armor glassdrill writes (changed after signing)"
                .into(),
        }]);
    }
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

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
