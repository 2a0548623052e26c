//! ssh-keygen's ALLOWED SIGNERS format.
//!
//! Hand-written on purpose: the `ssh-key` crate (0.6) parses keys,
//! signatures, `authorized_keys` and `known_hosts`, but not allowed
//! signers files (principals, `namespaces=`, `valid-after=`,
//! `valid-before=`, `cert-authority`); the parser is small and tested
//! against `ssh-keygen` itself.

use super::*;

/// Reads the allowed signers file. The bundle's own copy must be a regular
/// file inside the bundle; an auditor's file elsewhere may be a symlink (as
/// dotfiles often are).
pub(crate) fn read_allowed_signers(path: &Path, bundle_dir: &Path) -> Result<Vec<u8>, VerifyError> {
    let in_bundle = path == bundle_dir.join(ALLOWED_SIGNERS);
    let result = if in_bundle {
        read_bundle_file(path, MAX_ALLOWED_SIGNERS_FILE)
    } else {
        read_capped(path, MAX_ALLOWED_SIGNERS_FILE).map_err(|e| match e {
            ReadCappedError::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                ReadBundleError::Missing
            }
            ReadCappedError::Io(e) => ReadBundleError::Io(e),
            ReadCappedError::TooLarge => ReadBundleError::TooLarge(MAX_ALLOWED_SIGNERS_FILE),
        })
    };
    result.map_err(|e| {
        let path = path.to_path_buf();
        match e {
            ReadBundleError::Missing => VerifyError::Unreadable {
                path,
                source: io::Error::new(io::ErrorKind::NotFound, "allowed signers file not found"),
            },
            ReadBundleError::TooLarge(limit) => VerifyError::TooLarge { path, limit },
            ReadBundleError::Io(source) => VerifyError::Unreadable { path, source },
        }
    })
}

/// One parsed line of an allowed signers file.
pub(crate) struct AllowedSigner {
    pub(crate) principals: String,
    pub(crate) cert_authority: bool,
    pub(crate) namespaces: Option<String>,
    pub(crate) valid_after: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) valid_before: Option<chrono::DateTime<chrono::Utc>>,
    pub(crate) key: PublicKey,
}

/// Parses an allowed signers file (ssh-keygen(1), ALLOWED SIGNERS):
/// `principals [options] keytype base64-key [comment]`, with `#` comments
/// and blank lines ignored. Lines that do not parse are returned as errors;
/// the lines that do still count.
pub(crate) fn parse_allowed_signers(
    text: &str,
    path: &Path,
) -> (Vec<AllowedSigner>, Vec<VerifyError>) {
    let mut entries = Vec::new();
    let mut errs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_allowed_signer_line(line) {
            Ok(entry) => entries.push(entry),
            Err(why) => errs.push(VerifyError::AllowedSignersMalformed {
                path: path.to_path_buf(),
                line: i + 1,
                why,
            }),
        }
    }
    (entries, errs)
}

pub(crate) fn parse_allowed_signer_line(line: &str) -> Result<AllowedSigner, String> {
    let (principals, rest) = split_field(line)?;
    let principals = principals.trim_matches('"').to_string();
    if principals.is_empty() {
        return Err("empty principals".to_string());
    }
    let rest = rest.trim_start();
    // Either "keytype base64 [comment]" follows directly, or an options
    // field comes first (as ssh-keygen decides: try the key, else options).
    let (options, key) = match PublicKey::from_openssh(rest) {
        Ok(key) => ("", key),
        Err(_) => {
            let (options, key_text) = split_field(rest)?;
            let key = PublicKey::from_openssh(key_text.trim_start())
                .map_err(|e| format!("cannot parse the public key: {e}"))?;
            (options, key)
        }
    };
    let mut entry = AllowedSigner {
        principals,
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
    };
    if options.is_empty() {
        return Ok(entry);
    }
    for opt in split_options(options)? {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| format!("option {n} needs a quoted value"))?;
                (n, Some(v))
            }
            None => (opt, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", None) => entry.cert_authority = true,
            ("namespaces", Some(v)) => entry.namespaces = Some(v.to_string()),
            ("valid-after", Some(v)) => entry.valid_after = Some(parse_ssh_time(v)?),
            ("valid-before", Some(v)) => entry.valid_before = Some(parse_ssh_time(v)?),
            _ => return Err(format!("unsupported option {opt:?}")),
        }
    }
    Ok(entry)
}

