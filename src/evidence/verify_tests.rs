//! Tamper tests: every change to a bundle is caught and named.

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

    // Every entry must be a listed file: an added empty directory is
    // added content too.
    let b = make_bundle(tmp.path(), &key, "run-emptydir");
    fs::create_dir(b.dir.join("empty")).unwrap();
    let err = verify_bundle(&b.dir, None).unwrap_err();
    assert!(
        matches!(&err, VerifyError::FileUnlisted { path } if path.ends_with("empty")),
        "{err:?}"
    );
}

/// Defect 9 of the hardening issue: a file whose name is not UTF-8 must
/// not pass as the listed file its lossy conversion looks like.
#[test]
fn evidence_verify_compares_names_as_bytes_not_lossily() {
    use std::os::unix::ffi::OsStrExt as _;
    let tmp = TempDir::new().unwrap();
    let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
    // Listed: `alerts/\u{FFFD}.json`; added: `alerts/\xff.json`, which a
    // lossy conversion turns into the listed name.
    let mut w = BundleWriter::create(&tmp.path().join("evidence"), "bg-1", "run-bytes").unwrap();
    w.add("alerts/\u{FFFD}.json", b"{}").unwrap();
    let b = w.finish(&key, SIGNER).unwrap();
    verify_bundle(&b.dir, None).unwrap();
    let odd = b
        .dir
        .join("alerts")
        .join(std::ffi::OsStr::from_bytes(b"\xff.json"));
    fs::write(&odd, b"{}").unwrap();
    let err = verify_bundle(&b.dir, None).unwrap_err();
    assert!(
        matches!(&err, VerifyError::FileUnlisted { path } if *path == odd),
        "{err:?}"
    );
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
    assert!(matches!(&errs[1], VerifyError::FileMissing { path } if path.ends_with("report.html")));
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

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any manifest bytes: parsed entries or line errors, never a panic.
        #[test]
        fn manifest_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_manifest(&bytes, Path::new("SHA256SUMS"));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any change to any file of a real bundle (a flipped byte, a cut,
        /// garbage) is caught, never a panic, never a pass.
        #[test]
        fn bundle_verification_never_panics_and_catches_every_change(
            which in 0usize..9,
            at in any::<prop::sample::Index>(),
            garbage in prop::collection::vec(any::<u8>(), 0..200),
            how in 0u8..3,
        ) {
            let f = fixture();
            let mut names: Vec<String> = f.bundle.files.clone();
            names.push(MANIFEST.into());
            names.push(SIGNATURE.into());
            let name = &names[which % names.len()];
            let path = f.bundle.dir.join(name);
            let mut bytes = fs::read(&path).unwrap();
            let original = bytes.clone();
            match how {
                0 if !bytes.is_empty() => {
                    let i = at.index(bytes.len());
                    bytes[i] ^= 0x01;
                }
                1 => bytes.truncate(at.index(bytes.len() + 1)),
                _ => bytes = garbage.clone(),
            }
            prop_assume!(bytes != original);
            fs::write(&path, &bytes).unwrap();
            prop_assert!(verify_bundle_all(&f.bundle.dir, None).is_err(), "{name} changed and passed");
        }
    }
}
