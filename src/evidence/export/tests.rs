use std::process::Command;

use super::*;

const SIGNER: &str = "glassdrill@test";

fn fixture_record(run: &str, day: i64) -> DrillRecord {
    let mut r: DrillRecord = serde_json::from_slice(include_bytes!(
        "../../../tests/it/fixtures/drill-0.1.0-pass.json"
    ))
    .unwrap();
    r.run_id = run.into();
    r.drill.id = "bg-1".into();
    r.started = DateTime::<Utc>::from_timestamp(1_767_225_600 + day * 86_400, 0).unwrap();
    r
}

/// A sealed bundle with a real record.
fn make_bundle(base: &Path, key: &SigningKey, run: &str) -> SealedBundle {
    let mut w = BundleWriter::create(&base.join("evidence"), "bg-1", run).unwrap();
    let r = fixture_record(run, 0);
    w.add("drill.json", &serde_json::to_vec_pretty(&r).unwrap())
        .unwrap();
    w.add("report.html", b"<!doctype html><title>r</title>\n")
        .unwrap();
    w.finish(key, SIGNER).unwrap()
}

#[test]
fn an_export_verifies_with_the_commands_of_its_verify_txt() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("evidence");
    let key = SigningKey::generate(&tmp.path().join("k"), SIGNER).unwrap();
    let log = EvidenceLog::at(&root);
    for run in ["run-1", "run-2"] {
        let b = make_bundle(tmp.path(), &key, run);
        log.append("bg-1", run, &b.manifest_sha256, &key, SIGNER)
            .unwrap();
    }
    let signers = tmp.path().join("allowed_signers");
    fs::write(
        &signers,
        format!(
            "{SIGNER} namespaces=\"{NAMESPACE}\" {}\n",
            key.public_key_bare().unwrap()
        ),
    )
    .unwrap();
    let out = tmp.path().join("export");
    let max = BTreeMap::from([("bg-1".to_owned(), 60)]);
    let keys = BTreeMap::new();
    let req = ExportRequest {
        root: &root,
        from: DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap(),
        to: DateTime::<Utc>::from_timestamp(4_102_444_800, 0).unwrap(),
        drill: None,
        out: &out,
        allowed_signers: &signers,
        signer: SIGNER,
        max_days: &max,
        keys: &keys,
        controls: &[],
    };
    let done = export(&req, &key).unwrap();
    assert_eq!(done.bundles, 2, "{done:?}");
    // The same as a .tar.gz: unpacked, its Python check passes.
    let archive = tmp.path().join("export.tar.gz");
    let packed = export(
        &ExportRequest {
            out: &archive,
            ..req
        },
        &key,
    )
    .unwrap();
    assert_eq!(packed.bundles, 2);
    assert!(!tmp.path().join("export.partial").exists());
    let unpack = tmp.path().join("unpacked");
    fs::create_dir(&unpack).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpack)
        .status()
        .unwrap();
    assert!(st.success());
    let py = Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers)
        .current_dir(unpack.join("export"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stdout)
    );
    for f in [
        "index.html",
        "summary.csv",
        "VERIFY.txt",
        "verify_log.py",
        "log/checkpoint",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let csv = fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    // The commands of VERIFY.txt, as an auditor runs them.
    let run = |c: &mut Command| {
        let o = c.current_dir(&out).output().unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let manifest = fs::File::open(out.join(MANIFEST)).unwrap();
    let (ok, text) = run(Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            "allowed_signers",
            "-I",
            SIGNER,
            "-n",
            NAMESPACE,
            "-s",
            "SHA256SUMS.sig",
        ])
        .stdin(manifest));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("sha256sum").args(["-c", "--strict", "SHA256SUMS"]));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers));
    assert!(ok && text.starts_with("OK: log of 2 entries"), "{text}");
    // The export is a custody event in the log itself.
    let r =
        crate::evidence::log::verify_log(&root, &key.note_verifier(SIGNER).unwrap(), SIGNER, None);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.size, 4, "two bundles and two exports");

    // A line appended after the checkpoint: not covered, so it counts for
    // nothing and is named.
    let entries = out.join("log/entries.jsonl");
    let original = fs::read_to_string(&entries).unwrap();
    fs::write(&entries, format!("{original}{{\"kind\":\"bundle\",\"drill\":\"bg-1\",\"run\":\"run-9\",\"manifest_sha256\":\"00\",\"appended\":\"x\"}}\n")).unwrap();
    let (ok, text) = run(Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers));
    assert!(
        !ok && text.contains("not covered by the checkpoint"),
        "{text}"
    );
    fs::write(&entries, &original).unwrap();
    // A bundle the log recorded in the period, left out of the export.
    let meta_path = out.join("export.json");
    let meta = fs::read_to_string(&meta_path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta).unwrap();
    v["bundles"].as_array_mut().unwrap().remove(0);
    fs::write(&meta_path, v.to_string()).unwrap();
    let (ok, text) = run(Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers));
    assert!(
        !ok && text.contains("not in the export (deleted?)"),
        "{text}"
    );
    fs::write(&meta_path, &meta).unwrap();

    // A tampered log in the export: the Python check finds it.
    let entries = out.join("log/entries.jsonl");
    let text = fs::read_to_string(&entries).unwrap();
    fs::write(&entries, text.replacen("run-1", "run-9", 1)).unwrap();
    let (ok, text) = run(Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers));
    assert!(
        !ok && text.contains("do not match the checkpoint"),
        "{text}"
    );
    // A checkpoint signed by another key: refused.
    fs::write(
        &entries,
        fs::read_to_string(&entries)
            .unwrap()
            .replacen("run-9", "run-1", 1),
    )
    .unwrap();
    let other = SigningKey::generate(&tmp.path().join("k2"), SIGNER).unwrap();
    let other_root = tmp.path().join("other");
    let b = make_bundle(&other_root, &other, "run-1");
    EvidenceLog::at(&other_root.join("evidence"))
        .append("bg-1", "run-1", &b.manifest_sha256, &other, SIGNER)
        .unwrap();
    fs::copy(
        other_root.join("evidence/.log/checkpoint"),
        out.join("log/checkpoint"),
    )
    .unwrap();
    let (ok, text) = run(Command::new("python3")
        .args(["verify_log.py", ".", "--allowed-signers"])
        .arg(&signers));
    assert!(!ok && text.contains("not signed by"), "{text}");
}

