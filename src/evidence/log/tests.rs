use super::*;
use crate::evidence::testutil::make_bundle;

const SIGNER: &str = "glassdrill@test";

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    key: SigningKey,
}

fn fx() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("evidence");
    let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
    Fx {
        _tmp: tmp,
        root,
        key,
    }
}

fn sealed(f: &Fx, run: &str) {
    let b = make_bundle(f.root.parent().unwrap(), &f.key, run);
    let drill = b
        .dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    EvidenceLog::at(&f.root)
        .append(&drill, run, &b.manifest_sha256, &f.key, SIGNER)
        .unwrap();
}

fn verify(f: &Fx, since: Option<&str>) -> LogReport {
    verify_log(
        &f.root,
        &f.key.note_verifier(SIGNER).unwrap(),
        SIGNER,
        since,
    )
}

#[test]
fn appends_are_checkpointed_and_verify() {
    let f = fx();
    for i in 0..5 {
        sealed(&f, &format!("run-{i}"));
    }
    let r = verify(&f, None);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!((r.size, r.checkpoint_size), (5, Some(5)));
    let cp = EvidenceLog::at(&f.root).latest_checkpoint().unwrap();
    assert!(
        cp.starts_with("glassdrill-evidence-log/glassdrill@test\n5\n"),
        "{cp}"
    );
    // Every checkpoint is kept for witnesses.
    assert!(f.root.join(".log/checkpoint.3").exists());
}

#[test]
fn the_log_only_grew_since_a_kept_checkpoint() {
    let f = fx();
    sealed(&f, "run-0");
    sealed(&f, "run-1");
    let kept = EvidenceLog::at(&f.root).latest_checkpoint().unwrap();
    sealed(&f, "run-2");
    assert!(verify(&f, Some(&kept)).findings.is_empty());
    // A rewritten history: same size, another entry at 1.
    let path = f.root.join(".log/entries.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let forged = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[1]);
    fs::write(&path, forged).unwrap();
    let r = verify(&f, Some(&kept));
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("history was rewritten")),
        "{:?}",
        r.findings
    );
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("do not match the latest checkpoint")),
        "{:?}",
        r.findings
    );
}

#[test]
fn deleted_added_altered_bundles_and_a_truncated_log_are_named() {
    let f = fx();
    for i in 0..3 {
        sealed(&f, &format!("run-{i}"));
    }
    // A bundle deleted.
    let deleted = make_bundle(f.root.parent().unwrap(), &f.key, "run-x");
    fs::remove_dir_all(f.root.join("bg-1/run-1")).unwrap();
    let r = verify(&f, None);
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("bundle bg-1/run-1 is missing")),
        "{:?}",
        r.findings
    );
    // A bundle added without the log.
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("bg-1/run-x is not in the evidence log")),
        "{:?}",
        r.findings
    );
    drop(deleted);
    // A manifest altered after sealing.
    let m = f.root.join("bg-1/run-2/SHA256SUMS");
    let mut text = fs::read_to_string(&m).unwrap();
    text.push('\n');
    fs::write(&m, text).unwrap();
    let r = verify(&f, None);
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("run-2: its SHA256SUMS is not the one")),
        "{:?}",
        r.findings
    );
    // The log cut short.
    let path = f.root.join(".log/entries.jsonl");
    let text = fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    fs::write(&path, format!("{first}\n")).unwrap();
    let r = verify(&f, None);
    assert!(
        r.findings
            .iter()
            .any(|m| m.contains("entries were removed")),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_checkpoint_of_another_key_or_log_is_refused() {
    let f = fx();
    sealed(&f, "run-0");
    let other = fx();
    let r = verify_log(
        &f.root,
        &other.key.note_verifier(SIGNER).unwrap(),
        SIGNER,
        None,
    );
    assert!(
        r.findings.iter().any(|m| m.contains("not signed by")),
        "{:?}",
        r.findings
    );
    sealed(&other, "run-9");
    let foreign = EvidenceLog::at(&other.root).latest_checkpoint().unwrap();
    fs::write(f.root.join(".log/checkpoint"), foreign).unwrap();
    let r = verify(&f, None);
    assert!(!r.findings.is_empty());
}

#[test]
fn a_half_written_append_is_cut_and_a_missed_bundle_caught_up() {
    let f = fx();
    sealed(&f, "run-0");
    let path = f.root.join(".log/entries.jsonl");
    let mut text = fs::read(&path).unwrap();
    text.extend_from_slice(b"{\"kind\":\"bund");
    fs::write(&path, text).unwrap();
    assert!(
        verify(&f, None)
            .findings
            .iter()
            .any(|m| m.contains("half-written"))
    );
    // A bundle sealed by a run that died before appending it.
    make_bundle(f.root.parent().unwrap(), &f.key, "run-1");
    assert_eq!(catch_up(&f.root, &f.key, SIGNER).unwrap(), 1);
    let r = verify(&f, None);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.size, 2);
}