/// Splits off the first whitespace-delimited field; double quotes protect
/// whitespace inside it.
pub(crate) fn split_field(s: &str) -> Result<(&str, &str), String> {
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if in_quotes {
        Err("unterminated quote".to_string())
    } else {
        Ok((s, ""))
    }
}

/// Splits an options field on commas outside double quotes.
pub(crate) fn split_options(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quote in options".to_string());
    }
    out.push(&s[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err("empty option".to_string());
    }
    Ok(out)
}

/// Parses ssh-keygen's `YYYYMMDD[HHMM[SS]][Z]` time: UTC with `Z`, local
/// time without.
pub(crate) fn parse_ssh_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let bad = || format!("invalid time {s:?} (expected YYYYMMDD[HHMM[SS]][Z])");
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = match digits.len() {
        8 => NaiveDate::parse_from_str(digits, "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
        12 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").ok(),
        14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    if utc {
        Ok(chrono::Utc.from_utc_datetime(&naive))
    } else {
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(bad)
    }
}

/// OpenSSH `match_pattern_list`: comma-separated patterns with `*` and `?`;
/// a matching negated (`!`) pattern rejects outright.
pub(crate) fn match_pattern_list(s: &str, list: &str) -> bool {
    let mut matched = false;
    for pat in list.split(',') {
        let (negated, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if match_pattern(s.as_bytes(), pat.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Glob match with `*` (any run) and `?` (any one byte).
pub(crate) fn match_pattern(s: &[u8], pat: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pat.len() && (pat[pi] == b'?' || pat[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < pat.len() && pat[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    pat[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::testutil::*;

    #[test]
    fn allowed_signer_lines_parse() {
        let pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKN8zaTYvpJ5wwyH7sbxYqcw7QN2S2TVrXt02FW8U1rr";
        let e = parse_allowed_signer_line(&format!("a@b {pk} trailing comment")).unwrap();
        assert_eq!(e.principals, "a@b");
        assert!(e.namespaces.is_none() && !e.cert_authority);
        assert_eq!(
            e.key.to_openssh().unwrap(),
            format!("{pk} trailing comment")
        );

        let e = parse_allowed_signer_line(&format!(
            "\"a b,c\" cert-authority,namespaces=\"x,y\",valid-after=\"20240102Z\",valid-before=\"202401021530Z\" {pk}"
        ))
        .unwrap();
        assert_eq!(e.principals, "a b,c");
        assert!(e.cert_authority);
        assert_eq!(e.namespaces.as_deref(), Some("x,y"));
        assert_eq!(
            e.valid_after.unwrap().to_rfc3339(),
            "2024-01-02T00:00:00+00:00"
        );
        assert_eq!(
            e.valid_before.unwrap().to_rfc3339(),
            "2024-01-02T15:30:00+00:00"
        );

        for bad in [
            format!("a {pk}x"),
            format!("a namespaces=x {pk}"),
            format!("a namespaces=\"x {pk}"),
            format!("a valid-after=\"2024\" {pk}"),
            format!("a unknown {pk}"),
            "a".to_string(),
        ] {
            assert!(parse_allowed_signer_line(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pinned_allowed_signers_may_be_a_symlink() {
        let f = fixture();
        let real = f.tmp.path().join("real_allowed");
        fs::copy(f.bundle.dir.join(ALLOWED_SIGNERS), &real).unwrap();
        let link = f.tmp.path().join("link_allowed");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        verify_bundle(&f.bundle.dir, Some(&link)).unwrap();
    }

    #[test]
    fn pattern_matching() {
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "glassdrill-evidence-v1"
        ));
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "git,glassdrill-*"
        ));
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "glass?rill-*-v?"
        ));
        assert!(match_pattern_list("glassdrill-evidence-v1", "*"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "git"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "*,!*-v1"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "glassdrill"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", ""));
    }
}