#[test]
fn cadence_findings_name_gaps_missing_passes_and_unconfirmed_alerts() {
    let rec = |run: &str, day: i64, verdict: Verdict, latency: bool| {
        let mut r = fixture_record(run, day);
        r.verdict = verdict;
        if !latency {
            for a in &mut r.alerts {
                a.latency = None;
            }
        }
        Row {
            drill: "bg-1".into(),
            run: run.into(),
            record: Some(r),
            verifies: true,
        }
    };
    let rows = vec![
        rec("a", 0, Verdict::Pass, true),
        rec("b", 90, Verdict::Pass, false),
        rec("c", 100, Verdict::Fail, true),
    ];
    let max = BTreeMap::from([("bg-1".to_owned(), 60), ("bg-2".to_owned(), 60)]);
    let keys = BTreeMap::from([("bg-1".to_owned(), vec!["key-a".to_owned()])]);
    let req = ExportRequest {
        root: Path::new("/nonexistent"),
        from: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap(),
        to: DateTime::<Utc>::from_timestamp(1_767_225_600 + 120 * 86_400, 0).unwrap(),
        drill: None,
        out: Path::new("/nonexistent"),
        allowed_signers: Path::new("/nonexistent"),
        signer: SIGNER,
        max_days: &max,
        keys: &keys,
        controls: &[],
    };
    let f = cadence_findings(&rows, &req).join("\n");
    assert!(f.contains("drill bg-1: 90 days between PASSes"), "{f}");
    assert!(
        f.contains("drill bg-1 run b: PASS without an alert confirmation"),
        "{f}"
    );
    assert!(f.contains("drill bg-2: no PASS"), "{f}");
    assert!(f.contains("key key-a not proven"), "{f}");
}

/// Key rotation: a retired key listed with `valid-before` still verifies
/// the bundles it signed before then, and no bundle it signed after.
#[test]
fn a_retired_key_verifies_what_it_signed_before_its_retirement() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(&tmp.path().join("old"), SIGNER).unwrap();
    let bundle = |run: &str, recorded: i64| {
        let mut w = BundleWriter::create(&tmp.path().join("evidence"), "bg-1", run).unwrap();
        let mut r = fixture_record(run, 0);
        r.recorded = DateTime::<Utc>::from_timestamp(recorded, 0).unwrap();
        w.add("drill.json", &serde_json::to_vec_pretty(&r).unwrap())
            .unwrap();
        w.finish(&key, SIGNER).unwrap()
    };
    // 2026-01-01 and 2026-07-01; the key retired on 2026-06-01.
    let before = bundle("run-before", 1_767_225_600);
    let after = bundle("run-after", 1_782_864_000);
    let signers = tmp.path().join("allowed_signers");
    fs::write(
        &signers,
        format!(
            "{SIGNER} namespaces=\"{NAMESPACE}\",valid-before=\"20260601\" {}\n",
            key.public_key_bare().unwrap()
        ),
    )
    .unwrap();
    assert!(verify_bundle_all(&before.dir, Some(&signers)).is_ok());
    let errs = verify_bundle_all(&after.dir, Some(&signers)).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("allowed_signers")),
        "{errs:?}"
    );
}
