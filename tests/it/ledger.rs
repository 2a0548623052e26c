//! The evidence log through the real binary: every drill appended and
//! checkpointed; `evidence verify` (no bundle) checks every bundle against
//! the host's keys and the log; a deleted, altered or re-signed bundle and
//! a rewritten log are named; a kept checkpoint proves the log only grew.

use std::path::Path;

use crate::util::{World, bundle_from_stdout};

fn rehearse(w: &World) -> String {
    let out = w.run(["rehearse", "--progress", "none", "--alert-delay", "200ms"]);
    out.expect_exit(0);
    out.stdout
}

/// The checkpoint a run printed (the lines after "evidence log: entry").
fn checkpoint_of(stdout: &str) -> String {
    let mut lines = stdout
        .lines()
        .skip_while(|l| !l.starts_with("evidence log: entry"));
    lines.next().expect("the run names its log entry");
    let mut text: String = lines.map(|l| format!("{l}\n")).collect();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn verify(w: &World, extra: &[&str]) -> crate::util::Run {
    let mut args = vec!["evidence", "verify"];
    args.extend_from_slice(extra);
    w.run(args)
}

#[test]
fn every_drill_is_in_the_log_and_tampering_is_named() {
    let w = World::new();
    let first = rehearse(&w);
    let kept = w.path().join("kept-checkpoint");
    std::fs::write(&kept, checkpoint_of(&first)).unwrap();
    let second = rehearse(&w);
    let ok = verify(&w, &["--since-checkpoint", kept.to_str().unwrap()]);
    ok.expect_exit(0);
    assert!(
        ok.stdout
            .contains("OK: 2 bundle(s) verified against the host's signer keys")
            && ok
                .stdout
                .contains("evidence log: 2 entries, latest checkpoint covers 2")
            && ok.stdout.contains("only grew since"),
        "{}",
        ok.stdout
    );

    // A byte flipped in a bundle: evidence verify, and sha256sum itself.
    let b2 = bundle_from_stdout(&second);
    let record = b2.join("drill.json");
    let original = std::fs::read(&record).unwrap();
    let mut bytes = original.clone();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(&record, &bytes).unwrap();
    let bad = verify(&w, &[]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("drill.json"), "{}", bad.stderr);
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
        .current_dir(&b2)
        .output()
        .unwrap();
    assert!(!sums.status.success());
    std::fs::write(&record, &original).unwrap();
    verify(&w, &[]).expect_exit(0);

    // The manifest changed: ssh-keygen itself refuses the signature.
    let manifest = b2.join("SHA256SUMS");
    let original_manifest = std::fs::read(&manifest).unwrap();
    let mut m = original_manifest.clone();
    m[0] = if m[0] == b'a' { b'b' } else { b'a' };
    std::fs::write(&manifest, &m).unwrap();
    let sig = std::process::Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            "allowed_signers",
            "-I",
            "glassdrill@vm",
            "-n",
            "glassdrill-evidence-v1",
            "-s",
            "SHA256SUMS.sig",
        ])
        .current_dir(&b2)
        .stdin(std::fs::File::open(&manifest).unwrap())
        .output()
        .unwrap();
    assert!(!sig.status.success());
    std::fs::write(&manifest, &original_manifest).unwrap();
    verify(&w, &[]).expect_exit(0);

    // Two bundles swapped (each still signed): neither is where the log
    // put it.
    let b1 = bundle_from_stdout(&first);
    let tmp = w.path().join("swap");
    std::fs::rename(&b1, &tmp).unwrap();
    std::fs::rename(&b2, &b1).unwrap();
    std::fs::rename(&tmp, &b2).unwrap();
    let bad = verify(&w, &[]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert_eq!(
        bad.stderr
            .matches("its SHA256SUMS is not the one log entry")
            .count(),
        2,
        "{}",
        bad.stderr
    );
    std::fs::rename(&b1, &tmp).unwrap();
    std::fs::rename(&b2, &b1).unwrap();
    std::fs::rename(&tmp, &b2).unwrap();
    verify(&w, &[]).expect_exit(0);

    // A bundle deleted.
    let moved = w.path().join("moved-away");
    std::fs::rename(&b1, &moved).unwrap();
    let bad = verify(&w, &[]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr.contains("is missing (deleted?)"),
        "{}",
        bad.stderr
    );
    std::fs::rename(&moved, &b1).unwrap();

    // A bundle re-signed with another key, its allowed_signers replaced to
    // match: the bundle alone agrees with itself, the host's keys do not.
    resign(&w, &b1);
    let alone = w.run([
        "evidence",
        "verify",
        b1.to_str().unwrap(),
        "--allowed-signers",
        b1.join("allowed_signers").to_str().unwrap(),
    ]);
    alone.expect_exit(0);
    let bad = verify(&w, &[]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr
            .contains(b1.file_name().unwrap().to_str().unwrap()),
        "{}",
        bad.stderr
    );

    // The log rewritten (entries swapped): the checkpoint no longer matches.
    let entries = w.state().join("glassdrill/evidence/.log/entries.jsonl");
    let text = std::fs::read_to_string(&entries).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&entries, format!("{}\n{}\n", lines[1], lines[0])).unwrap();
    let bad = verify(&w, &["--since-checkpoint", kept.to_str().unwrap()]);
    assert!(
        bad.stderr.contains("do not match the latest checkpoint")
            && bad.stderr.contains("history was rewritten"),
        "{}",
        bad.stderr
    );
    w.assert_clean();
}