#[test]
fn pruned_bundles_are_known_not_missing() {
    let f = fx();
    sealed(&f, "20200101T000000Z-aaaaaa");
    sealed(&f, "20200102T000000Z-bbbbbb");
    sealed(&f, "29990101T000000Z-cccccc");
    // The first two are older than the cutoff, the third is not.
    let gone = prune(&f.root, chrono::Utc::now(), &f.key, SIGNER).unwrap();
    assert_eq!(gone.len(), 2);
    assert!(!f.root.join("bg-1/20200101T000000Z-aaaaaa").exists());
    assert!(f.root.join("bg-1/29990101T000000Z-cccccc").exists());
    let r = verify(&f, None);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.size, 5, "three bundles and two prune records");
}

#[test]
fn verify_all_uses_the_pinned_keys_and_names_odd_entries() {
    use std::os::unix::ffi::OsStrExt as _;
    let f = fx();
    sealed(&f, "run-0");
    let pinned = f.root.parent().unwrap().join("pinned");
    fs::write(
        &pinned,
        format!(
            "{} namespaces=\"{NAMESPACE}\" {}\n",
            crate::evidence::testutil::SIGNER,
            f.key.public_key_bare().unwrap()
        ),
    )
    .unwrap();
    // The log is signed under SIGNER; the bundles' principal differs, so
    // name both in the pinned file.
    let mut text = fs::read_to_string(&pinned).unwrap();
    text.push_str(&format!(
        "{SIGNER} namespaces=\"{NAMESPACE}\" {}\n",
        f.key.public_key_bare().unwrap()
    ));
    fs::write(&pinned, text).unwrap();
    let r = verify_all(&f.root, &pinned, SIGNER, None).unwrap();
    assert!(
        r.failed.is_empty() && r.log.findings.is_empty(),
        "{:?} {:?}",
        r.failed,
        r.log.findings
    );
    fs::create_dir(f.root.join(std::ffi::OsStr::from_bytes(b"bg-\xff"))).unwrap();
    let r = verify_all(&f.root, &pinned, SIGNER, None).unwrap();
    assert!(
        r.failed
            .iter()
            .any(|(_, e)| e.iter().any(|m| m.contains("not UTF-8"))),
        "{:?}",
        r.failed
    );
    // Another key pinned: every bundle fails, by name.
    let other = fx();
    let wrong = f.root.parent().unwrap().join("wrong");
    fs::write(
        &wrong,
        format!(
            "{} namespaces=\"{NAMESPACE}\" {}\n{SIGNER} namespaces=\"{NAMESPACE}\" {}\n",
            crate::evidence::testutil::SIGNER,
            other.key.public_key_bare().unwrap(),
            other.key.public_key_bare().unwrap()
        ),
    )
    .unwrap();
    let r = verify_all(&f.root, &wrong, SIGNER, None).unwrap();
    assert!(
        r.failed.iter().any(|(d, _)| d.ends_with("run-0")),
        "{:?}",
        r.failed
    );
    assert!(!r.log.findings.is_empty());
}
