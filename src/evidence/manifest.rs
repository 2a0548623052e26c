//! `SHA256SUMS` on the verifying side: parse it, check each listed file,
//! and find files that are in the bundle but not listed.

use super::*;

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

/// Collects every entry under `root/rel` that a manifest could list or
/// must account for, without following symlinks: each non-directory entry
/// with its '/'-joined relative path, and each empty directory (its path
/// ends in '/', which no manifest line has). Names are compared as bytes:
/// an entry whose name is not UTF-8 can never be a listed file, so it comes
/// back with `None` (never as a lossy look-alike of a listed name).
pub(crate) fn walk_bundle(
    root: &Path,
    rel: &str,
    found: &mut Vec<(PathBuf, Option<String>)>,
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
    if entries.is_empty() && !rel.is_empty() {
        found.push((here, Some(format!("{rel}/"))));
        return;
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            found.push((entry.path(), None));
            continue;
        };
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_bundle(root, &child, found, errs),
            Ok(_) => found.push((entry.path(), Some(child))),
            Err(source) => errs.push(VerifyError::Unreadable {
                path: entry.path(),
                source,
            }),
        }
    }
}