/// Re-signs `bundle` with a fresh key and writes that key into its
/// allowed_signers (what a forger would do).
fn resign(w: &World, bundle: &Path) {
    let key = w.path().join("forger");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "forger", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut parts = pubkey.split_whitespace();
    let line = format!(
        "glassdrill@forged namespaces=\"glassdrill-evidence-v1\" {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    std::fs::write(bundle.join("allowed_signers"), line).unwrap();
    // The manifest lists allowed_signers' hash: recompute it.
    let manifest = std::fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    let new_hash = glassdrill_sha256(&bundle.join("allowed_signers"));
    let manifest: String = manifest
        .lines()
        .map(|l| {
            if l.ends_with("  allowed_signers") {
                format!("{new_hash}  allowed_signers\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(bundle.join("SHA256SUMS"), manifest).unwrap();
    std::fs::remove_file(bundle.join("SHA256SUMS.sig")).unwrap();
    let signed = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "glassdrill-evidence-v1", "-f"])
        .arg(&key)
        .arg(bundle.join("SHA256SUMS"))
        .output()
        .unwrap();
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
}

fn glassdrill_sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_classifications_and_an_export_an_auditor_can_open() {
    let w = World::new();
    let out = rehearse(&w);
    let bundle = bundle_from_stdout(&out);
    let run = bundle.file_name().unwrap().to_str().unwrap().to_owned();
    let r = w.run([
        "evidence",
        "review",
        &run,
        "--by",
        "Carol Auditor",
        "--outcome",
        "accepted",
        "--note",
        "alert arrived in 2 s",
    ]);
    r.expect_exit(0);
    assert!(r.stdout.contains("evidence log entry 1"), "{}", r.stdout);
    let c = w.run([
        "evidence",
        "classify",
        "--signin",
        "b7c2-…",
        "--account",
        "breakglass1@rehearsal.onmicrosoft.com",
        "--as",
        "emergency",
        "--by",
        "Dana SOC",
        "--note",
        "tenant-wide CA outage",
    ]);
    c.expect_exit(0);
    let missing = w.run([
        "evidence",
        "review",
        "no-such-run",
        "--by",
        "x",
        "--outcome",
        "accepted",
        "--note",
        "x",
    ]);
    missing.expect_exit(64);
    verify(&w, &[]).expect_exit(0);

    let export = w.path().join("export");
    let e = w.run([
        "evidence",
        "export",
        "--from",
        "2000-01-01",
        "--to",
        "2099-12-31",
        "--out",
        export.to_str().unwrap(),
    ]);
    e.expect_exit(0);
    assert!(e.stdout.contains("exported 1 bundle(s)"), "{}", e.stdout);
    let py = std::process::Command::new("python3")
        .arg("verify_log.py")
        .arg(".")
        .arg("--allowed-signers")
        .arg(export.join("allowed_signers"))
        .current_dir(&export)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stdout)
    );

    // index.html and a bundle's report.html in headless Chromium: the
    // verdict, latency and review are in the page, and nothing is fetched.
    let host = w.host();
    let browser = glassdrill::browser::Browser::launch(&glassdrill::browser::BrowserOptions {
        chromium: host.browser.chromium.clone(),
        chromedriver: host.browser.chromedriver.clone(),
        temp_dir: host.browser.temp_dir.clone(),
        public_address_space: Vec::new(),
    })
    .await
    .expect("browser");
    let client = browser.client().unwrap();
    for page in [
        "index.html".to_owned(),
        format!("bundles/rehearsal/{run}/report.html"),
    ] {
        client
            .goto(&format!("file://{}", export.join(&page).display()))
            .await
            .unwrap();
        let text: serde_json::Value = client
            .execute(
                "return [document.body.innerText, performance.getEntriesByType('resource').length, Array.from(document.images).filter((i) => i.complete && i.naturalWidth > 0).length, document.querySelectorAll('svg rect').length];",
                vec![],
            )
            .await
            .unwrap();
        let body = text[0].as_str().unwrap_or_default();
        assert!(body.contains("PASS"), "{page}: {body}");
        assert_eq!(text[1], 0, "{page} fetched something");
        if page != "index.html" {
            // The screenshots are inline and load; the timeline has a bar
            // per stage.
            assert!(text[2].as_u64().unwrap_or(0) >= 3, "{page}: {text}");
            assert!(text[3].as_u64().unwrap_or(0) >= 6, "{page}: {text}");
            assert!(
                body.contains("sign-in → delivered") || body.contains("delivered"),
                "{body}"
            );
            assert!(
                body.contains("breakglass1@rehearsal.onmicrosoft.com")
                    && body.contains("error code 0"),
                "{body}"
            );
        }
        if page == "index.html" {
            assert!(
                body.contains("accepted by Carol Auditor")
                    && body.contains("emergency")
                    && body.contains(" ms"),
                "{body}"
            );
        }
        let (shot, _) = browser.screenshot().await.unwrap();
        assert!(shot.len() > 1000, "{page}: a screenshot");
    }
    browser.close().await.unwrap();
    w.assert_clean();
}
